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
import logging
import math
import mimetypes
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from jinja2 import Undefined

from evalsuite.atomic_io import atomic_write_text
from evalsuite.gates import FAIL, PASS, SKIP, WARN, GateOutcome, verdict

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).parent / "templates"
SECTION_ORDER = ("clean", "corruption", "device", "adversarial", "calibration", "slices")


def fmt(x: Any, digits: int = 3) -> str:
    """A number for people: ``n/a`` for missing, ints as ints, floats to ``digits`` significant."""
    if x is None or isinstance(x, Undefined):
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
    if x is None or isinstance(x, Undefined):
        return "n/a"
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
    from jinja2 import ChainableUndefined, Environment, FileSystemLoader, select_autoescape

    from evalsuite.report import svg

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        # results.json is input (hand-edited, older, partial): a missing key renders as absent
        undefined=ChainableUndefined,
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
    report = results.get("report", {})
    names = [n for n in SECTION_ORDER if n in metrics] + [n for n in metrics if n not in SECTION_ORDER and n != "sanity"]
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in (PASS, WARN, FAIL, SKIP)}
    context = {
        "results": results,
        "verdict": verdict(outcomes) if outcomes else PASS,
        "gates": _outcome_rows(outcomes),
        "counts": counts,
        "svg": svg,
        "img": img,
        "fmt": fmt,
        "pct": pct,
        "ci": ci,
        "report": report,
        "metrics_all": metrics,
    }
    sections = []
    for name in names:
        tpl = f"sections/{name}.html.j2"
        if (TEMPLATE_DIR / tpl).exists():
            html = _render_section(env, tpl, name, {**context, "section": report.get(name, {}), "metrics": metrics.get(name, {})})
            sections.append({"name": name, "html": html})
    return env.get_template("scorecard.html.j2").render(**context, sections=sections)


def _render_section(env: Any, template: str, name: str, context: dict[str, Any]) -> Any:
    """One suite's section; a results.json that lacks what the section draws gets a visible notice.

    results.json is an input to ``evalsuite report`` (it may be hand-edited, truncated by a newer
    tool or written by an older one), so a missing table is the file's problem, not ours: the
    scorecard says which section could not be drawn and why, and the gates still decide.
    """
    from jinja2 import TemplateError
    from markupsafe import Markup, escape

    try:
        return Markup(env.get_template(template).render(**context))
    except (TemplateError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        log.warning("scorecard: the %s section could not be drawn from results.json (%s)", name, exc)
        return Markup(
            f'<h2>{escape(name.capitalize())}</h2><p class="notice"><strong>Not drawn:</strong> results.json lacks '
            f"the report data this section needs ({escape(type(exc).__name__)}: {escape(str(exc))}). "
            "The metrics and gates above are unaffected.</p>"
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
    _sanitize_xml_tree(suite)
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


# Characters XML 1.0 cannot carry at all (not even as references): ElementTree writes them
# verbatim and the file no longer parses, so every CI's JUnit reader would drop the report.
_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CONTROL = re.compile("[\u0000-\u001f\u007f-\u009f\u2028\u2029]")
_MD_PUNCT = re.compile(r"([\\`*_\[\]|~])")


def _xml_safe(text: str) -> str:
    return _XML_INVALID.sub("\ufffd", text)


def _sanitize_xml_tree(root: ET.Element) -> None:
    for el in root.iter():
        el.attrib = {k: _xml_safe(v) for k, v in el.attrib.items()}
        if el.text:
            el.text = _xml_safe(el.text)


def _md_cell(text: Any) -> str:
    """User text (gate names, class names, paths) as inert Markdown on one table row.

    Markdown lets raw HTML through, and a name from a policy or a model reaches a pull-request
    comment: so ``&<>`` become entities, Markdown punctuation is backslash-escaped (no links,
    emphasis, headings or code spans) and control characters and newlines become spaces.
    """
    s = _CONTROL.sub(" ", str(text))
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_PUNCT.sub(r"\\\1", s)


def _md_code(text: Any) -> str:
    """User text as a one-line Markdown code span (literal: no HTML, no emphasis).

    The fence is one backtick longer than the longest run inside, so no content closes it;
    ``|`` is still escaped because GitHub splits table cells before it parses code spans.
    """
    s = _CONTROL.sub(" ", str(text)).replace("|", "\\|")
    if not s.strip():
        return "` `" if not s else f"`{s}`"
    longest = max((len(m) for m in re.findall("`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def render_summary(results: dict[str, Any], outcomes: list[GateOutcome]) -> str:
    """Markdown summary: verdict, the gate table, headline numbers and provenance."""
    icon = {PASS: "✅ PASS", WARN: "⚠️ WARN", FAIL: "❌ FAIL", SKIP: "⏭️ SKIP"}
    v = verdict(outcomes) if outcomes else PASS
    model = results.get("model", {})
    data = results.get("data", {})
    lines = [
        f"## evalsuite: {icon[v]}",
        "",
        f"Model {_md_code(Path(str(model.get('source', ''))).name)} on {_md_code(data.get('name', ''))} "
        f"({_md_cell(data.get('n', 0))} samples).",
        "",
        "| Status | Gate | Metric | Value | Threshold |",
        "|---|---|---|---|---|",
    ]
    for o in outcomes:
        value = fmt(o.value, 4) if o.value is not None else "n/a"
        lines.append(
            f"| {icon[o.status]} | {_md_cell(o.gate.name)} | {_md_code(o.gate.metric)} "
            f"({o.gate.bound.replace('_', ' ')}) | {value} | {_md_cell(o.gate.threshold_text())} |"
        )
    clean = results.get("metrics", {}).get("clean", {})
    acc = clean.get("accuracy")
    if isinstance(acc, dict):
        lines += ["", f"Clean accuracy: **{pct(acc.get('value'))}** (95% CI {ci(acc)}, n={_md_cell(acc.get('n'))})."]
    prov = results.get("provenance", {})
    lines += [
        "",
        f"<sub>model sha256 {_md_code(str(prov.get('model_sha256', ''))[:12])} · "
        f"data {_md_code(str(prov.get('data_fingerprint', ''))[:12])} · "
        f"config {_md_code(str(prov.get('config_hash', ''))[:12])} · seed {_md_cell(prov.get('seed'))} · "
        f"{_md_cell(prov.get('device', ''))} · "
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
