"""The analysis suites' shortcuts for many-class models change no number, bit for bit.

A 1000-class model on a few hundred rows made the slice audit and the calibration bootstrap
the bulk of a standard run (issue 20). Their fast paths are exact rewrites, and each is
checked here against the computation it replaces, with ``np.array_equal`` on the bits (NaN
equal to NaN), not a tolerance:

- the slice bootstrap resamples only the classes some row touches plus one stand-in column
  (:class:`evalsuite.slices.metrics.ClassMap`), against the full-width bootstrap (the same
  seed, both rate-storage modes and both resampling methods);
- macro recall summed in that layout, against the full-width sum;
- the per-class equalized-odds and parity intervals for all classes at once
  (:meth:`PairBand.class_intervals`), against the scalar interval of each class;
- the fairlearn cross-check without per-class MetricFrame columns when the audit has none,
  against the check with them;
- the smooth ECE's bisection settled by bounds computed without grids, against a bisection
  that evaluates every step in full.
"""

from __future__ import annotations

import numpy as np
import pytest

import evalsuite.slices.audit as audit_module
from evalsuite.slices.audit import audit_groups, audit_metrics
from evalsuite.slices.bootstrap import replicates
from evalsuite.slices.intervals import PairBand
from evalsuite.slices.metrics import ClassMap, RowStats, metrics_from_stats
from evalsuite.stats import count_blocks
from evalsuite.stats.smooth_ece import (
    BANDWIDTH_FLOOR,
    SEARCH_STEPS,
    _evaluate,
    _GridSums,
    smooth_ece_weighted,
)


