"""The bias-aware ECE estimators beside the 15-bin ECE: smooth ECE against relplot 1.0.3 (value,
bandwidth, bootstrap replicates, the smoothed reliability curve), the equal-mass sweep ECE against
a direct loop of Roelofs et al.'s definition and hand-computed cases, Kumar et al.'s debiased L2
ECE against a hand-computed case; intervals equal ``stats.bootstrap_ci`` of the point functions."""

from __future__ import annotations

import numpy as np
import pytest
import relplot
from relplot.kernels import ReflectedGaussianKernel

import evalsuite.calibration as cal
from evalsuite.calibration.bootstrap import calibration_leaves
from evalsuite.calibration.metrics import smooth_reliability_from_top_label, top_label
from evalsuite.report import svg
from evalsuite.stats import bootstrap_ci, count_blocks, softmax
from evalsuite.stats.binning import debiased_l2_from_sums, debiased_squared_ce_from_sums
from evalsuite.stats.smooth_ece import smooth_curve_weighted, smooth_ece, smooth_ece_weighted
from evalsuite.stats.sweep_ece import sweep_ece, sweep_ece_weighted


def _data(rng, n, kind):
    f = rng.beta(5, 1.5, n)
    if kind == "ties":
        f = np.round(f, 1)
    p = {"calibrated": f, "over": f**2, "ties": f}.get(kind, np.ones(n))
    return f, (rng.random(n) < p).astype(np.float64)


def _as_probs(f):
    """Two-column probabilities whose top-label confidence is ``f`` (>= 0.5) and prediction class 1."""
    f = np.maximum(f, 0.5)
    return np.stack([1 - f, f], axis=1)


# ----------------------------------------------------------------------------- smooth ECE
@pytest.mark.parametrize("n", [1, 2, 10, 200, 1000, 10000])
@pytest.mark.parametrize("kind", ["calibrated", "over", "ties", "all_correct"])
def test_smooth_ece_equals_relplot(n, kind):
    rng = np.random.default_rng(n + len(kind))
    f, y = _data(rng, n, kind)
    ref, ref_sigma = relplot.smECE(f, y, return_width=True)
    value, sigma = smooth_ece(f, y)
    assert sigma == ref_sigma  # the same bisection path
    assert value == pytest.approx(ref, rel=1e-12, abs=1e-15)


def test_smooth_ece_replicates_equal_relplot_on_the_resampled_data():
    rng = np.random.default_rng(3)
    f, y = _data(rng, 500, "calibrated")
    w = next(count_blocks(len(f), 40, seed=11))
    values, sigmas = smooth_ece_weighted(f, y, w)
    draws = np.random.default_rng(11)
    for b in range(40):
        idx = draws.integers(0, len(f), size=len(f))  # the same stream as the counts
        ref, ref_sigma = relplot.smECE(f[idx], y[idx], return_width=True)
        assert sigmas[b] == ref_sigma
        assert values[b] == pytest.approx(ref, rel=1e-12, abs=1e-15)


def test_smooth_curve_equals_relplot_kernel_smoother():
    rng = np.random.default_rng(4)
    f, y = _data(rng, 800, "over")
    _, sigma = smooth_ece(f, y)
    t = np.linspace(0, 1, 200)
    ref, _ = ReflectedGaussianKernel(sigma).smooth(f, y, t)
    ours = smooth_curve_weighted(f, y, np.ones((1, len(f))), sigma)[0]
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-13)


def test_smooth_ece_is_zero_only_without_residuals():
    f = np.full(50, 1.0)
    assert smooth_ece(f, np.ones(50))[0] == pytest.approx(0.0, abs=1e-15)
    assert smooth_ece(f, np.zeros(50))[0] == pytest.approx(1.0, rel=1e-3)  # every residual is 1


