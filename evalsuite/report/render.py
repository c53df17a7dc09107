"""Turn results.json (+ gate outcomes) into the three human/CI-facing documents.

- ``scorecard.html``: one self-contained file (inline CSS and SVG, thumbnails as data URIs, no
  JavaScript, no external requests), Jinja2 with autoescape on because class names and paths
  come from users.
- ``junit.xml``: one testcase per gate; FAIL gates are failures carrying the numbers, WARN
  gates pass with the warning in ``system-out``, SKIP gates are skipped.
- ``summary.md``: a table fit for a pull-request comment or a CI step summary.
"""

from __future__ import annotations

import base64
import math
import mimetypes
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from evalsuite.gates import FAIL, PASS, SKIP, WARN, GateOutcome, verdict
from evalsuite.results import atomic_write_text

TEMPLATE_DIR = Path(__file__).parent / "templates"
SECTION_ORDER = ("clean", "corruption", "device", "adversarial", "calibration", "slices")


def fmt(x: Any, digits: int = 3) -> str:
    """A number for people: ``n/a`` for missing, ints as ints, floats to ``digits`` significant."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.{digits}g}"


def pct(x: Any, digits: int = 1) -> str:
    """0.9123 -> '91.2%'."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return f"{v * 100:.{digits}f}%" if math.isfinite(v) else "n/a"


def ci(leaf: Any, percent: bool = True) -> str:
    """'[lo, hi]' of a metric leaf's CI, or '' when it has none."""
    if not isinstance(leaf, dict) or not leaf.get("ci"):
        return ""
    lo, hi = leaf["ci"]
    f = pct if percent else fmt
    return f"[{f(lo)}, {f(hi)}]"


def _outcome_rows(outcomes: list[GateOutcome]) -> list[dict[str, Any]]:
    rows = []
    for o in outcomes:
        rows.append(
            {
                "status": o.status,
                "name": o.gate.name,
                "metric": o.gate.metric,
                "value": o.value,
                "threshold": o.gate.threshold_text(),
                "bound": o.gate.bound,
                "severity": o.gate.severity,
                "message": o.message,
                "description": o.gate.description,
                "builtin": o.gate.builtin,
                "baseline": o.baseline_value,
            }
        )
    return rows


