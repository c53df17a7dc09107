"""Per-group metrics and disparities as vectorised reductions over group codes.

Every metric the slice audit reports is a function of a few per-group *sufficient statistics*
(counts and sums), so a whole audit -- all groups, all metrics, and every bootstrap
replicate at once -- reduces to ``np.bincount`` over ``replicate x group x class`` codes.
The semantics are fairlearn's :class:`~fairlearn.metrics.MetricFrame` with these metric
functions (checked equal in the tests, and in ``evalsuite.slices.reference``):

==================  =====================================================================
``n``               rows in the group
``accuracy``        ``sklearn.metrics.accuracy_score``
``error_rate``      ``1 - accuracy``
``macro_recall``    ``sklearn.metrics.balanced_accuracy_score``: mean recall over the
                    classes present in the group's labels
``tpr[k]``          recall of class ``k`` one-vs-rest (``fairlearn.metrics.true_positive_rate``)
``fpr[k]``          false-positive rate of class ``k`` one-vs-rest
``selection[k]``    share of the group predicted as ``k`` (``fairlearn.metrics.selection_rate``)
``ece``             equal-width expected calibration error on the top-1 confidence with
                    ``n_bins`` bins (default 15; :func:`evalsuite.stats.width_bins`: NumPy
                    histogram bins on ``linspace(0, 1, n_bins + 1)``, top bin closed at 1.0,
                    for 15 bins the same as ``floor(conf * 15)``), as netcal's ``ECE(n_bins)``
``nll``             mean negative log-likelihood of the true class (``sklearn.metrics.log_loss``;
                    from logits: :func:`evalsuite.stats.per_sample_nll`)
==================  =====================================================================

Summaries over the *eligible* groups (``n >= min_group_size``) follow
``MetricFrame.difference/ratio/group_min/group_max``: ``difference = max - min``,
``ratio = min / max``, ``difference_to_overall = max |group - overall|``,
``ratio_to_overall = min over groups of min(group / overall, overall / group)``,
``worst_group`` = the minimum for higher-is-better metrics, the maximum otherwise.
``equalized_odds_difference`` is fairlearn's (``max(TPR difference, FPR difference)``) applied
one-vs-rest to every class, then the maximum over classes; ``demographic_parity_difference``
is the selection-rate difference per class (and its maximum).

One deliberate difference from fairlearn's rate functions: a group with no true samples of
class ``k`` has an *undefined* TPR for ``k`` (fairlearn reports 0), and a group whose samples
are all of class ``k`` has an undefined FPR. Undefined rates are ``NaN`` here and are left
out of differences, so a class that is simply absent from a group cannot pose as a disparity.

Rows whose logits are not all finite count as errors (they predict no class, as
:func:`evalsuite.stats.predicted_labels`) and are left out of ECE and NLL, whose denominators
are the finite rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evalsuite.errors import DataError, UsageError
from evalsuite.stats import ece_from_sums, per_sample_nll, predicted_labels, width_bins

DEFAULT_N_BINS = 15  # confidence bins of the ECE unless the suite is told otherwise
METRICS: dict[str, str] = {
    "accuracy": "higher",
    "error_rate": "lower",
    "macro_recall": "higher",
    "ece": "lower",
    "nll": "lower",
}
METRIC_DESCRIPTIONS: dict[str, str] = {
    "accuracy": "share of samples classified correctly",
    "error_rate": "share of samples misclassified (1 - accuracy)",
    "macro_recall": "recall averaged over the classes present in the group (balanced accuracy)",
    "ece": "expected calibration error of the top-1 confidence over n_bins equal-width bins (default 15, or the "
           "calibration suite's n_bins when it runs too)",
    "nll": "mean negative log-likelihood of the true class",
    "tpr": "per-class recall (true-positive rate), one-vs-rest",
    "fpr": "per-class false-positive rate, one-vs-rest",
    "selection_rate": "per-class share of the group predicted as that class",
}
SUMMARY_DIRECTIONS: dict[str, str | None] = {
    "difference": "lower",
    "ratio": "higher",
    "worst_group": None,  # the metric's own direction
    "best_group": None,
    "difference_to_overall": "lower",
    "ratio_to_overall": "higher",
}


@dataclass
class RowStats:
    """Per-row facts every slice metric needs, computed once per condition.

    ``bin`` is the equal-width confidence bin (``0 .. n_bins - 1``). ``pred`` is -1 and ``bin``
    is ``n_bins`` for rows with non-finite logits; ``conf`` and ``nll`` are 0 there (they are
    excluded through ``bin``).
    """

    y: np.ndarray
    pred: np.ndarray
    conf: np.ndarray
    nll: np.ndarray
    bin: np.ndarray
    n_classes: int
    n_bins: int = DEFAULT_N_BINS

    def __len__(self) -> int:
        return len(self.y)

    @property
    def correct(self) -> np.ndarray:
        return (self.pred == self.y).astype(np.float64)

    @property
    def finite(self) -> np.ndarray:
        """Per-row flag: the row's logits (probabilities) are all finite, so it has a confidence bin."""
        return self.bin < self.n_bins

    def take(self, index: np.ndarray) -> RowStats:
        return RowStats(self.y[index], self.pred[index], self.conf[index], self.nll[index], self.bin[index],
                        self.n_classes, self.n_bins)

    @staticmethod
    def _check_labels(labels: np.ndarray, n: int, n_classes: int) -> np.ndarray:
        y = np.asarray(labels)
        if y.ndim != 1 or len(y) != n:
            raise DataError(f"labels must be one per row: got shape {y.shape} for {n} rows")
        y = y.astype(np.int64)
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise DataError(f"labels must be class indices in [0, {n_classes}); got {y.min()}..{y.max()}")
        return y

    @classmethod
    def from_logits(cls, labels: np.ndarray, logits: np.ndarray, n_bins: int = DEFAULT_N_BINS) -> RowStats:
        """From raw logits: the prediction of :func:`evalsuite.stats.predicted_labels`, the exact
        NLL of :func:`evalsuite.stats.per_sample_nll`, the confidence as in a float64 softmax."""
        z = np.asarray(logits, dtype=np.float64)
        if z.ndim != 2:
            raise DataError(f"logits must be N x C, got shape {z.shape}")
        n, c = z.shape
        y = cls._check_labels(labels, n, c)
        pred = predicted_labels(z)  # -1 on rows with a non-finite logit
        finite = pred >= 0
        zf = np.where(finite[:, None], z, 0.0)
        m = zf[np.arange(n), pred]  # the row maximum (row of zeros where not finite)
        conf = 1.0 / np.exp(zf - m[:, None]).sum(axis=1)  # == softmax(z).max(): the max term is exp(0) = 1
        nll = per_sample_nll(zf, y)
        return cls._finish(y, pred, conf, nll, finite, c, n_bins)

    @classmethod
    def from_probs(cls, labels: np.ndarray, probs: np.ndarray, n_bins: int = DEFAULT_N_BINS) -> RowStats:
        """From probabilities (rows summing to 1); NLL clips the true-class probability at the
        smallest positive float64 so a zero probability gives a large finite loss."""
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim != 2:
            raise DataError(f"probabilities must be N x C, got shape {p.shape}")
        n, c = p.shape
        y = cls._check_labels(labels, n, c)
        finite = np.all(np.isfinite(p), axis=1)
        pf = np.where(finite[:, None], p, 0.0)
        pred = np.argmax(pf, axis=1)
        conf = pf[np.arange(n), pred]
        nll = -np.log(np.maximum(pf[np.arange(n), y], np.finfo(np.float64).tiny))
        return cls._finish(y, pred, conf, nll, finite, c, n_bins)

    @classmethod
    def _finish(cls, y, pred, conf, nll, finite, c, n_bins) -> RowStats:
        n_bins = int(n_bins)
        if n_bins < 1:
            raise UsageError(f"n_bins must be at least 1, got {n_bins}")
        conf = np.where(finite, conf, 0.0)
        return cls(
            y=y,
            pred=np.where(finite, pred, -1).astype(np.int64),
            conf=conf,
            nll=np.where(finite, nll, 0.0),
            bin=np.where(finite, width_bins(conf, n_bins), n_bins).astype(np.int64),
            n_classes=int(c),
            n_bins=n_bins,
        )


