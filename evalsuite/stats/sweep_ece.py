"""Equal-mass monotonic-sweep ECE (Roelofs et al. 2022), vectorised over bootstrap replicates.

Roelofs, Cain, Shlens & Mozer, "Mitigating bias in calibration error estimation" (AISTATS 2022),
``ECE_sweep``: sort the samples by confidence and split them into ``b`` equal-mass bins (rank
``i`` of ``N`` goes to bin ``floor(i b / N)``, in exact integer arithmetic); take the largest
``b`` for which the bin accuracies are monotone (non-decreasing) for every ``b' <= b``, i.e.
sweep ``b = 2, 3, ...`` and stop before the first ``b`` whose accuracies decrease somewhere
(``b = 1`` when ``N < 3``; at most ``N - 1``, as the reference ``caltrain`` code); report the
ECE (L1 norm, the 15-bin ECE's) of those bins.

Ties: samples with equal confidence are ordered with the incorrect ones first, so a tie never
breaks monotonicity by itself (within a tie the true accuracy is one number; which of its
samples falls on which side of a bin edge is noise) and the value never depends on the input
order. Replicates are resampling counts (``m x n``): a sample drawn ``k`` times occupies ``k``
consecutive ranks, and a bin edge may split those copies, exactly as on the resampled data.
"""

from __future__ import annotations

import numpy as np


def _bin_edges(total: int, b: int) -> np.ndarray:
    """First rank of each of ``b`` equal-mass bins and the end: ``ceil(k N / b)``, ``k = 0..b``."""
    k = np.arange(b + 1, dtype=np.int64)
    return -((-k * total) // b)


class _Sorted:
    """Samples sorted by (confidence, correctness) and every replicate's cumulative sums, flattened."""

    def __init__(self, confidence: np.ndarray, correct: np.ndarray, w: np.ndarray) -> None:
        order = np.lexsort((correct, confidence))
        self.conf, self.corr = confidence[order], correct[order]
        ws = w[:, order]
        self.m, self.n = ws.shape
        cum_w = np.cumsum(ws, axis=1)
        self.total = int(round(cum_w[0, -1]))
        self.offsets = np.arange(self.m, dtype=np.float64) * (cum_w[:, -1].max() + 1.0)
        self.flat_w = (cum_w + self.offsets[:, None]).ravel()  # increasing: one search serves every row
        self.cum_w = cum_w.ravel()
        self.cum_conf = np.cumsum(ws * self.conf, axis=1).ravel()
        self.cum_corr = np.cumsum(ws * self.corr, axis=1).ravel()
        present = ws > 0
        #: replicates whose sorted correctness never decreases are monotone at every b
        self.drops = np.array([np.any(np.diff(self.corr[present[r]]) < 0) for r in range(self.m)], dtype=bool)

    def sums(self, rows: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(summed confidence, summed correctness) per bin (``len(rows) x b``) for rank ``edges``.

        The sum over the first ``r`` copies in sorted order: the samples wholly before rank ``r``
        plus the copies of the sample that holds it.
        """
        ranks = np.broadcast_to(edges.astype(np.float64), (len(rows), len(edges)))
        base = (rows * self.n)[:, None]
        j = np.searchsorted(self.flat_w, (ranks + self.offsets[rows][:, None]).ravel(), side="right")
        j = np.minimum(j.reshape(ranks.shape) - base, self.n - 1)  # rank N: the last sample is whole
        before = base + np.maximum(j - 1, 0)
        has = j > 0
        prev_w = np.where(has, self.cum_w[before], 0.0)
        part = ranks - prev_w
        out = []
        for cum, v in ((self.cum_conf, self.conf), (self.cum_corr, self.corr)):
            out.append(np.diff(np.where(has, cum[before], 0.0) + part * v[j], axis=1))
        return out[0], out[1]


def sweep_bins(confidence: np.ndarray, correct: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The sweep's number of bins for every replicate row of counts ``w`` (``m x n``, rows summing to ``N``)."""
    s = _Sorted(np.asarray(confidence, np.float64), np.asarray(correct, np.float64), np.atleast_2d(w))
    return _sweep_bins(s)


def _sweep_bins(s: _Sorted) -> np.ndarray:
    total = s.total
    if total < 3:
        return np.ones(s.m, dtype=np.int64)
    best = np.full(s.m, total - 1, dtype=np.int64)
    active = np.flatnonzero(s.drops)
    for b in range(2, total):
        if not len(active):
            break
        edges = _bin_edges(total, b)
        _, sy = s.sums(active, edges)
        broken = np.any(np.diff(sy / np.diff(edges)[None, :], axis=1) < 0, axis=1)
        best[active[broken]] = b - 1
        active = active[~broken]
    return best


def sweep_ece_weighted(confidence: np.ndarray, correct: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sweep ECE, number of bins) for every replicate row of counts ``w``."""
    s = _Sorted(np.asarray(confidence, np.float64), np.asarray(correct, np.float64),
                np.atleast_2d(np.asarray(w, np.float64)))
    bins = _sweep_bins(s)
    out = np.empty(len(bins))
    for b in np.unique(bins):
        rows = np.flatnonzero(bins == b)
        sc, sy = s.sums(rows, _bin_edges(s.total, int(b)))
        out[rows] = np.abs(sy - sc).sum(axis=1) / s.total
    return out, bins


def sweep_ece(confidence: np.ndarray, correct: np.ndarray) -> tuple[float, int]:
    """(sweep ECE, number of bins) of top-label confidences and 0/1 correctness."""
    f = np.asarray(confidence, np.float64)
    if f.size == 0:
        return float("nan"), 0
    value, bins = sweep_ece_weighted(f, correct, np.ones((1, f.size)))
    return float(value[0]), int(bins[0])


__all__ = ["sweep_bins", "sweep_ece", "sweep_ece_weighted"]
