"""The artefacts of a verdict name what decided it, agree with each other and suit CI readers.

gates.json, junit.xml, summary.md and scorecard.html are rendered from one decision (policy
source + sha256 + gates, baseline path + sha256 + its model hash and data fingerprint), so a
`gate` with a new policy followed by `report` shows the new policy's hash in all four; WARN is
visible in JUnit (``<skipped message="WARN: ...">``) and ``--fail-on warn`` makes it exit 1;
junit.xml is valid against the strict Ant and the Surefire (Jenkins) JUnit schemas.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.trust_cli import run_cli

SCHEMAS = Path(__file__).parent / "data" / "junit"
STRICT_GATES = (
    "  - name: accuracy at least 99%\n    metric: clean.accuracy\n    min: 0.99\n"
    "  - name: accuracy at least 99.9% (warn)\n    metric: clean.accuracy\n    min: 0.999\n    severity: warn\n"
)
STRICT_POLICY = "gates:\n" + STRICT_GATES
WARN_POLICY = "gates:\n  - name: near-perfect accuracy\n    metric: clean.accuracy\n    min: 0.999\n    severity: warn\n"


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("predictions"))
    return dest


def _policy(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _validators():
    xmlschema = pytest.importorskip("xmlschema", reason="xmlschema (dev extra) validates junit.xml")
    return {name: xmlschema.XMLSchema(str(SCHEMAS / name)) for name in ("ant-junit-strict.xsd", "surefire-junit-10.xsd")}


def test_gate_then_report_shows_the_new_policy_in_every_artefact(quick_run, tmp_path, capsys):
    folder = _copy(quick_run, tmp_path / "run")
    policy = _policy(tmp_path, STRICT_POLICY, "strict.yaml")
    digest = hashlib.sha256(policy.read_bytes()).hexdigest()
    code, _, err = run_cli(["gate", folder, "--policy", policy], capsys)
    assert code == 1, err
    code, _, err = run_cli(["report", folder], capsys)
    assert code == 0, err
    gates = json.loads((folder / "gates.json").read_text())
    assert gates["policy"]["sha256"] == digest and gates["policy"]["source"] == str(policy)
    assert gates["verdict"] == "FAIL" and gates["exit_code"] == 1
    assert [g["name"] for g in gates["policy"]["gates"]] == ["accuracy at least 99%", "accuracy at least 99.9% (warn)"]
    junit = ET.parse(folder / "junit.xml").getroot()
    props = {p.get("name"): p.get("value") for p in junit.iter("property")}
    assert props["policy_sha256"] == digest and props["verdict"] == "FAIL"
    summary = (folder / "summary.md").read_text()
    scorecard = (folder / "scorecard.html").read_text()
    assert digest[:12] in summary and digest in scorecard
    assert "default (built in)" not in scorecard.split('id="provenance"')[1].split("Verdict decided by")[1].split("</tr>")[0]
    assert "evalsuite: ❌ FAIL" in summary


def test_report_with_a_policy_rerenders_every_artefact_together(quick_run, tmp_path, capsys):
    folder = _copy(quick_run, tmp_path / "run")
    policy = _policy(tmp_path, STRICT_POLICY)
    digest = hashlib.sha256(policy.read_bytes()).hexdigest()
    code, _, err = run_cli(["report", folder, "--policy", policy], capsys)
    assert code == 0, err
    for name in ("gates.json", "junit.xml", "summary.md", "scorecard.html"):
        assert digest[:12] in (folder / name).read_text(), name


def test_baseline_is_recorded_in_every_artefact(quick_run, tmp_path, capsys):
    folder = _copy(quick_run, tmp_path / "run")
    baseline = quick_run / "results.json"
    digest = hashlib.sha256(baseline.read_bytes()).hexdigest()
    policy = _policy(tmp_path, "gates:\n  - metric: clean.accuracy\n    max_drop: 0.01\n")
    code, _, err = run_cli(["gate", folder, "--policy", policy, "--baseline", baseline], capsys)
    assert code == 0, err
    record = json.loads((folder / "gates.json").read_text())["baseline"]
    prov = json.loads(baseline.read_text())["provenance"]
    assert record["sha256"] == digest and record["model_sha256"] == prov["model_sha256"]
    assert record["data_fingerprint"] == prov["data_fingerprint"]
    props = {p.get("name"): p.get("value") for p in ET.parse(folder / "junit.xml").getroot().iter("property")}
    assert props["baseline_sha256"] == digest and props["baseline_model_sha256"] == prov["model_sha256"]
    summary = (folder / "summary.md").read_text()
    assert digest[:12] in summary
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in summary.splitlines()
            if line.startswith("| ") and "clean.accuracy" in line]
    with_baseline = [r for r in rows if r[4]]
    assert len(with_baseline) == 1  # only the max_drop gate compares with the baseline
    value, base, change = with_baseline[0][3:6]
    assert base == value and change == "+0"  # the same results as their own baseline: no change
    assert digest in (folder / "scorecard.html").read_text()


def test_warn_is_visible_in_junit_and_fail_on_warn_exits_1(quick_run, tmp_path, capsys):
    folder = _copy(quick_run, tmp_path / "run")
    policy = _policy(tmp_path, WARN_POLICY)
    code, _, _ = run_cli(["gate", folder, "--policy", policy], capsys)
    assert code == 0  # a WARN alone passes by default
    case = next(c for c in ET.parse(folder / "junit.xml").getroot().iter("testcase") if c.get("name") == "near-perfect accuracy")
    skipped = case.find("skipped")
    assert skipped is not None and skipped.get("message", "").startswith("WARN: ")
    code, out, _ = run_cli(["gate", folder, "--policy", policy, "--fail-on", "warn", "--format", "json"], capsys)
    assert code == 1
    doc = json.loads(out)
    assert doc["fail_on"] == "warn" and doc["exit_code"] == 1 and doc["verdict"] == "WARN"


def test_junit_is_valid_against_both_schemas(quick_run, tmp_path, capsys):
    validators = _validators()
    folder = _copy(quick_run, tmp_path / "run")
    # one FAIL, one WARN, one not-evaluated (optional metric missing) and the built-in PASSes
    policy = _policy(tmp_path, STRICT_POLICY + "  - metric: corruption.mean_accuracy\n    min: 0.5\n    optional: true\n")
    code, _, err = run_cli(["gate", folder, "--policy", policy], capsys)
    assert code == 1, err
    statuses = {o["status"] for o in json.loads((folder / "gates.json").read_text())["outcomes"]}
    assert statuses == {"PASS", "WARN", "FAIL", "SKIP"}
    for name, schema in validators.items():
        schema.validate(str(folder / "junit.xml"))  # raises with the offending element
        assert schema.is_valid(str(quick_run / "junit.xml")), name


def test_the_schemas_refuse_what_the_old_junit_had(tmp_path):
    """The strict schema really checks: a timestamp with an offset, no hostname, or a
    system-out inside a testcase (what junit.xml carried before) are all refused."""
    strict = _validators()["ant-junit-strict.xsd"]
    ok = ('<testsuite name="s" tests="1" failures="0" errors="0" time="1.0" timestamp="2026-12-03T10:00:00" '
          'hostname="h"><properties/><testcase classname="c" name="n" time="0"/><system-out/><system-err/></testsuite>')
    assert strict.is_valid(ok)
    assert not strict.is_valid(ok.replace("10:00:00", "10:00:00+00:00"))
    assert not strict.is_valid(ok.replace(' hostname="h"', ""))
    assert not strict.is_valid(ok.replace('time="0"/>', 'time="0"><system-out>WARN</system-out></testcase>'))


def test_summary_lists_failing_and_warning_rows_first_and_links_the_scorecard(quick_run, tmp_path, capsys):
    folder = _copy(quick_run, tmp_path / "run")
    policy = _policy(tmp_path, "gates:\n  - name: zz pass\n    metric: clean.accuracy\n    min: 0.1\n" + STRICT_GATES
                     + "  - name: missing\n    metric: corruption.mean_accuracy\n    min: 0.5\n    optional: true\n")
    code, _, err = run_cli(["gate", folder, "--policy", policy], capsys)
    assert code == 1, err
    summary = (folder / "summary.md").read_text()
    rows = [line for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| Status")]
    order = [r.split("|")[1].strip().split()[-1] for r in rows]
    first_pass = order.index("PASS")
    assert order[:first_pass] == ["FAIL", "WARN", "EVALUATED"]  # "NOT EVALUATED" ends in EVALUATED
    assert all(s == "PASS" for s in order[first_pass:])
    missing = next(r for r in rows if "missing" in r)
    assert "corruption.mean" in missing.split("|")[-2]  # the reason it could not be evaluated
    assert "[Scorecard](scorecard.html)" in summary


def test_list_metrics_filters_and_shows_n_and_ci(quick_run, capsys):
    code, out, _ = run_cli(["gate", quick_run, "--list-metrics", "clean.acc"], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0] == "path\tvalue\tn\tci_lower\tci_upper"
    leaf = json.loads((quick_run / "results.json").read_text())["metrics"]["clean"]["accuracy"]
    path, value, n, lo, hi = lines[1].split("\t")
    assert path == "clean.accuracy" and int(n) == leaf["n"] == 60
    assert float(value) == pytest.approx(leaf["value"]) and float(lo) == pytest.approx(leaf["ci"][0], rel=1e-5)
    assert all("clean.acc" in line for line in lines[1:])
    code, _, err = run_cli(["gate", quick_run, "--list-metrics", "no.such.metric"], capsys)
    assert code == 2 and "no metric path matches" in err


def test_gate_json_output_validates_against_the_published_schema(quick_run, tmp_path, capsys):
    jsonschema = pytest.importorskip("jsonschema")
    from evalsuite.decision import GATES_SCHEMA

    folder = _copy(quick_run, tmp_path / "run")
    code, out, _ = run_cli(["gate", folder, "--format", "json"], capsys)
    assert code == 0
    jsonschema.validate(json.loads(out), GATES_SCHEMA)
    jsonschema.validate(json.loads((quick_run / "gates.json").read_text()), GATES_SCHEMA)  # what `run` wrote
    code, out, _ = run_cli(["schema", "--gates"], capsys)
    assert code == 0 and json.loads(out) == GATES_SCHEMA


def test_report_reads_a_gates_json_of_the_older_list_form(quick_run, tmp_path, capsys):
    folder = _copy(quick_run, tmp_path / "run")
    doc = json.loads((folder / "gates.json").read_text())
    (folder / "gates.json").write_text(json.dumps(doc["outcomes"]))
    code, _, err = run_cli(["report", folder], capsys)
    assert code == 0, err
    assert "written by an older evalsuite" in (folder / "scorecard.html").read_text()
    (folder / "gates.json").write_text(json.dumps({"schema": "something else"}))
    code, _, err = run_cli(["report", folder], capsys)
    assert code == 2 and "gates.json" in err
