"""Calibration metrics: the ECE family, Brier, NLL, overconfidence and selective prediction.

Every function takes ``probs`` (``N x C`` probabilities, rows summing to 1; NumPy array or torch
tensor, CPU or CUDA) and ``labels`` (``N`` integer class indices) and returns a float (or a small
dataclass). Conventions, chosen to match the reference libraries and stated once here:

- **Top-label confidence** is ``max_k p_k``; a prediction is correct when ``argmax_k p_k`` equals
  the label (NumPy's argmax: the first maximum wins a tie).
- **Equal-width bins** (``ece``, ``mce``, ``overconfidence``, ``reliability``): sample ``i`` goes
  to bin ``floor(conf_i * n_bins)``, the top bin closed at 1.0, so bins are ``[b/B, (b+1)/B)``
  and the last is ``[(B-1)/B, 1]``; computed as ``np.histogram`` does on
  ``np.linspace(0, 1, B + 1)`` edges, which is netcal's binning bit for bit (see
  :func:`evalsuite.stats.width_bins` for the floats on an edge). torchmetrics bins the same way
  (``torch.bucketize(right=True)``). Guo et al. (2017) write the bins right-closed; only
  confidences exactly on an edge differ.
- **ECE** ``= sum_b (n_b / N) |acc_b - conf_b|`` over populated bins; **MCE** is the largest
  ``|acc_b - conf_b|`` over populated bins (empty bins never count).
- **Adaptive ECE** (equal-mass bins): netcal's ``ECE(equal_intervals=False)`` definition, edges at
  the ``np.quantile`` (linear interpolation) of the confidences at ``b/B``, first edge 0, last 1,
  ``np.histogram`` semantics (left-closed, last closed). Tied confidences never split across
  bins (duplicate edges leave empty bins), where netcal raises.
- **Smooth ECE** (Błasiok & Nakkiran 2023): kernel-smoothed residuals with the automatic
  bandwidth (the fixed point ``sigma = smECE_sigma``), relplot's discretisation
  (:mod:`evalsuite.stats.smooth_ece`); **sweep ECE** (Roelofs et al. 2022): the ECE over the
  largest number of equal-mass bins whose accuracies stay monotone
  (:mod:`evalsuite.stats.sweep_ece`); **debiased L2 ECE** (Kumar et al. 2019):
  ``sqrt(max(0, sum_b (n_b/N) [(conf_b - acc_b)^2 - acc_b (1 - acc_b) / (n_b - 1)]))`` over the
  adaptive ECE's equal-mass bins (an RMS gap, not on the L1 ECE's scale). All three measure the
  top label, as the ECE.
- **Classwise ECE** (Kull et al. 2019): for every class ``k`` the equal-width ECE of ``p_k``
  against ``1[y = k]``, averaged over all ``C`` columns.
- **Brier** ``= mean_i sum_k (p_ik - 1[y_i = k])^2`` (Brier 1950; range [0, 2]). scikit-learn's
  ``brier_score_loss`` gives the same for multiclass input and half of it for binary input by
  default (``scale_by_half='auto'``); ``scale_by_half=False`` always matches.
- **NLL** ``= mean_i -log p_{i, y_i}`` with ``p`` clipped to ``[eps, 1 - eps]`` (float64 eps) as
  ``sklearn.metrics.log_loss`` does; :func:`nll_from_logits` is exact (log-sum-exp, no clipping).
- **Overconfidence share**: the part of the ECE contributed by bins whose mean confidence
  exceeds their accuracy, as a fraction of the ECE (0 = all miscalibration is under-confidence,
  1 = all of it is over-confidence; undefined (NaN) when ECE is 0).
- **Risk-coverage / AURC** (Geifman et al. 2018): sort by confidence, most confident first;
  the selective risk at coverage ``k/N`` is the error rate of the ``k`` most confident samples;
  ``AURC = (1/N) sum_k risk(k)``. Tied confidences are ordered at random in expectation (the
  errors of a tie group spread evenly over its positions), so the result never depends on the
  input order. E-AURC subtracts the AURC of a perfect ranking (all errors last).

Validation: labels must be integers in ``[0, C)``; top-label confidences must be finite and in
``[0, 1]`` (a logit matrix fails this check); on up to 1,000 evenly spaced rows the entries must be
non-negative and sum to 1 within 1e-3. Bad input raises :class:`CalibrationInputError` (a
:class:`~evalsuite.errors.DataError` and a ``ValueError``).

Speed: the top-label metrics read the ``N x C`` matrix once (``argmax`` then a gather, no sort);
everything after works on ``N``-vectors with ``np.bincount``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalsuite.errors import DataError
from evalsuite.stats import (
    ece_from_sums,
    edge_bins,
    mass_edges,
    mce_from_sums,
    overconfidence_from_sums,
    to_numpy,
    width_bins,
)
from evalsuite.stats import per_sample_nll as _logit_nll
from evalsuite.stats.binning import debiased_l2_from_sums
from evalsuite.stats.smooth_ece import smooth_curve_weighted, smooth_ece_weighted
from evalsuite.stats.sweep_ece import sweep_ece_weighted

DEFAULT_BINS = 15
_CHECK_ROWS = 1000
_CHUNK_ELEMENTS = 1 << 22


class CalibrationInputError(DataError, ValueError):
    """Probabilities or labels a calibration metric cannot measure."""


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def check_n_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or int(n_bins) < 1:
        raise CalibrationInputError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


def check_labels(labels: Any, n: int, n_classes: int) -> np.ndarray:
    y = to_numpy(labels)
    if y.ndim != 1 or len(y) != n:
        raise CalibrationInputError(f"labels must be a vector of {n} class indices, got shape {tuple(y.shape)}")
    if n and not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise CalibrationInputError(f"labels must be integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise CalibrationInputError(
            f"labels must lie in [0, {n_classes}) for {n_classes} probability columns; "
            f"got values in [{int(y.min())}, {int(y.max())}]"
        )
    return y


def check_matrix(probs: Any, name: str = "probs") -> tuple[int, int]:
    shape = tuple(probs.shape)
    if len(shape) != 2:
        raise CalibrationInputError(f"{name} must be an N x C matrix (C >= 2 columns), got shape {shape}")
    if shape[1] < 2:
        raise CalibrationInputError(
            f"{name} needs one column per class (C >= 2); for a binary model pass [1 - p, p], got shape {shape}"
        )
    if shape[0] == 0:
        raise CalibrationInputError(f"{name} is empty: no samples to measure")
    return int(shape[0]), int(shape[1])


def _check_rows(probs: np.ndarray) -> None:
    """Rows must be probability vectors: checked on up to 1,000 evenly spaced rows."""
    n = probs.shape[0]
    rows = np.unique(np.linspace(0, n - 1, num=min(n, _CHECK_ROWS)).astype(np.int64))
    sub = np.asarray(probs[rows], dtype=np.float64)
    if not np.all(np.isfinite(sub)):
        raise CalibrationInputError("probs contain NaN or infinite values")
    if sub.min() < -1e-6:
        raise CalibrationInputError(
            f"probs contain negative entries (min {sub.min():.3g}): pass softmax probabilities, not logits"
        )
    sums = sub.sum(axis=1)
    if np.any(np.abs(sums - 1.0) > 1e-3):
        raise CalibrationInputError(
            f"probs rows must sum to 1 (found sums in [{sums.min():.4g}, {sums.max():.4g}]): "
            "pass softmax probabilities, not logits or per-class sigmoid scores"
        )


@dataclass(frozen=True)
class TopLabel:
    """Per-sample top-label facts: confidence (float64), predicted class, correctness (0/1)."""

    confidence: np.ndarray
    predicted: np.ndarray
    correct: np.ndarray

    def __len__(self) -> int:
        return len(self.confidence)


def top_label(probs: Any, labels: Any) -> TopLabel:
    """Confidence, prediction and correctness of every row, reading ``probs`` once.

    CUDA tensors are reduced on their device; everything else goes through NumPy's ``argmax``
    and a gather (a torch CPU tensor is viewed as NumPy without a copy).
    """
    n, c = check_matrix(probs)
    if _is_torch(probs) and probs.device.type != "cpu":
        conf_t, pred_t = probs.max(dim=1)
        conf = conf_t.double().cpu().numpy()
        pred = pred_t.cpu().numpy().astype(np.int64)
        rows = probs[:: max(1, n // _CHECK_ROWS)][:_CHECK_ROWS].double().cpu().numpy()
        check_src = rows
    else:
        p = to_numpy(probs)
        pred = np.argmax(p, axis=1)
        conf = p[np.arange(n), pred].astype(np.float64)
        check_src = p
    if not np.all(np.isfinite(conf)):
        raise CalibrationInputError("probs contain NaN or infinite values")
    lo, hi = float(conf.min()), float(conf.max())
    if lo < 0.0 or hi > 1.0 + 1e-6:
        raise CalibrationInputError(
            f"top-label confidences must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]: pass softmax probabilities, not logits"
        )
    _check_rows(check_src)
    y = check_labels(labels, n, c)
    np.clip(conf, 0.0, 1.0, out=conf)
    return TopLabel(conf, pred, (pred == y).astype(np.float64))


def _probs_matrix(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Full-matrix metrics (classwise ECE, Brier, NLL) need every entry: validated NumPy + labels."""
    n, c = check_matrix(probs)
    p = to_numpy(probs)
    _check_rows(p)
    return p, check_labels(labels, n, c)


