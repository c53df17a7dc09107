"""Cost-bounded tiers (#20 items 3): the perturbation suites' seeded stratified subset.

The subset size for a target CI half-width is checked against statsmodels and the bootstrap
intervals the suites report; the subset is the adversarial suite's rule, the same for every
condition; drops, relative drops and the chart's clean reference pair clean and perturbed on the
same samples (hand-computed); the plan shows ``n of N`` and the multiple of one clean pass; an
end-to-end run records the exact subset n in every leaf, the scorecard and the prediction files,
and resumes and baselines against itself.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from evalsuite.conditions import measured_params
from evalsuite.config import RunConfig, load_suite_spec
from evalsuite.data.base import Dataset
from evalsuite.data.sampling import stratified_indices, subset_positions
from evalsuite.errors import UsageError
from evalsuite.run_estimate import Rates, build_plan, clean_pass_multiple, format_plan
from evalsuite.stats import bootstrap_mean_ci, proportion_half_width, proportion_sample_size
from evalsuite.suites.base import Predictions, PredictionSet, RunContext
from evalsuite.suites.corruption import CorruptionSuite
from evalsuite.suites.device import DeviceSuite
from evalsuite.suites.subset import apply_budget
from tests.trust_cli import run_cli

# ----------------------------------------------------------------------------- sample size


def test_sample_size_is_the_normal_interval_size_statsmodels_computes():
    statsmodels = pytest.importorskip("statsmodels.stats.proportion")
    cases = [(0.02, 0.95, 0.5), (0.05, 0.95, 0.5), (0.01, 0.95, 0.5), (0.02, 0.90, 0.8), (0.03, 0.99, 0.3)]
    for h, level, p in cases:
        exact = statsmodels.samplesize_confint_proportion(p, h, alpha=1 - level, method="normal")
        assert proportion_sample_size(h, level, p) == math.ceil(exact)
    # by hand: z = 1.959964, z^2 / 4 / 0.02^2 = 2400.91 -> 2401; 0.05 -> 384.15 -> 385
    assert proportion_sample_size(0.02) == 2401 and proportion_sample_size(0.05) == 385
    # the smallest such n: one sample fewer misses the target
    assert proportion_half_width(2401) <= 0.02 < proportion_half_width(2400)
    assert proportion_half_width(100, p=0.0) == 0.0
    for bad in (0.0, -0.1, 0.6, float("nan")):
        with pytest.raises(ValueError, match="half-width"):
            proportion_sample_size(bad)
    with pytest.raises(ValueError, match="level"):
        proportion_sample_size(0.02, level=1.0)


def test_the_reported_bootstrap_interval_meets_the_target_half_width():
    # A worst-case accuracy (p = 0.5) on exactly the size for +/-5 points: the percentile bootstrap
    # CI the suites report is +/-5 points to within sampling of the bootstrap itself.
    n = proportion_sample_size(0.05)
    values = np.zeros(n)
    values[np.random.default_rng(0).choice(n, n // 2, replace=False)] = 1.0
    lo, hi = bootstrap_mean_ci(values, seed=0)
    assert (hi - lo) / 2 == pytest.approx(0.05, rel=0.08)
    # at 80% accuracy the same n gives a narrower interval, as the normal half-width says
    values[: int(0.8 * n)], values[int(0.8 * n):] = 1.0, 0.0
    lo, hi = bootstrap_mean_ci(values, seed=0)
    assert (hi - lo) / 2 == pytest.approx(proportion_half_width(n, p=values.mean()), rel=0.08)
    assert (hi - lo) / 2 < 0.05


# ----------------------------------------------------------------------------- the subset rule


def _ctx(tmp_path: Path, labels: np.ndarray, seed: int = 0, size: int = 32) -> RunContext:
    n = len(labels)
    ds = Dataset(name="t", ids=np.array([f"s{i:03d}" for i in range(n)], dtype=object), labels=labels, columns={},
                 fingerprint="f", loader=lambda i: np.zeros((size, size, 3), np.uint8))
    model = SimpleNamespace(info=SimpleNamespace(input_size=(size, size), num_classes=int(labels.max()) + 1))
    return RunContext(model=model, dataset=ds, labels=labels, out_dir=tmp_path, seed=seed)


def test_subset_is_the_adversarial_rule_stratified_and_seeded(tmp_path):
    from evalsuite.suites.adversarial import AdversarialSuite

    labels = np.repeat(np.arange(5), [40, 30, 20, 6, 4])  # 100 samples, unbalanced
    run = _ctx(tmp_path, labels)
    adv = AdversarialSuite({"n": 30})
    assert np.array_equal(subset_positions(labels, 30, 0), adv._subset_positions(run, 0))
    assert np.array_equal(subset_positions(labels, 30, 0), stratified_indices(labels, 30, 0))
    pos = subset_positions(labels, 30, 0)
    assert pos.dtype == np.int64 and np.all(np.diff(pos) > 0) and len(pos) == 30
    assert np.bincount(labels[pos]).tolist() == [12, 9, 6, 2, 1]  # proportional, every label present
    assert not np.array_equal(pos, subset_positions(labels, 30, 1))  # the seed decides which
    assert np.array_equal(subset_positions(labels, 100, 0), np.arange(100))  # n >= N: everything
    assert np.array_equal(subset_positions(labels, None, 0), np.arange(100))


def test_options_and_their_errors():
    assert CorruptionSuite({"ci_half_width": 0.02}).opts.subset_size() == 2401
    assert DeviceSuite({"n": "500"}).opts.subset_size() == 500
    assert CorruptionSuite({"n": "all"}).opts.subset_size() is None
    assert DeviceSuite({}).opts.subset_size() is None
    cases = [({"n": 0}, "option n must be a positive integer or 'all', got 0"),
             ({"n": "some"}, "option n must be a positive integer or 'all'"),
             ({"ci_half_width": 0.7}, r"ci_half_width must be a number in \(0, 0.5\]"),
             ({"ci_half_width": "wide"}, "suites.corruption.ci_half_width must be a number"),
             ({"n": 100, "ci_half_width": 0.02}, "give option n or option ci_half_width, not both")]
    for opts, match in cases:
        with pytest.raises(UsageError, match=match):
            CorruptionSuite(opts)
    with pytest.raises(UsageError, match="suite 'device': option n must"):
        DeviceSuite({"n": -3})
    assert apply_budget({"preset": "all", "ci_half_width": 0.02}, {"n": 50}) == {"preset": "all", "n": 50}
    assert apply_budget({"n": 9}, {}) == {"n": 9}


def test_presets_standard_is_budgeted_and_full_measures_everything():
    standard, full = load_suite_spec("standard"), load_suite_spec("full")
    for name in ("corruption", "device"):
        assert standard[name]["ci_half_width"] == 0.02
        assert full[name]["n"] == "all"
    assert CorruptionSuite(standard["corruption"]).opts.subset_size() == 2401
    assert DeviceSuite(full["device"]).opts.subset_size() is None


def test_every_condition_carries_the_same_subset(tmp_path):
    labels = np.arange(200) % 10
    run = _ctx(tmp_path, labels)
    want = subset_positions(labels, 50, 0)
    for suite in (CorruptionSuite({"n": 50}), DeviceSuite({"n": 50})):
        conds = suite.conditions(run)
        assert len(conds) > 1
        for c in conds:
            assert np.array_equal(c.indices, want)
            assert measured_params(c.params)["subset"] == {"n": 50, "seed": 0}
    # a subset at least as large as the data is the data: no indices, params as without the option
    for suite in (CorruptionSuite({"n": 500}), DeviceSuite({"ci_half_width": 0.02})):
        for c in suite.conditions(run):
            assert c.indices is None and "subset" not in c.params
    c = CorruptionSuite({"ci_half_width": 0.02}).conditions(run)[0]
    assert measured_params(c.params) == {"name": "gaussian_noise", "severity": 1, "backend": "torch"}


# ----------------------------------------------------------------------------- paired metrics


def _preds(key: str, suite: str, correct, index, params=None) -> Predictions:
    """Two-class predictions (label 0) right exactly where ``correct`` is 1, at dataset positions ``index``."""
    c = np.asarray(correct, dtype=float)
    index = np.asarray(index)
    logits = np.stack([c, 1 - c], axis=1).astype(np.float32)
    return Predictions(key, suite, params or {}, index, np.array([f"s{i:03d}" for i in index], dtype=object),
                       np.zeros(len(c), dtype=np.int64), logits)


# Clean is right on samples 0-2 of 6 (50%); the subset {0, 1, 3} has clean 2/3 there, and the
# perturbed condition is right only on sample 0 (1/3). Paired: drop 1/3, relative drop 1/2;
# clean-on-all against perturbed-on-subset would say 1/6 and 1/3.
CLEAN = [1, 1, 1, 0, 0, 0]
SUBSET = [0, 1, 3]
PERTURBED = [1, 0, 0]


def test_corruption_drops_pair_clean_and_corrupted_on_the_subset(tmp_path):
    suite = CorruptionSuite({"corruptions": ["fog"], "severities": [1], "n": 3})
    params = {"name": "fog", "severity": 1, "backend": "torch", "subset": {"n": 3, "seed": 0}}
    ps = PredictionSet({"clean": _preds("clean", "clean", CLEAN, np.arange(6)),
                        "corruption/fog/1": _preds("corruption/fog/1", "corruption", PERTURBED, SUBSET, params)})
    out = suite.summarize(_ctx(tmp_path, np.zeros(6, np.int64)), ps)
    m = out.metrics
    assert m["fog"]["1"]["accuracy"]["value"] == pytest.approx(1 / 3) and m["fog"]["1"]["accuracy"]["n"] == 3
    assert m["relative_drop"]["value"] == pytest.approx(0.5) and m["relative_drop"]["n"] == 3
    assert out.report["clean_accuracy"] == pytest.approx(2 / 3) and out.report["n"] == 3
    assert out.report["worst"][0]["drop"] == pytest.approx(1 / 3)
    assert out.report["subset"]["n"] == 3 and out.report["subset"]["of"] == 6


def test_device_drops_and_chart_reference_pair_on_the_subset(tmp_path):
    suite = DeviceSuite({"profiles": ["webcam-720p"], "operations": ["jpeg"], "severities": [3], "n": 3})
    params = {"subset": {"n": 3, "seed": 0}}
    ps = PredictionSet({"clean": _preds("clean", "clean", CLEAN, np.arange(6)),
                        # stored in another order: rows pair with clean by dataset position
                        "device/webcam-720p": _preds("device/webcam-720p", "device", PERTURBED[::-1], SUBSET[::-1], params),
                        "device/op/jpeg/3": _preds("device/op/jpeg/3", "device", [1, 1, 0], SUBSET, params)})
    out = suite.summarize(_ctx(tmp_path, np.zeros(6, np.int64)), ps)
    m = out.metrics
    assert m["webcam-720p"]["drop"]["value"] == pytest.approx(1 / 3) and m["webcam-720p"]["drop"]["n"] == 3
    assert m["worst"]["drop"]["value"] == pytest.approx(1 / 3) and m["worst"]["drop"]["n"] == 3
    assert m["ops"]["jpeg"]["3"]["drop"]["value"] == pytest.approx(0.0)  # 2/3 on the subset, as clean there
    assert out.report["clean_accuracy"] == pytest.approx(2 / 3)  # the chart's dashed line: clean on the subset
    assert out.report["bar"]["reference"] == pytest.approx(2 / 3)
    assert out.report["subset"]["n"] == 3 and out.report["subset"]["of"] == 6


# ----------------------------------------------------------------------------- the plan


def test_plan_shows_the_subset_n_and_the_multiple_of_one_clean_pass():
    conds = [SimpleNamespace(key=k, suite=s, cost=lambda n: (float(n), 0.0))
             for k, s in (("clean", "clean"), ("corruption/fog/1", "corruption"), ("corruption/fog/3", "corruption"),
                          ("device/webcam-720p", "device"))]
    samples = {"clean": 1000, "corruption/fog/1": 400, "corruption/fog/3": 400, "device/webcam-720p": 400}
    plans = build_plan(conds, samples)
    rates = Rates(0.001, None)
    # 1 + 3 * 400 / 1000 forward passes
    assert clean_pass_multiple(plans, rates) == pytest.approx(2.2)
    text = format_plan(plans, rates, 1000, "cpu")
    assert "= 2.2 x one clean pass" in text.splitlines()[0]
    corruption = next(line for line in text.splitlines() if line.strip().startswith("corruption"))
    assert re.search(r"2 condition\(s\) x +400 of 1000 samples +800 sample-conditions", corruption)
    clean = next(line for line in text.splitlines() if line.strip().startswith("clean"))
    assert re.search(r"1 condition\(s\) x +1000 samples", clean)
    assert clean_pass_multiple(plans[1:], rates) is None


def test_run_config_budget_flags():
    assert RunConfig(model="m", data="d", perturbation_samples="300").sample_budget() == {"n": 300}
    assert RunConfig(model="m", data="d", perturbation_samples="all").sample_budget() == {"n": "all"}
    assert RunConfig(model="m", data="d", ci_half_width=0.05).sample_budget() == {"ci_half_width": 0.05}
    assert RunConfig(model="m", data="d").sample_budget() == {}
    with pytest.raises(UsageError, match="--perturbation-samples must be a positive integer or 'all'"):
        RunConfig(model="m", data="d", perturbation_samples="many")
    with pytest.raises(UsageError, match=r"--ci-half-width must be a number in \(0, 0.5\]"):
        RunConfig(model="m", data="d", ci_half_width=2.0)
    with pytest.raises(UsageError, match="either --perturbation-samples or --ci-half-width"):
        RunConfig(model="m", data="d", perturbation_samples=5, ci_half_width=0.1)


# ----------------------------------------------------------------------------- end to end


SUITE_FILE = """
suites:
  clean: {}
  corruption: {corruptions: [contrast], severities: [2], ci_half_width: 0.02}
  device: {profiles: [webcam-720p], operations: [jpeg], severities: [3]}
  calibration: {}
