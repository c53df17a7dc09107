"""Bootstrap CI coverage by simulation: a 95% interval must cover the true value in >= 93% of draws.

Group intervals are checked with many independent draws encoded as groups of one stratified
bootstrap (each group is resampled on its own, so each group's interval is exactly the one a
single-draw audit would give). Disparity intervals need several groups per draw, so those run
one audit per draw on small data. The full grid is behind the ``slow`` marker.
"""

from __future__ import annotations

import numpy as np
import pytest

from evalsuite.slices.audit import audit_groups
from evalsuite.slices.bootstrap import replicates
from evalsuite.slices.intervals import PairBand
from evalsuite.slices.metrics import RowStats, metrics_from_stats, point_stats
from evalsuite.stats import percentiles


def _rows_with_accuracy(rng: np.random.Generator, p: np.ndarray, n_classes: int = 3) -> RowStats:
    """Rows that are correct with probability ``p`` (exactly), with confidences that vary."""
    n = len(p)
    y = rng.integers(0, n_classes, n)
    ok = rng.random(n) < p
    logits = rng.normal(size=(n, n_classes))
    target = np.where(ok, y, (y + 1 + rng.integers(0, n_classes - 1, n)) % n_classes)
    logits[np.arange(n), target] = logits.max(axis=1) + 0.05 + rng.exponential(1.5, n)  # the target wins
    return RowStats.from_logits(y, logits)


