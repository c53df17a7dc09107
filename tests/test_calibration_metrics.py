"""Calibration metrics against netcal 1.4 (ECE, MCE, adaptive ECE, classwise ECE), scikit-learn
(Brier, NLL) and hand-computed cases, plus the vectorised bootstrap against evalsuite.stats.

torchmetrics is not installed in this environment, so the parity checks use netcal and
hand-computed cases only (torchmetrics bins like netcal: ``bucketize(right=True)`` on linspace).

Deliberate differences from netcal, each pinned by a test below:
- netcal decides binary vs multiclass from the labels present: with <= 2 distinct labels it
  measures the calibration of the *positive-class* column (or raises when there are more than
  two columns). evalsuite always measures the top-label confidence; it equals netcal's own
  binary measurement of (top-label confidence, correctness).
- netcal's adaptive (equal-mass) ECE raises on tied confidences (scipy rejects repeated bin
  edges); evalsuite keeps ties together and leaves the repeated bins empty.
- netcal clips probabilities to [eps, 1 - eps]; evalsuite uses them as given (differences of
  order 1e-16, far inside the 1e-6 tolerance).
- Given float32 probabilities, netcal counts samples per bin with float64 edges (numpy's
  histogramdd) but averages them with edges rounded to float32 (scipy's binned_statistic_dd keeps
  the sample's precision), so a sample within float32 rounding of an edge is counted in one bin
  and averaged into another. evalsuite assigns each sample once; the parity tests hand netcal the
  same float32 values cast to float64, and one test pins the inconsistency.
"""

from __future__ import annotations

import numpy as np
import pytest

import evalsuite.calibration as cal
from evalsuite.calibration.bootstrap import (
    calibration_leaves,
    consistency_ece,
    weighted_aurc,
    weighted_bin_sums,
    weighted_classwise,
    weighted_mass_bins,
)
from evalsuite.calibration.metrics import CalibrationInputError, top_label
from evalsuite.stats import (
    count_blocks,
    ece_from_sums,
    edge_bins,
    mass_edges,
    mce_from_sums,
    overconfidence_from_sums,
    softmax,
    width_bins,
)

TOL = 1e-6


