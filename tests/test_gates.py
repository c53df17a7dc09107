"""Policy parsing, gate evaluation, metric-path resolution and exit codes."""

from __future__ import annotations

import pytest

from evalsuite.errors import PolicyError
from evalsuite.gates import FAIL, PASS, SKIP, WARN, evaluate, exit_code, load_policy, parse_policy, verdict
from evalsuite.results import resolve_metric
from evalsuite.stats import metric


def _results(acc=0.9, ci=(0.85, 0.95), ece=0.05):
    return {
        "metrics": {
            "clean": {"accuracy": metric(acc, 100, ci), "nll": metric(0.3, 100, None, "lower")},
            "calibration": {"clean": {"ece": metric(ece, 100, (0.03, 0.07), "lower")}},
            "adversarial": {"l2": {"0.5": {"robust_accuracy": metric(0.4, 50, (0.3, 0.5))}},
                            "linf": {"8/255": {"robust_accuracy": metric(0.2, 50, (0.1, 0.3))}}},
        },
        "checks": [],
    }


def test_point_and_ci_bounds():
    gates = parse_policy({"gates": [
        {"metric": "clean.accuracy", "min": 0.88},
        {"metric": "clean.accuracy", "min": 0.88, "bound": "ci_lower", "name": "ci"},
        {"metric": "calibration.clean.ece", "max": 0.06, "bound": "ci_upper", "severity": "warn"},
    ]}, "t")
    out = evaluate(_results(), gates)
    assert [o.status for o in out] == [PASS, FAIL, WARN]
    assert out[1].value == 0.85
    assert exit_code(out) == 1 and verdict(out) == FAIL
    assert exit_code(out[::2]) == 0 and verdict(out[::2]) == WARN


def test_dotted_keys_resolve_greedily():
    m = _results()["metrics"]
    assert resolve_metric(m, "adversarial.l2.0.5.robust_accuracy")["value"] == 0.4
    assert resolve_metric(m, "adversarial.linf.8/255.robust_accuracy")["value"] == 0.2
    assert resolve_metric(m, "adversarial.l2.0.5") is None  # not a leaf
    assert resolve_metric(m, "clean.accuracy.value") is None


def test_unknown_metric_lists_close_matches():
    gates = parse_policy({"gates": [{"metric": "clean.acuracy", "min": 0.5}]}, "t")
    with pytest.raises(PolicyError, match="did you mean 'clean.accuracy'"):
        evaluate(_results(), gates)


def test_optional_gate_skips():
    gates = parse_policy({"gates": [{"metric": "device.worst.accuracy", "min": 0.5, "optional": True}]}, "t")
    out = evaluate(_results(), gates)
    assert out[0].status == SKIP and exit_code(out) == 0


def test_max_drop_against_baseline_respects_direction():
    gates = parse_policy({"gates": [
        {"metric": "clean.accuracy", "max_drop": 0.02},
        {"metric": "clean.nll", "max_drop": 0.05},
    ]}, "t")
    base = _results(acc=0.93)
    base["metrics"]["clean"]["nll"] = metric(0.2, 100, None, "lower")
    out = evaluate(_results(acc=0.9), gates, base)
    assert out[0].status == FAIL and "dropped 0.03" in out[0].message
    assert out[1].status == FAIL  # NLL rose by 0.1 (lower is better)
    out = evaluate(_results(acc=0.92), gates[:1], base)
    assert out[0].status == PASS
    # max_drop without a baseline is a configuration mistake (exit 2), never a FAIL verdict.
    with pytest.raises(PolicyError, match="--baseline"):
        evaluate(_results(), gates[:1], None)


def test_missing_value_fails():
    r = _results()
    r["metrics"]["clean"]["accuracy"] = metric(None, 0)
    out = evaluate(r, parse_policy({"gates": [{"metric": "clean.accuracy", "min": 0.1}]}, "t"))
    assert out[0].status == FAIL


def test_builtin_checks_come_first():
    r = _results()
    r["metrics"]["sanity"] = {"nonfinite_logits": metric(3, 100, None, "lower")}
    r["checks"] = [{"name": "finite", "metric": "sanity.nonfinite_logits", "max": 0, "severity": "fail"}]
    out = evaluate(r, [])
    assert out[0].gate.builtin and out[0].status == FAIL


