"""Paired statistics (evalsuite.stats.paired) against their references: the exact McNemar test
against statsmodels and scipy, the paired bootstrap against a bootstrap computed by hand from
the same seeded row draws."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from evalsuite.stats import bootstrap_mean_ci, ece_from_sums, percentile_ci, width_bins
from evalsuite.stats.paired import (
    binned_ece,
    mcnemar,
    mcnemar_pvalue,
    paired_bootstrap,
    paired_group_min_replicates,
)

# (fixed, broken): ties, zero discordant, one-sided, large and lopsided tables
TABLES = [(0, 0), (1, 0), (0, 1), (3, 3), (5, 2), (2, 5), (10, 0), (0, 17), (40, 25), (7, 31), (120, 95),
          (500, 430), (1, 1), (1, 2)]


def _pairs(fixed: int, broken: int, both_right: int = 30, both_wrong: int = 7) -> tuple[np.ndarray, np.ndarray]:
    c = np.r_[np.ones(fixed), np.zeros(broken), np.ones(both_right), np.zeros(both_wrong)]
    r = np.r_[np.zeros(fixed), np.ones(broken), np.ones(both_right), np.zeros(both_wrong)]
    return c, r


@pytest.mark.parametrize(("fixed", "broken"), TABLES)
def test_mcnemar_matches_statsmodels_exact(fixed, broken):
    sm = pytest.importorskip("statsmodels.stats.contingency_tables")
    c, r = _pairs(fixed, broken)
    ours = mcnemar(c, r)
    assert (ours.fixed, ours.broken, ours.n) == (fixed, broken, len(c))
    # rows: reference right / wrong; columns: candidate right / wrong
    table = np.array([[30, broken], [fixed, 7]])
    ref = sm.mcnemar(table, exact=True)
    assert ours.pvalue == pytest.approx(float(ref.pvalue), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(("fixed", "broken"), [t for t in TABLES if sum(t) > 0])
def test_mcnemar_matches_scipy_binomtest(fixed, broken):
    assert mcnemar_pvalue(fixed, broken) == pytest.approx(binomtest(fixed, fixed + broken, 0.5).pvalue, rel=1e-12,
                                                          abs=1e-15)


def test_mcnemar_mid_p_by_hand():
    # fixed 2, broken 6 -> k = 2, m = 8: P(X <= 2) = (1 + 8 + 28) / 256, P(X = 2) = 28 / 256
    assert mcnemar_pvalue(2, 6) == pytest.approx(2 * 37 / 256)
    assert mcnemar_pvalue(2, 6, mid_p=True) == pytest.approx(2 * (37 - 14) / 256)
    assert mcnemar_pvalue(4, 4, mid_p=True) <= 1.0
    assert mcnemar_pvalue(0, 0, mid_p=True) == 1.0


def test_mcnemar_identical_models_and_bad_input():
    c = np.array([1, 0, 1, 1, 0])
    res = mcnemar(c, c)
    assert (res.fixed, res.broken, res.pvalue) == (0, 0, 1.0)
    with pytest.raises(ValueError, match="equal length"):
        mcnemar(c, c[:3])
    with pytest.raises(ValueError, match="0/1"):
        mcnemar(np.array([0.5, 1.0]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match=">= 0"):
        mcnemar_pvalue(-1, 3)


def _case(n=200, seed=3):
    g = np.random.default_rng(seed)
    r = (g.random(n) < 0.8).astype(float)
    flip = g.random(n) < 0.1
    c = np.where(flip, 1 - r, r)
    cc = np.clip(g.beta(5, 1.5, n), 0.1, 1.0)
    rc = np.clip(cc + g.normal(0, 0.05, n), 0.1, 1.0)
    return c, r, cc, rc


def test_paired_bootstrap_equals_hand_computed_bootstrap():
    c, r, cc, rc = _case()
    n, n_boot, seed, bins = len(c), 300, 11, 10
    reps = paired_bootstrap(c, r, cc, rc, n_bins=bins, n_boot=n_boot, seed=seed)
    # by hand: replicate b resamples rows idx[b] for BOTH models (the documented draws of the engine)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    acc = np.empty(n_boot)
    ece = np.empty(n_boot)

    def ece_of(conf, corr):
        b = width_bins(conf, bins)
        cnt = np.bincount(b, minlength=bins)
        return ece_from_sums(cnt, np.bincount(b, conf, bins), np.bincount(b, corr, bins))

    for k in range(n_boot):
        i = idx[k]
        acc[k] = c[i].mean() - r[i].mean()
        ece[k] = ece_of(cc[i], c[i]) - ece_of(rc[i], r[i])
    np.testing.assert_allclose(reps.accuracy_diff, acc, rtol=0, atol=1e-12)
    np.testing.assert_allclose(reps.ece_diff, ece, rtol=0, atol=1e-12)
    assert reps.ci("accuracy_diff") == pytest.approx(percentile_ci(acc))
    assert reps.ci("ece_diff") == pytest.approx(percentile_ci(ece))
    # the same draws as the accuracy CIs the clean suite reports with that seed
    cand_only = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    assert np.array_equal(cand_only, idx)
    assert bootstrap_mean_ci(c - r, n_boot=n_boot, seed=seed) == pytest.approx(percentile_ci(acc))


def test_paired_bootstrap_point_ece_matches_netcal_style_binning():
    c, r, cc, rc = _case(n=500, seed=5)
    bins = 15
    b = np.floor(cc * bins).clip(0, bins - 1).astype(int)
    by_hand = sum(abs(c[b == k].sum() - cc[b == k].sum()) for k in range(bins)) / len(c)
    assert binned_ece(cc, c, bins) == pytest.approx(by_hand, abs=1e-12)


def test_paired_interval_is_narrower_than_unpaired():
    c, r, _, _ = _case(n=2000, seed=8)
    lo, hi = paired_bootstrap(c, r, n_boot=500, seed=1).ci("accuracy_diff")
    from evalsuite.stats import binomial_difference_ci

    ulo, uhi = binomial_difference_ci(c, r, n_boot=500, seed=1)
    assert lo <= c.mean() - r.mean() <= hi
    assert (hi - lo) < 0.7 * (uhi - ulo)


def test_identical_models_have_zero_difference():
    c, _, cc, _ = _case()
    reps = paired_bootstrap(c, c, cc, cc, n_boot=100, seed=0)
    assert np.all(reps.accuracy_diff == 0) and np.all(reps.ece_diff == 0)


def test_worst_group_difference_by_hand():
    g = np.random.default_rng(2)
    n = 300
    codes = g.integers(0, 3, n)
    r = (g.random(n) < np.array([0.9, 0.7, 0.8])[codes]).astype(float)
    c = np.where(g.random(n) < 0.1, 1 - r, r)
    eligible = np.array([True, True, False])
    point, reps = paired_group_min_replicates(c, r, codes, eligible, n_boot=50, seed=4)
    accs = lambda y: min(y[codes == k].mean() for k in (0, 1))  # noqa: E731
    assert point == pytest.approx(accs(c) - accs(r))
    idx = np.random.default_rng(4).integers(0, n, size=(50, n))
    by_hand = []
    for i in idx:
        cc, rr, kk = c[i], r[i], codes[i]
        by_hand.append(min(cc[kk == k].mean() for k in (0, 1)) - min(rr[kk == k].mean() for k in (0, 1)))
    np.testing.assert_allclose(reps, by_hand, atol=1e-12)
