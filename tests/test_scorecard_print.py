"""The scorecard as auditors print it and as phones show it (#17 items 1, 4, 5).

Printing (headless Chromium's print-to-PDF, read back with pdftotext) must keep every table cell,
including the tables inside collapsed <details>; the first page is the sign-off summary. At
390 px the page never scrolls sideways (tables scroll in their own box); at 1280 px the gates
table fits the content column. Landmarks: one <main>, named sections and navigation.
Skipped with the reason when chromium or pdftotext is absent (CI installs both).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests import chromium

needs_chromium = pytest.mark.skipif(chromium.find_chromium() is None,
                                    reason="needs Chromium (Debian package chromium; CI installs it)")
needs_pdftotext = pytest.mark.skipif(shutil.which("pdftotext") is None,
                                     reason="needs pdftotext (Debian package poppler-utils; CI installs it)")


@pytest.fixture(scope="module")
def scorecard(digits_onnx, tmp_path_factory) -> Path:
    from evalsuite.cli import main

    out = tmp_path_factory.mktemp("scorecard") / "run"
    # standard plus the sections of #19: performance (both models), the paired comparison and
    # the preprocessing parity check (in standard), so every section is printed and checked
    assert main(["run", str(digits_onnx), "--data", "builtin:digits", "--limit", "120", "--suite", "standard,performance",
                 "--reference", str(digits_onnx), "--out", str(out)]) in (0, 1)
    html = (out / "scorecard.html").read_text(encoding="utf-8")
    assert all(f'id="section-{name}"' in html for name in ("compare", "preprocessing", "performance"))
    return out / "scorecard.html"


class _Cells(HTMLParser):
    """Text of every table cell, and the open landmark elements."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._cell: list[str] | None = None
        self._stack: list[str] = []
        self.tables_outside_scroll = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if self._cell is not None:
            self._cell.append(" ")  # <br>, <code>, <span>: words on either side are separate tokens
        if tag == "table" and not (self._stack and self._stack[-1] == "scroll"):
            self.tables_outside_scroll += 1
        if tag == "div":
            self._stack.append("scroll" if "scroll" in (a.get("class") or "").split() else "div")
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "div" and self._stack:
            self._stack.pop()
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(html: str) -> _Cells:
    p = _Cells()
    p.feed(html)
    return p


def test_landmarks_and_scrolling_tables(scorecard):
    html = scorecard.read_text()
    p = _parse(html)
    assert sum(1 for t, _ in p.tags if t == "main") == 1
    assert all(a.get("aria-label") for t, a in p.tags if t == "nav")
    sections = [a for t, a in p.tags if t == "section"]
    assert sections and all(a.get("aria-label") or a.get("aria-labelledby") for a in sections)
    assert p.tables_outside_scroll == 0  # every table scrolls in its own box on a narrow screen
    assert 'id="summary"' in html and "Reviewed by" in html


@needs_chromium
@needs_pdftotext
def test_print_to_pdf_keeps_every_table_cell_and_starts_with_the_sign_off_page(scorecard, tmp_path):
    pdf = chromium.print_to_pdf(scorecard, tmp_path / "scorecard.pdf")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    flat = re.sub(r"\s+", "", text)
    cells = _parse(scorecard.read_text()).cells
    import html as html_lib

    missing = []
    for cell in cells:
        for token in re.split(r"[\s\-]+", html_lib.unescape(cell)):
            # a token wrapped at a column edge may be split by pdftotext; compare without whitespace
            if token and token not in flat:
                missing.append(token)
    # The collapsed <details> tables are part of this check (the condition list is one).
    conditions = json.loads((scorecard.parent / "results.json").read_text())["conditions"]
    assert all(key in flat for key in conditions), "a condition key is missing from the printed scorecard"
    assert not missing, f"{len(missing)} cell tokens missing from the PDF, e.g. {missing[:10]}"
    first_page = text.split("\f", 1)[0]
    policy_sha = json.loads((scorecard.parent / "gates.json").read_text())["policy"]["sha256"]
    for needle in ("Summary for sign-off", "Headline numbers", "Clean accuracy", "Reviewed by", policy_sha[:12]):
        assert needle in re.sub(r"\s+", " ", first_page) or needle in re.sub(r"\s+", "", first_page), needle
    assert "Gates" not in first_page.split("Reviewed by")[0].split("Headline numbers")[0]


_MEASURE = """<script>
window.addEventListener('load', () => {
  const doc = document.documentElement;
  const gates = document.querySelector('table.gates');
  const column = gates ? gates.closest('.scroll').parentElement.getBoundingClientRect().width : 0;
  const report = {scrollWidth: doc.scrollWidth, viewport: window.innerWidth,
                  gatesWidth: gates ? gates.getBoundingClientRect().width : 0, column: column};
  const pre = document.createElement('pre'); pre.id = 'measure'; pre.textContent = JSON.stringify(report);
  document.body.appendChild(pre);
});
</script>"""


def _measure(scorecard: Path, tmp_path: Path, width: int) -> dict:
    html = scorecard.read_text()
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)  # the test copy may run a script
    page = tmp_path / f"measure-{width}.html"
    page.write_text(html.replace("</body>", _MEASURE + "</body>"))
    found = re.search(r'<pre id="measure">(.*?)</pre>', chromium.dump_dom(page, window=(width, 900), budget_ms=3000))
    assert found, "the measuring script did not run"
    return json.loads(found.group(1).replace("&quot;", '"'))


@needs_chromium
def test_no_page_wide_horizontal_scroll_on_a_phone(scorecard, tmp_path):
    m = _measure(scorecard, tmp_path, 390)
    assert m["scrollWidth"] <= m["viewport"] + 1, m


@needs_chromium
def test_gates_table_fits_the_content_column_at_1280(scorecard, tmp_path):
    m = _measure(scorecard, tmp_path, 1280)
    assert m["gatesWidth"] <= m["column"] + 1, m
    assert m["scrollWidth"] <= m["viewport"] + 1, m


AXE = Path(__file__).resolve().parents[1] / ".ci" / "node" / "node_modules" / "axe-core" / "axe.min.js"
_AXE_RUN = """<script>
window.addEventListener('load', () => {
  axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}).then(r => {
    const pre = document.createElement('pre'); pre.id = 'axe';
    pre.textContent = JSON.stringify(r.violations.map(v => ({id: v.id, impact: v.impact,
      nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})));
    document.body.appendChild(pre);
  });
});
</script>"""


@needs_chromium
@pytest.mark.skipif(not AXE.is_file(), reason=f"needs axe-core at {AXE} (.ci/run installs it with npm)")
@pytest.mark.parametrize("width", [1280, 390])
def test_axe_core_finds_no_wcag_a_or_aa_violation(scorecard, tmp_path, width):
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", scorecard.read_text())
    page = tmp_path / f"axe-{width}.html"
    page.write_text(html.replace("</body>", f"<script>{AXE.read_text()}</script>{_AXE_RUN}</body>"))
    found = re.search(r'<pre id="axe">(.*?)</pre>', chromium.dump_dom(page, window=(width, 4000), budget_ms=20000), re.S)
    assert found, "axe-core did not report"
    import html as html_lib

    violations = json.loads(html_lib.unescape(found.group(1)))
    assert violations == [], violations
