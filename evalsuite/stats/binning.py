"""Confidence binning and the binned calibration errors built on it (ECE, MCE, over-confidence).

One definition of "the ECE" serves the calibration suite and the slice audit: equal-width
bins on ``np.linspace(0, 1, n_bins + 1)`` with NumPy histogram semantics (left-closed, the top
bin closed at 1.0), as netcal's ``ECE``. The errors are functions of per-bin sums (count, summed
confidence, summed correctness), so the same formula serves point estimates, bootstrap
replicates (weighted sums) and per-group audits (grouped sums).
"""

from __future__ import annotations

import numpy as np


def edge_bins(confidence: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each confidence for sorted ``edges`` with ``np.histogram`` semantics."""
    n_bins = len(edges) - 1
    b = np.searchsorted(edges, confidence, side="right") - 1
    np.clip(b, 0, n_bins - 1, out=b)
    return b.astype(np.int64, copy=False)


def width_bins(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each confidence: ``np.histogram`` on ``np.linspace(0, 1, n_bins + 1)``.

    This is netcal's binning exactly; for 15 bins it equals ``floor(conf * 15)`` even for floats
    on or next to an edge (tested). For other bin counts a float exactly on an edge can differ
    from ``floor(conf * B)``: with 10 bins the float ``0.3`` is just below ``linspace``'s edge
    ``0.30000000000000004`` and falls in bin 2.
    """
    return edge_bins(np.asarray(confidence, dtype=np.float64), np.linspace(0.0, 1.0, n_bins + 1))


def mass_edges(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-mass bin edges: quantiles at ``b / n_bins``, first edge 0 and last edge 1 (netcal)."""
    edges = np.quantile(np.asarray(confidence, dtype=np.float64), np.linspace(0.0, 1.0, n_bins + 1))
    edges[0] = 0.0
    edges[-1] = 1.0
    return edges


def _scalar_or_array(out: np.ndarray) -> float | np.ndarray:
    return float(out) if out.ndim == 0 else out


def ece_from_sums(counts: np.ndarray, s_conf: np.ndarray, s_corr: np.ndarray) -> float | np.ndarray:
    """ECE from per-bin (count, summed confidence, summed correctness): ``sum |s_corr - s_conf| / n``.

    Bins are the last axis; leading axes (bootstrap replicates, groups) are kept, so one
    formula serves a point estimate (a float) and every replicate at once (an array). NaN
    where there are no rows."""
    total = np.asarray(counts).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(total > 0, np.abs(np.asarray(s_corr) - np.asarray(s_conf)).sum(axis=-1) / total, np.nan)
    return _scalar_or_array(out)


def mce_from_sums(counts: np.ndarray, s_conf: np.ndarray, s_corr: np.ndarray) -> float | np.ndarray:
    """Maximum calibration error: the worst ``|accuracy - confidence|`` over populated bins
    (last axis; NaN without a populated bin)."""
    counts = np.asarray(counts)
    pop = counts > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.where(pop, np.abs(np.asarray(s_corr) - np.asarray(s_conf)) / np.where(pop, counts, 1.0), -np.inf)
    out = np.where(pop.any(axis=-1), dev.max(axis=-1), np.nan)
    return _scalar_or_array(out)


def overconfidence_from_sums(s_conf: np.ndarray, s_corr: np.ndarray) -> float | np.ndarray:
    """Share of the ECE that comes from over-confident bins (confidence above accuracy), over
    the last axis; NaN when the ECE is 0."""
    gap = np.asarray(s_conf) - np.asarray(s_corr)  # > 0: the bin is over-confident
    total = np.abs(gap).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(total > 0, np.clip(gap, 0.0, None).sum(axis=-1) / total, np.nan)
    return _scalar_or_array(out)


def debiased_squared_ce_from_sums(
    counts: np.ndarray, s_conf: np.ndarray, s_corr: np.ndarray
) -> float | np.ndarray:
    """Kumar, Liang & Ma (2019)'s debiased estimate of the squared L2 calibration error of the bins.

    ``sum_b (n_b / N) [(conf_b - acc_b)^2 - acc_b (1 - acc_b) / (n_b - 1)]`` over bins with at
    least two samples (others add 0): the plug-in squared gap minus the unbiased estimate of the
    variance of a bin's accuracy, so for 0/1 correctness its expectation is the squared error of
    the binned model (it can be negative). Bins are the last axis (replicates and groups kept);
    NaN where there are no rows. ``verified_calibration``'s ``unbiased_square_ce``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    s_conf, s_corr = np.asarray(s_conf), np.asarray(s_corr)
    total = counts.sum(axis=-1)
    ok = counts >= 2
    safe = np.where(ok, counts, 2.0)
    acc = s_corr / safe
    gap = (s_conf - s_corr) / safe
    term = np.where(ok, counts * (gap * gap - acc * (1.0 - acc) / (safe - 1.0)), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(total > 0, term.sum(axis=-1) / total, np.nan)
    return _scalar_or_array(out)


def debiased_l2_from_sums(counts: np.ndarray, s_conf: np.ndarray, s_corr: np.ndarray) -> float | np.ndarray:
    """Debiased L2 calibration error: ``sqrt(max(0, debiased squared CE))`` (Kumar et al. 2019's
    ``unbiased_l2_ce``); on the scale of an RMS gap, not of the L1 ECE."""
    sq = np.asarray(debiased_squared_ce_from_sums(counts, s_conf, s_corr))
    return _scalar_or_array(np.sqrt(np.clip(sq, 0.0, None)))
