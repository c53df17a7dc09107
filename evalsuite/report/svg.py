"""Inline SVG charts for the scorecard: no JavaScript, no external assets, text escaped.

Every function returns :class:`markupsafe.Markup` built from escaped pieces, so templates can
embed charts with autoescape on while labels (class names, paths) from users stay inert.

Legibility is part of the contract, for any number of labels: no two texts of a chart overlap and
none leaves the chart's box (``tests/test_scorecard_charts.py`` measures this in headless
Chromium). Layout therefore sizes every margin from the texts it holds, using a deliberately wide
estimate of their rendered width (:func:`text_width`, DejaVu Sans metrics rounded up, the widest
common sans-serif fallback), and wraps what does not fit instead of truncating it:

- a bar chart is vertical only while every label fits under its bar, else it turns horizontal (one
  row per label, so any number of labels);
- a heatmap puts the longer dimension down the rows, turns column headers upright when they do not
  fit across a cell, and wraps columns into stacked panels past ``max_width``;
- titles, legends and axis notes wrap onto further lines and the chart grows to hold them.

Colour is never the only cue: series use Okabe and Ito's colour-blind-safe palette *and* a dash
pattern and a marker shape of their own; heatmaps use a colour-blind-safe diverging scale (red to
blue, ColorBrewer RdYlBu) with the value printed in every cell and a labelled scale underneath.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# Okabe & Ito (2008), "Color Universal Design": blue, vermillion, bluish green, orange, reddish
# purple, sky blue, black, ordered so that neighbours stay apart under deuteranopia (the first
# three, the series charts compare most, pairwise most of all). Their yellow is left out: too faint
# for a line on white.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000")
DASHES = ("", "6,3", "2,2", "9,3,2,3")
MARKERS = ("circle", "square", "triangle", "diamond", "triangle-down")
FONT = 'font-family="system-ui,-apple-system,Segoe UI,sans-serif"'
HALO = 'paint-order="stroke" stroke="#fff" stroke-width="3" stroke-linejoin="round"'
TITLE_SIZE = 13
LINE_HEIGHT = 1.3  # line pitch of wrapped text, in font sizes
# ColorBrewer RdYlBu (colour-blind safe), from bad (t = 0) to good (t = 1).
_DIVERGING = ((0.0, (215, 48, 39)), (0.25, (252, 141, 89)), (0.5, (254, 224, 144)),
              (0.75, (145, 191, 219)), (1.0, (69, 117, 180)))
_NARROW = frozenset("ijlI.,:;'|!")
_SEMI = frozenset("frt-/()[] ")
_WIDE = frozenset("mwMW%…∞×—")
_PRIMARY = re.compile(r"[^ /]+[ /]*|[ /]+")  # words, each with its trailing separators
_SECONDARY = re.compile(r"[^_\-]+[_\-]*|[_\-]+")


def text_width(text: str, size: float, bold: bool = False) -> float:
    """Rendered width of ``text`` at ``size`` px, over- rather than under-estimated.

    Per-character classes from DejaVu Sans (the widest usual fallback for ``system-ui``; Segoe UI,
    SF and Liberation are narrower), rounded up, so layout sized by it holds on any of them.
    """
    em = 0.0
    for ch in str(text):
        if ch in _NARROW:
            em += 0.32
        elif ch in _SEMI:
            em += 0.45
        elif ch in _WIDE:
            em += 1.0
        elif ch.isupper():
            em += 0.79
        else:
            em += 0.66
    return em * size * (1.15 if bold else 1.0)


def wrap(text: str, max_px: float, size: float, bold: bool = False) -> list[str]:
    """``text`` split into lines no wider than ``max_px``: at spaces and ``/`` where it can, inside a
    part at ``_`` or ``-`` only where the part alone is too wide, and inside a word only where even
    that is (a separator stays at the end of its line)."""
    text = str(text)
    if text_width(text, size, bold) <= max_px:
        return [text]
    return _pack(text, max_px, size, bold, (_PRIMARY, _SECONDARY)) or [text]


def _pack(text: str, max_px: float, size: float, bold: bool, levels: tuple[re.Pattern[str], ...]) -> list[str]:
    """Greedy line filling with the tokens of ``levels[0]``; a token too wide alone is split by the
    next level (by characters after the last)."""

    def fits(s: str) -> bool:
        return text_width(s.rstrip(), size, bold) <= max_px

    lines: list[str] = []
    cur = ""
    for tok in levels[0].findall(text) if levels else list(text):
        if fits(cur + tok):
            cur += tok
            continue
        if cur.strip():
            lines.append(cur.rstrip())
        cur = tok
        if not fits(tok) and len(tok) > 1:
            pieces = _pack(tok, max_px, size, bold, levels[1:])
            lines.extend(pieces[:-1])
            cur = pieces[-1] + (" " if tok.endswith(" ") else "")
    if cur.strip():
        lines.append(cur.rstrip())
    return lines


def _fmt(v: float | None, percent: bool) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v * 100:.1f}%" if percent else f"{v:.3g}"


def _ok(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _text(x: float, y: float, content: str, size: float, anchor: str = "start", extra: str = "") -> str:
    """One escaped ``<text>`` element (``extra``: further attributes, already safe)."""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size:g}" {FONT}'
            f'{" " + extra if extra else ""}>{escape(content)}</text>')


def _lines(x: float, y: float, lines: Sequence[str], size: float, anchor: str = "start", extra: str = "") -> list[str]:
    """Wrapped text: line ``i`` with its baseline at ``y + i`` line pitches."""
    return [_text(x, y + i * size * LINE_HEIGHT, line, size, anchor, extra) for i, line in enumerate(lines)]


def _frame(width: float, height: float, title: str, body: list[str]) -> Markup:
    """The ``<svg>`` around ``body``: the title on one line (the body's layout reserves it) or
    wrapped onto more, in which case the body moves down and the chart grows by the extra lines."""
    t = escape(title)
    lines = wrap(title, width - 16, TITLE_SIZE, bold=True) if title else []
    extra = round(TITLE_SIZE * LINE_HEIGHT * max(len(lines) - 1, 0), 1)
    w, h = math.ceil(width), math.ceil(height + extra)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" aria-label="{t}">',
        f"<title>{t}</title>",
    ]
    parts += _lines(width / 2, 16, lines, TITLE_SIZE, "middle", 'font-weight="600"')
    parts.append(f'<g transform="translate(0 {extra:g})">')
    parts.extend(body)
    parts.append("</g></svg>")
    return Markup("".join(parts))


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if _ok(v)]


def nice_ceiling(v: float) -> float:
    """The smallest of 1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8 times a power of ten at or above ``v`` (> 0):
    an axis top whose quarter ticks are round numbers."""
    if not v > 0 or not math.isfinite(v):
        return 1.0
    p = 10.0 ** math.floor(math.log10(v))
    return next(m * p for m in (1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8, 10) if m * p >= v * (1 - 1e-9))


QUARTERS = (0.0, 0.25, 0.5, 0.75, 1.0)


def axis_ticks(lo: float, hi: float, percent: bool) -> list[tuple[float, str]]:
    """(value, label) at the quarters of [lo, hi], with the fewest decimals (up to 2) that print
    every tick exactly, so 0.25% never shows as "0.2%" (more decimals only for an axis that is not
    a round number: one decimal for percentages, three significant digits otherwise)."""
    vals = [lo + f * (hi - lo) for f in QUARTERS]
    scaled = [v * (100 if percent else 1) for v in vals]
    for d in range(3):
        if all(abs(round(x, d) - x) <= 1e-9 * max(1.0, abs(x)) for x in scaled):
            return [(v, f"{x:.{d}f}{'%' if percent else ''}") for v, x in zip(vals, scaled, strict=True)]
    return [(v, _fmt(v, percent)) for v in vals]


def _pad(seq: Sequence[float | None] | None, n: int) -> list[float | None]:
    seq = list(seq or [])
    return [seq[i] if i < len(seq) else None for i in range(n)]


def _marker(shape: str, x: float, y: float, colour: str, tip: str = "") -> str:
    """A series marker; each shape encloses about the same area as a circle of radius 3.5."""
    title = f"<title>{escape(tip)}</title>" if tip else ""
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">{title}</circle>'
    if shape == "square":
        return f'<rect x="{x - 3.1:.1f}" y="{y - 3.1:.1f}" width="6.2" height="6.2" fill="{colour}">{title}</rect>'
    pts = {
        "triangle": ((0, -4.6), (4.2, 3), (-4.2, 3)),
        "triangle-down": ((0, 4.6), (4.2, -3), (-4.2, -3)),
        "diamond": ((0, -4.4), (4.4, 0), (0, 4.4), (-4.4, 0)),
    }[shape]
    ring = " ".join(f"{x + dx:.1f},{y + dy:.1f}" for dx, dy in pts)
    return f'<polygon points="{ring}" fill="{colour}">{title}</polygon>'


def series_style(k: int) -> tuple[str, str, str]:
    """(colour, dash pattern, marker shape) of the ``k``-th series: three cues, so two series never
    differ by colour alone (the combination repeats only after 140 series)."""
    return PALETTE[k % len(PALETTE)], DASHES[k % len(DASHES)], MARKERS[k % len(MARKERS)]


@dataclass
class _Bars:
    """What both bar layouts draw: labels, values, error-bar ends and the value scale."""

    labels: list[str]
    values: list[float | None]
    lower: list[float | None]
    upper: list[float | None]
    ymin: float
    ymax: float
    percent: bool
    reference: float | None
    width: float

    def frac(self, v: float) -> float:
        """Position of ``v`` on the value axis, 0 (ymin) to 1 (ymax), clamped."""
        v = min(max(v, self.ymin), self.ymax)
        return (v - self.ymin) / ((self.ymax - self.ymin) or 1.0)

    def texts(self) -> list[str]:
        return [_fmt(v, self.percent) for v in self.values]

    def err(self, i: int) -> tuple[float, float] | None:
        lo, hi = self.lower[i], self.upper[i]
        return (lo, hi) if _ok(lo) and _ok(hi) else None

    def ticks(self) -> list[tuple[float, str]]:
        return [(f, lab) for f, (_, lab) in zip(QUARTERS, axis_ticks(self.ymin, self.ymax, self.percent), strict=True)]


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
    """Bars with optional error bars (``lower``/``upper``), value labels and a dashed reference line.

    Vertical while every label and value fits across its bar; otherwise horizontal, one row per
    label, so that names are never cut and any number of bars stays legible. Value labels sit past
    the end of the error bar, never on it.
    """
    n = len(labels)
    if ymax is None:
        cands = _finite(list(values) + list(upper or []) + ([reference] if reference is not None else []))
        ymax = ymin + nice_ceiling((max(cands) - ymin) * 1.05) if cands and max(cands) > ymin else ymin + 1.0
    ymax = ymin + nice_ceiling(ymax - ymin)
    bars = _Bars([str(lab) for lab in labels], _pad(values, n), _pad(lower, n), _pad(upper, n),
                 ymin, ymax, percent, reference, width)
    left = max(text_width(t, 10) for _, t in bars.ticks()) + 10
    step = (width - left - 10) / max(n, 1)
    fits = all(text_width(lab, 10) <= step - 6 for lab in bars.labels) and all(
        text_width(t, 9) <= step - 4 for t in bars.texts())
    height, body = _vertical_bars(bars, left) if fits else _horizontal_bars(bars)
    return _frame(width, height, title, body)


def _vertical_bars(b: _Bars, left: float) -> tuple[float, list[str]]:
    """Bars standing on the x axis; value labels above the bar or its error bar."""
    height, top, bottom = 260, 40, 26
    plot_h, right = height - top - bottom, b.width - 10
    step = (right - left) / max(len(b.labels), 1)
    bar_w = max(4.0, step * 0.7)

    def y(v: float) -> float:
        return top + plot_h * (1 - b.frac(v))

    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{right}" y2="{top + plot_h}" stroke="#888"/>']
    values = []  # drawn last, over the reference line, each on a white halo
    for f, lab in b.ticks():
        yy = top + plot_h * (1 - f)
        body.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{right}" y2="{yy:.1f}" stroke="#eee"/>')
        body.append(_text(left - 4, yy + 4, lab, 10, "end"))
    for i, (lab, v, txt) in enumerate(zip(b.labels, b.values, b.texts(), strict=True)):
        cx = left + i * step + step / 2
        tip = f"{lab}: {txt}"
        label_y = top + plot_h - 3
        if _ok(v):
            body.append(f'<rect x="{cx - bar_w / 2:.1f}" y="{y(v):.1f}" width="{bar_w:.1f}" '
                        f'height="{max(0.0, top + plot_h - y(v)):.1f}" fill="{PALETTE[0]}"><title>{escape(tip)}</title></rect>')
            label_y = y(v) - 4
        e = b.err(i)
        if e is not None:
            body += _error_bar(cx, y(e[0]), cx, y(e[1]), vertical=True)
            label_y = min(label_y, y(e[0]) - 4, y(e[1]) - 4)
        values.append(_text(cx, label_y, txt, 9, "middle", HALO))
        body.append(_text(cx, top + plot_h + 14, lab, 10, "middle"))
    if _ok(b.reference):
        ry = y(b.reference)
        body.append(_reference_line(left, ry, right, ry, _fmt(b.reference, b.percent)))
    return height, body + values


def _error_bar(x1: float, y1: float, x2: float, y2: float, *, vertical: bool) -> list[str]:
    """A 95% interval: the line between the two ends and a cap at each."""
    out = [f'<line class="errbar" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#111" stroke-width="1.2"/>']
    for xx, yy in ((x1, y1), (x2, y2)):
        if vertical:
            out.append(f'<line class="errbar" x1="{xx - 4:.1f}" y1="{yy:.1f}" x2="{xx + 4:.1f}" y2="{yy:.1f}" stroke="#111"/>')
        else:
            out.append(f'<line class="errbar" x1="{xx:.1f}" y1="{yy - 4:.1f}" x2="{xx:.1f}" y2="{yy + 4:.1f}" stroke="#111"/>')
    return out


def _reference_line(x1: float, y1: float, x2: float, y2: float, label: str) -> str:
    return (f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{PALETTE[1]}" '
            f'stroke-width="1.5" stroke-dasharray="5,4"><title>reference {escape(label)}</title></line>')


def _horizontal_bars(b: _Bars) -> tuple[float, list[str]]:
    """One row per label: the label (wrapped, never cut) left, the bar, its interval, its value."""
    texts = b.texts()
    value_w = max(text_width(t, 9) for t in [*texts, "n/a"])
    cap = max(80.0, min(b.width * 0.45, b.width - value_w - 12 - 240))
    wrapped = [wrap(lab, cap, 10) for lab in b.labels]
    left = max([text_width(line, 10) for lines in wrapped for line in lines] + [20.0]) + 12
    right = b.width - value_w - 14
    top = 32
    rows_h = [max(18.0, 13.0 * len(lines) + 5) for lines in wrapped]
    bottom = top + sum(rows_h)

    def x(v: float) -> float:
        return left + (right - left) * b.frac(v)

    body = []
    for f, lab in b.ticks():
        xx = left + (right - left) * f
        body.append(f'<line x1="{xx:.1f}" y1="{top}" x2="{xx:.1f}" y2="{bottom:.1f}" stroke="#eee"/>')
        body.append(_text(xx, bottom + 14, lab, 10, "middle"))
    body.append(f'<line x1="{left:.1f}" y1="{top}" x2="{left:.1f}" y2="{bottom:.1f}" stroke="#888"/>')
    ry = float(top)
    values = []  # drawn last, over the reference line, each on a white halo
    for i, (lines, v, txt) in enumerate(zip(wrapped, b.values, texts, strict=True)):
        cy = ry + rows_h[i] / 2
        body += _lines(left - 6, cy + 3.5 - (len(lines) - 1) * 6.5, lines, 10, "end")
        end = left
        if _ok(v):
            body.append(f'<rect x="{left:.1f}" y="{cy - 6:.1f}" width="{x(v) - left:.1f}" height="12" fill="{PALETTE[0]}">'
                        f"<title>{escape(b.labels[i])}: {escape(txt)}</title></rect>")
            end = x(v)
        e = b.err(i)
        if e is not None:
            body += _error_bar(x(e[0]), cy, x(e[1]), cy, vertical=False)
            end = max(end, x(e[0]), x(e[1]))
        values.append(_text(end + 4, cy + 3.5, txt, 9, "start", HALO + ("" if _ok(v) else ' fill="#666"')))
        ry += rows_h[i]
    if _ok(b.reference):
        body.append(_reference_line(x(b.reference), top, x(b.reference), bottom, _fmt(b.reference, b.percent)))
    return bottom + 22, body + values


def _thin_ticks(ticks: list[tuple[float, str]], pos: Callable[[float], float], size: float) -> list[tuple[float, str]]:
    """Centred tick labels left to right, skipping any that would touch the last one kept."""
    kept: list[tuple[float, str]] = []
    edge = -math.inf
    for x, lab in sorted(ticks, key=lambda t: t[0]):
        half = text_width(lab, size) / 2
        if pos(x) - half >= edge + 4:
            kept.append((x, lab))
            edge = pos(x) + half
    return kept


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
    """One polyline per series with its own colour, dash pattern and marker; a legend (names
    wrapped, never cut; the chart grows with it); optional named x ticks (thinned where they
    would touch: every point keeps its tooltip)."""
    xs = [x for pts in series.values() for x, _ in pts] or [0.0, 1.0]
    xmin, xmax = min(xs), max(xs)
    if xmax == xmin:
        xmin, xmax = xmin - 0.5, xmax + 0.5
    if ymax is None:
        ys = _finite([v for pts in series.values() for _, v in pts])
        ymax = ymin + nice_ceiling((max(ys) - ymin) * 1.05) if ys and max(ys) > ymin else ymin + 1.0
    ymax = ymin + nice_ceiling(ymax - ymin)
    yticks = axis_ticks(ymin, ymax, percent)
    left = max(text_width(t, 10) for _, t in yticks) + 8 + (20 if ylabel else 0)
    legend_w = min(max([text_width(n, 11) for n in series] + [20.0]), 200.0)
    legend = [wrap(n, legend_w, 11) for n in series]
    right = legend_w + 42
    top = 30
    plot_w = width - left - right
    plot_h = max(196.0, sum(14.3 * len(lines) + 4 for lines in legend))
    note = wrap(xlabel, plot_w, 11) if xlabel else []
    height = top + plot_h + (48 + 14.3 * (len(note) - 1) if note else 26)

    def px(x: float) -> float:
        return left + plot_w * (x - xmin) / (xmax - xmin)

    def py(v: float) -> float:
        v = min(max(v, ymin), ymax)
        return top + plot_h * (1 - (v - ymin) / (ymax - ymin or 1.0))

    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#888"/>',
    ]
    for v, lab in yticks:
        body.append(f'<line x1="{left}" y1="{py(v):.1f}" x2="{left + plot_w}" y2="{py(v):.1f}" stroke="#eee"/>')
        body.append(_text(left - 4, py(v) + 4, lab, 10, "end"))
    ticks = list(xticks) if xticks else [(x, f"{x:g}") for x in sorted(set(xs))]
    for x, lab in _thin_ticks(ticks, px, 10):
        body.append(_text(px(x), top + plot_h + 18, lab, 10, "middle"))
    body += _lines(left + plot_w / 2, top + plot_h + 40, note, 11, "middle")
    if ylabel:
        yl = top + plot_h / 2
        body.append(_text(14, yl, ylabel, 11, "middle", f'transform="rotate(-90 14 {yl:.1f})"'))
    body += _series(series, px, py, percent)
    body += _legend(legend, width - right + 10, top + 4)
    return _frame(width, height, title, body)


def _series(series: dict[str, Sequence[tuple[float, float | None]]], px: Callable[[float], float],
            py: Callable[[float], float], percent: bool) -> list[str]:
    """Polylines and markers of every series, each in its own colour, dash and shape."""
    body = []
    for k, (name, pts) in enumerate(series.items()):
        colour, dash, shape = series_style(k)
        good = [(x, v) for x, v in pts if _ok(v)]
        if len(good) > 1:
            path = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in good)
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        for x, v in good:
            body.append(_marker(shape, px(x), py(v), colour, f"{name} @ {x:g}: {_fmt(v, percent)}"))
    return body


def _legend(entries: list[list[str]], x: float, y: float) -> list[str]:
    """Legend rows: a line sample with the series' dash and marker, then its (wrapped) name."""
    body = []
    for k, lines in enumerate(entries):
        colour, dash, shape = series_style(k)
        cy = y + 5
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        body.append(f'<line x1="{x:.1f}" y1="{cy:.1f}" x2="{x + 24:.1f}" y2="{cy:.1f}" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        body.append(_marker(shape, x + 12, cy, colour))
        body += _lines(x + 30, cy + 4, lines, 11)
        y += 14.3 * len(lines) + 4
    return body


def _heat_colour(t: float, scheme: str = "quality") -> str:
    """``quality``: red (0) through pale yellow to blue (1), ColorBrewer RdYlBu, colour-blind safe;
    ``intensity``: white (0) to blue (1)."""
    t = min(max(t, 0.0), 1.0)
    if scheme == "intensity":
        return f"rgb({int(255 - 218 * t)},{int(255 - 156 * t)},{int(255 - 20 * t)})"
    for (t0, c0), (t1, c1) in zip(_DIVERGING, _DIVERGING[1:], strict=False):
        if t <= t1:
            u = (t - t0) / (t1 - t0)
            return "rgb({},{},{})".format(*(int(round(a + (b - a) * u)) for a, b in zip(c0, c1, strict=True)))
    return "rgb({},{},{})".format(*_DIVERGING[-1][1])


def _ink(fill: str) -> str:
    """Black or white, whichever contrasts more with ``fill`` (``rgb(r,g,b)`` or ``#eee``)."""
    if not fill.startswith("rgb("):
        return "#111"
    r, g, b = (int(c) / 255 for c in fill[4:-1].split(","))
    lum = sum(w * (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4) for w, c in zip((0.2126, 0.7152, 0.0722), (r, g, b), strict=True))
    return "#111" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "#fff"


@dataclass
class _Grid:
    """A heatmap's cells after orientation, with the sizes every panel shares."""

    rows: list[str]
    cols: list[str]
    cells: list[list[float | None]]
    cell_w: float
    row_h: float
    left: float
    header_h: float
    upright: bool
    header_lines: list[list[str]]
    row_lines: list[list[str]]


def _heat_grid(rows: list[str], cols: list[str], cells: list[list[float | None]], cell: int, percent: bool) -> _Grid:
    """Cell, row-label and header sizes from the texts they must hold."""
    value_w = max([text_width(_fmt(v, percent), 10) for r in cells for v in r] + [text_width("100.0%", 10)])
    row_lines = [wrap(r, 240, 11) for r in rows]
    left = max([text_width(line, 11) for lines in row_lines for line in lines] + [24.0]) + 14
    row_h = max(22.0, 13.0 * max((len(x) for x in row_lines), default=1) + 8)
    cell_w = max(float(cell), value_w + 8)
    upright = any(text_width(c, 11) > cell_w - 6 for c in cols)
    if not upright:
        return _Grid(rows, cols, cells, cell_w, row_h, left, 18, False, [[c] for c in cols], row_lines)
    header_lines = [wrap(c, 150, 11) for c in cols]
    cell_w = max(cell_w, 14.3 * max(len(x) for x in header_lines) + 6)
    header_h = max(text_width(line, 11) for lines in header_lines for line in lines) + 10
    return _Grid(rows, cols, cells, cell_w, row_h, left, header_h, True, header_lines, row_lines)


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
    transpose: bool | None = None,
    max_width: int = 960,
) -> Markup:
    """A grid coloured by value, the value printed in each cell, a labelled colour scale below.

    ``scheme="quality"`` runs red (vmin) to blue (vmax), for accuracies (pass vmin > vmax where
    lower is better); ``"intensity"`` white to blue, for shares such as a confusion matrix where
    large is not "good". ``transpose`` (default: when there are more columns than rows) puts the
    longer dimension down the page; columns that do not fit in ``max_width`` wrap into further
    panels, each with its own headers. ``cell`` is the least cell width.
    """
    rows, cols = [str(r) for r in row_labels], [str(c) for c in col_labels]
    cells = [[values[i][j] if i < len(values) and j < len(values[i]) else None for j in range(len(cols))] for i in range(len(rows))]
    if transpose is None:
        transpose = len(cols) > len(rows)
    if transpose:
        rows, cols, cells = cols, rows, [[cells[i][j] for i in range(len(rows))] for j in range(len(cols))]
    g = _heat_grid(rows, cols, cells, cell, percent)
    per = max(1, int((max_width - g.left - 10) // g.cell_w))
    n_panels = max(1, math.ceil(len(cols) / per))
    per = max(1, math.ceil(len(cols) / n_panels))
    body: list[str] = []
    y = 30.0
    for p in range(n_panels):
        y = _heat_panel(body, g, list(range(p * per, min(len(cols), (p + 1) * per))), y, vmin, vmax, percent, scheme) + 12
    legend_w = _heat_legend(body, 10, y, vmin, vmax, percent, scheme)
    grid_w = g.left + g.cell_w * min(per, max(len(cols), 1)) + 10
    width = max(grid_w, legend_w + 10, min(text_width(title, TITLE_SIZE, True) + 20, max_width))
    return _frame(width, y + 28, title, body)


def _heat_panel(body: list[str], g: _Grid, js: list[int], y: float, vmin: float, vmax: float, percent: bool, scheme: str) -> float:
    """Headers and rows of the columns ``js``, starting at ``y``; returns where the panel ends."""
    for k, j in enumerate(js):
        cx = g.left + k * g.cell_w + (g.cell_w - 2) / 2
        lines = g.header_lines[j]
        if g.upright:
            base = y + g.header_h - 5
            for m, line in enumerate(lines):
                lx = cx + 4 + (m - (len(lines) - 1) / 2) * 14.3
                body.append(_text(lx, base, line, 11, "start", f'transform="rotate(-90 {lx:.1f} {base:.1f})"'))
        else:
            body.append(_text(cx, y + 13, lines[0], 11, "middle"))
    y += g.header_h
    for i, r in enumerate(g.rows):
        yy = y + g.row_h * i
        lines = g.row_lines[i]
        body += _lines(g.left - 6, yy + g.row_h / 2 + 3 - (len(lines) - 1) * 6.5, lines, 11, "end")
        for k, j in enumerate(js):
            v = g.cells[i][j]
            fill = _heat_colour((v - vmin) / ((vmax - vmin) or 1.0), scheme) if _ok(v) else "#eee"
            x0 = g.left + k * g.cell_w
            body.append(f'<rect x="{x0:.1f}" y="{yy:.1f}" width="{g.cell_w - 2:.1f}" height="{g.row_h - 2:.1f}" fill="{fill}">'
                        f"<title>{escape(r)} / {escape(g.cols[j])}: {escape(_fmt(v, percent))}</title></rect>")
            body.append(_text(x0 + (g.cell_w - 2) / 2, yy + g.row_h / 2 + 3, _fmt(v, percent) if _ok(v) else "–", 10,
                              "middle", f'fill="{_ink(fill)}"'))
    return y + g.row_h * len(g.rows)


def _heat_legend(body: list[str], x: float, y: float, vmin: float, vmax: float, percent: bool, scheme: str) -> float:
    """The colour scale: five swatches from vmin to vmax, each printed with its value; returns its width."""
    body.append(_text(x, y + 12, "colour scale:", 10))
    x0 = x + text_width("colour scale:", 10) + 6
    labels = [_fmt(vmin + f * (vmax - vmin), percent) for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    sw = max(text_width(lab, 10) for lab in labels) + 10
    for k, lab in enumerate(labels):
        fill = _heat_colour(k / 4, scheme)
        body.append(f'<rect x="{x0 + k * sw:.1f}" y="{y:.1f}" width="{sw - 2:.1f}" height="16" fill="{fill}"/>')
        body.append(_text(x0 + k * sw + (sw - 2) / 2, y + 12, lab, 10, "middle", f'fill="{_ink(fill)}"'))
    return x0 + 5 * sw - x


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
    reliability curve and its 95% band. The note under the axis wraps to the chart's width.
    """
    n_bins = max(len(counts), 1)
    size, left, top = width - 60, 44, 26
    count_h = 40
    legend = "bars: accuracy; line: smoothed, band 95%" if smooth else "bars: accuracy; grey: samples per bin"
    note = wrap(f"confidence ({legend})", width - 12, 11)
    note_y = top + size + count_h + 38
    height = note_y + 11 * LINE_HEIGHT * (len(note) - 1) + 5
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
        if _ok(acc) and c > 0:
            h = size * acc
            body.append(
                f'<rect x="{x0 + 1:.1f}" y="{top + size - h:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" fill="{PALETTE[0]}" opacity="0.85">'
                f"<title>bin {i + 1}: accuracy {escape(_fmt(acc, True))}, confidence {escape(_fmt(conf, True))}, n={c}</title></rect>"
            )
            if _ok(conf):
                gap_top = top + size - size * max(acc, conf)
                gap_h = size * abs(conf - acc)
                body.append(f'<rect x="{x0 + 1:.1f}" y="{gap_top:.1f}" width="{bw - 2:.1f}" height="{gap_h:.1f}" fill="{PALETTE[1]}" opacity="0.3"/>')
        ch = count_h * (c / total) ** 0.5
        body.append(f'<rect x="{x0 + 1:.1f}" y="{top + size + 8 + count_h - ch:.1f}" width="{bw - 2:.1f}" height="{ch:.1f}" fill="#6b7280"><title>n={c}</title></rect>')
    if smooth:
        body.extend(_smooth_overlay(smooth, left, top, size))
    for v in (0.0, 0.5, 1.0):
        body.append(_text(left - 4, top + size - size * v + 4, f"{v:g}", 10, "end"))
        body.append(_text(left + size * v, top + size + count_h + 22, f"{v:g}", 10, "middle"))
    body += _lines(width / 2, note_y, note, 11, "middle")
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
    """Bars of ``counts`` between consecutive ``edges``; the first and last edge label the axis."""
    top, left = 26, 40
    note = wrap(xlabel, width - 12, 11) if xlabel else []
    plot_w, plot_h = width - left - 10, 138
    height = top + plot_h + 22 + 11 * LINE_HEIGHT * len(note)
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
        body.append(_text(left, top + plot_h + 14, f"{edges[0]:.3g}", 10))
        body.append(_text(left + plot_w, top + plot_h + 14, f"{edges[-1]:.3g}", 10, "end"))
    body.append(_text(left - 4, top + 8, str(peak), 10, "end"))
    body += _lines(left + plot_w / 2, top + plot_h + 32, note, 11, "middle")
    return _frame(width, height, title, body)