@pytest.mark.parametrize(
    "policy, match",
    [
        ({"gates": [{"metric": "clean.accuracy", "minimum": 0.5}]}, "unknown key 'minimum'.*did you mean 'min'"),
        ({"gates": [{"metric": "clean.accuracy"}]}, "needs at least one of min, max, max_drop"),
        ({"gates": [{"metric": "clean.accuracy", "min": "high"}]}, "min must be a finite number"),
        ({"gates": [{"metric": "clean.accuracy", "min": 0.5, "severity": "error"}]}, "severity must be"),
        ({"gates": [{"metric": "clean.accuracy", "min": 0.5, "bound": "lower"}]}, "bound must be"),
        ({"gates": [{"metric": "clean.accuracy", "min": 0.9, "max": 0.1}]}, "greater than max"),
        ({"gate": []}, "unknown key 'gate'"),
        ({"gates": {"a": 1}}, "must be a list"),
        (["x"], "must be a mapping"),
    ],
)
def test_policy_validation(policy, match):
    with pytest.raises(PolicyError, match=match):
        parse_policy(policy, "p.yaml")


def test_policy_files(tmp_path):
    gates, origin = load_policy(None)
    assert gates and origin.startswith("default")
    bad = tmp_path / "bad.yaml"
    bad.write_text("gates: [\n  - metric: x\n")
    with pytest.raises(PolicyError, match="invalid YAML"):
        load_policy(bad)
    with pytest.raises(PolicyError, match="not found"):
        load_policy(tmp_path / "missing.yaml")


def test_builtin_checks_are_typed_gates_validated_where_they_are_written():
    from evalsuite.gates import Bound, Gate, Severity, Status

    g = Gate.check("accuracy floor", "clean.accuracy", min=0.5, bound="ci_lower")
    assert g.builtin and g.severity is Severity.WARN and g.bound is Bound.CI_LOWER and g.min == 0.5
    record = g.to_record()
    assert record == {"name": "accuracy floor", "metric": "clean.accuracy", "min": 0.5, "severity": "warn",
                      "bound": "ci_lower", "description": ""}
    # the record is a policy mapping: it parses back to the same gate
    assert parse_policy({"gates": [record]}, "t")[0] == Gate(**{**record, "severity": "warn"})
    with pytest.raises(PolicyError, match="severity must be 'fail' or 'warn'"):
        Gate.check("x", "clean.accuracy", min=0.5, severity="fatal")
    with pytest.raises(PolicyError, match="needs at least one of min, max, max_drop"):
        Gate.check("x", "clean.accuracy")
    with pytest.raises(PolicyError, match="min 0.9 is greater than max 0.1"):
        Gate.check("x", "clean.accuracy", min=0.9, max=0.1)
    with pytest.raises(PolicyError, match="bound must be"):
        Gate.check("x", "clean.accuracy", min=0.5, bound="median")
    results = {"metrics": {"clean": {"accuracy": metric(0.4, 10, (0.3, 0.6))}}, "checks": [record]}
    (outcome,) = evaluate(results, [])
    assert outcome.status is Status.WARN and outcome.status == WARN == "WARN"


def test_a_suite_check_on_an_undeclared_metric_is_our_bug_not_a_verdict():
    from evalsuite.api import _builtin_record
    from evalsuite.gates import Gate
    from evalsuite.metric_specs import MetricSpec

    specs = [MetricSpec("clean.accuracy"), MetricSpec("clean.error_rate", ci=False)]
    assert _builtin_record(Gate.check("ok", "clean.accuracy", min=0.5), specs)["metric"] == "clean.accuracy"
    with pytest.raises(RuntimeError, match="does not match the metrics its suite declared"):
        _builtin_record(Gate.check("typo", "clean.acuracy", min=0.5), specs)
    with pytest.raises(RuntimeError, match="needs a confidence interval"):
        _builtin_record(Gate.check("exact", "clean.error_rate", max=0.5, bound="ci_upper"), specs)