def render_scorecard(results: dict[str, Any], outcomes: list[GateOutcome], base_dir: Path) -> str:
    """The scorecard HTML; ``base_dir`` is where artifacts referenced by results live."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from evalsuite.report import svg

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    base_dir = Path(base_dir)

    def img(path: str | None) -> str:
        if not path:
            return ""
        p = (base_dir / path).resolve()
        try:
            p.relative_to(base_dir.resolve())
        except ValueError:
            return ""
        if not p.is_file():
            return ""
        mime = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
        return f"data:{mime};base64,{base64.b64encode(p.read_bytes()).decode('ascii')}"

    metrics = results.get("metrics", {})
    names = [n for n in SECTION_ORDER if n in metrics] + [n for n in metrics if n not in SECTION_ORDER and n != "sanity"]
    sections = []
    for name in names:
        tpl = f"sections/{name}.html.j2"
        if (TEMPLATE_DIR / tpl).exists():
            sections.append({"name": name, "template": tpl})
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in (PASS, WARN, FAIL, SKIP)}
    template = env.get_template("scorecard.html.j2")
    return template.render(
        results=results,
        verdict=verdict(outcomes) if outcomes else PASS,
        gates=_outcome_rows(outcomes),
        counts=counts,
        sections=sections,
        svg=svg,
        img=img,
        fmt=fmt,
        pct=pct,
        ci=ci,
        report=results.get("report", {}),
        metrics_all=metrics,
    )


def render_junit(results: dict[str, Any], outcomes: list[GateOutcome]) -> str:
    """JUnit XML with one testcase per gate (FAIL -> failure, SKIP -> skipped, WARN -> passes)."""
    suite = ET.Element(
        "testsuite",
        {
            "name": "evalsuite.gates",
            "tests": str(len(outcomes)),
            "failures": str(sum(o.status == FAIL for o in outcomes)),
            "errors": "0",
            "skipped": str(sum(o.status == SKIP for o in outcomes)),
            "time": f"{results.get('provenance', {}).get('seconds', 0):.3f}",
            "timestamp": str(results.get("provenance", {}).get("finished_at", "")),
        },
    )
    props = ET.SubElement(suite, "properties")
    prov = results.get("provenance", {})
    for key in ("model_sha256", "data_fingerprint", "config_hash", "seed", "device"):
        ET.SubElement(props, "property", {"name": key, "value": str(prov.get(key, ""))})
    for o in outcomes:
        case = ET.SubElement(
            suite,
            "testcase",
            {"classname": f"evalsuite.gates.{'builtin' if o.gate.builtin else 'policy'}", "name": o.gate.name, "time": "0"},
        )
        if o.status == FAIL:
            failure = ET.SubElement(case, "failure", {"message": o.message, "type": "GateFailure"})
            failure.text = (
                f"metric: {o.gate.metric}\nobserved ({o.gate.bound}): {fmt(o.value, 6)}\n"
                f"threshold: {o.gate.threshold_text()}\n"
                + (f"baseline: {fmt(o.baseline_value, 6)}\n" if o.baseline_value is not None else "")
                + (f"{o.gate.description}\n" if o.gate.description else "")
            )
        elif o.status == SKIP:
            ET.SubElement(case, "skipped", {"message": o.message})
        else:
            out = ET.SubElement(case, "system-out")
            out.text = f"{o.status}: {o.message}"
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_summary(results: dict[str, Any], outcomes: list[GateOutcome]) -> str:
    """Markdown summary: verdict, the gate table, headline numbers and provenance."""
    icon = {PASS: "✅ PASS", WARN: "⚠️ WARN", FAIL: "❌ FAIL", SKIP: "⏭️ SKIP"}
    v = verdict(outcomes) if outcomes else PASS
    model = results.get("model", {})
    data = results.get("data", {})
    lines = [
        f"## evalsuite: {icon[v]}",
        "",
        f"Model `{_md_cell(Path(str(model.get('source', ''))).name)}` on `{_md_cell(data.get('name', ''))}` "
        f"({data.get('n', 0)} samples).",
        "",
        "| Status | Gate | Metric | Value | Threshold |",
        "|---|---|---|---|---|",
    ]
    for o in outcomes:
        value = fmt(o.value, 4) if o.value is not None else "n/a"
        lines.append(
            f"| {icon[o.status]} | {_md_cell(o.gate.name)} | `{_md_cell(o.gate.metric)}` "
            f"({o.gate.bound.replace('_', ' ')}) | {value} | {_md_cell(o.gate.threshold_text())} |"
        )
    clean = results.get("metrics", {}).get("clean", {})
    acc = clean.get("accuracy")
    if acc:
        lines += ["", f"Clean accuracy: **{pct(acc.get('value'))}** (95% CI {ci(acc)}, n={acc.get('n')})."]
    prov = results.get("provenance", {})
    lines += [
        "",
        f"<sub>model sha256 `{str(prov.get('model_sha256', ''))[:12]}` · data `{str(prov.get('data_fingerprint', ''))[:12]}` · "
        f"config `{str(prov.get('config_hash', ''))[:12]}` · seed {prov.get('seed')} · {_md_cell(prov.get('device', ''))} · "
        f"{fmt(prov.get('seconds'))} s</sub>",
        "",
    ]
    return "\n".join(lines)


def write_reports(results: dict[str, Any], outcomes: list[GateOutcome], out_dir: Path) -> dict[str, Path]:
    """Write scorecard.html, junit.xml and summary.md atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    paths = {
        "scorecard": out_dir / "scorecard.html",
        "junit": out_dir / "junit.xml",
        "summary": out_dir / "summary.md",
    }
    atomic_write_text(paths["junit"], render_junit(results, outcomes))
    atomic_write_text(paths["summary"], render_summary(results, outcomes))
    atomic_write_text(paths["scorecard"], render_scorecard(results, outcomes, out_dir))
    return paths