@dataclass(frozen=True)
class ClassMap:
    """The classes a condition's rows touch, so bootstrap replicates need not carry the others.

    A class that no row has as its label or prediction has zero true, correct and predicted
    counts in every group of every replicate (a replicate only redraws rows), so all such
    classes have identical statistics: an undefined TPR, an FPR and selection rate of 0. The
    bootstrap therefore works on ``active`` classes plus one *stand-in* column for all the
    others (``C'`` columns instead of ``C``); :meth:`expand` copies the stand-in's per-class
    results back to every inactive class, and :meth:`full_sum` adds a per-class quantity
    (macro recall's numerator) over the original ``C`` columns in their original positions, so
    every number is the one the full-width computation gives, bit for bit.
    """

    active: np.ndarray  # original indices of the touched classes, ascending
    n_classes: int  # C, the model's classes

    @classmethod
    def of(cls, rows: RowStats) -> ClassMap | None:
        """The map for ``rows``, or ``None`` when every class is touched (nothing to leave out)."""
        touched = np.zeros(rows.n_classes, dtype=bool)
        touched[rows.y] = True
        touched[rows.pred[rows.pred >= 0]] = True
        if touched.all():
            return None
        return cls(np.flatnonzero(touched), rows.n_classes)

    @property
    def width(self) -> int:
        """``C'``: the touched classes and the stand-in column (the last)."""
        return len(self.active) + 1

    def compress(self, rows: RowStats) -> RowStats:
        """``rows`` with classes renumbered ``0 .. C' - 2`` in their original order (the stand-in,
        ``C' - 1``, is nobody's label or prediction)."""
        code = self.columns()
        pred = np.where(rows.pred >= 0, code[np.maximum(rows.pred, 0)], -1)
        return RowStats(code[rows.y], pred, rows.conf, rows.nll, rows.bin, self.width, rows.n_bins)

    def columns(self) -> np.ndarray:
        """Column of every original class in the compressed layout: ``(C,)``."""
        col = np.full(self.n_classes, self.width - 1, dtype=np.int64)
        col[self.active] = np.arange(len(self.active))
        return col

    def expand(self, a: np.ndarray) -> np.ndarray:
        """Per-class values ``(..., C')`` as ``(..., C)``: inactive classes take the stand-in's."""
        return np.take(a, self.columns(), axis=-1)

    def take(self, a: np.ndarray) -> np.ndarray:
        """Full-width per-class values ``(..., C)`` in the compressed layout ``(..., C')`` (the
        stand-in column is the first inactive class's)."""
        stand_in = int(np.flatnonzero(self.columns() == self.width - 1)[0])
        return np.take(a, np.r_[self.active, stand_in], axis=-1)

    def full_sum(self, a: np.ndarray) -> np.ndarray:
        """Sum over the model's classes of a per-class quantity ``(..., C')`` that is 0 for every
        untouched class: the touched columns placed at their original positions in a zero
        ``(..., C)`` array and summed there, so the floating-point additions (NumPy's pairwise
        summation, whose grouping depends on the positions) are the full-width sum's."""
        full = np.zeros(a.shape[:-1] + (self.n_classes,))
        full[..., self.active] = a[..., : len(self.active)]
        return full.sum(axis=-1)


