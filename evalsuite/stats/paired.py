"""Paired comparison of two models scored on the very same samples: McNemar and a paired bootstrap.

When a candidate and a reference model predict the same inputs, most samples are right (or
wrong) for both, and only the *discordant* pairs carry information about which model is
better. Both tools here use that pairing:

- :func:`mcnemar`: the exact McNemar test, a two-sided binomial test of the discordant counts
  ``fixed`` (reference wrong, candidate right) and ``broken`` (reference right, candidate
  wrong) against Binomial(fixed + broken, 1/2); optionally the mid-p variant. Equal to
  ``statsmodels.stats.contingency_tables.mcnemar(table, exact=True)`` and to
  ``scipy.stats.binomtest(fixed, fixed + broken).pvalue`` (tested).
- :func:`paired_bootstrap`: replicates of the accuracy difference and of the ECE difference
  in which *both* models see the same resampled rows (the count form of
  :func:`evalsuite.stats.bootstrap.count_blocks`, so replicate ``b`` draws the rows that
  :func:`~evalsuite.stats.bootstrap.bootstrap_mean_ci` with the same seed draws). Resampling
  the pairs keeps their correlation: the interval of the difference is far narrower than the
  one of two independently measured accuracies (``docs/compare.md``, the power table).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evalsuite.stats.binning import ece_from_sums, width_bins
from evalsuite.stats.bootstrap import DEFAULT_BOOTSTRAP, count_blocks
from evalsuite.stats.intervals import CI_LEVEL, percentile_ci


@dataclass(frozen=True)
class McNemar:
    """The exact McNemar test of one paired comparison.

    ``fixed``: reference wrong, candidate right; ``broken``: reference right, candidate wrong;
    ``pvalue``: two-sided exact (or mid-p) p-value; ``n``: number of pairs.
    """

    fixed: int
    broken: int
    n: int
    pvalue: float
    mid_p: bool = False


def mcnemar_pvalue(fixed: int, broken: int, mid_p: bool = False) -> float:
    """Two-sided exact McNemar p-value of the discordant counts.

    ``2 * P(X <= min(fixed, broken))`` for X ~ Binomial(fixed + broken, 1/2), capped at 1 (the
    conventional two-sided exact binomial test, which for p = 1/2 is also the likelihood
    ordering scipy's ``binomtest`` uses). ``mid_p`` subtracts half the probability of the
    observed count, ``2 * (P(X <= k) - P(X = k) / 2)``: less conservative, no longer exact. No
    discordant pair: p = 1 (nothing tells the models apart).
    """
    from scipy.stats import binom

    fixed, broken = int(fixed), int(broken)
    if fixed < 0 or broken < 0:
        raise ValueError(f"McNemar counts must be >= 0, got fixed={fixed}, broken={broken}")
    m = fixed + broken
    if m == 0:
        return 1.0
    k = min(fixed, broken)
    p = 2.0 * float(binom.cdf(k, m, 0.5))
    if mid_p:
        p -= float(binom.pmf(k, m, 0.5))
    return float(min(1.0, p))


def mcnemar(candidate_correct: np.ndarray, reference_correct: np.ndarray, mid_p: bool = False) -> McNemar:
    """The exact McNemar test of two models' per-sample correctness on the same samples (0/1 arrays
    of equal length, aligned by sample)."""
    c = _as_bool(candidate_correct, "candidate_correct")
    r = _as_bool(reference_correct, "reference_correct")
    if c.shape != r.shape:
        raise ValueError(f"paired arrays must have equal length, got {c.size} and {r.size}")
    fixed = int(np.sum(c & ~r))
    broken = int(np.sum(~c & r))
    return McNemar(fixed, broken, int(c.size), mcnemar_pvalue(fixed, broken, mid_p), mid_p)


def _as_bool(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a).ravel()
    if a.dtype != bool:
        if a.size and not np.all((a == 0) | (a == 1)):
            raise ValueError(f"{what} must hold 0/1 correctness")
        a = a.astype(bool)
    return a


@dataclass
class PairedReplicates:
    """Bootstrap replicates of candidate-minus-reference differences over the same resampled rows.

    ``accuracy_diff`` and ``ece_diff`` are ``(n_boot,)`` arrays (``ece_diff`` is None when no
    confidences were given); :meth:`ci` gives their percentile intervals.
    """

    accuracy_diff: np.ndarray
    ece_diff: np.ndarray | None

    def ci(self, name: str, level: float = CI_LEVEL) -> tuple[float, float]:
        reps = getattr(self, name)
        if reps is None:
            return (math.nan, math.nan)
        return percentile_ci(reps, level)


def binned_columns(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> np.ndarray:
    """``(n, 3 * n_bins)`` per-row contributions to the ECE's bin sums (count, confidence,
    correctness: equal-width bins, :func:`evalsuite.stats.width_bins`), so a weighted row sum is
    the bin sums of a resample (:func:`evalsuite.stats.ece_from_sums` takes them)."""
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct, dtype=np.float64)
    bins = width_bins(conf, n_bins)
    out = np.zeros((conf.size, 3 * n_bins))
    rows = np.arange(conf.size)
    out[rows, bins] = 1.0
    out[rows, n_bins + bins] = conf
    out[rows, 2 * n_bins + bins] = corr
    return out


def binned_ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """The equal-width-bin ECE (the calibration suite's ``ece``) of one set of predictions."""
    sums = binned_columns(confidence, correct, n_bins).sum(axis=0)
    return float(ece_from_sums(sums[:n_bins], sums[n_bins : 2 * n_bins], sums[2 * n_bins :]))


def paired_bootstrap(
    candidate_correct: np.ndarray,
    reference_correct: np.ndarray,
    candidate_confidence: np.ndarray | None = None,
    reference_confidence: np.ndarray | None = None,
    *,
    n_bins: int = 15,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> PairedReplicates:
    """Replicates of ``accuracy(candidate) - accuracy(reference)`` and, with confidences (the top-1
    probabilities), of ``ECE(candidate) - ECE(reference)``, each replicate resampling the *pairs*:
    row ``i`` drawn ``k`` times counts ``k`` times for both models.

    The draws are :func:`evalsuite.stats.bootstrap.count_blocks` of ``seed``; every statistic is
    a weighted row sum, so a chunk of replicates is one matrix product.
    """
    c = np.asarray(candidate_correct, dtype=np.float64).ravel()
    r = np.asarray(reference_correct, dtype=np.float64).ravel()
    n = c.size
    if r.size != n:
        raise ValueError(f"paired arrays must have equal length, got {n} and {r.size}")
    with_ece = candidate_confidence is not None and reference_confidence is not None
    cols = [(c - r)[:, None]]
    if with_ece:
        cc = np.asarray(candidate_confidence, dtype=np.float64).ravel()
        rc = np.asarray(reference_confidence, dtype=np.float64).ravel()
        if cc.size != n or rc.size != n:
            raise ValueError("confidences must align with the correctness arrays")
        cols += [binned_columns(cc, c, n_bins), binned_columns(rc, r, n_bins)]
    matrix = np.hstack(cols)
    acc = np.full(n_boot, np.nan)
    ece = np.full(n_boot, np.nan) if with_ece else None
    start = 0
    for counts in count_blocks(n, n_boot, seed):
        sums = counts @ matrix
        stop = start + len(counts)
        acc[start:stop] = sums[:, 0] / n
        if ece is not None:
            b = n_bins
            e_c = ece_from_sums(sums[:, 1 : 1 + b], sums[:, 1 + b : 1 + 2 * b], sums[:, 1 + 2 * b : 1 + 3 * b])
            o = 1 + 3 * b
            e_r = ece_from_sums(sums[:, o : o + b], sums[:, o + b : o + 2 * b], sums[:, o + 2 * b : o + 3 * b])
            ece[start:stop] = np.asarray(e_c) - np.asarray(e_r)
        start = stop
    return PairedReplicates(acc, ece)


def paired_group_min_replicates(
    candidate_correct: np.ndarray,
    reference_correct: np.ndarray,
    codes: np.ndarray,
    eligible: np.ndarray,
    *,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> tuple[float, np.ndarray]:
    """Worst-group accuracy difference, ``min_g acc_c(g) - min_g acc_r(g)`` over the ``eligible``
    groups (a boolean per group code), and its paired bootstrap replicates (rows resampled once
    for both models; a group that draws no row is left out of that replicate's minimum)."""
    c = np.asarray(candidate_correct, dtype=np.float64).ravel()
    r = np.asarray(reference_correct, dtype=np.float64).ravel()
    codes = np.asarray(codes, dtype=np.int64).ravel()
    groups = np.flatnonzero(np.asarray(eligible, dtype=bool))
    n = c.size
    if groups.size == 0 or n == 0:
        return math.nan, np.full(n_boot, np.nan)
    ind = (codes[:, None] == groups[None, :]).astype(np.float64)
    matrix = np.hstack([ind, ind * c[:, None], ind * r[:, None]])
    g = groups.size

    def worst(sums: np.ndarray) -> np.ndarray:
        size = sums[..., :g]
        with np.errstate(divide="ignore", invalid="ignore"):
            acc_c = np.where(size > 0, sums[..., g : 2 * g] / size, np.nan)
            acc_r = np.where(size > 0, sums[..., 2 * g :] / size, np.nan)
        ok = (size > 0).any(axis=-1)
        lo_c = np.where(ok, np.nanmin(np.where(np.isnan(acc_c), np.inf, acc_c), axis=-1), np.nan)
        lo_r = np.where(ok, np.nanmin(np.where(np.isnan(acc_r), np.inf, acc_r), axis=-1), np.nan)
        return lo_c - lo_r

    point = float(worst(matrix.sum(axis=0)))
    reps = np.full(n_boot, np.nan)
    start = 0
    for counts in count_blocks(n, n_boot, seed):
        reps[start : start + len(counts)] = worst(counts @ matrix)
        start += len(counts)
    return point, reps
