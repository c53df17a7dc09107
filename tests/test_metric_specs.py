"""Suites' metric declarations are true: everything a run writes was declared, and the reverse.

The pre-flight policy check (:func:`evalsuite.gates.check_policy`) trusts the declarations; a
path a suite writes but did not declare would make a valid policy fail before the run, and a
declared path no run ever writes would let a typo through to gating. Both directions are
checked on a real standard-suite run.
"""

from __future__ import annotations

import json

import pytest

from evalsuite.api import plan_run, run
from evalsuite.config import RunConfig
from evalsuite.metric_specs import MetricSpec, match_specs, spec_paths
from evalsuite.results import iter_metric_paths

# Declared paths that only appear with inputs this run does not have (a baseline for CE, a
# bridge check, black-box successes, rows with non-finite logits).
CONDITIONAL = (
    ".ce", "corruption.mce", "corruption.relative_mce", "adversarial.bridge.max_abs_diff",
    "adversarial.sanity.blackbox_only_successes", ".nonfinite_rows", "calibration.worst_attack.ece",
    "_before_temperature", "_after_temperature",
)


@pytest.fixture(scope="module")
def standard_run(digits_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("specs") / "run"
    config = RunConfig(model=str(digits_onnx), data="builtin:digits", out_dir=str(out), suite="standard", limit=150,
                       suite_overrides={"calibration": {"n_boot": 50}, "slices": {"n_boot": 50}})
    specs = plan_run(config).specs
    run(config)
    results = json.loads((out / "results.json").read_text())
    return specs, results


def test_every_written_metric_was_declared_with_its_interval(standard_run):
    specs, results = standard_run
    written = list(iter_metric_paths(results["metrics"]))
    assert len(written) > 300
    for path, leaf in written:
        matched = match_specs(path, specs)
        assert matched, f"{path} is written but no suite declared it"
        if leaf.get("ci") is not None:
            assert any(s.ci for s in matched), f"{path} has an interval but is declared without one"


def test_every_declared_metric_is_written(standard_run):
    specs, results = standard_run
    written = [p for p, _ in iter_metric_paths(results["metrics"])]
    unused = [s.pattern for s in specs if not any(s.matches(p) for p in written)]
    stale = [p for p in unused if not any(c in p for c in CONDITIONAL)]
    assert not stale, f"declared but never written: {stale}"


def test_declared_exact_counts_carry_no_interval(standard_run):
    specs, results = standard_run
    leaves = dict(iter_metric_paths(results["metrics"]))
    for spec in specs:
        if spec.ci:
            continue
        for path, leaf in leaves.items():
            if spec.matches(path):
                assert leaf["ci"] is None, f"{path} carries an interval but {spec.pattern} says it does not"


def test_wildcards_span_keys_with_dots_but_not_partial_segments():
    spec = MetricSpec("clean.per_class.*.recall", ci=False)
    assert spec.matches("clean.per_class.cat.recall")
    assert spec.matches("clean.per_class.3.5mm jack.recall")
    assert not spec.matches("clean.per_class.recall")
    assert not spec.matches("clean.per_class.cat.recall_at_k")
    assert not MetricSpec("clean.accuracy").matches("clean.accuracyx")
    assert not MetricSpec("a.b").matches("aXb")  # a dot is a separator, not a regex wildcard


def test_spec_paths_deduplicates_in_order():
    specs = [MetricSpec("b.x"), MetricSpec("a.y"), MetricSpec("b.x", ci=False)]
    assert spec_paths(specs) == ["b.x", "a.y"]
    assert [s.ci for s in match_specs("b.x", specs)] == [True, False]


def test_options_change_the_declarations(digits_onnx, tmp_path):
    """No bootstrap in calibration: its leaves are declared without intervals, so a ci bound is refused."""
    from evalsuite.errors import PolicyError

    suite = tmp_path / "suite.yaml"
    suite.write_text("suites:\n  clean: {}\n  calibration: {n_boot: 0}\n")
    policy = tmp_path / "p.yaml"
    policy.write_text("gates:\n  - metric: calibration.clean.ece\n    max: 0.5\n    bound: ci_upper\n")
    base = dict(model=str(digits_onnx), data="builtin:digits", out_dir=str(tmp_path / "o"), limit=40,
                policy=str(policy))
    with pytest.raises(PolicyError, match="needs a confidence interval"):
        plan_run(RunConfig(**base, suite=str(suite)))
    plan_run(RunConfig(**base, suite=str(suite), suite_overrides={"calibration": {"n_boot": 20}}))
    with pytest.raises(PolicyError, match="no metric 'calibration.clean.ece'"):
        plan_run(RunConfig(**base, suite="quick"))  # quick runs no calibration suite
    assert not (tmp_path / "o").exists()