# ------------------------------------------------------------------------------ sweep ECE
def _sweep_loop(fx, y):
    """Roelofs et al.'s em_ece_sweep as a plain loop (L1; ties ordered errors first)."""
    n = len(fx)
    order = np.lexsort((y, fx))

    def ece_and_monotone(b, bins):
        total, monotone, last = 0.0, True, -np.inf
        for k in range(b):
            cur = bins == k
            if cur.any():
                monotone &= y[cur].mean() >= last
                last = y[cur].mean()
                total += cur.sum() * abs(y[cur].mean() - fx[cur].mean())
        return total / n, monotone

    chosen = np.zeros(n, dtype=int)
    for b in range(2, n):
        bins = np.empty(n, dtype=int)
        bins[order] = (np.arange(n) * b) // n
        if not ece_and_monotone(b, bins)[1]:
            break
        chosen = bins
    b = int(chosen.max()) + 1
    return ece_and_monotone(b, chosen)[0], b


def test_sweep_ece_hand_computed():
    f = np.array([0.2, 0.4, 0.6, 0.8])
    # b = 2: accuracies (.5, .5) monotone; b = 3: (.5, 0, 1) decreases -> 2 bins, |.5-.3| and |.5-.7|
    assert sweep_ece(f, np.array([0.0, 1, 0, 1])) == (pytest.approx(0.2, abs=1e-15), 2)
    # sorted correctness never decreases: every b is monotone -> N - 1 = 3 bins {.2,.4}, {.6}, {.8}
    assert sweep_ece(f, np.array([0.0, 0, 1, 1])) == (pytest.approx((0.6 + 0.4 + 0.2) / 4, abs=1e-15), 3)
    # ties: errors first, and the input order never matters
    g, z = np.array([0.5, 0.5, 0.9, 0.9]), np.array([1.0, 0, 1, 0])
    assert sweep_ece(g, z) == sweep_ece(g[::-1], z[::-1])
    assert sweep_ece(np.array([0.7]), np.array([1.0])) == (pytest.approx(0.3), 1)


@pytest.mark.parametrize("n", [2, 3, 5, 40, 300])
@pytest.mark.parametrize("kind", ["calibrated", "over", "ties", "all_correct"])
def test_sweep_ece_equals_the_definition(n, kind):
    f, y = _data(np.random.default_rng(n * 7 + len(kind)), n, kind)
    value, bins = sweep_ece(f, y)
    ref, ref_bins = _sweep_loop(f, y)
    assert bins == ref_bins
    assert value == pytest.approx(ref, abs=1e-13)


def test_sweep_replicates_equal_the_resampled_data():
    f, y = _data(np.random.default_rng(5), 300, "ties")
    w = next(count_blocks(len(f), 30, seed=2))
    values, bins = sweep_ece_weighted(f, y, w)
    draws = np.random.default_rng(2)
    for b in range(30):
        idx = draws.integers(0, len(f), size=len(f))
        ref, ref_bins = _sweep_loop(f[idx], y[idx])
        assert bins[b] == ref_bins
        assert values[b] == pytest.approx(ref, abs=1e-13)


# --------------------------------------------------------------------------- debiased L2
def test_debiased_l2_hand_computed():
    # bin A: 4 samples at .9, 3 correct: .15^2 - .75 * .25 / 3 = -.04; bin B: .6 and .8, 1 correct:
    # .2^2 - .25 / 1 = -.21; bin C: one sample, adds 0. (4 (-.04) + 2 (-.21)) / 7
    counts, s_conf, s_corr = np.array([4.0, 2, 1]), np.array([3.6, 1.4, 0.5]), np.array([3.0, 1, 1])
    assert debiased_squared_ce_from_sums(counts, s_conf, s_corr) == pytest.approx(-0.58 / 7, abs=1e-15)
    assert debiased_l2_from_sums(counts, s_conf, s_corr) == 0.0
    # one bin of 5 at .5 with 0 correct: .25 - 0 -> sqrt = .5 exactly
    assert debiased_l2_from_sums(np.array([5.0]), np.array([2.5]), np.array([0.0])) == pytest.approx(0.5)
    # the public function on probabilities: 2 equal-mass bins of 4 (conf .6 x4 none correct, .9 x4 with 2)
    probs = _as_probs(np.array([0.6] * 4 + [0.9] * 4))
    labels = np.array([0, 0, 0, 0, 1, 1, 0, 0])
    expected = 0.5 * (0.6 - 0.0) ** 2 + 0.5 * ((0.9 - 0.5) ** 2 - 0.25 / 3)
    assert cal.debiased_l2_ece(probs, labels, n_bins=2) == pytest.approx(np.sqrt(expected), abs=1e-15)


