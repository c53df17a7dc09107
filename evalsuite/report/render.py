"""Turn results.json (+ gate outcomes) into the three human/CI-facing documents.

- ``scorecard.html``: one self-contained file (inline CSS and SVG, thumbnails as data URIs, no
  JavaScript, no external requests), Jinja2 with autoescape on because class names and paths
  come from users.
- ``junit.xml``: one testcase per gate; FAIL gates are failures carrying the numbers, WARN
  gates and gates that could not be evaluated are ``<skipped>`` with a message starting
  ``WARN:`` / ``NOT EVALUATED:`` (the status every CI test viewer shows; docs/policy.md says
  why), valid against the Surefire (Jenkins junit-10) and the strict Ant JUnit schemas.
- ``summary.md``: a table fit for a pull-request comment or a CI step summary, failing and
  warning rows first.

All of them, with gates.json, render from one :class:`evalsuite.decision.Decision`, so the
four artefacts of a folder always name the same policy, baseline and verdict.
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
from evalsuite.decision import Decision
from evalsuite.gates import FAIL, PASS, SKIP, WARN, GateOutcome

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).parent / "templates"
SECTION_ORDER = ("clean", "compare", "preprocessing", "corruption", "device", "adversarial", "calibration", "slices",
                 "performance")


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


#: Headline numbers of the sign-off summary: (metric path, label, shown as a percentage).
HEADLINES = (
    ("clean.accuracy", "Clean accuracy", True),
    ("clean.macro_f1", "Clean macro-F1", True),
    ("corruption.mean_accuracy", "Mean accuracy under corruption", True),
    ("corruption.mce", "mCE (15 benchmark corruptions)", False),
    ("device.worst.accuracy", "Worst device-profile accuracy", True),
    ("adversarial.worst.robust_accuracy", "Worst robust accuracy", True),
    ("calibration.clean.ece", "ECE, clean", True),
)


def headline_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The headline numbers present in ``metrics`` (plus the widest clean slice gap), for the
    one-page summary an auditor signs."""
    from evalsuite.results import resolve_metric

    rows = []
    for path, label, percent in HEADLINES:
        leaf = resolve_metric(metrics, path)
        if leaf is not None:
            rows.append(_headline(path, label, leaf, percent))
    gaps = []
    for column in metrics.get("slices") or {}:
        leaf = resolve_metric(metrics, f"slices.{column}.accuracy.difference") if "." not in column else None
        if leaf is not None and leaf.get("value") is not None:
            gaps.append((leaf["value"], column, leaf))
    if gaps:
        _, column, leaf = max(gaps, key=lambda g: g[0])
        rows.append(_headline(f"slices.{column}.accuracy.difference", f"Largest accuracy gap between groups ({column})",
                              leaf, True))
    return rows


def _headline(path: str, label: str, leaf: dict[str, Any], percent: bool) -> dict[str, Any]:
    where = leaf.get("condition") or leaf.get("group")
    return {"path": path, "label": label + (f" ({where})" if where else ""),
            "value": pct(leaf.get("value")) if percent else fmt(leaf.get("value")),
            "ci": ci(leaf, percent), "n": leaf.get("n")}


def _scrollable_tables(html: str) -> str:
    """Every table in its own horizontally scrolling box, so a narrow screen scrolls the table,
    not the page (the scorecard is our own template output: tables are never nested). The box
    takes keyboard focus (``tabindex``), so a table wider than the screen can be scrolled
    without a mouse (WCAG 2.1.1; axe-core's scrollable-region-focusable)."""
    return html.replace("<table", '<div class="scroll" tabindex="0"><table').replace("</table>", "</table></div>")


def render_scorecard(results: dict[str, Any], decision: Decision, base_dir: Path) -> str:
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
    context = {
        "results": results,
        "verdict": decision.verdict,
        "decision": decision,
        "gates": _outcome_rows(decision.outcomes),
        "counts": decision.counts(),
        "svg": svg,
        "img": img,
        "fmt": fmt,
        "pct": pct,
        "ci": ci,
        "report": report,
        "metrics_all": metrics,
        "headlines": headline_rows(metrics),
    }
    sections = []
    for name in names:
        tpl = f"sections/{name}.html.j2"
        if (TEMPLATE_DIR / tpl).exists():
            html = _render_section(env, tpl, name, {**context, "section": report.get(name, {}), "metrics": metrics.get(name, {})})
            sections.append({"name": name, "html": html})
    return _scrollable_tables(env.get_template("scorecard.html.j2").render(**context, sections=sections))


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


def _junit_timestamp(iso: str) -> str:
    """ISO 8601 in UTC without offset or fraction (the strict Ant schema allows nothing else)."""
    import datetime as dt

    try:
        t = dt.datetime.fromisoformat(str(iso))
    except ValueError:
        t = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S")