def _case(n: int, c: int, groups: int, seed: int, peaked: bool = True):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, min(c, max(2, n // 3)), n)
    z = rng.normal(size=(n, c)) * (3.0 if peaked else 0.05)
    z[np.arange(n), y] += rng.normal(1.0, 1.0, n) * (3.0 if peaked else 0.1)
    return y, z, rng.integers(0, groups, n)


def _identical(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def _full_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_module.ClassMap, "of", classmethod(lambda cls, rows: None))


def _audit(rows, codes, g, **kw):
    return audit_groups(rows, codes, [f"g{k}" for k in range(g)], class_names=[str(k) for k in range(rows.n_classes)],
                        **kw)


@pytest.mark.parametrize("method, keep", [("rows", True), ("rows", False), ("counts", True)])
def test_compressed_slice_bootstrap_equals_full_width(monkeypatch: pytest.MonkeyPatch, method: str, keep: bool) -> None:
    y, z, codes = _case(n=240, c=400, groups=3, seed=1)
    rows = RowStats.from_logits(y, z)
    cmap = ClassMap.of(rows)
    assert cmap is not None and cmap.width < 300  # the case exercises the compression
    if not keep:  # rates re-drawn in a second pass (their moments kept) instead of stored
        monkeypatch.setattr(audit_module, "RATE_STORE_LIMIT", 0)
    # several chunks of replicates, sized on the model's classes: the draws' order must not change
    monkeypatch.setattr("evalsuite.slices.bootstrap.STATS_ELEMENTS", 200_000)
    kw = {"min_group_size": 30, "n_boot": 150, "seed": 7, "method": method}
    fast = _audit(rows, codes, 3, **kw)
    assert int(fast.eligible.sum()) == 3 and fast.method == method
    with monkeypatch.context() as m:
        _full_width(m)
        slow = _audit(rows, codes, 3, **kw)
    assert set(fast.est) == set(slow.est) and set(fast.ci) == set(slow.ci)
    for key in slow.ci:
        assert _identical(fast.ci[key], slow.ci[key]), key
    for key in slow.est:
        assert _identical(fast.est[key], slow.est[key]), key
    assert audit_metrics(fast) == audit_metrics(slow)


def test_compressed_macro_recall_is_the_full_width_sum() -> None:
    y, z, codes = _case(n=90, c=300, groups=2, seed=2)
    rows = RowStats.from_logits(y, z)
    cmap = ClassMap.of(rows)
    assert cmap is not None and cmap.width < rows.n_classes // 2
    full = next(iter(replicates(rows, codes, 2, 50, 3, "rows")[1]))
    small = next(iter(replicates(cmap.compress(rows), codes, 2, 50, 3, "rows", chunk_classes=rows.n_classes)[1]))
    m_full, m_small = metrics_from_stats(full), metrics_from_stats(small, cmap)
    for name in ("n", "accuracy", "macro_recall", "ece", "nll"):
        assert _identical(m_full[name], m_small[name]), name
    for rate in ("tpr", "fpr", "selection_rate"):  # the stand-in column is every untouched class
        assert _identical(m_full[rate], cmap.expand(m_small[rate])), rate


@pytest.mark.parametrize("groups, classes", [(3, 5), (2, 40), (6, 30)])
def test_class_intervals_equal_the_scalar_interval_of_each_class(groups: int, classes: int) -> None:
    rng = np.random.default_rng(groups * classes)
    values = rng.uniform(0, 1, (groups, classes))
    values[rng.uniform(size=values.shape) < 0.15] = np.nan
    values[:, 0] = np.nan  # a class defined nowhere
    se = rng.uniform(0, 0.1, (groups, classes))
    se[rng.uniform(size=se.shape) < 0.1] = np.inf
    c = rng.uniform(1.5, 3.5, classes)
    c[1] = np.inf
    for pairwise in (True, False):
        band = PairBand(values, se, pairwise=pairwise)
        with np.errstate(invalid="ignore"):  # inf x 0 on purpose, in both computations
            lo, hi = band.class_intervals(c)
            want = np.array([band.interval(float(c[k]), cls=k) for k in range(classes)])
        assert _identical(lo, want[:, 0]) and _identical(hi, want[:, 1]), pairwise
        assert np.signbit(lo[np.isfinite(lo)]).sum() == np.signbit(want[:, 0][np.isfinite(want[:, 0])]).sum()


def test_fairlearn_check_without_per_class_columns_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    import evalsuite.slices.reference as ref

    y, z, codes = _case(n=60, c=25, groups=2, seed=4)  # 25 > CLASS_DETAIL_LIMIT: no per-class detail
    rows = RowStats.from_logits(y, z)
    a = _audit(rows, codes, 2, min_group_size=5, n_boot=0)
    assert "g.tpr" not in a.est
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    names = np.array(["g0", "g1"], dtype=object)[codes]
    fast = ref.compare_with_metricframe(a, y, probs, names)
    real = ref.metric_frame
    monkeypatch.setattr(ref, "metric_frame", lambda *args, per_class=True, **kw: real(*args, per_class=True, **kw))
    assert ref.compare_with_metricframe(a, y, probs, names) == fast
    assert fast["compared"] > 0 and fast["max_abs_diff"] <= 1e-9


def _full_bisection(confidence: np.ndarray, correct: np.ndarray, w: np.ndarray):
    """relplot's search with every step evaluated in full (no bounds): the reference."""
    sums = _GridSums(confidence, confidence - correct, w, {})
    m = w.shape[0]
    every = np.arange(m)
    at_one = 1.0 < _evaluate(sums, np.ones(m), every)
    start, end = np.ones(m), np.zeros(m)
    for _ in range(SEARCH_STEPS):
        mid = (start + end) / 2
        accept = mid < BANDWIDTH_FLOOR
        need = ~accept
        accept[need] = mid[need] < _evaluate(sums, mid[need], every[need])
        end = np.where(accept, mid, end)
        start = np.where(accept, start, mid)
    sigma = np.where(at_one, 1.0, start)
    return _evaluate(sums, sigma, every), sigma


@pytest.mark.parametrize("n, c, peaked", [(8, 1000, False), (300, 50, True)])
def test_smooth_ece_bounds_settle_steps_as_full_evaluation_does(n: int, c: int, peaked: bool) -> None:
    y, z, _ = _case(n=n, c=c, groups=1, seed=n)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    w = next(iter(count_blocks(n, 120, 5)))
    value, sigma = smooth_ece_weighted(conf, correct, w)
    ref_value, ref_sigma = _full_bisection(conf, correct, w)
    assert _identical(sigma, ref_sigma)
    assert _identical(value, ref_value)
