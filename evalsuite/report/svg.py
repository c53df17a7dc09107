"""Inline SVG charts for the scorecard: no JavaScript, no external assets, text escaped.

Every function returns :class:`markupsafe.Markup` built from escaped pieces, so templates can
embed charts with autoescape on while labels (class names, paths) from users stay inert.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04")
FONT = 'font-family="system-ui,-apple-system,Segoe UI,sans-serif"'


def _num(x: float | None) -> str:
    return "0" if x is None or not math.isfinite(x) else f"{x:.2f}"


def _fmt(v: float | None, percent: bool) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v * 100:.1f}%" if percent else f"{v:.3g}"


def _frame(width: int, height: int, title: str, body: list[str]) -> Markup:
    t = escape(title)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{t}">',
        f"<title>{t}</title>",
    ]
    if title:
        parts.append(f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" font-size="13" {FONT} font-weight="600">{t}</text>')
    parts.extend(body)
    parts.append("</svg>")
    return Markup("".join(parts))


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    lower: Sequence[float | None] | None = None,
    upper: Sequence[float | None] | None = None,
    title: str = "",
    ymin: float = 0.0,
    ymax: float | None = 1.0,
    percent: bool = True,
    reference: float | None = None,
    width: int = 640,
) -> Markup:
    """Vertical bars with optional error bars (``lower``/``upper``) and a dashed reference line."""
    n = max(len(labels), 1)
    if ymax is None:
        cands = _finite(list(values) + list(upper or []) + ([reference] if reference is not None else []))
        ymax = max(cands) * 1.1 if cands and max(cands) > ymin else ymin + 1.0
    height, top, bottom, left = 260, 28, 70, 48
    plot_h = height - top - bottom
    plot_w = width - left - 10
    step = plot_w / n
    bar_w = max(4.0, step * 0.7)

    def y(v: float) -> float:
        v = min(max(v, ymin), ymax)
        return top + plot_h * (1 - (v - ymin) / (ymax - ymin or 1.0))

    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#888"/>']
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        v = ymin + frac * (ymax - ymin)
        body.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{width - 10}" y2="{y(v):.1f}" stroke="#eee"/>')
        body.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="10" {FONT}>{escape(_fmt(v, percent))}</text>')
    for i, (lab, v) in enumerate(zip(labels, values, strict=False)):
        x0 = left + i * step + (step - bar_w) / 2
        cx = x0 + bar_w / 2
        if v is not None and math.isfinite(v):
            body.append(
                f'<rect x="{x0:.1f}" y="{y(v):.1f}" width="{bar_w:.1f}" height="{max(0.0, top + plot_h - y(v)):.1f}" '
                f'fill="{PALETTE[0]}"><title>{escape(str(lab))}: {escape(_fmt(v, percent))}</title></rect>'
            )
            if n <= 24:
                body.append(f'<text x="{cx:.1f}" y="{y(v) - 3:.1f}" text-anchor="middle" font-size="9" {FONT}>{escape(_fmt(v, percent))}</text>')
        lo = lower[i] if lower is not None and i < len(lower) else None
        hi = upper[i] if upper is not None and i < len(upper) else None
        if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
            body.append(f'<line x1="{cx:.1f}" y1="{y(lo):.1f}" x2="{cx:.1f}" y2="{y(hi):.1f}" stroke="#111" stroke-width="1.2"/>')
            for yy in (y(lo), y(hi)):
                body.append(f'<line x1="{cx - 4:.1f}" y1="{yy:.1f}" x2="{cx + 4:.1f}" y2="{yy:.1f}" stroke="#111"/>')
        label = str(lab)
        short = label if len(label) <= 16 else label[:15] + "…"
        body.append(
            f'<text x="{cx:.1f}" y="{top + plot_h + 12}" font-size="10" {FONT} text-anchor="end" '
            f'transform="rotate(-35 {cx:.1f} {top + plot_h + 12})">{escape(short)}</text>'
        )
    if reference is not None and math.isfinite(reference):
        body.append(
            f'<line x1="{left}" y1="{y(reference):.1f}" x2="{width - 10}" y2="{y(reference):.1f}" '
            f'stroke="{PALETTE[1]}" stroke-dasharray="5,4"><title>reference {escape(_fmt(reference, percent))}</title></line>'
        )
    return _frame(width, height, title, body)


def line_chart(
    series: dict[str, Sequence[tuple[float, float | None]]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    ymin: float = 0.0,
    ymax: float | None = 1.0,
    percent: bool = True,
    xticks: Sequence[tuple[float, str]] | None = None,
    width: int = 640,
) -> Markup:
    """One polyline with markers per series, a legend, and optional named x ticks."""
    height, top, bottom, left, right = 280, 28, 56, 52, 150
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for pts in series.values() for x, _ in pts] or [0.0, 1.0]
    xmin, xmax = min(xs), max(xs)
    if xmax == xmin:
        xmin, xmax = xmin - 0.5, xmax + 0.5
    if ymax is None:
        ys = _finite([v for pts in series.values() for _, v in pts])
        ymax = max(ys) * 1.1 if ys and max(ys) > ymin else ymin + 1.0

    def px(x: float) -> float:
        return left + plot_w * (x - xmin) / (xmax - xmin)

    def py(v: float) -> float:
        v = min(max(v, ymin), ymax)
        return top + plot_h * (1 - (v - ymin) / (ymax - ymin or 1.0))

    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#888"/>',
    ]
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        v = ymin + frac * (ymax - ymin)
        body.append(f'<line x1="{left}" y1="{py(v):.1f}" x2="{left + plot_w}" y2="{py(v):.1f}" stroke="#eee"/>')
        body.append(f'<text x="{left - 4}" y="{py(v) + 4:.1f}" text-anchor="end" font-size="10" {FONT}>{escape(_fmt(v, percent))}</text>')
    ticks = list(xticks) if xticks else [(x, f"{x:g}") for x in sorted(set(xs))][:12]
    for x, lab in ticks:
        body.append(f'<text x="{px(x):.1f}" y="{top + plot_h + 14}" text-anchor="middle" font-size="10" {FONT}>{escape(lab)}</text>')
    if xlabel:
        body.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle" font-size="11" {FONT}>{escape(xlabel)}</text>')
    if ylabel:
        body.append(
            f'<text x="12" y="{top + plot_h / 2:.1f}" text-anchor="middle" font-size="11" {FONT} '
            f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape(ylabel)}</text>'
        )
    for k, (name, pts) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        good = [(x, v) for x, v in pts if v is not None and math.isfinite(v)]
        if len(good) > 1:
            path = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in good)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, v in good:
            body.append(
                f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="3" fill="{colour}">'
                f"<title>{escape(name)} @ {escape(f'{x:g}')}: {escape(_fmt(v, percent))}</title></circle>"
            )
        ly = top + 12 + 16 * k
        body.append(f'<rect x="{width - right + 12}" y="{ly - 8}" width="10" height="10" fill="{colour}"/>')
        label = name if len(name) <= 20 else name[:19] + "…"
        body.append(f'<text x="{width - right + 26}" y="{ly + 1}" font-size="11" {FONT}>{escape(label)}</text>')
    return _frame(width, height, title, body)


def _heat_colour(t: float, scheme: str = "quality") -> str:
    """``quality``: red (0) through yellow to green (1); ``intensity``: white (0) to blue (1)."""
    t = min(max(t, 0.0), 1.0)
    if scheme == "intensity":
        return f"rgb({int(255 - 218 * t)},{int(255 - 156 * t)},{int(255 - 20 * t)})"
    if t < 0.5:
        r, g = 220, int(60 + 2 * t * 160)
    else:
        r, g = int(220 - (t - 0.5) * 2 * 180), 200
    return f"rgb({r},{g},70)"


def heatmap(
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    values: Sequence[Sequence[float | None]],
    *,
    title: str = "",
    vmin: float = 0.0,
    vmax: float = 1.0,
    percent: bool = True,
    cell: int = 46,
    scheme: str = "quality",
) -> Markup:
    """A grid coloured by value, values printed in cells.

    ``scheme="quality"`` colours red (vmin) to green (vmax), for accuracies; ``"intensity"``
    white to blue, for shares such as a confusion matrix where large is not "good".
    """
    left = 10 + 7 * max((len(str(r)) for r in row_labels), default=4)
    top = 44
    width = left + cell * max(len(col_labels), 1) + 10
    height = top + 22 * max(len(row_labels), 1) + 10
    body = []
    for j, c in enumerate(col_labels):
        body.append(f'<text x="{left + j * cell + cell / 2:.1f}" y="{top - 6}" text-anchor="middle" font-size="11" {FONT}>{escape(str(c))}</text>')
    for i, r in enumerate(row_labels):
        yy = top + 22 * i
        body.append(f'<text x="{left - 6}" y="{yy + 15}" text-anchor="end" font-size="11" {FONT}>{escape(str(r))}</text>')
        for j, _ in enumerate(col_labels):
            v = values[i][j] if i < len(values) and j < len(values[i]) else None
            ok = v is not None and math.isfinite(v)
            fill = _heat_colour((v - vmin) / ((vmax - vmin) or 1.0), scheme) if ok else "#eee"
            body.append(
                f'<rect x="{left + j * cell}" y="{yy}" width="{cell - 2}" height="20" fill="{fill}">'
                f"<title>{escape(str(r))} / {escape(str(col_labels[j]))}: {escape(_fmt(v, percent))}</title></rect>"
            )
            body.append(
                f'<text x="{left + j * cell + (cell - 2) / 2:.1f}" y="{yy + 14}" text-anchor="middle" font-size="10" {FONT}>'
                f"{escape(_fmt(v, percent) if ok else '–')}</text>"
            )
    return _frame(width, height, title, body)


def reliability_diagram(
    confidence: Sequence[float | None],
    accuracy: Sequence[float | None],
    counts: Sequence[int],
    *,
    title: str = "",
    width: int = 360,
    smooth: dict | None = None,
) -> Markup:
    """Per-bin accuracy vs confidence with the diagonal, bin counts as a strip underneath.

    ``smooth`` (``{"t", "accuracy", "lower", "upper", "bandwidth"}``, from
    ``evalsuite.calibration.metrics.smooth_reliability_from_top_label``) overlays the smoothed
    reliability curve and its 95% band.
    """
    n_bins = max(len(counts), 1)
    size, left, top = width - 60, 44, 26
    count_h = 40
    height = top + size + count_h + 36
    total = max(sum(int(c) for c in counts), 1)
    bw = size / n_bins
    body = [
        f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="none" stroke="#888"/>',
        f'<line x1="{left}" y1="{top + size}" x2="{left + size}" y2="{top}" stroke="#999" stroke-dasharray="4,3"/>',
    ]
    for i in range(n_bins):
        acc = accuracy[i] if i < len(accuracy) else None
        conf = confidence[i] if i < len(confidence) else None
        c = int(counts[i]) if i < len(counts) else 0
        x0 = left + i * bw
        if acc is not None and math.isfinite(acc) and c > 0:
            h = size * acc
            body.append(
                f'<rect x="{x0 + 1:.1f}" y="{top + size - h:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" fill="{PALETTE[0]}" opacity="0.85">'
                f"<title>bin {i + 1}: accuracy {escape(_fmt(acc, True))}, confidence {escape(_fmt(conf, True))}, n={c}</title></rect>"
            )
            if conf is not None and math.isfinite(conf):
                gap_top = top + size - size * max(acc, conf)
                gap_h = size * abs(conf - acc)
                body.append(f'<rect x="{x0 + 1:.1f}" y="{gap_top:.1f}" width="{bw - 2:.1f}" height="{gap_h:.1f}" fill="{PALETTE[1]}" opacity="0.3"/>')
        ch = count_h * (c / total) ** 0.5
        body.append(f'<rect x="{x0 + 1:.1f}" y="{top + size + 8 + count_h - ch:.1f}" width="{bw - 2:.1f}" height="{ch:.1f}" fill="#6b7280"><title>n={c}</title></rect>')
    if smooth:
        body.extend(_smooth_overlay(smooth, left, top, size))
    for v in (0.0, 0.5, 1.0):
        body.append(f'<text x="{left - 4}" y="{top + size - size * v + 4:.1f}" text-anchor="end" font-size="10" {FONT}>{v:g}</text>')
        body.append(f'<text x="{left + size * v:.1f}" y="{top + size + count_h + 22}" text-anchor="middle" font-size="10" {FONT}>{v:g}</text>')
    legend = "bars: accuracy; line: smoothed, band 95%" if smooth else "bars: accuracy; grey: samples per bin"
    body.append(f'<text x="{left + size / 2:.1f}" y="{height - 2}" text-anchor="middle" font-size="11" {FONT}>confidence ({legend})</text>')
    return _frame(width, height, title, body)


def _smooth_overlay(smooth: dict, left: float, top: float, size: float) -> list[str]:
    """SVG pieces of a smoothed reliability curve (polyline) and its band (polygon) in the plot square."""

    def pt(x: float, y: float) -> str:
        return f"{left + size * x:.1f},{top + size - size * min(max(y, 0.0), 1.0):.1f}"

    t = list(smooth.get("t") or [])
    acc = list(smooth.get("accuracy") or [])
    lo, hi = smooth.get("lower"), smooth.get("upper")
    out = []
    if lo and hi and len(lo) == len(t) == len(hi):
        ring = [pt(x, y) for x, y in zip(t, hi, strict=True)] + [pt(x, y) for x, y in zip(reversed(t), reversed(lo), strict=True)]
        out.append(f'<polygon points="{" ".join(ring)}" fill="{PALETTE[2]}" opacity="0.25"/>')
    if acc and len(acc) == len(t):
        bw = smooth.get("bandwidth")
        label = escape(f"smoothed accuracy (bandwidth {_fmt(bw, False)})")
        out.append(f'<polyline points="{" ".join(pt(x, y) for x, y in zip(t, acc, strict=True))}" fill="none" '
                   f'stroke="{PALETTE[2]}" stroke-width="2"><title>{label}</title></polyline>')
    return out


def histogram(counts: Sequence[int], edges: Sequence[float], *, title: str = "", xlabel: str = "", width: int = 360) -> Markup:
    """Bars of ``counts`` between consecutive ``edges``."""
    height, top, bottom, left = 200, 26, 36, 40
    plot_w, plot_h = width - left - 10, height - top - bottom
    peak = max([int(c) for c in counts] + [1])
    n = max(len(counts), 1)
    bw = plot_w / n
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#888"/>']
    for i, c in enumerate(counts):
        h = plot_h * int(c) / peak
        lo = edges[i] if i < len(edges) else 0
        hi = edges[i + 1] if i + 1 < len(edges) else lo
        body.append(
            f'<rect x="{left + i * bw + 1:.1f}" y="{top + plot_h - h:.1f}" width="{max(bw - 2, 1):.1f}" height="{h:.1f}" fill="{PALETTE[0]}">'
            f"<title>[{escape(f'{lo:.3g}')}, {escape(f'{hi:.3g}')}): {int(c)}</title></rect>"
        )
    if len(edges) >= 2:
        body.append(f'<text x="{left}" y="{top + plot_h + 14}" font-size="10" {FONT}>{escape(f"{edges[0]:.3g}")}</text>')
        body.append(f'<text x="{left + plot_w}" y="{top + plot_h + 14}" text-anchor="end" font-size="10" {FONT}>{escape(f"{edges[-1]:.3g}")}</text>')
    body.append(f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" font-size="10" {FONT}>{peak}</text>')
    if xlabel:
        body.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle" font-size="11" {FONT}>{escape(xlabel)}</text>')
    return _frame(width, height, title, body)
