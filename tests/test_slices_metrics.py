"""Slice metrics and disparities: hand-computed cases, fairlearn MetricFrame, netcal, scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evalsuite.slices.audit import audit_groups, audit_metrics
from evalsuite.slices.metrics import RowStats
from evalsuite.stats import critical_value, percentiles
from evalsuite.suites.base import softmax

# Two groups of four samples, three classes; confidences chosen away from ECE bin edges.
HAND_Y = np.array([0, 1, 2, 0, 0, 1, 2, 2])
HAND_P = np.array(
    [
        [0.7, 0.2, 0.1],  # A: correct, conf .70
        [0.1, 0.8, 0.1],  # A: correct, conf .80
        [0.5, 0.3, 0.2],  # A: y=2 predicted 0
        [0.2, 0.65, 0.15],  # A: y=0 predicted 1
        [0.9, 0.05, 0.05],  # B: correct, conf .90
        [0.3, 0.62, 0.08],  # B: correct, conf .62
        [0.1, 0.1, 0.8],  # B: correct, conf .80
        [0.1, 0.5, 0.4],  # B: y=2 predicted 1
    ]
)
HAND_G = np.array([0, 0, 0, 0, 1, 1, 1, 1])


def _random_case(seed: int, n: int = 1200, c: int = 4, g: int = 3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    codes = rng.integers(0, g, n)
    logits = rng.normal(size=(n, c)) * 1.5
    logits[np.arange(n), y] += 1.0 + 0.6 * codes  # groups differ in accuracy
    return y, logits, codes


def test_hand_computed_group_metrics_and_disparities():
    rows = RowStats.from_probs(HAND_Y, HAND_P)
    a = audit_groups(rows, HAND_G, ["A", "B"], min_group_size=1, n_boot=0)
    e = a.est
    np.testing.assert_allclose(e["g.accuracy"], [0.5, 0.75])
    np.testing.assert_allclose(e["g.error_rate"], [0.5, 0.25])
    np.testing.assert_allclose(e["g.macro_recall"], [0.5, (1 + 1 + 0.5) / 3])
    np.testing.assert_allclose(e["g.tpr"], [[0.5, 1.0, 0.0], [1.0, 1.0, 0.5]])
    np.testing.assert_allclose(e["g.fpr"], [[0.5, 1 / 3, 0.0], [0.0, 1 / 3, 0.0]])
    np.testing.assert_allclose(e["g.selection_rate"], [[0.5, 0.5, 0.0], [0.25, 0.5, 0.25]])
    np.testing.assert_allclose(e["g.ece"], [1.65 / 4, 1.18 / 4])
    nll_a = -np.log([0.7, 0.8, 0.2, 0.2]).mean()
    nll_b = -np.log([0.9, 0.62, 0.8, 0.4]).mean()
    np.testing.assert_allclose(e["g.nll"], [nll_a, nll_b])
    assert e["o.accuracy"] == pytest.approx(5 / 8)
    assert e["o.ece"] == pytest.approx(2.07 / 8)
    assert e["s.accuracy.difference"] == pytest.approx(0.25)
    assert e["s.accuracy.ratio"] == pytest.approx(0.5 / 0.75)
    assert e["s.accuracy.worst_group"] == pytest.approx(0.5)
    assert e["s.accuracy.best_group"] == pytest.approx(0.75)
    assert e["s.accuracy.difference_to_overall"] == pytest.approx(0.125)
    assert e["s.accuracy.ratio_to_overall"] == pytest.approx(0.8)
    assert e["s.nll.worst_group"] == pytest.approx(max(nll_a, nll_b))
    np.testing.assert_allclose(e["eod.class"], [0.5, 0.0, 0.5])
    assert e["eod"] == pytest.approx(0.5)
    np.testing.assert_allclose(e["dp.class"], [0.25, 0.0, 0.25])
    assert e["dp"] == pytest.approx(0.25)
    m = audit_metrics(a)
    assert m["accuracy"]["worst_group"]["group"] == "A"
    assert m["accuracy"]["difference"]["groups"] == ["B", "A"]
    assert m["accuracy"]["by_group"]["A"]["n"] == 4
    assert m["equalized_odds_difference"]["value"] == pytest.approx(0.5)


def test_matches_metricframe_called_directly():
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, log_loss

    y, logits, codes = _random_case(1)
    probs = softmax(logits)
    names = np.array(["g0", "g1", "g2"], dtype=object)
    sf = names[codes]
    a = audit_groups(RowStats.from_logits(y, logits), codes, list(names), min_group_size=1, n_boot=0)
    pred = probs.argmax(1)
    objs = np.empty(len(y), dtype=object)
    objs[:] = list(probs)
    fns = {
        "accuracy": accuracy_score,
        "macro_recall": balanced_accuracy_score,
        "nll": lambda yt, yp, p: log_loss(yt, np.stack(list(p)), labels=[0, 1, 2, 3]),
    }
    for k in range(4):
        fns[f"tpr{k}"] = lambda yt, yp, k=k: true_positive_rate(yt == k, yp == k, pos_label=True)
        fns[f"fpr{k}"] = lambda yt, yp, k=k: false_positive_rate(yt == k, yp == k, pos_label=True)
        fns[f"sr{k}"] = lambda yt, yp, k=k: selection_rate(yt == k, yp == k, pos_label=True)
    mf = MetricFrame(metrics=fns, y_true=y, y_pred=pred, sensitive_features=sf, sample_params={"nll": {"p": objs}})
    by = mf.by_group
    for metric in ("accuracy", "macro_recall", "nll"):
        np.testing.assert_allclose(a.est[f"g.{metric}"], by[metric].to_numpy(dtype=float), rtol=0, atol=1e-12)
        assert a.est[f"o.{metric}"] == pytest.approx(mf.overall[metric], abs=1e-12)
        assert a.est[f"s.{metric}.difference"] == pytest.approx(mf.difference()[metric], abs=1e-12)
        assert a.est[f"s.{metric}.ratio"] == pytest.approx(mf.ratio()[metric], abs=1e-12)
        assert a.est[f"s.{metric}.difference_to_overall"] == pytest.approx(mf.difference(method="to_overall")[metric], abs=1e-12)
        assert a.est[f"s.{metric}.ratio_to_overall"] == pytest.approx(mf.ratio(method="to_overall")[metric], abs=1e-12)
    assert a.est["s.accuracy.worst_group"] == pytest.approx(mf.group_min()["accuracy"])
    assert a.est["s.nll.worst_group"] == pytest.approx(mf.group_max()["nll"])
    for k in range(4):
        np.testing.assert_allclose(a.est["g.tpr"][:, k], by[f"tpr{k}"].to_numpy(dtype=float), atol=1e-12)
        np.testing.assert_allclose(a.est["g.fpr"][:, k], by[f"fpr{k}"].to_numpy(dtype=float), atol=1e-12)
        np.testing.assert_allclose(a.est["g.selection_rate"][:, k], by[f"sr{k}"].to_numpy(dtype=float), atol=1e-12)
        eod = equalized_odds_difference(y == k, pred == k, sensitive_features=sf)
        dp = demographic_parity_difference(y == k, pred == k, sensitive_features=sf)
        assert a.est["eod.class"][k] == pytest.approx(eod, abs=1e-12)
        assert a.est["dp.class"][k] == pytest.approx(dp, abs=1e-12)


def test_reference_module_agrees_and_ece_matches_netcal():
    from netcal.metrics import ECE

    from evalsuite.slices.reference import compare_with_metricframe

    y, logits, codes = _random_case(2, n=900)
    probs = softmax(logits)
    names = ["a", "b", "c"]
    a = audit_groups(RowStats.from_logits(y, logits), codes, names, min_group_size=1, n_boot=0)
    res = compare_with_metricframe(a, y, probs, np.array(names, dtype=object)[codes])
    assert res["compared"] > 60
    assert res["max_abs_diff"] < 1e-10
    for g in range(3):
        m = codes == g
        ref = ECE(bins=15).measure(probs[m], y[m])
        assert a.est["g.ece"][g] == pytest.approx(ref, abs=1e-12)


def test_ece_matches_calibration_module_when_present():
    cal = pytest.importorskip("evalsuite.calibration")
    if not hasattr(cal, "ece"):
        pytest.skip("evalsuite.calibration.ece not written yet")
    y, logits, codes = _random_case(3, n=600)
    probs = softmax(logits)
    a = audit_groups(RowStats.from_logits(y, logits), codes, ["a", "b", "c"], min_group_size=1, n_boot=0)
    for g in range(3):
        assert a.est["g.ece"][g] == pytest.approx(float(cal.ece(probs[codes == g], y[codes == g], n_bins=15)), abs=1e-12)


def test_absent_class_rates_are_undefined_not_zero():
    # group B has no true sample of class 2 and only class-1 samples predicted as 1
    y = np.array([0, 1, 2, 0, 1, 1])
    p = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]])
    codes = np.array([0, 0, 0, 1, 1, 1])
    a = audit_groups(RowStats.from_probs(y, p), codes, ["A", "B"], min_group_size=1, n_boot=0)
    assert math.isnan(a.est["g.tpr"][1, 2])  # fairlearn would report 0 here
    assert a.est["g.fpr"][1, 2] == 0.0
    # class 2 is defined in one group only for TPR; its FPRs agree (0) -> no gap for class 2
    assert a.est["eod.class"][2] == 0.0
    assert a.est["g.macro_recall"][1] == pytest.approx(1.0)  # mean over classes present (0 and 1)


def test_nonfinite_rows_count_as_errors_and_leave_calibration():
    y = np.array([0, 1, 0, 1])
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [np.nan, 0.0], [0.0, np.inf]])
    a = audit_groups(RowStats.from_logits(y, logits), np.zeros(4, dtype=int), ["all"], min_group_size=1, n_boot=0)
    assert a.est["g.accuracy"][0] == pytest.approx(0.5)
    conf = 1 / (1 + math.exp(-2.0))
    assert a.est["g.ece"][0] == pytest.approx(1 - conf)  # two finite rows, both correct with conf
    assert a.est["g.nll"][0] == pytest.approx(-math.log(conf))
    assert a.est["g.selection_rate"][0].sum() == pytest.approx(0.5)  # NaN rows predict no class


def test_small_groups_shown_but_excluded_from_summaries():
    y, logits, codes = _random_case(4, n=400)
    codes = codes.copy()
    codes[:12] = 3  # a fourth group of 12 samples
    rows = RowStats.from_logits(y, logits)
    a = audit_groups(rows, codes, ["a", "b", "c", "tiny"], min_group_size=30, n_boot=50, seed=1)
    assert list(a.eligible) == [True, True, True, False]
    big = a.est["g.accuracy"][:3]
    assert a.est["s.accuracy.difference"] == pytest.approx(big.max() - big.min())
    assert a.est["s.accuracy.worst_group"] == pytest.approx(big.min())
    m = audit_metrics(a)
    assert m["accuracy"]["by_group"]["tiny"]["eligible"] is False
    assert m["accuracy"]["by_group"]["tiny"]["n"] == 12
    assert m["accuracy"]["difference"]["n"] == 400 - 12
    assert any("tiny" in n for n in a.notes)
    # with only one eligible group no disparity is measured, and the leaf says why
    b = audit_groups(rows, (codes == 3).astype(int), ["rest", "tiny"], min_group_size=30, n_boot=20)
    mb = audit_metrics(b)
    assert mb["accuracy"]["difference"]["value"] is None and "note" in mb["accuracy"]["difference"]
    assert mb["equalized_odds_difference"]["value"] is None


def test_bootstrap_methods_agree_and_are_reproducible(monkeypatch):
    import evalsuite.slices.audit as audit_mod

    y, logits, codes = _random_case(5, n=3000)
    rows = RowStats.from_logits(y, logits)
    names = ["a", "b", "c"]
    r1 = audit_groups(rows, codes, names, n_boot=2000, seed=3, method="rows")
    r2 = audit_groups(rows, codes, names, n_boot=2000, seed=3, method="rows")
    np.testing.assert_array_equal(r1.ci["g.accuracy"], r2.ci["g.accuracy"])
    c1 = audit_groups(rows, codes, names, n_boot=2000, seed=4, method="counts")
    assert r1.method == "rows" and c1.method == "counts"
    for key in ("g.accuracy", "g.macro_recall", "g.ece", "g.nll", "o.accuracy", "s.accuracy.difference", "eod", "dp"):
        np.testing.assert_allclose(c1.ci[key], r1.ci[key], atol=0.012, err_msg=key)
    # point estimates never depend on the bootstrap
    np.testing.assert_array_equal(c1.est["g.accuracy"], r1.est["g.accuracy"])
    # the two-pass path for many classes gives the same intervals as the in-memory one
    monkeypatch.setattr(audit_mod, "RATE_STORE_LIMIT", 0)
    r3 = audit_groups(rows, codes, names, n_boot=2000, seed=3, method="rows")
    for key in ("eod", "dp", "eod.class", "dp.class"):
        np.testing.assert_allclose(r3.ci[key], r1.ci[key], atol=1e-9, err_msg=key)


@pytest.mark.filterwarnings("ignore:All-NaN slice")
def test_percentiles_and_critical_values_match_numpy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 3, 4))
    a[rng.random(a.shape) < 0.1] = np.nan
    a[:, 0, 0] = np.nan
    ref = np.nanquantile(a, [0.025, 0.975], axis=0)
    got = percentiles(a, 0.95)
    np.testing.assert_allclose(got[:, 1:], ref[:, 1:], atol=1e-12)
    assert np.isnan(got[:, 0, 0]).all()
    t = rng.random((1000, 2))
    t[:30, 1] = np.inf
    assert critical_value(t[:, 0], 0.95) == pytest.approx(np.quantile(t[:, 0], 0.95, method="higher"))
    assert math.isinf(critical_value(t, 0.98)[1])


def test_disparity_interval_contains_zero_for_equal_groups():
    rng = np.random.default_rng(7)
    n = 600
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 1.5
    codes = np.repeat([0, 1], n // 2)  # same data-generating process in both groups
    a = audit_groups(RowStats.from_logits(y, logits), codes, ["x", "y"], n_boot=500, seed=0)
    assert a.ci["s.accuracy.difference"][0] == 0.0
    assert a.ci["s.accuracy.difference"][1] > a.est["s.accuracy.difference"]
    lo, hi = a.ci["s.accuracy.worst_group"]
    assert lo <= a.est["s.accuracy.worst_group"] <= hi


def test_bad_inputs_raise_clear_errors():
    from evalsuite.errors import DataError, UsageError

    rows = RowStats.from_probs(HAND_Y, HAND_P)
    with pytest.raises(DataError, match="differ in length"):
        audit_groups(rows, HAND_G[:3], ["A", "B"])
    with pytest.raises(DataError, match=r"\[0, 2\)"):
        audit_groups(rows, HAND_G + 1, ["A", "B"])
    with pytest.raises(UsageError, match="min_group_size"):
        audit_groups(rows, HAND_G, ["A", "B"], min_group_size=0)
    with pytest.raises(DataError, match="class indices"):
        RowStats.from_probs(HAND_Y + 5, HAND_P)


def test_bca_matches_scipy_and_jackknife_acceleration():
    from scipy.stats import bootstrap

    from evalsuite.stats import bca_interval, mean_acceleration

    rng = np.random.default_rng(0)
    x = rng.exponential(1.0, 200) ** 1.5  # skewed
    # acceleration: closed form for a mean == jackknife definition
    jack = np.array([np.delete(x, i).mean() for i in range(len(x))])
    d = jack.mean() - jack
    a_jack = (d**3).sum() / (6 * ((d**2).sum()) ** 1.5)
    a = mean_acceleration(x, np.zeros(len(x), dtype=int), 1)
    assert a[0] == pytest.approx(a_jack, rel=1e-9)
    reps = x[rng.integers(0, len(x), size=(40_000, len(x)))].mean(axis=1)
    ours = bca_interval(reps[:, None], np.array([x.mean()]), a, 0.95)[:, 0]
    ref = bootstrap((x,), np.mean, n_resamples=40_000, method="BCa", random_state=1).confidence_interval
    width = ref.high - ref.low
    assert abs(ours[0] - ref.low) < 0.03 * width and abs(ours[1] - ref.high) < 0.03 * width
    # symmetric replicates, no skew: BCa reduces to the percentile interval
    sym = np.concatenate([np.linspace(-1, 1, 1001)])[:, None]
    np.testing.assert_allclose(bca_interval(sym, np.array([0.0]), np.array([0.0]), 0.95)[:, 0],
                               np.quantile(sym[:, 0], [0.025, 0.975]), atol=1e-9)
