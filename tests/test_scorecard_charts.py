"""Readable scorecard charts (#17 item 3): no two texts of a chart overlap, none is clipped by its
svg or struck through by an error bar, for a real standard run's scorecard and for synthesised
runs with many conditions (95 corruption conditions, 40 slice groups); measured in headless
Chromium (tests/chromium.py), skipped with the reason where no browser is installed. Colour is
never the only cue: series differ by colour, dash and marker, and the palette stays apart under
simulated deuteranopia. The layout rules (text width estimate, wrapping, orientation, axis tops)
are checked without a browser too.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest

from evalsuite.report import svg
from tests import chromium

CORRUPTIONS_19 = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)
CONDITIONS_95 = [f"corruption/{c}/{s}" for c in CORRUPTIONS_19 for s in range(1, 6)]
GROUPS_40 = [f"site {i:02d} / scanner model {'ABCDEFGH'[i % 8]}-{1000 + 37 * i}" for i in range(40)]


@pytest.fixture(scope="module")
def standard_run(digits_onnx, tmp_path_factory):
    """One real standard run (120 samples) shared by the module: results, decision, folder."""
    from evalsuite.api import run
    from evalsuite.config import RunConfig
    from evalsuite.decision import Decision

    out = tmp_path_factory.mktemp("charts") / "run"
    run(RunConfig(model=str(digits_onnx), data="builtin:digits", out_dir=str(out), suite="standard", limit=120,
                  suite_overrides={"calibration": {"n_boot": 50}, "slices": {"n_boot": 50}}))
    results = json.loads((out / "results.json").read_text())
    decision = Decision.from_json(json.loads((out / "gates.json").read_text()), str(out / "gates.json"))
    return results, decision, out


def _scorecard(results, decision, folder: Path) -> str:
    from evalsuite.report.render import render_scorecard

    return render_scorecard(results, decision, folder)


def _assert_legible(report: dict, html: str) -> None:
    assert len(report["charts"]) == html.count("<svg"), "every inline svg is measured"
    assert all(c["n_text"] > 0 and c["width"] > 0 for c in report["charts"]), "every chart was laid out"
    assert chromium.problems(report) == []


# -- the measuring harness itself ---------------------------------------------------------------

def _page(body: str) -> str:
    csp = "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
    return f"<!doctype html><html><head>{csp}</head><body>{body}</body></html>"


def test_harness_finds_overlap_clipping_and_struck_text_and_measures_rotation(tmp_path):
    """A chart built to fail in each way is caught; two tilted labels whose axis-aligned boxes
    overlap but whose glyph boxes do not are not (the harness measures rotated rectangles)."""
    chromium.require_chromium()
    font = 'font-size="12" font-family="sans-serif"'
    bad = (f'<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100" viewBox="0 0 200 100"><title>bad</title>'
           f'<text x="10" y="30" {font}>overlapping</text><text x="30" y="32" {font}>labels</text>'
           f'<text x="170" y="80" {font}>clipped</text>'
           f'<line class="errbar" x1="60" y1="50" x2="60" y2="70" stroke="#111"/><text x="40" y="64" {font}>struck</text></svg>')
    tilted = "".join(f'<text x="{x}" y="80" {font} transform="rotate(-45 {x} 80)">tilted label</text>' for x in (20, 40))
    ok = f'<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100" viewBox="0 0 200 100"><title>ok</title>{tilted}</svg>'
    report = chromium.text_overlap_report(_page(bad + ok), tmp_path)
    first, second = report["charts"]
    assert [p[:2] for p in first["overlaps"]] == [["overlapping", "labels"]]
    assert [c[0] for c in first["clipped"]] == ["clipped"]
    assert [s[0] for s in first["struck"]] == ["struck"]
    assert second["n_text"] == 2 and not second["overlaps"] and not second["clipped"]


def test_text_width_estimate_is_never_below_the_rendered_width(tmp_path):
    """Each sample text in an svg exactly as wide as text_width() says: none is clipped, so the
    estimate every margin is sized by holds for the font Chromium actually uses."""
    chromium.require_chromium()
    samples = ["100.0%", "0.0%", "corruption/elastic_transform/5", "WWWW MMMM", "device op/white_balance/3",
               "attack linf 8_255", "ECE per corruption and severity", "ε (L∞)", "0123456789", "Hij.,:;'|!"]
    charts = []
    for s in samples:
        for size, bold in ((9, False), (10, False), (11, False), (13, True)):
            w = svg.text_width(s, size, bold)
            weight = ' font-weight="600"' if bold else ""
            charts.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.2f}" height="24" viewBox="0 0 {w:.2f} 24">'
                          f'<title>{s} {size}</title><text x="0" y="17" font-size="{size}" {svg.FONT}{weight}>{s}</text></svg>')
    report = chromium.text_overlap_report(_page("<br>".join(charts)), tmp_path, tol=0.0)
    assert len(report["charts"]) == len(charts)
    assert chromium.problems(report) == []


# -- the real scorecard -------------------------------------------------------------------------

def test_every_chart_of_a_standard_scorecard_is_legible(standard_run, tmp_path):
    chromium.require_chromium()
    results, decision, folder = standard_run
    html = _scorecard(results, decision, folder)
    assert html.count("<svg") >= 15
    _assert_legible(chromium.text_overlap_report(html, tmp_path), html)


def test_standard_scorecard_prints_to_pdf(standard_run, tmp_path):
    chromium.require_chromium()
    results, decision, folder = standard_run
    page = tmp_path / "scorecard.html"
    page.write_text(_scorecard(results, decision, folder), encoding="utf-8")
    pdf = chromium.print_to_pdf(page, tmp_path / "scorecard.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page\b", pdf)) >= 2


# -- many conditions ----------------------------------------------------------------------------

def _inflate(results: dict, rng: random.Random) -> dict:
    """The run's report data with 95 corruption conditions and 40 slice groups in every chart
    whose size follows the run: slice heatmaps and per-condition bars, the calibration device
    bars and heatmap, the device bars, the attack curves."""
    out = copy.deepcopy(results)
    rep = out["report"]

    def vals(n: int, lo: float = 0.0, hi: float = 1.0) -> list[float | None]:
        return [None if rng.random() < 0.03 else rng.uniform(lo, hi) for _ in range(n)]

    for col in rep["slices"]["columns"]:
        col["heatmap"] = {"rows": GROUPS_40, "cols": CONDITIONS_95, "averaged": [],
                          "cells": [vals(len(CONDITIONS_95)) for _ in GROUPS_40]}
        template = col["condition_chart"][0]
        chart = []
        for key in CONDITIONS_95:
            d = rng.uniform(0, 0.3)
            chart.append({**template, "condition": key, "difference": d, "lo": d * 0.4, "hi": d * 1.6})
        col["condition_chart"] = chart
    shift = rep["calibration"]["shift"]
    ece = vals(95, 0.0, 0.4)
    shift["devices"] = {"labels": CONDITIONS_95, "ece": ece, "lower": [None if v is None else v * 0.7 for v in ece],
                        "upper": [None if v is None else v * 1.3 for v in ece]}
    shift["corruption_names"], shift["severities"] = list(CORRUPTIONS_19), [1, 2, 3, 4, 5]
    shift["corruption_grid"] = [vals(5, 0.0, 0.4) for _ in CORRUPTIONS_19]
    bar = rep["device"]["bar"]
    acc = vals(95, 0.3, 1.0)
    bar.update(labels=CONDITIONS_95, values=acc, lower=[None if v is None else v - 0.05 for v in acc],
               upper=[None if v is None else min(1.0, v + 0.05) for v in acc])
    for curve in rep["adversarial"]["curves"].values():
        curve["points"] = [[k / 255, 1 - k / 40, f"{k}/255"] for k in range(0, 33)]
    return out


@pytest.mark.slow
def test_charts_stay_legible_with_95_conditions_and_40_groups(standard_run, tmp_path):
    """The scorecard of the same run with its charts grown to 95 corruption conditions and 40
    slice groups, through the real templates: every chart still legible."""
    chromium.require_chromium()
    results, decision, folder = standard_run
    html = _scorecard(_inflate(results, random.Random(0)), decision, folder)
    assert "site 39 / scanner model H-2443" in html and "corruption/saturate/5" in html
    report = chromium.text_overlap_report(html, tmp_path, window=(1280, 8000))
    _assert_legible(report, html)
    assert max(c["n_text"] for c in report["charts"]) > 95 * 40


def test_svg_charts_stay_legible_with_many_labels(tmp_path):
    """The chart functions alone at sizes a run can reach: 95 long bar labels, a 40 x 95 heatmap
    (either way round: transposed, and kept wide so it wraps into panels with upright headers),
    19 series with 33 x ticks, a 30-class confusion matrix, long titles in narrow charts."""
    chromium.require_chromium()
    rng = random.Random(1)
    cells = [[rng.random() for _ in CONDITIONS_95] for _ in GROUPS_40]
    series = {f"{c} (mean over severities)": [(k / 255, rng.random()) for k in range(33)] for c in CORRUPTIONS_19}
    names = [f"class {i}: {w}" for i, w in enumerate(["airplane", "automobile", "bird", "cat", "deer"] * 6)]
    conf = np.eye(30) * 0.6 + 0.4 / 30
    long = "Accuracy gap between the best and the worst group of scanner models, per condition, clean and shifted"
    charts = [
        svg.bar_chart(CONDITIONS_95, [rng.random() for _ in CONDITIONS_95], lower=[0.1] * 95, upper=[0.95] * 95,
                      title=long, reference=0.5),
        svg.bar_chart(GROUPS_40, [rng.random() for _ in GROUPS_40], title="40 groups", ymax=None),
        svg.heatmap(GROUPS_40, CONDITIONS_95, cells, title="transposed: conditions down the page"),
        svg.heatmap(GROUPS_40, CONDITIONS_95, cells, title=long, transpose=False),
        svg.heatmap(list(CORRUPTIONS_19), ["1", "2", "3", "4", "5"], [[rng.random() for _ in range(5)] for _ in range(19)],
                    title=long, vmin=0.4, vmax=0.0, cell=70),
        svg.heatmap(names, names, conf.tolist(), title="Confusion (row-normalised)", cell=40, scheme="intensity"),
        svg.line_chart(series, title=long, xlabel="ε (L∞), a long axis note " * 3, ylabel="accuracy",
                       xticks=[(k / 255, f"{k}/255") for k in range(33)]),
        svg.reliability_diagram([0.5] * 15, [0.4] * 15, [3] * 15, title=long, width=300),
        svg.histogram([1, 2, 3], [0.0, 0.5, 0.75, 1.0], title=long, xlabel="top-class confidence, " * 4, width=300),
    ]
    report = chromium.text_overlap_report(_page("".join(str(c) for c in charts)), tmp_path, window=(1280, 8000))
    assert len(report["charts"]) == len(charts)
    assert chromium.problems(report) == []


# -- layout rules, no browser -------------------------------------------------------------------

def test_bar_chart_turns_horizontal_when_labels_do_not_fit_and_never_cuts_a_name():
    short = str(svg.bar_chart([str(i) for i in range(10)], [0.5] * 10))
    assert "…" not in short and 'text-anchor="middle" font-size="10"' in short  # labels under the bars
    many = str(svg.bar_chart(CONDITIONS_95, [0.5] * 95))
    assert "…" not in many and all(f">{c}<" in many for c in CONDITIONS_95)
    heights = [int(re.search(r'height="(\d+)"', str(svg.bar_chart(CONDITIONS_95[:n], [0.5] * n))).group(1)) for n in (20, 40)]
    assert heights[1] - heights[0] == 20 * 18  # one 18 px row per label


def test_value_labels_sit_past_the_error_bar():
    """Vertical: the value's baseline is 4 px above the interval's top; horizontal: 4 px right of its end."""
    v = str(svg.bar_chart(["a", "b"], [0.5, 0.5], lower=[0.4, 0.4], upper=[0.9, 0.9], ymax=1.0))
    top, plot_h = 40, 260 - 40 - 26
    assert f'y="{top + plot_h * 0.1 - 4:.1f}" text-anchor="middle" font-size="9"' in v
    h = str(svg.bar_chart(CONDITIONS_95[:30], [0.5] * 30, lower=[0.4] * 30, upper=[0.9] * 30))
    ends = [float(m) for m in re.findall(r'<line class="errbar" x1="[\d.]+" y1="[\d.]+" x2="([\d.]+)"', h)[::3]]
    starts = [float(m) for m in re.findall(r'<text x="([\d.]+)" y="[\d.]+" text-anchor="start" font-size="9"', h)]
    assert len(starts) == 30 and starts == pytest.approx([e + 4 for e in ends], abs=0.11)


def test_heatmap_puts_the_longer_side_down_and_wraps_wide_grids_into_panels():
    groups = ["a", "b", "c", "d"]
    tall = str(svg.heatmap(groups, CONDITIONS_95, [[0.5] * 95] * 4))
    wide = str(svg.heatmap(groups, CONDITIONS_95, [[0.5] * 95] * 4, transpose=False, max_width=960))
    w_tall, w_wide = (int(re.search(r'width="(\d+)"', s).group(1)) for s in (tall, wide))
    assert w_tall < 480 and w_wide <= 960
    assert "rotate(-90" not in tall and "rotate(-90" in wide  # upright headers only where needed
    assert all(tall.count(f">{c}<") == 1 for c in CONDITIONS_95)  # transposed: one row label each
    headers = [svg.wrap(c, 150, 11) for c in CONDITIONS_95]  # kept wide: upright, wrapped at separators
    assert all(f">{line}<" in wide for lines in headers for line in lines)
    assert ["corruption/", "elastic_transform/5"] in headers
    n_panels = wide.count('text-anchor="end" font-size="11" ' + svg.FONT + '>a<')  # rows repeat per panel
    assert n_panels >= math.ceil(95 * 46 / 960)  # 95 cells of at least 46 px in at most 960 px


def test_wrap_keeps_every_character_and_fits_the_width():
    text = "device op/white_balance/3 under an unusually long description_without_spaces_at_all_anywhere"
    for width in (40, 90, 200):
        lines = svg.wrap(text, width, 11)
        assert "".join(lines).replace(" ", "") == text.replace(" ", "")
        assert all(svg.text_width(line, 11) <= width for line in lines if len(line) > 1)
    assert svg.wrap("short", 200, 11) == ["short"]


@pytest.mark.parametrize(("v", "top"), [(0.536, 0.6), (0.05, 0.05), (1.0, 1.0), (0.87, 1.0), (0.26, 0.3), (0.101, 0.12), (13, 16)])
def test_nice_ceiling(v, top):
    assert svg.nice_ceiling(v) == pytest.approx(top)


# -- colour: a second cue, and a palette that survives deuteranopia ------------------------------

# Machado, Oliveira & Fernandes (2009), deuteranopia at severity 1, on linear RGB.
DEUTERANOPIA = np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]])


def _lab(hex_colour: str, simulate: bool) -> np.ndarray:
    c = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    if simulate:
        lin = np.clip(DEUTERANOPIA @ lin, 0, 1)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ lin
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _delta_e(a: str, b: str, simulate: bool = True) -> float:
    return float(np.linalg.norm(_lab(a, simulate) - _lab(b, simulate)))


def test_palette_stays_apart_under_deuteranopia():
    """CIE76 distance under simulated deuteranopia: the first three series pairwise >= 50, every
    two neighbours >= 30. The old red/green pair (mean vs worst) is 123 apart in colour vision
    but only 21 under deuteranopia: this check fails it."""
    p = svg.PALETTE
    assert min(_delta_e(p[i], p[j]) for i in range(3) for j in range(i + 1, 3)) >= 50
    assert min(_delta_e(p[i], p[(i + 1) % len(p)]) for i in range(len(p))) >= 30
    assert _delta_e("#dc2626", "#16a34a", simulate=False) > 100 and _delta_e("#dc2626", "#16a34a") < 30


def test_series_differ_by_dash_and_marker_not_only_colour():
    styles = [svg.series_style(k) for k in range(20)]
    for i in range(20):
        for j in range(i + 1, 20):
            a, b = styles[i], styles[j]
            assert a[1] != b[1] or a[2] != b[2], (i, j)  # never the same dash *and* marker
    chart = str(svg.line_chart({"mean over corruptions": [(1, 0.2), (3, 0.3)], "worst corruption": [(1, 0.4), (3, 0.8)]}))
    assert chart.count("<polyline") == 2 and 'stroke-dasharray="6,3"' in chart
    assert "<circle" in chart and '<rect x="' in chart  # circle markers for one, squares for the other


def test_heat_scale_is_red_to_blue_with_readable_ink():
    assert svg._heat_colour(0.0) == "rgb(215,48,39)" and svg._heat_colour(1.0) == "rgb(69,117,180)"
    assert svg._heat_colour(0.5) == "rgb(254,224,144)"
    assert svg._ink("rgb(254,224,144)") == "#111" and svg._ink("rgb(37,99,235)") == "#fff"


@pytest.mark.parametrize(("lo", "hi", "percent", "labels"), [
    (0.0, 1.0, True, ["0%", "25%", "50%", "75%", "100%"]),
    (0.0, 0.01, True, ["0.00%", "0.25%", "0.50%", "0.75%", "1.00%"]),  # not "0.2%" and "0.8%"
    (0.0, 0.6, True, ["0%", "15%", "30%", "45%", "60%"]),
    (0.0, 2.0, False, ["0.0", "0.5", "1.0", "1.5", "2.0"]),
    (0.0, 0.0517, True, ["0.0%", "1.3%", "2.6%", "3.9%", "5.2%"]),  # not round: one decimal
])
def test_axis_ticks_print_every_quarter_exactly(lo, hi, percent, labels):
    assert [lab for _, lab in svg.axis_ticks(lo, hi, percent)] == labels