def _group_coverage(n_draws: int, n: int, p: float, n_boot: int, method: str, metric: str, truth: float, seed: int,
                    per_audit: int = 25) -> float:
    """Share of independent draws whose group interval (as ``audit_groups`` reports it) covers ``truth``.

    ``per_audit`` draws share one audit as separate groups: the bootstrap is stratified by group,
    so each group's interval depends on its own draw only."""
    rng = np.random.default_rng(seed)
    hits = 0
    for b in range(n_draws // per_audit):
        rows = _rows_with_accuracy(rng, np.full(per_audit * n, p))
        codes = np.repeat(np.arange(per_audit), n)
        a = audit_groups(rows, codes, [str(k) for k in range(per_audit)], n_boot=n_boot, seed=seed * 1000 + b,
                         method=method, min_group_size=1)
        lo, hi = a.ci[f"g.{metric}"]
        hits += int(np.sum((lo <= truth) & (truth <= hi)))
    return hits / (n_draws // per_audit * per_audit)


def _engine_coverage(n_draws: int, n: int, p: float, n_boot: int, method: str, metric: str, truth: float, seed: int) -> float:
    """Coverage of plain percentile intervals straight from the replicate engine (all draws in one pass)."""
    rng = np.random.default_rng(seed)
    rows = _rows_with_accuracy(rng, np.full(n_draws * n, p))
    codes = np.repeat(np.arange(n_draws), n)
    reps = [metrics_from_stats(chunk)[metric] for chunk in replicates(rows, codes, n_draws, n_boot, seed + 1, method)[1]]
    ci = percentiles(np.concatenate(reps, axis=0), 0.95)
    return float(np.mean((ci[0] <= truth) & (truth <= ci[1])))


@pytest.mark.parametrize("method", ["counts", "rows"])
def test_group_accuracy_interval_coverage(method):
    cov = _group_coverage(n_draws=1000, n=200, p=0.8, n_boot=300, method=method, metric="accuracy", truth=0.8, seed=11)
    assert cov >= 0.93, cov


@pytest.mark.slow
def test_engine_percentile_coverage_for_macro_recall():
    big = _rows_with_accuracy(np.random.default_rng(98), np.full(300_000, 0.85))
    truth = float(metrics_from_stats(point_stats(big, np.zeros(len(big), dtype=int), 1))["macro_recall"][0, 0])
    cov = _engine_coverage(n_draws=4000, n=300, p=0.85, n_boot=500, method="counts", metric="macro_recall", truth=truth, seed=4)
    assert cov >= 0.93, cov


@pytest.mark.slow
@pytest.mark.parametrize("n", [150, 400])
def test_group_nll_interval_coverage(n):
    # NLL is strongly skewed (skewness ~3 here): coverage is ~93.5-94.5% at these sizes, so this
    # needs many draws to tell apart from the 93% bar and lives behind the slow marker
    big = _rows_with_accuracy(np.random.default_rng(99), np.full(2_000_000, 0.8))
    truth = float(big.nll.mean())
    cov = _group_coverage(n_draws=6000, n=n, p=0.8, n_boot=500, method="rows", metric="nll", truth=truth, seed=12)
    assert cov >= 0.93, cov


def _disparity_coverage(ps: list[float], n: int, n_draws: int, n_boot: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    g = len(ps)
    codes = np.repeat(np.arange(g), n)
    p = np.repeat(ps, n)
    hits = {"difference": 0, "worst_group": 0, "ratio": 0, "difference_to_overall": 0}
    truth = {"difference": max(ps) - min(ps), "worst_group": min(ps), "ratio": min(ps) / max(ps),
             "difference_to_overall": max(abs(x - np.mean(ps)) for x in ps)}
    for d in range(n_draws):
        rows = _rows_with_accuracy(rng, p)
        a = audit_groups(rows, codes, [str(k) for k in range(g)], n_boot=n_boot, seed=seed * 1000 + d, min_group_size=1)
        for k in hits:
            lo, hi = a.ci[f"s.accuracy.{k}"]
            hits[k] += int(lo - 1e-12 <= truth[k] <= hi + 1e-12)
    return {k: v / n_draws for k, v in hits.items()}


def test_disparity_interval_coverage_when_groups_are_equal():
    # the case a percentile interval of max - min gets wrong: the true gap is 0
    cov = _disparity_coverage([0.8, 0.8, 0.8], n=120, n_draws=250, n_boot=300, seed=5)
    assert min(cov.values()) >= 0.93, cov


def test_disparity_interval_coverage_with_a_real_gap():
    cov = _disparity_coverage([0.9, 0.75], n=150, n_draws=250, n_boot=300, seed=6)
    assert min(cov.values()) >= 0.93, cov


def test_groupwise_band_matches_brute_force():
    rng = np.random.default_rng(3)
    v = rng.random((7, 4))
    v[2, 1] = np.nan
    se = rng.random((7, 4)) * 0.1
    band = PairBand(v, se, pairwise=False)
    c = 2.3
    for cls in (None, 0, 1):
        cols = range(4) if cls is None else [cls]
        lo_bf, hi_bf = -np.inf, -np.inf
        for k in cols:
            for i in range(7):
                for j in range(7):
                    if i == j or np.isnan(v[i, k]) or np.isnan(v[j, k]):
                        continue
                    lo_bf = max(lo_bf, (v[i, k] - c * se[i, k]) - (v[j, k] + c * se[j, k]))
                    hi_bf = max(hi_bf, (v[i, k] + c * se[i, k]) - (v[j, k] - c * se[j, k]))
        lo, hi = band.interval(c, cls)
        assert lo == pytest.approx(max(0.0, lo_bf)) and hi == pytest.approx(hi_bf)


@pytest.mark.slow
@pytest.mark.parametrize("ps", [[0.7, 0.7], [0.95, 0.9, 0.8], [0.6, 0.6, 0.6, 0.6, 0.6, 0.6]])
@pytest.mark.parametrize("n", [40, 300])
def test_disparity_coverage_grid(ps, n):
    cov = _disparity_coverage(ps, n=n, n_draws=1500, n_boot=500, seed=int(n + 100 * len(ps)))
    assert min(cov.values()) >= 0.93, cov


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["accuracy", "macro_recall", "error_rate"])
@pytest.mark.parametrize("n,p", [(60, 0.7), (400, 0.9)])
def test_group_coverage_grid(metric, n, p):
    big = _rows_with_accuracy(np.random.default_rng(7), np.full(400_000, p))
    truth = float(metrics_from_stats(point_stats(big, np.zeros(len(big), dtype=int), 1))[metric][0, 0])
    if metric == "macro_recall":
        cov = _engine_coverage(n_draws=4000, n=n, p=p, n_boot=500, method="counts", metric=metric, truth=truth, seed=n)
    else:
        cov = _group_coverage(n_draws=4000, n=n, p=p, n_boot=500, method="counts", metric=metric, truth=truth, seed=n)
    assert cov >= 0.93, cov


def test_percentile_interval_of_a_gap_would_miss_a_zero_gap():
    # why disparities use max-t intervals: the plain percentile interval of max - min never contains 0
    rng = np.random.default_rng(0)
    hits = 0
    for d in range(40):
        rows = _rows_with_accuracy(rng, np.full(360, 0.8))
        codes = np.repeat([0, 1, 2], 120)
        reps = np.concatenate([metrics_from_stats(c)["accuracy"] for c in replicates(rows, codes, 3, 300, d, "rows")[1]])
        lo, hi = np.quantile(reps.max(axis=1) - reps.min(axis=1), [0.025, 0.975])
        hits += int(lo <= 0.0 <= hi)
    assert hits == 0


# ---------------------------------------------------------------------------------------------
# extreme summaries with small groups (issue #21 item 4): the band is studentized on a pooled
# scale; benchmarks/slices_coverage.py simulates the grid and writes the before/after figures


def test_pooled_se_hand_computed():
    from evalsuite.stats.simultaneous import pooled_se

    # group means of 4 and 16 samples: per-sample variances 0.1^2 * 4 = 0.04 and 0.2^2 * 16 = 0.64,
    # pooled with weights 4 and 16: (0.16 + 10.24) / 20 = 0.52
    got = pooled_se(np.array([0.1, 0.2]), np.array([1 / 4, 1 / 16]))
    np.testing.assert_allclose(got, [np.sqrt(0.52 / 4), np.sqrt(0.52 / 16)], rtol=1e-14)
    # equal sizes: one scale, whatever each estimate's own standard error (a group at 0.95 and one at 0.8)
    own = np.sqrt(np.array([0.95 * 0.05, 0.8 * 0.2]) / 40)
    got = pooled_se(own, np.full(2, 1 / 40))
    assert got[0] == pytest.approx(got[1]) and got[0] == pytest.approx(np.sqrt((0.95 * 0.05 + 0.8 * 0.2) / 2 / 40))
    # a component without a usable factor keeps its own standard error and takes no part
    np.testing.assert_allclose(pooled_se(np.array([0.1, 0.3]), np.array([0.25, 0.0])), [0.1, 0.3])
    # per class (axis=0: pooled over the groups of each column separately), an inf factor left out
    se = np.array([[0.1, 0.2], [0.2, 0.0]])
    f = np.array([[0.25, 0.5], [0.25, np.inf]])
    got = pooled_se(se, f, axis=0)
    np.testing.assert_allclose(got[:, 0], np.sqrt((0.01 + 0.04) / 2))  # equal factors: root mean square
    np.testing.assert_allclose(got[:, 1], [0.2, 0.0])  # one usable group: its own value back


def test_simulation_feeds_the_audits_interval_function():
    """benchmarks/slices_coverage.py calls summary_intervals directly: that is what audit_groups reports."""
    from evalsuite.slices.audit import summary_intervals
    from evalsuite.stats import t_factor

    rng = np.random.default_rng(5)
    g, n = 6, 40
    rows = _rows_with_accuracy(rng, np.full(g * n, 0.8))
    codes = np.repeat(np.arange(g), n)
    a = audit_groups(rows, codes, [str(k) for k in range(g)], n_boot=300, seed=6, method="counts", min_group_size=1)
    _, chunks = replicates(rows, codes, g, 300, 6, "counts")
    reps = np.concatenate([metrics_from_stats(ch)["accuracy"] for ch in chunks], axis=0)
    iv = summary_intervals(reps, reps.mean(axis=1), a.est["g.accuracy"], float(a.est["o.accuracy"]), np.ones(g, bool),
                           "higher", 0.95, t_factor(n, 0.95), sizes=np.full(g, n))
    for k, (lo, hi) in iv.items():
        np.testing.assert_allclose(a.ci[f"s.accuracy.{k}"], np.clip([lo, hi], 0.0, 1.0), rtol=0, atol=1e-12, err_msg=k)


def test_group_accuracy_replicates_are_binomial():
    """The simulation draws replicates of a group accuracy as Binomial(n, p_hat) / n: the law the
    audit's row bootstrap gives them (chi-square goodness of fit on 20,000 replicates)."""
    from scipy.stats import binom, chisquare

    rng = np.random.default_rng(8)
    n = 40
    rows = _rows_with_accuracy(rng, np.full(n, 0.8))
    k_hat = int(rows.correct.sum())
    _, chunks = replicates(rows, np.zeros(n, dtype=int), 1, 20_000, 9, "rows")
    k = np.rint(np.concatenate([metrics_from_stats(ch)["accuracy"] for ch in chunks])[:, 0] * n).astype(int)
    observed = np.bincount(k, minlength=n + 1)
    expected = binom.pmf(np.arange(n + 1), n, k_hat / n) * len(k)
    keep = expected >= 5  # pool the sparse tails
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    assert chisquare(obs, exp * obs.sum() / exp.sum()).pvalue > 1e-3


# Six groups of 40 at p = 0.8 with no true gap: the case. With their own standard errors
# the best group's interval covered 84.0% (2,000 draws, benchmarks/results/slices-coverage-own-se.md;
# 83.6% in this 500-draw cell), with the pooled scale every summary covers >= 96.4% here. At 500
# draws the Monte-Carlo standard error is 0.83 points at 96.4% and 1.66 at 83.6%, so the 93% bar
# sits 4.1 s.e. below the pooled figure and the 90% bar 3.9 s.e. above the old one: either
# assertion failing means the construction changed, not bad luck.
FAST_CELL = dict(ps=[0.8] * 6, n=40, draws=500, n_boot=400, seed=21)


def test_extreme_summaries_cover_with_six_small_groups():
    from benchmarks.slices_coverage import coverage

    cov = {k: v["coverage"] for k, v in coverage(**FAST_CELL).items()}
    assert min(cov.values()) >= 0.93, cov


def test_own_standard_errors_under_cover_the_best_group(monkeypatch):
    import evalsuite.slices.audit as audit_mod
    from benchmarks.slices_coverage import coverage

    monkeypatch.setattr(audit_mod, "pooled_se", lambda se, factor, axis=None: se)  # the construction before the fix
    res = coverage(**FAST_CELL)
    assert res["best_group"]["coverage"] < 0.90, res["best_group"]
    assert res["best_group"]["truth_below"] > 0.08  # the truth falls below the lower bound, as reported


@pytest.mark.slow
@pytest.mark.parametrize("p", [0.5, 0.8, 0.9])
@pytest.mark.parametrize("n", [40, 200])
@pytest.mark.parametrize("groups", [2, 6])
def test_extreme_summary_coverage_grid(groups, n, p):
    # 2,000 draws: Monte-Carlo standard error 0.49 points at 95% coverage (0.57 at 93%)
    from benchmarks.slices_coverage import cell_seed, coverage

    res = coverage([p] * groups, n, draws=2000, n_boot=1000, seed=cell_seed(groups, n, p))
    cov = {k: v["coverage"] for k, v in res.items()}
    assert min(cov.values()) >= 0.93, cov


@pytest.mark.slow
@pytest.mark.parametrize("n_classes", [2, 3])
def test_parity_coverage_with_six_small_groups(n_classes):
    # full audits, 1,000 draws: Monte-Carlo standard error 0.69 points at 95%. With each rate's own
    # standard error (before) parity covered 92.2% with 3 classes (500 draws, `--parity --own-se`)
    from benchmarks.slices_coverage import parity_coverage

    res = parity_coverage(6, 40, 0.8, n_classes, draws=1000, n_boot=500, seed=30 + n_classes)
    assert min(v["coverage"] for v in res.values()) >= 0.93, res