"""


def test_run_measures_perturbations_on_the_subset_and_resumes(digits_onnx, tmp_path, capsys, caplog):
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(SUITE_FILE)
    base = ["run", digits_onnx, "--data", "builtin:digits", "--limit", "150", "--suite", suite_file,
            "--perturbation-samples", "40"]
    code, out, _ = run_cli([*base, "--dry-run"], capsys)
    assert code == 0
    assert "40 of 150 samples" in out
    run1 = tmp_path / "run1"
    code, _, err = run_cli([*base, "--out", run1], capsys)
    assert code in (0, 1), err
    results = json.loads((run1 / "results.json").read_text())
    m = results["metrics"]
    assert m["clean"]["accuracy"]["n"] == 150
    assert m["corruption"]["contrast"]["2"]["accuracy"]["n"] == 40 and m["corruption"]["relative_drop"]["n"] == 40
    assert m["device"]["webcam-720p"]["drop"]["n"] == 40 and m["device"]["ops"]["jpeg"]["3"]["accuracy"]["n"] == 40
    assert m["calibration"]["corruption.contrast.2"]["ece"]["n"] == 40  # the condition's own samples
    assert m["calibration"]["clean"]["ece"]["n"] == 150
    want = subset_positions(np.asarray(results_labels(run1)), 40, 0)
    for key in ("corruption__contrast__2", "device__webcam-720p", "device__op__jpeg__3"):
        with np.load(run1 / "predictions" / f"{key}.npz", allow_pickle=False) as z:
            assert np.array_equal(np.sort(z["index"]), want)
    config = json.loads((run1 / "config.json").read_text())
    assert config["suites"]["corruption"] == {"corruptions": ["contrast"], "severities": [2], "n": 40}
    html = (run1 / "scorecard.html").read_text()
    assert html.count("seeded stratified subset of 40 of the 150 images") == 2  # corruption and device sections
    # a baseline of the same tier matches (same subset, same params; checked by the plan, before any
    # prediction), one of another subset size does not, and --resume reuses every condition
    code, _, err = run_cli([*base, "--dry-run", "--baseline", run1 / "results.json"], capsys)
    assert code == 0, err
    other = [a if a != "40" else "30" for a in base]
    code, _, err = run_cli([*other, "--dry-run", "--baseline", run1 / "results.json"], capsys)
    assert code == 2 and "baseline" in err
    caplog.set_level("INFO", logger="evalsuite.runner")
    code, _, err = run_cli([*base, "--out", run1, "--resume"], capsys)
    assert code in (0, 1), err
    assert sum("resume: reusing predictions" in r.getMessage() for r in caplog.records) == 4  # clean + 3
    assert json.loads((run1 / "results.json").read_text())["metrics"]["corruption"] == m["corruption"]


def results_labels(run: Path) -> np.ndarray:
    """The model-class labels of the run's data positions, from its clean predictions file."""
    with np.load(run / "predictions" / "clean.npz", allow_pickle=False) as z:
        order = np.argsort(z["index"])
        return z["labels"][order]


def test_budget_flag_without_a_perturbation_suite_is_exit_2(digits_onnx, tmp_path, capsys):
    code, _, err = run_cli(["run", digits_onnx, "--data", "builtin:digits", "--limit", "20", "--suite", "quick",
                            "--ci-half-width", "0.05", "--out", tmp_path / "r"], capsys)
    assert code == 2 and "--ci-half-width sets the sample subset of the corruption and device suites" in err
    assert not (tmp_path / "r").exists()
