"""The slice metrics expressed through fairlearn's MetricFrame (the reference semantics).

evalsuite computes slice metrics with vectorised group reductions
(:mod:`evalsuite.slices.metrics`); this module builds the same numbers with
:class:`fairlearn.metrics.MetricFrame` and scikit-learn / fairlearn metric functions, so tests,
the benchmark and the suite's optional cross-check (``fairlearn_check``) can compare the two.
It is slow on large inputs (one Python call per metric, group and class) by nature.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from evalsuite.slices.metrics import DEFAULT_N_BINS


def textbook_ece(y_true: np.ndarray, y_pred: np.ndarray, conf: np.ndarray, n_bins: int = DEFAULT_N_BINS) -> float:
    """Equal-width ECE on the top-1 confidence ``conf``: bin ``b`` holds ``edge_b <= conf < edge_{b+1}``
    for the edges ``np.linspace(0, 1, n_bins + 1)``, the top bin closed at 1 (netcal's bins; for
    15 bins the same as ``floor(conf * 15)``).

    Written as a per-bin loop (the textbook formula) on purpose: it is the reference the
    vectorised implementation is checked against.
    """
    conf = np.asarray(conf, dtype=np.float64)
    correct = (np.asarray(y_pred) == np.asarray(y_true)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total = 0.0
    for b in range(n_bins):
        m = (conf >= edges[b]) & ((conf < edges[b + 1]) if b < n_bins - 1 else (conf <= edges[b + 1]))
        if m.any():
            total += abs(correct[m].sum() - conf[m].sum())
    return total / len(conf)


def mean_nll(y_true: np.ndarray, y_pred: np.ndarray, p_true: np.ndarray) -> float:
    """Mean ``-log p(true class)``; ``p_true`` clipped at the smallest positive float64 (as
    :meth:`RowStats.from_probs`). Equals ``sklearn.metrics.log_loss`` away from 0 (tested)."""
    p = np.maximum(np.asarray(p_true, dtype=np.float64), np.finfo(np.float64).tiny)
    return float(-np.log(p).mean())


def _error_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    return 1.0 - float(accuracy_score(y_true, y_pred))


def _one_vs_rest(fn: Callable[..., float], k: int, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(fn(np.asarray(y_true) == k, np.asarray(y_pred) == k, pos_label=True))


def metric_functions(n_classes: int, per_class: bool = True, n_bins: int = DEFAULT_N_BINS) -> dict[str, Callable[..., float]]:
    """Name -> metric callable ``(y_true, y_pred[, conf | p_true])`` with the slice audit's semantics
    (``n_bins`` confidence bins for the ECE)."""
    from fairlearn.metrics import count, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    fns: dict[str, Callable[..., float]] = {
        "n": count,
        "accuracy": accuracy_score,
        "error_rate": _error_rate,
        "macro_recall": balanced_accuracy_score,
        "ece": partial(textbook_ece, n_bins=n_bins),
        "nll": mean_nll,
    }
    if per_class:
        for k in range(n_classes):
            fns[f"tpr.{k}"] = partial(_one_vs_rest, true_positive_rate, k)
            fns[f"fpr.{k}"] = partial(_one_vs_rest, false_positive_rate, k)
            fns[f"selection_rate.{k}"] = partial(_one_vs_rest, selection_rate, k)
    return fns


def metric_frame(
    y_true: np.ndarray, probs: np.ndarray, groups: np.ndarray, per_class: bool = True, metrics: list[str] | None = None,
    n_bins: int = DEFAULT_N_BINS,
) -> Any:
    """A MetricFrame of the slice metrics for ``groups`` (one group label per row)."""
    from fairlearn.metrics import MetricFrame

    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true)
    fns = metric_functions(probs.shape[1], per_class, n_bins)
    if metrics is not None:
        fns = {k: fns[k] for k in metrics}
    pred = np.argmax(probs, axis=1)
    params = {}
    if "ece" in fns:
        params["ece"] = {"conf": probs[np.arange(len(pred)), pred]}
    if "nll" in fns:
        params["nll"] = {"p_true": probs[np.arange(len(pred)), y_true]}
    return MetricFrame(
        metrics=fns,
        y_true=y_true,
        y_pred=pred,
        sensitive_features={"group": np.asarray(groups)},
        sample_params=params,
    )


def _equalized_odds_reference(mf: Any, y_true: np.ndarray, groups: np.ndarray, n_classes: int) -> dict[int, float]:
    """fairlearn's equalized-odds difference of each one-vs-rest problem ``(y == k, pred == k)``:
    ``max(TPR difference, FPR difference)`` between groups, as ``equalized_odds_difference``
    computes it, from the MetricFrame's ``tpr.k``/``fpr.k`` columns (so no second pass over the
    rows). Only classes whose TPR and FPR are defined in every group (elsewhere fairlearn counts
    an undefined rate as 0 and evalsuite leaves it out, see :mod:`evalsuite.slices.metrics`)."""
    y = np.asarray(y_true)
    groups = np.asarray(groups)
    diff = mf.difference()
    out = {}
    for k in range(n_classes):
        pos = y == k
        if all(0 < pos[groups == grp].sum() < (groups == grp).sum() for grp in np.unique(groups)):
            out[k] = max(float(diff[f"tpr.{k}"]), float(diff[f"fpr.{k}"]))
    return out


def compare_with_metricframe(audit: Any, y_true: np.ndarray, probs: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """Largest absolute difference between an audit's point estimates and MetricFrame's.

    Compares per-group and overall metrics, and (when every group is eligible) the
    between-group difference and ratio from ``MetricFrame.difference()/ratio()`` and, with
    per-class detail, each class's one-vs-rest equalized odds against fairlearn's definition
    (``equalized_odds_difference`` on the binarised problem; the tests call it directly). Per-class
    rates of classes absent from a group are skipped (fairlearn reports 0 there, evalsuite
    leaves them undefined). Returns ``{"max_abs_diff", "compared", "worst"}``.
    """
    import warnings

    # Per-class rates are compared only when the audit has them (at most CLASS_DETAIL_LIMIT
    # classes); without them MetricFrame is not asked for them either: they cost three metric
    # calls per class and group (30 s per column for 1000 classes, even on 8 rows) and no compared
    # number depends on them.
    per_class = "g.tpr" in audit.est
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns when a group lacks some predicted class
        mf = metric_frame(y_true, probs, groups, per_class=per_class, n_bins=getattr(audit, "n_bins", DEFAULT_N_BINS))
    by = mf.by_group
    names = list(audit.groups)
    worst = ("", 0.0)
    compared = 0

    def check(label: str, ours: float, ref: float) -> None:
        nonlocal worst, compared
        if not (np.isfinite(ours) and np.isfinite(ref)):
            return
        compared += 1
        d = abs(float(ours) - float(ref))
        if d > worst[1]:
            worst = (label, d)

    for k, grp in enumerate(names):
        if grp not in by.index or audit.n[k] == 0:
            continue
        row = by.loc[grp]
        check(f"{grp}.n", float(audit.n[k]), float(row["n"]))
        for m in ("accuracy", "error_rate", "macro_recall", "ece", "nll"):
            check(f"{grp}.{m}", float(audit.est[f"g.{m}"][k]), float(row[m]))
        if "g.tpr" in audit.est:
            for rate in ("tpr", "fpr", "selection_rate"):
                for j in range(np.asarray(probs).shape[1]):
                    check(f"{grp}.{rate}.{j}", float(audit.est[f"g.{rate}"][k, j]), float(row[f"{rate}.{j}"]))
    if "g.tpr" in audit.est and bool(np.all(audit.eligible[audit.n > 0])):
        for k, ref in _equalized_odds_reference(mf, y_true, groups, np.asarray(probs).shape[1]).items():
            check(f"equalized_odds.{audit.class_names[k]}", float(audit.est["eod.class"][k]), ref)
    for m in ("accuracy", "error_rate", "macro_recall", "ece", "nll"):
        check(f"overall.{m}", float(audit.est[f"o.{m}"]), float(mf.overall[m]))
        if bool(np.all(audit.eligible[audit.n > 0])):
            check(f"difference.{m}", float(audit.est[f"s.{m}.difference"]), float(mf.difference()[m]))
            check(f"ratio.{m}", float(audit.est[f"s.{m}.ratio"]), float(mf.ratio()[m]))
            check(f"difference_to_overall.{m}", float(audit.est[f"s.{m}.difference_to_overall"]),
                  float(mf.difference(method="to_overall")[m]))
            check(f"ratio_to_overall.{m}", float(audit.est[f"s.{m}.ratio_to_overall"]),
                  float(mf.ratio(method="to_overall")[m]))
    return {"max_abs_diff": worst[1], "compared": compared, "worst": worst[0]}