def _gate_details(o: GateOutcome) -> str:
    return (
        f"metric: {o.gate.metric}\nobserved ({o.gate.bound}): {fmt(o.value, 6)}\n"
        f"threshold: {o.gate.threshold_text()}\n"
        + (f"baseline: {fmt(o.baseline_value, 6)}\n" if o.baseline_value is not None else "")
        + (f"{o.gate.description}\n" if o.gate.description else "")
    )


def _decision_properties(results: dict[str, Any], decision: Decision) -> list[tuple[str, str]]:
    """Provenance of the numbers and of the verdict, as JUnit suite properties."""
    prov = results.get("provenance", {})
    props = [(k, str(prov.get(k, ""))) for k in ("model_sha256", "data_fingerprint", "config_hash", "seed", "device")]
    props += [("verdict", decision.verdict), ("fail_on", decision.fail_on)]
    if decision.policy is not None:
        props += [("policy", decision.policy.source), ("policy_sha256", decision.policy.sha256)]
    if decision.baseline is not None:
        b = decision.baseline
        props += [("baseline", b.path), ("baseline_sha256", b.sha256), ("baseline_model_sha256", b.model_sha256),
                  ("baseline_data_fingerprint", b.data_fingerprint)]
    return props


def render_junit(results: dict[str, Any], decision: Decision) -> str:
    """JUnit XML, one testcase per gate: FAIL -> failure; WARN and not-evaluated -> skipped."""
    outcomes = decision.outcomes
    prov = results.get("provenance", {})
    suite = ET.Element(
        "testsuite",
        {
            "name": "evalsuite.gates",
            "tests": str(len(outcomes)),
            "failures": str(sum(o.status == FAIL for o in outcomes)),
            "errors": "0",
            "skipped": str(sum(o.status in (WARN, SKIP) for o in outcomes)),
            "time": f"{float(prov.get('seconds', 0) or 0):.3f}",
            "timestamp": _junit_timestamp(prov.get("finished_at", "")),
            "hostname": str((prov.get("host") or {}).get("hostname") or "localhost"),
        },
    )
    props = ET.SubElement(suite, "properties")
    for name, value in _decision_properties(results, decision):
        ET.SubElement(props, "property", {"name": name, "value": value})
    for o in outcomes:
        case = ET.SubElement(
            suite,
            "testcase",
            {"classname": f"evalsuite.gates.{'builtin' if o.gate.builtin else 'policy'}", "name": o.gate.name, "time": "0"},
        )
        if o.status == FAIL:
            failure = ET.SubElement(case, "failure", {"message": o.message, "type": "GateFailure"})
            failure.text = _gate_details(o)
        elif o.status == WARN:
            skipped = ET.SubElement(case, "skipped", {"message": f"WARN: {o.message}"})
            skipped.text = _gate_details(o)
        elif o.status == SKIP:
            ET.SubElement(case, "skipped", {"message": f"NOT EVALUATED: {o.message}"})
    out = ET.SubElement(suite, "system-out")
    out.text = "\n".join([f"evalsuite verdict: {decision.verdict} (policy {decision.policy_text})"]
                         + [f"{o.status}: {o.gate.name}: {o.message}" for o in outcomes]) + "\n"
    ET.SubElement(suite, "system-err").text = ""
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


_ORDER = {FAIL: 0, WARN: 1, SKIP: 2, PASS: 3}
_ICON = {PASS: "✅ PASS", WARN: "⚠️ WARN", FAIL: "❌ FAIL", SKIP: "⏭️ NOT EVALUATED"}


def _summary_row(o: GateOutcome) -> str:
    value = fmt(o.value, 4) if o.value is not None else "n/a"
    if o.baseline_value is not None:
        base = fmt(o.baseline_value, 4)
        change = f"{o.value - o.baseline_value:+.4g}" if o.value is not None else "n/a"
    else:
        base = change = ""
    note = _md_cell(o.message) if o.status in (SKIP, FAIL, WARN) else ""
    return (f"| {_ICON[o.status]} | {_md_cell(o.gate.name)} | {_md_code(o.gate.metric)} "
            f"({o.gate.bound.replace('_', ' ')}) | {value} | {base} | {change} | "
            f"{_md_cell(o.gate.threshold_text())} | {note} |")