# --------------------------------------------------------------------------------------------
# Binning
# --------------------------------------------------------------------------------------------


def bin_sums(bins: np.ndarray, tl: TopLabel, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, sum of confidence, sum of correct) per bin."""
    counts = np.bincount(bins, minlength=n_bins).astype(np.float64)
    s_conf = np.bincount(bins, weights=tl.confidence, minlength=n_bins)
    s_corr = np.bincount(bins, weights=tl.correct, minlength=n_bins)
    return counts, s_conf, s_corr


# --------------------------------------------------------------------------------------------
# Public metrics
# --------------------------------------------------------------------------------------------


def ece(probs: Any, labels: Any, n_bins: int = DEFAULT_BINS) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins (lower is better, 0 is perfect)."""
    n_bins = check_n_bins(n_bins)
    tl = top_label(probs, labels)
    return ece_from_sums(*bin_sums(width_bins(tl.confidence, n_bins), tl, n_bins))


def adaptive_ece(probs: Any, labels: Any, n_bins: int = DEFAULT_BINS) -> float:
    """ECE with ``n_bins`` equal-mass bins (netcal ``ECE(equal_intervals=False)`` binning)."""
    n_bins = check_n_bins(n_bins)
    tl = top_label(probs, labels)
    bins = edge_bins(tl.confidence, mass_edges(tl.confidence, n_bins))
    return ece_from_sums(*bin_sums(bins, tl, n_bins))