@dataclass
class GroupStats:
    """Sufficient statistics per (replicate, group): every array has shape ``(R, G, ...)``."""

    pos: np.ndarray  # (R, G, C) true samples of each class
    tp: np.ndarray  # (R, G, C) correct samples of each class
    predc: np.ndarray  # (R, G, C) samples predicted as each class
    bin_n: np.ndarray  # (R, G, B) finite rows per confidence bin
    bin_correct: np.ndarray  # (R, G, B)
    bin_conf: np.ndarray  # (R, G, B) summed confidence
    nll: np.ndarray  # (R, G) summed NLL of finite rows

    @property
    def n(self) -> np.ndarray:
        return self.pos.sum(axis=-1)

    def pooled(self) -> GroupStats:
        """All groups together (the overall population of each replicate): shape ``(R, 1, ...)``."""
        return GroupStats(*(a.sum(axis=1, keepdims=True) for a in (
            self.pos, self.tp, self.predc, self.bin_n, self.bin_correct, self.bin_conf, self.nll)))


def bincount_stats(gkey: np.ndarray, rows: RowStats, n_cells: int) -> GroupStats:
    """Sufficient statistics of ``rows`` whose flat (replicate, group) cell is ``gkey``.

    ``n_cells`` is ``R * G``; the result is shaped ``(n_cells, ...)`` (callers reshape).
    """
    c = rows.n_classes
    nb = rows.n_bins
    correct = rows.correct
    ky = gkey * c + rows.y
    pos = np.bincount(ky, minlength=n_cells * c).reshape(n_cells, c)
    tp = np.bincount(ky, weights=correct, minlength=n_cells * c).reshape(n_cells, c)
    pcode = np.where(rows.pred >= 0, rows.pred, c)
    predc = np.bincount(gkey * (c + 1) + pcode, minlength=n_cells * (c + 1)).reshape(n_cells, c + 1)[:, :c]
    kb = gkey * (nb + 1) + rows.bin
    shape = (n_cells, nb + 1)
    bin_n = np.bincount(kb, minlength=n_cells * (nb + 1)).reshape(shape)[:, :nb]
    bin_correct = np.bincount(kb, weights=correct, minlength=n_cells * (nb + 1)).reshape(shape)[:, :nb]
    bin_conf = np.bincount(kb, weights=rows.conf, minlength=n_cells * (nb + 1)).reshape(shape)[:, :nb]
    nll = np.bincount(gkey, weights=rows.nll, minlength=n_cells)
    return GroupStats(pos.astype(np.float64), tp, predc.astype(np.float64), bin_n.astype(np.float64), bin_correct, bin_conf, nll)


