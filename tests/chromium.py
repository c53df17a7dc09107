"""Headless Chromium for tests: find the browser, dump a page's DOM, screenshot it, print it to PDF,
and measure the text overlap of every inline SVG chart in a scorecard.

Why a real browser: whether chart labels collide depends on the fonts and the layout engine, which
no string check of the SVG can see. The scorecard forbids scripts (a CSP meta tag), so
:func:`text_overlap_report` works on a *test copy*: the CSP is stripped and a measuring script is
injected that writes its findings as JSON into ``<pre id="overlap-report">``, which the dumped
DOM carries back.

Tests call :func:`require_chromium` to skip, with the reason, where no browser is installed
(``EVALSUITE_CHROMIUM`` names one explicitly; else ``chromium``, ``chromium-browser``,
``google-chrome`` or ``chrome`` on ``PATH``).
"""

from __future__ import annotations

import html as html_lib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
REPORT_ID = "overlap-report"
# Seconds a single browser call may take before the test fails (a hang, not a slow machine).
BROWSER_TIMEOUT_S = 120

_CSP = re.compile(r"<meta[^>]*http-equiv=[\"']Content-Security-Policy[\"'][^>]*>", re.IGNORECASE)
_REPORT = re.compile(rf'<pre id="{REPORT_ID}">(.*?)</pre>', re.DOTALL)

# Runs in the test copy only. For every <svg> in document order: each <text>'s box in its own
# user space (getBBox) mapped to page pixels by its screen CTM, so a rotated label is a rotated
# rectangle (an axis-aligned box around a tilted label would claim overlaps that are not there).
# Two texts collide when their rectangles overlap by more than TOL px on every separating axis
# (SAT for convex quads); a text is clipped when a corner lies more than TOL px outside its svg's
# box; a text is struck when it overlaps an error bar (elements of class "errbar", their box padded
# by half a stroke). Pairs are found by a sweep along x. Closed <details> are opened first so every
# chart is laid out.
MEASURE_JS = r"""
(function () {
  const TOL = %(tol)s;
  function quad(el, pad) {
    let b;
    try { b = el.getBBox(); } catch (e) { return null; }
    const x0 = b.x - pad, y0 = b.y - pad, x1 = b.x + b.width + pad, y1 = b.y + b.height + pad;
    if (!(x1 - x0 > 0 && y1 - y0 > 0)) return null;
    const m = el.getScreenCTM();
    if (!m) return null;
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]].map(([x, y]) =>
      [m.a * x + m.c * y + m.e + window.scrollX, m.b * x + m.d * y + m.f + window.scrollY]);
  }
  function axes(q) {
    return [0, 1].map(i => {
      const dx = q[i + 1][0] - q[i][0], dy = q[i + 1][1] - q[i][1], n = Math.hypot(dx, dy) || 1;
      return [-dy / n, dx / n];
    });
  }
  function depth(p, q) {  // least overlap over the four separating axes; <= 0 means apart
    let best = Infinity;
    for (const ax of axes(p).concat(axes(q))) {
      const pr = p.map(v => v[0] * ax[0] + v[1] * ax[1]), qr = q.map(v => v[0] * ax[0] + v[1] * ax[1]);
      best = Math.min(best, Math.min(Math.max(...pr), Math.max(...qr)) - Math.max(Math.min(...pr), Math.min(...qr)));
    }
    return best;
  }
  function items(svg, selector, pad) {
    const out = [];
    svg.querySelectorAll(selector).forEach(el => {
      const q = quad(el, pad);
      if (q) out.push({text: el.textContent, quad: q, x0: Math.min(...q.map(v => v[0])), x1: Math.max(...q.map(v => v[0]))});
    });
    return out.sort((a, b) => a.x0 - b.x0);
  }
  function collide(a, b, same) {  // pairs whose quads overlap by more than TOL (sweep along x)
    const hits = [];
    for (let i = 0; i < a.length; i++) {
      for (let j = same ? i + 1 : 0; j < b.length; j++) {
        if (b[j].x0 > a[i].x1 - TOL) break;  // both lists are sorted by x0
        if (b[j].x1 < a[i].x0 + TOL) continue;
        const d = depth(a[i].quad, b[j].quad);
        if (d > TOL) hits.push([a[i].text, b[j].text, Math.round(d * 10) / 10]);
      }
    }
    return hits;
  }
  function run() {
    document.querySelectorAll("details").forEach(d => { d.open = true; });
    const charts = [];
    document.querySelectorAll("svg").forEach((svg, index) => {
      const r = svg.getBoundingClientRect();
      const box = [r.left + window.scrollX, r.top + window.scrollY, r.right + window.scrollX, r.bottom + window.scrollY];
      const t = svg.querySelector(":scope > title");
      const texts = items(svg, "text", 0), bars = items(svg, ".errbar", 0.6);
      const clipped = [];
      for (const it of texts) {
        const out = Math.max(...it.quad.map(([x, y]) => Math.max(box[0] - x, x - box[2], box[1] - y, y - box[3])));
        if (out > TOL) clipped.push([it.text, Math.round(out * 10) / 10]);
      }
      charts.push({index: index, title: t ? t.textContent : "", width: r.width, height: r.height,
                   n_text: texts.length, overlaps: collide(texts, texts, true),
                   struck: collide(texts, bars, false).map(h => [h[0], h[2]]), clipped: clipped});
    });
    const pre = document.createElement("pre");
    pre.id = "%(report_id)s";
    pre.textContent = JSON.stringify({charts: charts});
    document.body.appendChild(pre);
  }
  window.addEventListener("load", () => (document.fonts ? document.fonts.ready : Promise.resolve()).then(run));
})();
"""