def smooth_ece(probs: Any, labels: Any) -> float:
    """Smooth ECE with its automatic bandwidth (Błasiok & Nakkiran 2023; relplot ``smECE`` of the top label)."""
    tl = top_label(probs, labels)
    return float(smooth_ece_weighted(tl.confidence, tl.correct, np.ones((1, len(tl))))[0][0])


def sweep_ece(probs: Any, labels: Any) -> float:
    """Equal-mass monotonic-sweep ECE (Roelofs et al. 2022): the ECE over the most equal-mass bins
    whose accuracies stay monotone."""
    tl = top_label(probs, labels)
    return float(sweep_ece_weighted(tl.confidence, tl.correct, np.ones((1, len(tl))))[0][0])


def debiased_l2_ece(probs: Any, labels: Any, n_bins: int = DEFAULT_BINS) -> float:
    """Kumar et al. (2019)'s debiased L2 calibration error over ``n_bins`` equal-mass bins (an RMS gap)."""
    n_bins = check_n_bins(n_bins)
    tl = top_label(probs, labels)
    bins = edge_bins(tl.confidence, mass_edges(tl.confidence, n_bins))
    return float(debiased_l2_from_sums(*bin_sums(bins, tl, n_bins)))


def mce(probs: Any, labels: Any, n_bins: int = DEFAULT_BINS) -> float:
    """Maximum calibration error: the worst ``|accuracy - confidence|`` over populated equal-width bins."""
    n_bins = check_n_bins(n_bins)
    tl = top_label(probs, labels)
    return mce_from_sums(*bin_sums(width_bins(tl.confidence, n_bins), tl, n_bins))