def reshape_stats(s: GroupStats, r: int, g: int) -> GroupStats:
    """``(R * G, ...)`` statistics as ``(R, G, ...)``."""
    return GroupStats(*(a.reshape((r, g) + a.shape[1:]) for a in (
        s.pos, s.tp, s.predc, s.bin_n, s.bin_correct, s.bin_conf, s.nll)))


def point_stats(rows: RowStats, codes: np.ndarray, n_groups: int) -> GroupStats:
    """Sufficient statistics of the observed data: shape ``(1, G, ...)``."""
    return reshape_stats(bincount_stats(np.asarray(codes, dtype=np.int64), rows, n_groups), 1, n_groups)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def metrics_from_stats(s: GroupStats, classes: ClassMap | None = None) -> dict[str, np.ndarray]:
    """Every group metric from sufficient statistics.

    Returns ``(R, G)`` arrays for the scalar metrics and ``(R, G, C)`` arrays for ``tpr``,
    ``fpr`` and ``selection_rate``; ``NaN`` where a metric is undefined (empty group, absent class).
    With ``classes``, ``s`` is in its compressed class layout (``C'`` columns, :class:`ClassMap`):
    the per-class rates stay compressed, and macro recall is summed over the original classes.
    """
    n = s.n
    correct = s.tp.sum(axis=-1)
    acc = _div(correct, n)
    tpr = _div(s.tp, s.pos)
    neg = n[..., None] - s.pos
    fpr = _div(s.predc - s.tp, neg)
    present = s.pos > 0
    recalls = np.where(present, tpr, 0.0)
    total = recalls.sum(axis=-1) if classes is None else classes.full_sum(recalls)
    macro = _div(total, present.sum(axis=-1).astype(np.float64))
    nf = s.bin_n.sum(axis=-1)
    ece = ece_from_sums(s.bin_n, s.bin_conf, s.bin_correct)
    return {
        "n": n,
        "accuracy": acc,
        "error_rate": 1.0 - acc,
        "macro_recall": macro,
        "ece": ece,
        "nll": _div(s.nll, nf),
        "tpr": tpr,
        "fpr": fpr,
        "selection_rate": _div(s.predc, n[..., None]),
    }