def _random_probs(rng: np.random.Generator, n: int, c: int, scale: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    z = rng.normal(size=(n, c)) * scale
    y = rng.integers(0, c, size=n)
    z[np.arange(n), y] += rng.normal(1.0, 1.0, size=n)  # some signal so accuracy is not chance
    return softmax(z), y


def _netcal(kind: str, probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, adaptive: bool = False) -> float:
    """netcal's measure on the same values as float64 (see test_netcal_float32_edge_inconsistency)."""
    from netcal.metrics import ECE, MCE

    cls = ECE if kind == "ece" else MCE
    return float(cls(n_bins, equal_intervals=not adaptive).measure(np.asarray(probs, dtype=np.float64), labels))


def _netcal_top_label(kind: str, probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, adaptive: bool = False) -> float:
    """netcal's binary measurement of (top-label confidence, correctness): the top-label ECE."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.int64)
    return _netcal(kind, conf, correct, n_bins, adaptive)


@pytest.mark.parametrize("seed,n,c", [(0, 1000, 10), (1, 500, 3), (2, 2000, 100), (3, 777, 7)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ece_mce_adaptive_match_netcal_on_random_multiclass(seed, n, c, dtype):
    rng = np.random.default_rng(seed)
    p, y = _random_probs(rng, n, c)
    p = p.astype(dtype)
    assert cal.ece(p, y) == pytest.approx(_netcal("ece", p, y), abs=TOL)
    assert cal.mce(p, y) == pytest.approx(_netcal("mce", p, y), abs=TOL)
    assert cal.adaptive_ece(p, y) == pytest.approx(_netcal("ece", p, y, adaptive=True), abs=TOL)
    for bins in (5, 10, 20):
        assert cal.ece(p, y, n_bins=bins) == pytest.approx(_netcal("ece", p, y, bins), abs=TOL)
        assert cal.adaptive_ece(p, y, n_bins=bins) == pytest.approx(_netcal("ece", p, y, bins, adaptive=True), abs=TOL)


def test_netcal_float32_edge_inconsistency():
    """A float32 confidence one ulp below an interpolated equal-mass edge: netcal(float32) is
    internally inconsistent, netcal(float64 of the same values) and evalsuite agree with the hand value."""
    from netcal.metrics import ECE

    a = np.float32(0.55)
    conf = np.array([0.40, 0.45, a, np.nextafter(a, np.float32(1)), 0.6, 0.65, 0.7, 0.8, 0.9, 0.95], dtype=np.float32)
    rest = (1 - conf) / 2
    p = np.stack([conf, rest, rest], axis=1).astype(np.float32)
    y = np.array([0, 1, 0, 2, 0, 0, 1, 0, 2, 0])  # correct: 1,0,1,0,1,1,0,1,0,1
    # edges [0, a + ulp/4, .625, .775, 1]; bins {.40,.45,a} {a+ulp,.6} {.65,.7} {.8,.9,.95}
    hand = (3 * abs(2 / 3 - (0.40 + 0.45 + 0.55) / 3) + 2 * abs(0.5 - 0.575) + 2 * abs(0.5 - 0.675)
            + 3 * abs(2 / 3 - (0.8 + 0.9 + 0.95) / 3)) / 10
    ours = cal.adaptive_ece(p, y, n_bins=4)
    assert ours == pytest.approx(hand, abs=1e-6)
    assert ours == pytest.approx(float(ECE(4, equal_intervals=False).measure(p.astype(np.float64), y)), abs=1e-12)
    assert abs(float(ECE(4, equal_intervals=False).measure(p, y)) - ours) > 0.01


def test_classwise_ece_matches_netcal_per_class_binary():
    rng = np.random.default_rng(4)
    p, y = _random_probs(rng, 800, 6)
    expected = np.mean([_netcal("ece", p[:, k], (y == k).astype(np.int64)) for k in range(6)])
    assert cal.classwise_ece(p, y) == pytest.approx(expected, abs=TOL)


def test_one_hot_confidences_exactly_one_and_zero():
    """Rows that are exactly one-hot: top confidence 1.0 (top bin, closed), other entries exactly 0."""
    rng = np.random.default_rng(5)
    n, c = 300, 5
    y = rng.integers(0, c, n)
    pred = np.where(rng.random(n) < 0.7, y, (y + 1) % c)
    p = np.eye(c)[pred]
    acc = float(np.mean(pred == y))
    assert cal.ece(p, y) == pytest.approx(1.0 - acc, abs=1e-15)  # one bin [14/15, 1], conf 1
    assert cal.ece(p, y) == pytest.approx(_netcal("ece", p, y), abs=TOL)
    assert cal.mce(p, y) == pytest.approx(_netcal("mce", p, y), abs=TOL)
    expected_cw = np.mean([_netcal("ece", p[:, k], (y == k).astype(np.int64)) for k in range(c)])
    assert cal.classwise_ece(p, y) == pytest.approx(expected_cw, abs=TOL)
    # mixed with soft rows (several populated bins, netcal multiclass path)
    q = np.concatenate([p, _random_probs(rng, 300, c)[0]])
    yy = np.concatenate([y, rng.integers(0, c, 300)])
    assert cal.ece(q, yy) == pytest.approx(_netcal("ece", q, yy), abs=TOL)
    # (adaptive ECE: 300 tied confidences of 1.0 make netcal raise, see test_ties_equal_width_and_adaptive)


def test_confidence_exactly_zero_in_binary_reduction_and_classwise():
    """Per-class probabilities of exactly 0 and 1 go to the first and last bin (classwise ECE)."""
    p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.25, 0.75]])
    y = np.array([0, 0, 1, 2])
    # class 0: p = [1, 0, .5, 0], y0 = [1, 1, 0, 0]: bins {14: (1 vs 1)}, {0: (0,0) vs (1,0)}, {7: .5 vs 0}
    #   -> (|1-1| + |1 - 0| + |0 - .5|) / 4 = 1.5 / 4
    # class 1: p = [0, 1, .5, .25], y1 = [0, 0, 1, 0]: bins 0: 0 vs 0; 14: 1 vs 0; 7: .5 vs 1; 3: .25 vs 0
    #   -> (0 + 1 + .5 + .25) / 4 = 1.75 / 4
    # class 2: p = [0, 0, 0, .75], y2 = [0, 0, 0, 1]: bin 0: 0 vs 0 (3 samples); 11: .75 vs 1 -> .25 / 4
    expected = (1.5 + 1.75 + 0.25) / 4 / 3
    assert cal.classwise_ece(p, y) == pytest.approx(expected, abs=1e-15)
    per_class = [_netcal("ece", p[:, k], (y == k).astype(np.int64)) for k in range(3)]
    assert cal.classwise_ece(p, y) == pytest.approx(np.mean(per_class), abs=TOL)


def test_one_populated_bin_hand_computed():
    # every confidence in [0.6, 0.6667): bin 9 of 15; ECE = |accuracy - mean confidence| = MCE
    conf = np.array([0.61, 0.62, 0.63, 0.64, 0.65, 0.66])
    p = np.stack([conf, 1 - conf], axis=1)
    y = np.array([0, 0, 0, 1, 1, 0])  # 4 of 6 correct (argmax is column 0)
    expected = abs(4 / 6 - conf.mean())
    assert cal.ece(p, y) == pytest.approx(expected, abs=1e-15)
    assert cal.mce(p, y) == pytest.approx(expected, abs=1e-15)
    r = cal.reliability(p, y)
    assert r.counts[9] == 6 and sum(r.counts) == 6
    assert r.accuracy[9] == pytest.approx(4 / 6) and r.confidence[9] == pytest.approx(conf.mean())
    assert all(a is None for i, a in enumerate(r.accuracy) if i != 9)
    assert cal.ece(p, y) == pytest.approx(_netcal_top_label("ece", p, y), abs=TOL)


def test_two_columns_and_two_labels_netcal_measures_positive_class_instead():
    """Documented difference: on 2-column input netcal calibrates p(class 1), we the top label."""
    rng = np.random.default_rng(6)
    p, y = _random_probs(rng, 400, 2)
    ours = cal.ece(p, y)
    assert ours == pytest.approx(_netcal_top_label("ece", p, y), abs=TOL)
    assert _netcal("ece", p, y) == pytest.approx(_netcal("ece", p[:, 1], y), abs=TOL)  # netcal: positive class
    assert abs(ours - _netcal("ece", p, y)) > 1e-3  # a genuinely different quantity


@pytest.mark.parametrize("present", [[3], [1, 4]])
def test_one_or_two_classes_present_where_netcal_multiclass_raises(present):
    rng = np.random.default_rng(7)
    p, _ = _random_probs(rng, 300, 10)
    y = rng.choice(present, size=300)
    with pytest.raises(RuntimeError):  # netcal: "Asserted binary classification problem but retrieved more than 2..."
        _netcal("ece", p, y)
    for kind, fn in (("ece", cal.ece), ("mce", cal.mce)):
        assert fn(p, y) == pytest.approx(_netcal_top_label(kind, p, y), abs=TOL)
    assert cal.adaptive_ece(p, y) == pytest.approx(_netcal_top_label("ece", p, y, adaptive=True), abs=TOL)
    # hand check of the single-class case: accuracy is the share predicting that class
    tl = top_label(p, y)
    bins = width_bins(tl.confidence, 15)
    manual = sum(
        abs(tl.correct[bins == b].sum() - tl.confidence[bins == b].sum()) for b in range(15)
    ) / len(y)
    assert cal.ece(p, y) == pytest.approx(manual, abs=1e-12)


def test_ties_equal_width_and_adaptive():
    conf = np.array([0.5] * 4 + [0.8] * 4)
    p = np.stack([conf, 1 - conf], axis=1)
    y = np.array([0, 1, 1, 1, 0, 0, 0, 1])  # correct: [1,0,0,0] and [1,1,1,0]
    expected = 0.5 * abs(0.25 - 0.5) + 0.5 * abs(0.75 - 0.8)
    assert cal.ece(p, y) == pytest.approx(expected, abs=1e-15)
    assert cal.ece(p, y) == pytest.approx(_netcal_top_label("ece", p, y), abs=TOL)
    # equal-mass edges [0, .5, .65, .8, 1] (np.quantile): the two tie groups stay whole
    assert np.allclose(mass_edges(conf, 4), [0.0, 0.5, 0.65, 0.8, 1.0])
    assert cal.adaptive_ece(p, y, n_bins=4) == pytest.approx(expected, abs=1e-15)
    assert cal.adaptive_ece(p, y, n_bins=4) == pytest.approx(_netcal_top_label("ece", p, y, 4, adaptive=True), abs=TOL)
    # six tied at .5 make two quantile edges coincide: [0, .5, .5, .575, 1]; bin 1 stays empty
    conf = np.array([0.5] * 6 + [0.8] * 2)
    p = np.stack([conf, 1 - conf], axis=1)
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])  # .5 group: 3 of 6 correct; .8 group: 1 of 2
    assert np.allclose(mass_edges(conf, 4), [0.0, 0.5, 0.5, 0.575, 1.0])
    assert cal.adaptive_ece(p, y, n_bins=4) == pytest.approx(2 / 8 * 0.3, abs=1e-15)
    assert cal.reliability(p, y, n_bins=4, strategy="mass").counts == [0, 0, 6, 2]
    with pytest.raises(ValueError):  # netcal (scipy binned_statistic_dd) rejects repeated edges
        _netcal_top_label("ece", p, y, n_bins=4, adaptive=True)
    # ties in random data too: identical rows
    rng = np.random.default_rng(8)
    base, _ = _random_probs(rng, 20, 4)
    q = np.repeat(base, 10, axis=0)
    yy = rng.integers(0, 4, len(q))
    assert cal.ece(q, yy) == pytest.approx(_netcal("ece", q, yy), abs=TOL)
    assert cal.mce(q, yy) == pytest.approx(_netcal("mce", q, yy), abs=TOL)


@pytest.mark.parametrize("n_bins", [10, 15, 20])
def test_values_on_bin_edges_follow_np_histogram_and_netcal(n_bins):
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    vals = []
    for e in edges:
        vals += [e, np.nextafter(e, 0.0), np.nextafter(e, 1.0)]
    vals += [k / n_bins for k in range(n_bins + 1)]
    v = np.clip(np.array(vals), 0.0, 1.0)
    hist_bins = np.minimum(np.searchsorted(edges, v, side="right") - 1, n_bins - 1)
    assert np.array_equal(width_bins(v, n_bins), hist_bins)
    counts, _ = np.histogram(v, bins=edges)
    assert np.array_equal(np.bincount(width_bins(v, n_bins), minlength=n_bins), counts)
    if n_bins == 15:  # the textbook floor(conf * 15) agrees everywhere, even next to the edges
        assert np.array_equal(width_bins(v, 15), np.minimum(np.floor(v * 15), 14).astype(int))
    correct = (np.arange(len(v)) % 3 == 0).astype(np.int64)
    conf = np.clip(v, 1e-12, 1.0)
    ours = float(np.abs(np.bincount(width_bins(conf, n_bins), correct - conf, minlength=n_bins)).sum() / len(v))
    assert ours == pytest.approx(_netcal("ece", conf, correct, n_bins), abs=TOL)


def test_brier_matches_sklearn_convention():
    from sklearn.metrics import brier_score_loss

    rng = np.random.default_rng(9)
    for c in (2, 3, 10):
        p, y = _random_probs(rng, 500, c)
        ours = cal.brier(p, y)
        ref = brier_score_loss(y, p, labels=list(range(c)), scale_by_half=False)
        assert ours == pytest.approx(ref, abs=1e-12)
        if c == 2:  # sklearn's default for binary input halves it (mean squared error of p(class 1))
            assert ours / 2 == pytest.approx(brier_score_loss(y, p[:, 1]), abs=1e-12)
    # hand case: perfect = 0, confidently wrong = 2
    assert cal.brier(np.eye(3), np.arange(3)) == 0.0
    assert cal.brier(np.eye(3), np.array([1, 2, 0])) == pytest.approx(2.0)


def test_nll_matches_sklearn_log_loss_and_logits_path():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(10)
    z = rng.normal(size=(400, 7)) * 2
    y = rng.integers(0, 7, 400)
    p = softmax(z)
    assert cal.nll(p, y) == pytest.approx(log_loss(y, p, labels=list(range(7))), abs=1e-10)
    assert cal.nll_from_logits(z, y) == pytest.approx(cal.nll(p, y), abs=1e-10)
    # extreme logits: the logits path stays exact where probabilities underflow
    zz = np.array([[0.0, 800.0], [800.0, 0.0]])
    assert cal.nll_from_logits(zz, np.array([0, 0])) == pytest.approx(400.0)


def test_overconfidence_share_hand_computed():
    # bin A (conf .95, 2 samples, 1 correct): over-confident by .45 each -> .9 total
    # bin B (conf .55, 2 samples, 2 correct): under-confident by .45 each -> .9 total
    conf = np.array([0.95, 0.95, 0.55, 0.55])
    p = np.stack([conf, 1 - conf], axis=1)
    y = np.array([0, 1, 0, 0])
    assert cal.ece(p, y) == pytest.approx(1.8 / 4)
    assert cal.overconfidence(p, y) == pytest.approx(0.5)
    assert cal.overconfidence(p, np.array([1, 1, 1, 1])) == pytest.approx(1.0)  # all wrong
    assert np.isnan(cal.overconfidence(np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([0, 1])))  # ECE = 0


def test_risk_coverage_and_aurc_hand_computed_with_ties():
    conf = np.array([0.9, 0.8, 0.7])
    p = np.stack([conf, 1 - conf], axis=1)
    y = np.array([0, 1, 0])  # correct, wrong, correct
    rc = cal.risk_coverage(p, y)
    assert np.allclose(rc.coverage, [1 / 3, 2 / 3, 1.0])
    assert np.allclose(rc.risk, [0.0, 0.5, 1 / 3])
    assert rc.aurc == pytest.approx((0 + 0.5 + 1 / 3) / 3)
    optimal = (0 + 0 + 1 / 3) / 3
    assert rc.eaurc == pytest.approx(rc.aurc - optimal)
    # ties: the answer is the average over every order of the tied samples
    conf = np.array([0.9, 0.7, 0.7, 0.7, 0.6])
    p = np.stack([conf, 1 - conf], axis=1)
    y = np.array([0, 1, 0, 1, 0])  # correct, wrong, correct, wrong, correct
    import itertools

    orders = []
    for perm in itertools.permutations([1, 2, 3]):
        order = [0, *perm, 4]
        err = np.cumsum(y[order] != 0)
        orders.append(np.mean(err / np.arange(1, 6)))
    assert cal.aurc(p, y) == pytest.approx(np.mean(orders), abs=1e-12)
    assert cal.aurc(p[::-1], y[::-1]) == pytest.approx(cal.aurc(p, y), abs=1e-15)  # order-free


def test_input_validation():
    p = softmax(np.random.default_rng(0).normal(size=(5, 3)))
    y = np.array([0, 1, 2, 0, 1])
    with pytest.raises(CalibrationInputError, match="not logits"):
        cal.ece(np.log(p), y)
    with pytest.raises(CalibrationInputError, match="sum to 1"):
        cal.ece(p * 0.5, y)
    with pytest.raises(CalibrationInputError, match=r"\[0, 3\)"):
        cal.ece(p, np.array([0, 1, 2, 3, 0]))
    with pytest.raises(CalibrationInputError, match="vector of 5"):
        cal.ece(p, y[:4])
    with pytest.raises(CalibrationInputError, match="n_bins"):
        cal.ece(p, y, n_bins=0)
    with pytest.raises(CalibrationInputError, match="N x C"):
        cal.ece(p[:, 0], y)
    bad = p.copy()
    bad[2, 1] = np.nan
    with pytest.raises(CalibrationInputError, match="NaN"):
        cal.ece(bad, y)
    with pytest.raises(ValueError):  # also a ValueError for callers that expect one
        cal.brier(p, np.array([0.5, 1, 2, 0, 1]))


def test_torch_tensors_equal_numpy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    p, y = _random_probs(rng, 300, 5)
    pt, yt = torch.from_numpy(p.astype(np.float32)), torch.from_numpy(y)
    p32 = p.astype(np.float32)
    for fn in (cal.ece, cal.adaptive_ece, cal.mce, cal.classwise_ece, cal.brier, cal.nll, cal.aurc):
        assert fn(pt, yt) == pytest.approx(fn(p32, y), abs=1e-12)


def test_single_sample():
    p = np.array([[0.7, 0.3]])
    assert cal.ece(p, np.array([0])) == pytest.approx(0.3)
    assert cal.ece(p, np.array([1])) == pytest.approx(0.7)
    assert cal.adaptive_ece(p, np.array([1])) == pytest.approx(0.7)
    assert cal.aurc(p, np.array([1])) == pytest.approx(1.0)


def test_weighted_statistics_reduce_to_point_estimates():
    rng = np.random.default_rng(12)
    p, y = _random_probs(rng, 250, 6)
    tl = top_label(p, y)
    w = np.ones((1, len(y)))
    bins = width_bins(tl.confidence, 15)
    sums = weighted_bin_sums(bins, tl, w, 15)
    assert ece_from_sums(*sums)[0] == pytest.approx(cal.ece(p, y), abs=1e-14)
    assert mce_from_sums(*sums)[0] == pytest.approx(cal.mce(p, y), abs=1e-14)
    assert overconfidence_from_sums(sums[1], sums[2])[0] == pytest.approx(cal.overconfidence(p, y), abs=1e-14)
    mb = weighted_mass_bins(tl.confidence, w, 15)
    assert np.array_equal(mb[0], edge_bins(tl.confidence, mass_edges(tl.confidence, 15)))
    assert weighted_classwise(p, y, w, 15)[0] == pytest.approx(cal.classwise_ece(p, y), abs=1e-14)
    a, ea = weighted_aurc(tl, w)
    assert a[0] == pytest.approx(cal.aurc(p, y), abs=1e-14)
    assert ea[0] == pytest.approx(cal.eaurc(p, y), abs=1e-14)


def test_weighted_counts_equal_explicit_resampling():
    rng = np.random.default_rng(13)
    p, y = _random_probs(rng, 120, 4)
    idx = rng.integers(0, len(y), len(y))
    w = np.bincount(idx, minlength=len(y)).astype(float)[None, :]
    tl = top_label(p, y)
    pr, yr = p[idx], y[idx]
    assert ece_from_sums(*weighted_bin_sums(width_bins(tl.confidence, 15), tl, w, 15))[0] == pytest.approx(cal.ece(pr, yr))
    mb = weighted_mass_bins(tl.confidence, w, 15)
    assert ece_from_sums(*weighted_bin_sums(mb, tl, w, 15))[0] == pytest.approx(cal.adaptive_ece(pr, yr), abs=1e-14)
    assert weighted_aurc(tl, w)[0][0] == pytest.approx(cal.aurc(pr, yr), abs=1e-12)
    assert weighted_classwise(p, y, w, 15)[0] == pytest.approx(cal.classwise_ece(pr, yr), abs=1e-14)


def test_bootstrap_intervals_equal_evalsuite_stats():
    from evalsuite.stats import bootstrap_ci

    rng = np.random.default_rng(14)
    z = rng.normal(size=(200, 5)) * 2
    y = rng.integers(0, 5, 200)
    leaves = calibration_leaves(z, y, n_boot=300, seed=5)
    p = softmax(z)
    for name, fn in (
        ("ece", cal.ece),
        ("adaptive_ece", cal.adaptive_ece),
        ("mce", cal.mce),
        ("classwise_ece", cal.classwise_ece),
        ("brier", cal.brier),
        ("aurc", cal.aurc),
    ):
        assert leaves[name]["value"] == pytest.approx(fn(p, y), abs=1e-12)
        lo, hi = bootstrap_ci(fn, p, y, n_boot=300, seed=5)
        assert leaves[name]["ci"] == pytest.approx([lo, hi], abs=1e-12), name
    assert leaves["nll"]["value"] == pytest.approx(cal.nll_from_logits(z, y))
    assert leaves["ece"]["n"] == 200 and leaves["ece"]["direction"] == "lower"


def test_bootstrap_counts_chunking_is_seed_stable():
    a = np.concatenate(list(count_blocks(50, 37, seed=3, chunk=4)))
    b = np.concatenate(list(count_blocks(50, 37, seed=3)))
    assert np.array_equal(a, b) and a.shape == (37, 50) and np.all(a.sum(axis=1) == 50)


def test_consistency_floor_is_about_binning_noise():
    rng = np.random.default_rng(15)
    p, _ = _random_probs(rng, 400, 5)
    tl0 = top_label(p, np.zeros(400, dtype=int))
    # a perfectly calibrated model: correctness drawn with the stated confidence
    correct = rng.random(400) < tl0.confidence
    y = np.where(correct, tl0.predicted, (tl0.predicted + 1) % 5)
    tl = top_label(p, y)
    floor = consistency_ece(tl, width_bins(tl.confidence, 15), 15, seed=1)
    assert 0.0 < cal.ece(p, y) < floor < 0.2


def test_reliability_and_histogram_data():
    rng = np.random.default_rng(16)
    p, y = _random_probs(rng, 300, 4)
    r = cal.reliability(p, y, n_bins=10)
    assert sum(r.counts) == 300 and len(r.edges) == 11
    assert r.ece == pytest.approx(cal.ece(p, y, n_bins=10))
    rm = cal.reliability(p, y, n_bins=10, strategy="mass")
    assert rm.ece == pytest.approx(cal.adaptive_ece(p, y, n_bins=10))
    counts, edges = cal.confidence_histogram(p, 20)
    assert sum(counts) == 300 and edges[0] == 0.0 and edges[-1] == 1.0
    d = r.to_dict()
    assert set(d) >= {"edges", "counts", "confidence", "accuracy", "ece"}


def test_list_entries_names_the_metrics():
    names = [n for n, _ in cal.list_entries()]
    for required in ("ece", "adaptive_ece", "mce", "classwise_ece", "brier", "nll", "aurc", "overconfidence_share"):
        assert required in names


def test_sliceable_metrics_work_in_fairlearn_metricframe():
    from fairlearn.metrics import MetricFrame

    rng = np.random.default_rng(17)
    p, y = _random_probs(rng, 300, 4)
    groups = rng.choice(["a", "b"], size=300)
    fns = cal.sliceable_metrics()
    mf = MetricFrame(metrics={k: f for k, (f, _) in fns.items()}, y_true=y, y_pred=p, sensitive_features=groups)
    for g in ("a", "b"):
        m = groups == g
        assert mf.by_group.loc[g, "ece"] == pytest.approx(cal.ece(p[m], y[m]))
        assert mf.by_group.loc[g, "brier"] == pytest.approx(cal.brier(p[m], y[m]))
    assert mf.overall["aurc"] == pytest.approx(cal.aurc(p, y))
    assert {d for _, d in fns.values()} <= {"lower", "none"}


@pytest.mark.slow
def test_parity_grid_against_netcal():
    """The full grid: 60 random configurations of size, classes, sharpness, dtype and bins."""
    rng = np.random.default_rng(100)
    for _ in range(60):
        n = int(rng.integers(50, 5000))
        c = int(rng.choice([3, 5, 10, 50, 200]))
        bins = int(rng.choice([5, 10, 15, 20, 30]))
        p, y = _random_probs(rng, n, c, scale=float(rng.uniform(0.3, 6.0)))
        if rng.random() < 0.5:
            p = p.astype(np.float32)
        assert cal.ece(p, y, bins) == pytest.approx(_netcal("ece", p, y, bins), abs=TOL)
        assert cal.mce(p, y, bins) == pytest.approx(_netcal("mce", p, y, bins), abs=TOL)
        assert cal.adaptive_ece(p, y, bins) == pytest.approx(_netcal("ece", p, y, bins, adaptive=True), abs=TOL)


@pytest.mark.gpu
def test_cuda_tensors_match_cpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from evalsuite.calibration.temperature import fit_temperature

    rng = np.random.default_rng(18)
    z = rng.normal(size=(5000, 100)) * 3
    # Labels that agree with the logits 60% of the time: a finite temperature optimum exists
    # (uniform random labels send T to infinity, and nan never compares equal).
    y = np.where(rng.random(5000) < 0.6, z.argmax(1), rng.integers(0, 100, 5000))
    p = softmax(z)
    pc, yc = torch.from_numpy(p).cuda(), torch.from_numpy(y).cuda()
    for fn in (cal.ece, cal.adaptive_ece, cal.mce, cal.classwise_ece, cal.brier, cal.aurc):
        assert fn(pc, yc) == pytest.approx(fn(p, y), abs=1e-9)
    zc = torch.from_numpy(z).float().cuda()
    a = fit_temperature(zc, yc)
    b = fit_temperature(z.astype(np.float32), y)
    assert a.converged and b.converged
    # Same objective, different reduction order on the GPU: equal to float32 rounding.
    assert a.temperature == pytest.approx(b.temperature, rel=1e-5)