def overconfidence(probs: Any, labels: Any, n_bins: int = DEFAULT_BINS) -> float:
    """Share of the ECE that comes from over-confident bins (confidence above accuracy); NaN when ECE is 0."""
    n_bins = check_n_bins(n_bins)
    tl = top_label(probs, labels)
    _, s_conf, s_corr = bin_sums(width_bins(tl.confidence, n_bins), tl, n_bins)
    return overconfidence_from_sums(s_conf, s_corr)


def classwise_gaps(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> np.ndarray:
    """``C x n_bins`` matrix of per-(class, bin) sums of ``1[y = k] - p_k`` (validated inputs)."""
    n, c = probs.shape
    gaps = np.zeros(c * n_bins, dtype=np.float64)
    offsets = (np.arange(c, dtype=np.int64) * n_bins)[None, :]
    rows = max(1, _CHUNK_ELEMENTS // c)
    for start in range(0, n, rows):
        blk = np.asarray(probs[start : start + rows], dtype=np.float64)
        flat = width_bins(blk, n_bins) + offsets
        gaps -= np.bincount(flat.ravel(), weights=blk.ravel(), minlength=c * n_bins)
        y = labels[start : start + rows]
        gaps += np.bincount(flat[np.arange(len(blk)), y], minlength=c * n_bins)
    return gaps.reshape(c, n_bins)


def classwise_ece(probs: Any, labels: Any, n_bins: int = DEFAULT_BINS) -> float:
    """Classwise ECE: mean over all ``C`` classes of the equal-width ECE of ``p_k`` vs ``1[y = k]``."""
    n_bins = check_n_bins(n_bins)
    p, y = _probs_matrix(probs, labels)
    gaps = classwise_gaps(p, y, n_bins)
    return float(np.abs(gaps).sum(axis=1).mean() / len(y))


def per_sample_brier(probs: Any, labels: Any) -> np.ndarray:
    """``sum_k (p_ik - 1[y_i = k])^2`` for every sample (float64)."""
    p, y = _probs_matrix(probs, labels)
    n, c = p.shape
    out = np.empty(n, dtype=np.float64)
    rows = max(1, _CHUNK_ELEMENTS // c)
    for start in range(0, n, rows):
        blk = np.asarray(p[start : start + rows], dtype=np.float64)
        yy = y[start : start + rows]
        py = blk[np.arange(len(blk)), yy]
        out[start : start + rows] = np.einsum("ij,ij->i", blk, blk) - 2.0 * py + 1.0
    np.clip(out, 0.0, None, out=out)
    return out


def brier(probs: Any, labels: Any) -> float:
    """Multiclass Brier score: mean over samples of the squared error summed over classes (range [0, 2])."""
    return float(per_sample_brier(probs, labels).mean())


def per_sample_nll(probs: Any, labels: Any) -> np.ndarray:
    """``-log p_{i, y_i}`` with ``p`` clipped to ``[eps, 1 - eps]`` (float64 eps), as scikit-learn."""
    p, y = _probs_matrix(probs, labels)
    eps = np.finfo(np.float64).eps
    py = np.asarray(p[np.arange(len(y)), y], dtype=np.float64)
    return -np.log(np.clip(py, eps, 1.0 - eps))


def nll(probs: Any, labels: Any) -> float:
    """Mean negative log-likelihood of the true class (natural log; lower is better)."""
    return float(per_sample_nll(probs, labels).mean())


def per_sample_nll_from_logits(logits: Any, labels: Any) -> np.ndarray:
    """Exact ``-log softmax(z)_{y}`` per sample in float64 (log-sum-exp, no clipping)."""
    z = to_numpy(logits)
    n, c = check_matrix(z, "logits")
    y = check_labels(labels, n, c)
    out = _logit_nll(z, y)
    if not np.all(np.isfinite(out)):
        raise CalibrationInputError("logits contain NaN or infinite values")
    return out


def nll_from_logits(logits: Any, labels: Any) -> float:
    """Mean NLL computed from logits (exact; prefer it when logits are at hand)."""
    return float(per_sample_nll_from_logits(logits, labels).mean())


# --------------------------------------------------------------------------------------------
# Reliability data and selective prediction
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reliability:
    """Per-bin data of a reliability diagram (``None`` for empty bins)."""

    edges: list[float]
    counts: list[int]
    confidence: list[float | None]
    accuracy: list[float | None]
    ece: float
    mce: float
    overconfidence: float

    def to_dict(self) -> dict[str, Any]:
        def clean(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "edges": self.edges,
            "counts": self.counts,
            "confidence": self.confidence,
            "accuracy": self.accuracy,
            "ece": clean(self.ece),
            "mce": clean(self.mce),
            "overconfidence": clean(self.overconfidence),
        }


def reliability_from_top_label(tl: TopLabel, n_bins: int = DEFAULT_BINS, strategy: str = "width") -> Reliability:
    """Reliability data from precomputed :class:`TopLabel` facts (``strategy``: width | mass)."""
    n_bins = check_n_bins(n_bins)
    if strategy == "width":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        bins = width_bins(tl.confidence, n_bins)
    elif strategy == "mass":
        edges = mass_edges(tl.confidence, n_bins)
        bins = edge_bins(tl.confidence, edges)
    else:
        raise CalibrationInputError(f"strategy must be 'width' or 'mass', got {strategy!r}")
    counts, s_conf, s_corr = bin_sums(bins, tl, n_bins)
    pop = counts > 0
    conf = [float(s_conf[b] / counts[b]) if pop[b] else None for b in range(n_bins)]
    acc = [float(s_corr[b] / counts[b]) if pop[b] else None for b in range(n_bins)]
    return Reliability(
        edges=[float(e) for e in edges],
        counts=[int(c) for c in counts],
        confidence=conf,
        accuracy=acc,
        ece=ece_from_sums(counts, s_conf, s_corr),
        mce=mce_from_sums(counts, s_conf, s_corr),
        overconfidence=overconfidence_from_sums(s_conf, s_corr),
    )


def smooth_reliability_from_top_label(tl: TopLabel, *, n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """The smoothed reliability curve at the smooth ECE's bandwidth with a 95% pointwise bootstrap band.

    ``{"t", "accuracy", "lower", "upper", "bandwidth", "smooth_ece", "n_boot"}`` on relplot's
    200-point mesh: the kernel-smoothed accuracy ``E[correct | confidence = t]`` (relplot's
    ``KernelSmoother``), and the 2.5% / 97.5% quantiles at each ``t`` over ``n_boot`` resamples
    smoothed at the same bandwidth (as relplot's band; its main line is the mean of the
    resampled curves, here it is the curve of the data as given). ``lower``/``upper`` are ``None``
    when ``n_boot`` is 0.
    """
    from evalsuite.stats import count_blocks

    n = len(tl)
    values, sigma = smooth_ece_weighted(tl.confidence, tl.correct, np.ones((1, n)))
    bandwidth = float(sigma[0])
    curve = smooth_curve_weighted(tl.confidence, tl.correct, np.ones((1, n)), bandwidth)[0]
    reps = [smooth_curve_weighted(tl.confidence, tl.correct, w, bandwidth) for w in count_blocks(n, n_boot, seed)]
    lower = upper = None
    if reps:
        lo, hi = np.quantile(np.concatenate(reps), [0.025, 0.975], axis=0)
        lower, upper = [float(v) for v in lo], [float(v) for v in hi]
    t = np.linspace(0.0, 1.0, len(curve))
    return {
        "t": [float(v) for v in t],
        "accuracy": [float(v) for v in curve],
        "lower": lower,
        "upper": upper,
        "bandwidth": bandwidth,
        "smooth_ece": float(values[0]),
        "n_boot": int(n_boot),
    }


def reliability(probs: Any, labels: Any, n_bins: int = DEFAULT_BINS, strategy: str = "width") -> Reliability:
    """Per-bin mean confidence, accuracy and count for a reliability diagram."""
    return reliability_from_top_label(top_label(probs, labels), n_bins, strategy)


def confidence_histogram(probs: Any, n_bins: int = 20) -> tuple[list[int], list[float]]:
    """(counts, edges) of the top-label confidence over ``n_bins`` equal-width bins on [0, 1]."""
    n_bins = check_n_bins(n_bins)
    n, _ = check_matrix(probs)
    tl = top_label(probs, np.zeros(n, dtype=np.int64))
    counts = np.bincount(width_bins(tl.confidence, n_bins), minlength=n_bins)
    return [int(c) for c in counts], [float(e) for e in np.linspace(0.0, 1.0, n_bins + 1)]


@dataclass(frozen=True)
class TieGroups:
    """Samples sorted by confidence (descending) and grouped into runs of equal confidence."""

    order: np.ndarray  # sample positions, most confident first (stable)
    starts: np.ndarray  # first sorted position of each group
    confidence: np.ndarray  # confidence of each group


def tie_groups(confidence: np.ndarray) -> TieGroups:
    """Sort confidences once (O(N log N) on N values, never on N x C) and find tie runs."""
    conf = np.asarray(confidence, dtype=np.float64)
    order = np.argsort(-conf, kind="stable")
    sc = conf[order]
    starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]]) if len(sc) else np.zeros(0, dtype=np.int64)
    return TieGroups(order=order, starts=starts, confidence=sc[starts] if len(sc) else sc)


def harmonic_table(n: int) -> np.ndarray:
    """``H[k] = sum_{j <= k} 1/j`` for ``k = 0..n`` (``H[0] = 0``)."""
    h = np.zeros(n + 1, dtype=np.float64)
    if n:
        h[1:] = np.cumsum(1.0 / np.arange(1, n + 1, dtype=np.float64))
    return h


def aurc_from_groups(n_g: np.ndarray, e_g: np.ndarray, harmonic: np.ndarray) -> np.ndarray:
    """AURC from per-group counts and errors along the last axis (rows = bootstrap replicates).

    Within a group of ``m`` tied samples with ``e`` errors, preceded by ``K`` samples with ``E``
    errors, position ``K + j`` has expected cumulative errors ``E + j e / m``; its risk is that over
    ``K + j``. Summing ``j = 1..m`` uses harmonic numbers, so ties cost O(groups).
    Counts must be integer-valued (they are sample counts).
    """
    n_g = np.asarray(n_g, dtype=np.float64)
    e_g = np.asarray(e_g, dtype=np.float64)
    k_end = np.cumsum(n_g, axis=-1)
    total = k_end[..., -1] if k_end.shape[-1] else np.zeros(k_end.shape[:-1])
    k_before = k_end - n_g
    e_before = np.cumsum(e_g, axis=-1)
    e_before -= e_g
    dh = harmonic[k_end.astype(np.int64)] - harmonic[k_before.astype(np.int64)]
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = e_g / n_g
    rate[n_g == 0] = 0.0
    inner = e_before * dh + rate * (n_g - k_before * dh)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, inner.sum(axis=-1) / np.where(total > 0, total, 1.0), np.nan)