def test_debiased_squared_error_is_unbiased_for_a_calibrated_binned_model():
    rng = np.random.default_rng(8)
    conf = np.repeat([0.55, 0.7, 0.85, 0.95], 25)  # four bins of 25, calibrated: truth 0
    est = []
    for _ in range(4000):
        hit = (rng.random(len(conf)) < conf).astype(float)
        est.append(debiased_squared_ce_from_sums(*(np.bincount(np.repeat(np.arange(4), 25), weights=v) for v in
                                                   (np.ones(len(conf)), conf, hit))))
    assert abs(np.mean(est)) < 4 * np.std(est) / np.sqrt(len(est))  # plug-in would be ~ sum p(1-p)/n / 4 > 0


# ----------------------------------------------------------------------------- the leaves
def test_leaves_equal_bootstrap_ci_of_the_point_functions():
    rng = np.random.default_rng(14)
    z = rng.normal(size=(200, 5)) * 2
    y = rng.integers(0, 5, 200)
    leaves = calibration_leaves(z, y, n_boot=120, seed=5)
    p = softmax(z)
    for name, fn in (("smooth_ece", cal.smooth_ece), ("sweep_ece", cal.sweep_ece),
                     ("debiased_l2_ece", cal.debiased_l2_ece)):
        assert leaves[name]["value"] == pytest.approx(fn(p, y), abs=1e-12), name
        lo, hi = bootstrap_ci(fn, p, y, n_boot=120, seed=5)
        assert leaves[name]["ci"] == pytest.approx([lo, hi], abs=1e-12), name
    tl = top_label(p, y)
    assert leaves["smooth_ece"]["bandwidth"] == smooth_ece(tl.confidence, tl.correct)[1]
    assert leaves["sweep_ece"]["sweep_bins"] == sweep_ece(tl.confidence, tl.correct)[1]
    assert leaves["debiased_l2_ece"]["value"] == pytest.approx(
        np.sqrt(max(leaves["debiased_l2_ece"]["squared_estimate"], 0.0)))


def test_smooth_reliability_band_is_pointwise_percentiles_of_resampled_curves():
    rng = np.random.default_rng(6)
    f, y = _data(rng, 300, "over")
    probs = _as_probs(f)
    labels = (y == 1).astype(int)  # correct where the label is the predicted class 1
    tl = top_label(probs, labels)
    out = smooth_reliability_from_top_label(tl, n_boot=50, seed=9)
    sigma = out["bandwidth"]
    assert out["smooth_ece"] == pytest.approx(cal.smooth_ece(probs, labels))
    draws = np.random.default_rng(9)
    curves = []
    for _ in range(50):
        idx = draws.integers(0, len(f), size=len(f))
        curves.append(ReflectedGaussianKernel(sigma).smooth(tl.confidence[idx], tl.correct[idx], np.array(out["t"]))[0])
    lo, hi = np.quantile(np.array(curves), [0.025, 0.975], axis=0)
    np.testing.assert_allclose(out["lower"], lo, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out["upper"], hi, rtol=1e-9, atol=1e-12)
    chart = str(svg.reliability_diagram([0.5], [0.4], [3], title="t <x>", smooth=out))
    assert "<polyline" in chart and "<polygon" in chart and "&lt;x&gt;" in chart


def test_bias_aware_estimators_are_less_biased_on_a_calibrated_model():
    """Perfect calibration (truth 0) at n = 500: the 15-bin ECE's mean is far above the others'."""
    rng = np.random.default_rng(21)
    means = {"ece": [], "smooth": [], "sweep": [], "debiased": []}
    for _ in range(40):
        f = rng.beta(5, 1.5, 500)
        probs = _as_probs(f)
        hit = rng.random(500) < np.maximum(f, 0.5)
        labels = hit.astype(int)
        means["ece"].append(cal.ece(probs, labels))
        means["smooth"].append(cal.smooth_ece(probs, labels))
        means["sweep"].append(cal.sweep_ece(probs, labels))
        means["debiased"].append(cal.debiased_l2_ece(probs, labels))
    ece = np.mean(means["ece"])
    for name in ("smooth", "sweep", "debiased"):
        assert np.mean(means[name]) < 0.8 * ece, (name, np.mean(means[name]), ece)