def find_chromium() -> str | None:
    """The path of a Chromium-family browser, or None: ``EVALSUITE_CHROMIUM`` first, then PATH."""
    explicit = os.environ.get("EVALSUITE_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The browser path, or skip the calling test saying why (no browser installed)."""
    found = find_chromium()
    if found is None:
        pytest.skip("no headless Chromium found (install Debian's `chromium` or set EVALSUITE_CHROMIUM)")
    return found


def _run(args: list[str], *, timeout: float = BROWSER_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """One headless browser call in a private profile folder (parallel calls never share one)."""
    browser = require_chromium()
    with tempfile.TemporaryDirectory(prefix="evalsuite-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


def dump_dom(page: Path, *, window: tuple[int, int] = (1280, 4000), budget_ms: int = 5000) -> str:
    """The DOM of ``page`` after its scripts ran (``--dump-dom`` with a virtual time budget)."""
    proc = _run([f"--window-size={window[0]},{window[1]}", f"--virtual-time-budget={budget_ms}",
                 "--dump-dom", Path(page).resolve().as_uri()])
    return proc.stdout


def screenshot(page: Path, png: Path, *, window: tuple[int, int] = (1280, 4000)) -> Path:
    """A PNG of the top ``window`` pixels of ``page``."""
    _run([f"--window-size={window[0]},{window[1]}", f"--screenshot={Path(png).resolve()}",
          Path(page).resolve().as_uri()])
    return Path(png)


def print_to_pdf(page: Path, pdf: Path) -> Path:
    """``page`` printed to PDF as a user's "Save as PDF" would (print stylesheet applies)."""
    _run(["--no-pdf-header-footer", f"--print-to-pdf={Path(pdf).resolve()}", Path(page).resolve().as_uri()])
    return Path(pdf)


def measuring_copy(html: str, *, tol: float = 0.5) -> str:
    """``html`` without its CSP meta tag and with the overlap-measuring script before ``</body>``."""
    stripped = _CSP.sub("", html)  # a page without a CSP is measured as it is
    script = MEASURE_JS % {"tol": repr(float(tol)), "report_id": REPORT_ID}
    if "</body>" not in stripped:
        raise ValueError("page has no </body> to inject the measuring script before")
    return stripped.replace("</body>", f"<script>{script}</script></body>", 1)


def text_overlap_report(html: str, workdir: Path, *, tol: float = 0.5, window: tuple[int, int] = (1280, 4000)) -> dict[str, Any]:
    """Render a measuring copy of ``html`` in headless Chromium; per-svg overlaps and clipped texts.

    Returns ``{"charts": [{index, title, width, height, n_text, overlaps: [[a, b, px]], struck:
    [[text, px]], clipped: [[text, px]]}]}`` in document order (``px``: how deep the overlap is).
    """
    page = Path(workdir) / "overlap-measure.html"
    page.write_text(measuring_copy(html, tol=tol), encoding="utf-8")
    dom = dump_dom(page, window=window)
    found = _REPORT.search(dom)
    if found is None:
        raise RuntimeError("the measuring script wrote no report (did the page load?)")
    return json.loads(html_lib.unescape(found.group(1)))


def problems(report: dict[str, Any]) -> list[str]:
    """One line per chart with overlapping, struck-through or clipped text (empty when all are legible)."""
    out = []
    for c in report["charts"]:
        if c["overlaps"] or c["struck"] or c["clipped"]:
            out.append(f"svg #{c['index']} {c['title']!r}: {len(c['overlaps'])} overlapping pair(s) "
                       f"{c['overlaps'][:3]}, {len(c['struck'])} on an error bar {c['struck'][:3]}, "
                       f"{len(c['clipped'])} clipped {c['clipped'][:3]}")
    return out
