"""Bootstrap confidence intervals for the calibration metrics, vectorised over replicates.

A bootstrap replicate is described by its resampling *counts*: ``w_i`` = how often sample ``i``
was drawn (:func:`evalsuite.stats.count_blocks`). The draws come from
``numpy.random.default_rng(seed).integers(0, n, size=n)`` per replicate, exactly the stream of
:func:`evalsuite.stats.bootstrap_ci`, so the intervals equal
what ``stats.bootstrap_ci(metric, ...)`` gives, only computed for many replicates at once
(bincounts and one sparse product instead of a Python loop). Percentiles come from
:func:`evalsuite.stats.percentile_ci` (95%, percentile method).

Every weighted statistic here reduces to the point estimate of :mod:`evalsuite.calibration.metrics`
when all counts are 1 (the tests check it). The adaptive ECE re-computes its equal-mass edges
on every replicate, as the point estimate would on the resampled data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalsuite.calibration.metrics import (
    DEFAULT_BINS,
    TopLabel,
    aurc_from_groups,
    bin_sums,
    check_n_bins,
    classwise_gaps,
    harmonic_table,
    optimal_aurc,
    per_sample_brier,
    per_sample_nll_from_logits,
    tie_groups,
    top_label,
)
from evalsuite.stats import (
    CI_LEVEL,
    DEFAULT_BOOTSTRAP,
    count_blocks,
    ece_from_sums,
    edge_bins,
    mass_edges,
    mce_from_sums,
    metric,
    overconfidence_from_sums,
    percentile_ci,
    softmax,
    width_bins,
)
from evalsuite.stats.binning import debiased_l2_from_sums, debiased_squared_ce_from_sums
from evalsuite.stats.smooth_ece import smooth_ece_weighted
from evalsuite.stats.sweep_ece import sweep_ece_weighted

_MAX_ELEMENTS = 1 << 22
#: Above this many ``replicates x samples x classes`` the classwise-ECE interval is skipped.
CLASSWISE_CI_BUDGET = 2 * 10**8


def _binned_2d(bins: np.ndarray, weights: np.ndarray, n_bins: int) -> np.ndarray:
    """Per-replicate bin sums: ``bins`` is ``(n,)`` or ``(m, n)``, ``weights`` ``(m, n)`` -> ``(m, n_bins)``."""
    m = weights.shape[0]
    flat = (np.arange(m, dtype=np.int64)[:, None] * n_bins + bins).ravel()
    return np.bincount(flat, weights=weights.ravel(), minlength=m * n_bins).reshape(m, n_bins)


def weighted_bin_sums(
    bins: np.ndarray, tl: TopLabel, w: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(counts, sum of confidence, sum of correct), each ``(m, n_bins)``, under counts ``w``."""
    return (
        _binned_2d(bins, w, n_bins),
        _binned_2d(bins, w * tl.confidence, n_bins),
        _binned_2d(bins, w * tl.correct, n_bins),
    )


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """NumPy's quantile interpolation (``a + (b - a) t``, from ``b`` when ``t >= 0.5``)."""
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1.0 - t), a + diff * t)