@dataclass(frozen=True)
class RiskCoverage:
    """Selective-prediction curve at every distinct confidence threshold, plus AURC and E-AURC."""

    coverage: np.ndarray
    risk: np.ndarray
    threshold: np.ndarray
    aurc: float
    eaurc: float

    def to_dict(self, max_points: int = 101) -> dict[str, Any]:
        """JSON data for plots, thinned to at most ``max_points`` points (the last one kept)."""
        n = len(self.coverage)
        keep = np.unique(np.r_[np.linspace(0, n - 1, num=min(n, max_points)).astype(np.int64), n - 1]) if n else []
        return {
            "coverage": [float(self.coverage[i]) for i in keep],
            "risk": [float(self.risk[i]) for i in keep],
            "threshold": [float(self.threshold[i]) for i in keep],
            "aurc": self.aurc if math.isfinite(self.aurc) else None,
            "eaurc": self.eaurc if math.isfinite(self.eaurc) else None,
        }


def optimal_aurc(n: int, errors: Any, harmonic: np.ndarray | None = None) -> Any:
    """AURC of a perfect ranking (all ``errors`` after the correct samples); vectorised over ``errors``.

    ``(1/n) sum_{k > n - E} (k - (n - E)) / k = (E - (n - E)(H_n - H_{n-E})) / n``.
    """
    if n <= 0:
        return math.nan
    h = harmonic_table(n) if harmonic is None else harmonic
    e = np.asarray(errors, dtype=np.float64)
    n_correct = n - e
    value = (e - n_correct * (h[n] - h[np.rint(n_correct).astype(np.int64)])) / n
    return float(value) if value.ndim == 0 else value