def render_summary(results: dict[str, Any], decision: Decision, scorecard: str = "scorecard.html") -> str:
    """Markdown summary: verdict, failing and warning gates first, headline numbers, provenance.

    ``scorecard`` is the scorecard's path relative to where summary.md is written (a relative
    link works in CI artefact browsers and in the run folder alike).
    """
    model = results.get("model", {})
    data = results.get("data", {})
    outcomes = sorted(decision.outcomes, key=lambda o: _ORDER[o.status])
    counts = decision.counts()
    lines = [
        f"## evalsuite: {_ICON[decision.verdict]}",
        "",
        f"Model {_md_code(Path(str(model.get('source', ''))).name)} on {_md_code(data.get('name', ''))} "
        f"({_md_cell(data.get('n', 0))} samples): {counts[FAIL]} failed, {counts[WARN]} warned, "
        f"{counts[SKIP]} not evaluated, {counts[PASS]} passed. [Scorecard]({_md_link(scorecard)})",
        "",
        "| Status | Gate | Metric | Value | Baseline | Change | Threshold | Note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [_summary_row(o) for o in outcomes]
    clean = results.get("metrics", {}).get("clean", {})
    acc = clean.get("accuracy")
    if isinstance(acc, dict):
        lines += ["", f"Clean accuracy: **{pct(acc.get('value'))}** (95% CI {ci(acc)}, n={_md_cell(acc.get('n'))})."]
    lines += compare_table(results.get("metrics", {}).get("compare"))
    prov = results.get("provenance", {})
    lines += ["", f"Decided by policy {_md_code(decision.policy_text)}, exit on {_md_cell(decision.fail_on)}."]
    if decision.baseline is not None:
        b = decision.baseline
        lines.append(f"Baseline {_md_code(Path(b.path).name)} (sha256 {_md_code(b.sha256[:12])}, "
                     f"model {_md_code(b.model_sha256[:12])}, data {_md_code(b.data_fingerprint[:12])}).")
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


#: Rows of the candidate-vs-reference table in summary.md (the scorecard lists every condition).
COMPARE_ROWS = 12


def compare_table(compare: Any) -> list[str]:
    """summary.md's compact candidate-vs-reference table (``run --reference``, ``evalsuite
    compare``): clean first, then the conditions with the largest accuracy drop."""
    if not isinstance(compare, dict) or not compare:
        return []

    def diff(node: Any) -> float:
        v = (node.get("accuracy_diff") or {}).get("value") if isinstance(node, dict) else None
        return v if isinstance(v, (int, float)) else math.inf

    keys = sorted(compare, key=lambda k: (k != "clean", diff(compare[k])))
    lines = ["", "Candidate vs reference (paired on identical inputs; difference = candidate minus reference):", "",
             "| Condition | Candidate | Reference | Difference (95% CI) | McNemar p | Fixed | Broken |",
             "|---|---|---|---|---|---|---|"]
    for key in keys[:COMPARE_ROWS]:
        node = compare[key]
        if not isinstance(node, dict) or not isinstance(node.get("accuracy_diff"), dict):
            continue
        d = node["accuracy_diff"]
        lo, hi = d.get("ci") or (None, None)
        interval = f" [{lo * 100:+.1f}, {hi * 100:+.1f}]" if lo is not None and hi is not None else ""
        change = f"{d['value'] * 100:+.1f}{interval} pts" if d.get("value") is not None else "n/a"
        lines.append(f"| {_md_code(key)} | {pct((node.get('candidate_accuracy') or {}).get('value'))} | "
                     f"{pct((node.get('reference_accuracy') or {}).get('value'))} | {change} | "
                     f"{fmt((node.get('mcnemar_p') or {}).get('value'))} | {_count((node.get('fixed') or {}).get('value'))} | "
                     f"{_count((node.get('broken') or {}).get('value'))} |")
    if len(keys) > COMPARE_ROWS:
        lines.append(f"| … {len(keys) - COMPARE_ROWS} more in the scorecard | | | | | | |")
    return lines


def _count(x: Any) -> str:
    """An exact count stored as a number (``2.0``) as people write it (``2``)."""
    return fmt(int(x)) if isinstance(x, (int, float)) and math.isfinite(x) else "n/a"


def _md_link(target: str) -> str:
    """A relative link target that Markdown cannot misread (spaces and parentheses escaped)."""
    from urllib.parse import quote

    return quote(str(target), safe="/._-")


def render_all(results: dict[str, Any], decision: Decision, artifacts_dir: Path) -> dict[str, str]:
    """Every artefact of a decision as text, keyed by file name (nothing written yet);
    ``artifacts_dir`` is the run folder whose images the scorecard embeds."""
    import json

    return {
        "gates.json": json.dumps(decision.to_json(), indent=2, default=str) + "\n",
        "junit.xml": render_junit(results, decision),
        "summary.md": render_summary(results, decision),
        "scorecard.html": render_scorecard(results, decision, artifacts_dir),
    }


def write_reports(results: dict[str, Any], decision: Decision, out_dir: Path,
                  artifacts_dir: Path | None = None) -> dict[str, Path]:
    """Write gates.json, junit.xml, summary.md and scorecard.html into ``out_dir``.

    All four are rendered before the first is written, and each is replaced atomically, so
    a folder never holds artefacts of two decisions once this returns (and a rendering
    error leaves the previous four untouched).
    """
    out_dir = Path(out_dir)
    texts = render_all(results, decision, Path(artifacts_dir) if artifacts_dir else out_dir)
    paths = {}
    for name, text in texts.items():
        atomic_write_text(out_dir / name, text)
        paths[name.split(".")[0]] = out_dir / name
    return paths