def weighted_mass_bins(confidence: np.ndarray, w: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-mass bins recomputed for every replicate: ``(m, n)`` bin indices.

    The edges are ``np.quantile`` (linear) of the resampled confidences, found from the cumulative
    counts along the sorted confidences (the ``j``-th order statistic of a replicate is the first
    sorted value whose cumulative count exceeds ``j``).
    """
    m, n = w.shape
    order = np.argsort(confidence, kind="stable")
    sc = confidence[order]
    cw = np.cumsum(w[:, order], axis=1)  # integer-valued, exact in float64
    total = int(round(cw[0, -1]))
    h = np.linspace(0.0, 1.0, n_bins + 1)[1:-1] * (total - 1)
    lo = np.floor(h)
    frac = h - lo
    hi = np.minimum(lo + 1, total - 1)
    offsets = np.arange(m, dtype=np.float64)[:, None] * (n + 1)
    flat_cw = (cw + offsets).ravel()
    pos_lo = np.searchsorted(flat_cw, (lo[None, :] + offsets).ravel(), side="right").reshape(m, -1)
    pos_hi = np.searchsorted(flat_cw, (hi[None, :] + offsets).ravel(), side="right").reshape(m, -1)
    row0 = (np.arange(m) * n)[:, None]
    interior = _lerp(sc[pos_lo - row0], sc[pos_hi - row0], np.broadcast_to(frac, pos_lo.shape))
    # bin = number of interior edges <= confidence (np.histogram semantics, last bin closed). In
    # sorted order that is the number of edges whose first position (values >= edge) is <= i.
    first = np.searchsorted(sc, interior.ravel(), side="left").reshape(m, -1)
    marks = np.zeros((m, n + 1), dtype=np.int64)
    np.add.at(marks, (np.repeat(np.arange(m), first.shape[1]), first.ravel()), 1)
    bins_sorted = np.cumsum(marks[:, :n], axis=1)
    out = np.empty((m, n), dtype=np.int64)
    out[:, order] = bins_sorted
    return out


def weighted_aurc(tl: TopLabel, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AURC, E-AURC) per replicate; ties (including resampled duplicates) handled in expectation."""
    n = len(tl)
    groups = tie_groups(tl.confidence)
    err = 1.0 - tl.correct[groups.order]
    ws = w[:, groups.order]
    n_g = np.add.reduceat(ws, groups.starts, axis=1)
    e_g = np.add.reduceat(ws * err, groups.starts, axis=1)
    h = harmonic_table(n)
    a = aurc_from_groups(n_g, e_g, h)
    return a, a - optimal_aurc(n, e_g.sum(axis=1), h)


def weighted_classwise(probs: np.ndarray, labels: np.ndarray, w: np.ndarray, n_bins: int) -> np.ndarray:
    """Classwise ECE per replicate via one sparse product ``w @ G`` (``G``: per-sample class-bin gaps)."""
    from scipy import sparse

    n, c = probs.shape
    p = np.asarray(probs, dtype=np.float64)
    cols = (width_bins(p, n_bins) + (np.arange(c) * n_bins)[None, :]).ravel()
    rows = np.repeat(np.arange(n), c)
    vals = -p.ravel()
    g = sparse.csr_matrix((vals, (rows, cols)), shape=(n, c * n_bins))
    hit = width_bins(p[np.arange(n), labels], n_bins) + labels * n_bins
    g = g + sparse.csr_matrix((np.ones(n), (np.arange(n), hit)), shape=(n, c * n_bins))
    gaps = np.asarray((g.T @ w.T).T)  # (m, c * n_bins)
    return np.abs(gaps).sum(axis=1) / (w.sum(axis=1) * c)


@dataclass
class _Acc:
    """Collects replicate values per metric name."""

    values: dict[str, list[np.ndarray]]

    def add(self, name: str, v: np.ndarray) -> None:
        self.values.setdefault(name, []).append(np.asarray(v, dtype=np.float64))

    def replicates(self, name: str) -> np.ndarray:
        return np.concatenate(self.values[name]) if name in self.values else np.zeros(0)

    def ci(self, name: str, level: float) -> tuple[float, float] | None:
        if name not in self.values:
            return None
        lo, hi = percentile_ci(self.replicates(name), level)
        return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


CONSISTENCY_DRAWS = 200


def consistency_ece(
    tl: TopLabel, bins: np.ndarray, n_bins: int, *, draws: int = CONSISTENCY_DRAWS, seed: int = 0, q: float = 0.95
) -> float:
    """``q``-quantile of the ECE of a perfectly calibrated model with these confidences and bins.

    Each draw replaces correctness by Bernoulli(confidence) (consistency resampling): what the ECE
    looks like from binning noise alone at this sample size.
    """
    n = len(tl)
    if n == 0:
        return math.nan
    rng = np.random.default_rng([int(seed) & ((1 << 63) - 1), 7])
    counts, s_conf, _ = bin_sums(bins, tl, n_bins)
    out = []
    chunk = max(1, _MAX_ELEMENTS // n)
    for start in range(0, draws, chunk):
        m = min(chunk, draws - start)
        hits = (rng.random((m, n)) < tl.confidence[None, :]).astype(np.float64)
        s_corr = _binned_2d(bins, hits, n_bins)
        out.append(np.abs(s_corr - s_conf[None, :]).sum(axis=1) / n)
    return float(np.quantile(np.concatenate(out), q))


DIRECTIONS = {
    "ece": "lower",
    "adaptive_ece": "lower",
    "smooth_ece": "lower",
    "sweep_ece": "lower",
    "debiased_l2_ece": "lower",
    "mce": "lower",
    "classwise_ece": "lower",
    "brier": "lower",
    "nll": "lower",
    "aurc": "lower",
    "eaurc": "lower",
    "overconfidence_share": "none",
    "confidence_gap": "none",
    "mean_confidence": "none",
    "accuracy": "higher",
}


#: Metrics computed from the equal-width top-label bin sums (one weighted bincount per replicate).
_TOP_LABEL_BINNED = ("ece", "mce", "overconfidence_share")


@dataclass(frozen=True)
class _Predictions:
    """Per-sample quantities of one set of predictions, computed once for the point estimates and
    reused by every bootstrap replicate (which only re-weights them)."""

    probs: np.ndarray
    labels: np.ndarray
    z: np.ndarray  # logits / temperature, float64
    tl: TopLabel
    wbins: np.ndarray  # equal-width bin of each top-label confidence
    n_bins: int

    @classmethod
    def from_logits(cls, logits: Any, labels: Any, temperature: float, n_bins: int) -> _Predictions:
        z = np.asarray(logits, dtype=np.float64) / float(temperature)
        y = np.asarray(labels, dtype=np.int64)
        probs = softmax(z)
        tl = top_label(probs, y)
        return cls(probs, y, z, tl, width_bins(tl.confidence, n_bins), n_bins)

    @property
    def shape(self) -> tuple[int, int]:
        return self.probs.shape

    def sample_means(self) -> dict[str, np.ndarray]:
        """The per-sample values of the metrics that are means (a replicate's value is their ``w``-weighted mean)."""
        tl = self.tl
        return {
            "brier": per_sample_brier(self.probs, self.labels),
            "nll": per_sample_nll_from_logits(self.z, self.labels),
            "confidence_gap": tl.confidence - tl.correct,
            "mean_confidence": tl.confidence,
            "accuracy": tl.correct,
        }


def _wanted(include: tuple[str, ...] | None, classwise: bool) -> tuple[tuple[str, ...], set[str]]:
    """(requested metric names in output order, the subset to compute); rejects unknown names."""
    names = tuple(DIRECTIONS) if include is None else tuple(include)
    unknown = sorted(set(names) - set(DIRECTIONS))
    if unknown:
        raise ValueError(f"unknown calibration metric(s) {', '.join(unknown)}; valid: {', '.join(DIRECTIONS)}")
    want = set(names)
    if not classwise:
        want.discard("classwise_ece")
    return names, want


def _point_estimates(p: _Predictions, means: dict[str, np.ndarray], want: set[str]) -> dict[str, float]:
    """Every metric's value on the data as given (all counts 1); classwise ECE only when wanted."""
    tl, n_bins = p.tl, p.n_bins
    n = len(tl)
    counts, s_conf, s_corr = bin_sums(p.wbins, tl, n_bins)
    mbins = edge_bins(tl.confidence, mass_edges(tl.confidence, n_bins))
    rc_groups = tie_groups(tl.confidence)
    err_sorted = 1.0 - tl.correct[rc_groups.order]
    n_g = np.diff(np.r_[rc_groups.starts, n]).astype(np.float64)
    aurc_v = float(aurc_from_groups(n_g, np.add.reduceat(err_sorted, rc_groups.starts), harmonic_table(n)))
    point = {
        "ece": ece_from_sums(counts, s_conf, s_corr),
        "adaptive_ece": ece_from_sums(*bin_sums(mbins, tl, n_bins)),
        "mce": mce_from_sums(counts, s_conf, s_corr),
        "brier": float(means["brier"].mean()),
        "nll": float(means["nll"].mean()),
        "overconfidence_share": overconfidence_from_sums(s_conf, s_corr),
        "confidence_gap": float(tl.confidence.mean() - tl.correct.mean()),
        "mean_confidence": float(tl.confidence.mean()),
        "accuracy": float(tl.correct.mean()),
        "aurc": aurc_v,
        "eaurc": aurc_v - optimal_aurc(n, float(err_sorted.sum())),
    }
    if "classwise_ece" in want:
        point["classwise_ece"] = float(np.abs(classwise_gaps(p.probs, p.labels, n_bins)).sum(axis=1).mean() / n)
    return point


#: The point estimate's detail recorded in each bias-aware leaf.
_DETAIL = {"smooth_ece": "bandwidth", "sweep_ece": "sweep_bins", "debiased_l2_ece": "squared_estimate"}


def _bias_aware(p: _Predictions, w: np.ndarray, want: set[str], mass_bins: np.ndarray | None = None) -> dict[str, tuple]:
    """``name -> (values (m,), details (m,))`` of the smooth, sweep and debiased ECE under counts ``w``.

    Details: the smooth ECE's bandwidth, the sweep's number of bins, the debiased squared error.
    ``mass_bins`` are the replicates' equal-mass bins when already computed.
    """
    tl, out = p.tl, {}
    if "smooth_ece" in want:
        out["smooth_ece"] = smooth_ece_weighted(tl.confidence, tl.correct, w)
    if "sweep_ece" in want:
        out["sweep_ece"] = sweep_ece_weighted(tl.confidence, tl.correct, w)
    if "debiased_l2_ece" in want:
        mb = weighted_mass_bins(tl.confidence, w, p.n_bins) if mass_bins is None else mass_bins
        sums = weighted_bin_sums(mb, tl, w, p.n_bins)
        out["debiased_l2_ece"] = (debiased_l2_from_sums(*sums), debiased_squared_ce_from_sums(*sums))
    return out


def _add_replicates(
    acc: _Acc, p: _Predictions, means: dict[str, np.ndarray], w: np.ndarray, want: set[str], classwise_boot: bool
) -> None:
    """Add one block of replicates (resampling counts ``w``, ``(m, n)``) of every wanted metric to ``acc``."""
    tl, n_bins = p.tl, p.n_bins
    tot = w.sum(axis=1)
    if want.intersection(_TOP_LABEL_BINNED):
        cnt, sc, sr = weighted_bin_sums(p.wbins, tl, w, n_bins)
        acc.add("ece", ece_from_sums(cnt, sc, sr))
        acc.add("mce", mce_from_sums(cnt, sc, sr))
        acc.add("overconfidence_share", overconfidence_from_sums(sc, sr))
    mb = None
    if "adaptive_ece" in want:
        mb = weighted_mass_bins(tl.confidence, w, n_bins)
        acc.add("adaptive_ece", ece_from_sums(*weighted_bin_sums(mb, tl, w, n_bins)))
    for name, (values, _) in _bias_aware(p, w, want, mb).items():
        acc.add(name, values)
    for name, values in means.items():
        if name in want:
            acc.add(name, w @ values / tot)
    if want & {"aurc", "eaurc"}:
        a, ea = weighted_aurc(tl, w)
        acc.add("aurc", a)
        acc.add("eaurc", ea)
    if classwise_boot and "classwise_ece" in want:
        acc.add("classwise_ece", weighted_classwise(p.probs, p.labels, w, n_bins))


def _leaf_extra(name: str, n_bins: int, classwise_boot: bool, n_boot: int, shape: tuple[int, int]) -> dict[str, Any]:
    """The binning facts of a leaf (``n_bins``, ``binning``) and why its interval was skipped, if it was."""
    extra: dict[str, Any] = {}
    if name in ("ece", "mce", "overconfidence_share", "classwise_ece"):
        extra["n_bins"] = int(n_bins)
        extra["binning"] = "equal-width"
    elif name in ("adaptive_ece", "debiased_l2_ece"):
        extra["n_bins"] = int(n_bins)
        extra["binning"] = "equal-mass"
    if name == "classwise_ece" and not classwise_boot:
        n, c = shape
        extra["ci_skipped"] = f"bootstrap too large ({n_boot} x {n} x {c} > {CLASSWISE_CI_BUDGET})"
    return extra


def calibration_leaves(
    logits: Any,
    labels: Any,
    *,
    n_bins: int = DEFAULT_BINS,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    level: float = CI_LEVEL,
    temperature: float = 1.0,
    classwise: bool = True,
    include: tuple[str, ...] | None = None,
) -> dict[str, dict[str, Any]]:
    """Metric leaves (value, n, 95% bootstrap CI, direction) for one set of predictions.

    ``logits`` are divided by ``temperature`` first. Returns ``ece``, ``adaptive_ece``,
    ``smooth_ece`` (with its ``bandwidth``), ``sweep_ece`` (with ``sweep_bins``),
    ``debiased_l2_ece`` (with ``squared_estimate``), ``mce``,
    ``classwise_ece`` (when ``classwise``), ``brier``, ``nll`` (exact, from logits),
    ``overconfidence_share``, ``confidence_gap`` (mean confidence minus accuracy; > 0 means
    over-confident), ``mean_confidence``, ``accuracy``, ``aurc`` and ``eaurc``. All intervals
    come from the same ``n_boot`` resamples (seeded by ``seed``). The classwise interval is skipped
    (``ci: null``, ``ci_skipped`` set) above :data:`CLASSWISE_CI_BUDGET` work units. ``include``
    restricts the output (and the work) to the named metrics. ``n_boot = 0`` gives no intervals.
    The intervals are percentile intervals, exactly :func:`evalsuite.stats.bootstrap_ci` of the
    metric function with the same seed.

    The ``ece`` leaf also carries ``consistency_95``: the 95th percentile of the ECE that a
    *perfectly calibrated* model with the same confidences would show at this sample size
    (labels drawn as Bernoulli(confidence), ``CONSISTENCY_DRAWS`` draws; Broecker & Smith 2007).
    The plug-in ECE is biased upward at small n (and its bootstrap replicates more so, which can
    put the whole interval above a small estimate): an ECE below ``consistency_95`` cannot be told
    apart from perfect calibration with this many samples.
    """
    names, want = _wanted(include, classwise)
    n_bins = check_n_bins(n_bins)
    p = _Predictions.from_logits(logits, labels, temperature, n_bins)
    n, c = p.shape
    means = p.sample_means()
    point = _point_estimates(p, means, want)
    details = {}
    for name, (values, detail) in _bias_aware(p, np.ones((1, n)), want).items():
        point[name] = float(values[0])
        details[name] = {_DETAIL[name]: np.asarray(detail)[0].item()}  # float bandwidth / int bins / float
    classwise_boot = n_boot * n * c <= CLASSWISE_CI_BUDGET
    acc = _Acc({})
    for w in count_blocks(n, n_boot, seed):
        _add_replicates(acc, p, means, w, want, classwise_boot)

    leaves: dict[str, dict[str, Any]] = {}
    for name in names:
        if name not in want:
            continue
        extra = _leaf_extra(name, n_bins, classwise_boot, n_boot, (n, c))
        interval = acc.ci(name, level)
        if interval is not None:
            extra["n_boot"] = int(n_boot)
        if name == "ece":
            extra["consistency_95"] = consistency_ece(p.tl, p.wbins, n_bins, seed=seed)
        extra.update(details.get(name, {}))
        leaves[name] = metric(point[name], n, interval, DIRECTIONS[name], **extra)
    return leaves


__all__ = [
    "CLASSWISE_CI_BUDGET",
    "calibration_leaves",
    "weighted_aurc",
    "weighted_bin_sums",
    "weighted_classwise",
    "weighted_mass_bins",
]