def risk_coverage_from_top_label(tl: TopLabel) -> RiskCoverage:
    """Risk-coverage curve and AURC from precomputed :class:`TopLabel` facts."""
    n = len(tl)
    groups = tie_groups(tl.confidence)
    err_sorted = 1.0 - tl.correct[groups.order]
    n_g = np.diff(np.r_[groups.starts, n]).astype(np.float64)
    e_g = np.add.reduceat(err_sorted, groups.starts) if n else np.zeros(0)
    k_end = np.cumsum(n_g)
    e_end = np.cumsum(e_g)
    value = float(aurc_from_groups(n_g, e_g, harmonic_table(n)))
    return RiskCoverage(
        coverage=k_end / n,
        risk=e_end / k_end,
        threshold=groups.confidence,
        aurc=value,
        eaurc=value - optimal_aurc(n, float(err_sorted.sum())),
    )


def risk_coverage(probs: Any, labels: Any) -> RiskCoverage:
    """Selective risk at every distinct confidence threshold (coverage ascending), AURC, E-AURC."""
    return risk_coverage_from_top_label(top_label(probs, labels))


def aurc(probs: Any, labels: Any) -> float:
    """Area under the risk-coverage curve, ``(1/N) sum_k risk(k)`` (lower is better)."""
    return risk_coverage(probs, labels).aurc


def eaurc(probs: Any, labels: Any) -> float:
    """Excess AURC over a perfect confidence ranking with the same errors (lower is better)."""
    return risk_coverage(probs, labels).eaurc


def sliceable_metrics(n_bins: int = DEFAULT_BINS) -> dict[str, tuple[Callable[[Any, Any], float], str]]:
    """``name -> (metric(y_true, probs), direction)`` in the argument order fairlearn's ``MetricFrame``
    calls (``y_pred`` = the ``N x C`` probabilities), for per-slice calibration audits."""
    n_bins = check_n_bins(n_bins)
    return {
        "ece": (lambda y, p: ece(p, y, n_bins), "lower"),
        "adaptive_ece": (lambda y, p: adaptive_ece(p, y, n_bins), "lower"),
        "mce": (lambda y, p: mce(p, y, n_bins), "lower"),
        "classwise_ece": (lambda y, p: classwise_ece(p, y, n_bins), "lower"),
        "brier": (lambda y, p: brier(p, y), "lower"),
        "nll": (lambda y, p: nll(p, y), "lower"),
        "overconfidence_share": (lambda y, p: overconfidence(p, y, n_bins), "none"),
        "aurc": (lambda y, p: aurc(p, y), "lower"),
    }