def nanmax(a: np.ndarray, axis: int) -> np.ndarray:
    """Max ignoring NaN; NaN where every value is NaN (no warning)."""
    out = np.where(np.isnan(a), -np.inf, a).max(axis=axis)
    return np.where(np.isneginf(out) & np.all(np.isnan(a), axis=axis), np.nan, out)


def nanmin(a: np.ndarray, axis: int) -> np.ndarray:
    """Min ignoring NaN; NaN where every value is NaN (no warning)."""
    out = np.where(np.isnan(a), np.inf, a).min(axis=axis)
    return np.where(np.isposinf(out) & np.all(np.isnan(a), axis=axis), np.nan, out)


def nanargext(a: np.ndarray, axis: int, largest: bool) -> np.ndarray:
    """Index of the max (``largest``) or min ignoring NaN; -1 where all are NaN."""
    fill = -np.inf if largest else np.inf
    filled = np.where(np.isnan(a), fill, a)
    idx = filled.argmax(axis=axis) if largest else filled.argmin(axis=axis)
    return np.where(np.all(np.isnan(a), axis=axis), -1, idx)


def summaries(values: np.ndarray, overall: np.ndarray, eligible: np.ndarray, direction: str) -> dict[str, np.ndarray]:
    """Disparity summaries of one metric over the eligible groups (MetricFrame semantics).

    ``values`` is ``(R, G)``, ``overall`` ``(R,)``, ``eligible`` a ``(G,)`` mask. A summary
    needs at least two eligible groups with a defined value; otherwise it is ``NaN``.
    """
    v = values[:, eligible]
    r = values.shape[0]
    if v.shape[1] == 0:
        nan = np.full(r, np.nan)
        return {k: nan for k in SUMMARY_DIRECTIONS}
    hi, lo = nanmax(v, 1), nanmin(v, 1)
    defined = (~np.isnan(v)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = lo / hi
        rto = v / overall[:, None]
        rto = np.where(rto > 1, 1.0 / rto, rto)
    two = defined >= 2
    out = {
        "difference": np.where(two, hi - lo, np.nan),
        "ratio": np.where(two, ratio, np.nan),
        "worst_group": lo if direction == "higher" else hi,
        "best_group": hi if direction == "higher" else lo,
        "difference_to_overall": nanmax(np.abs(v - overall[:, None]), 1),
        "ratio_to_overall": nanmin(rto, 1),
    }
    return {k: np.where(np.isinf(x), np.nan, x) for k, x in out.items()}


def rate_differences(rates: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Per-class max - min of ``(R, G, C)`` rates over eligible groups with a defined rate: ``(R, C)``.

    ``NaN`` for a class defined in fewer than two eligible groups.
    """
    v = rates[:, eligible, :]
    if v.shape[1] == 0:
        return np.full((rates.shape[0], rates.shape[2]), np.nan)
    defined = (~np.isnan(v)).sum(axis=1)
    return np.where(defined >= 2, nanmax(v, 1) - nanmin(v, 1), np.nan)


def equalized_odds(tpr: np.ndarray, fpr: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Per-class one-vs-rest equalized-odds difference ``max(TPR diff, FPR diff)``: ``(R, C)``."""
    return np.fmax(rate_differences(tpr, eligible), rate_differences(fpr, eligible))
