"""The clean condition: how good the model is on the data as given.

Accuracy, top-5 (with at least 5 classes; tied logits ranked as scikit-learn's
``top_k_accuracy_score`` ranks them, :func:`evalsuite.stats.probability.topk_correct`), per-class precision/recall/F1, macro-F1, the
confusion matrix and NLL, with 95% bootstrap CIs on the headline numbers, plus a gallery of
the most confident mistakes. Rows whose logits are not finite count as errors and are
reported; the runner's sanity check fails the run on them.

Options (``suites: {clean: {...}}``): ``gallery`` (default 12), how many of the most confident
mistakes the scorecard shows (0: none).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalsuite.conditions import Condition
from evalsuite.metric_specs import MetricSpec, specs_under
from evalsuite.predictions import Predictions, PredictionSet
from evalsuite.report.images import thumbnail_png
from evalsuite.stats import (
    bootstrap_ci,
    bootstrap_mean_ci,
    mean_metric,
    metric,
    per_sample_nll,
    predicted_labels,
)
from evalsuite.stats.probability import topk_correct
from evalsuite.suites.base import RunContext, Suite, SuiteOutput

log = logging.getLogger(__name__)

GALLERY_SIZE = 12


def confusion(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix (rows true, columns predicted); non-finite predictions (-1) are dropped."""
    ok = pred >= 0
    return np.bincount(labels[ok] * n_classes + pred[ok], minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def prf_from_confusion(cm: np.ndarray, n_invalid_per_class: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support (zero_division=0, as scikit-learn's default).

    ``n_invalid_per_class`` counts samples of each true class whose prediction was not finite:
    they are misses (lower recall) but predict no class.
    """
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    if n_invalid_per_class is not None:
        support = support + n_invalid_per_class
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def macro_f1(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Macro-F1 over the classes present in labels or predictions (scikit-learn's convention)."""
    cm = confusion(labels, pred, n_classes)
    invalid = np.bincount(labels[pred < 0], minlength=n_classes)
    stats = prf_from_confusion(cm, invalid)
    present = (stats["support"] > 0) | (cm.sum(axis=0) > 0)
    return float(stats["f1"][present].mean()) if present.any() else float("nan")


def _macro_f1_ci(labels: np.ndarray, pred: np.ndarray, n_classes: int, seed: int) -> tuple[float, float]:
    return bootstrap_ci(lambda y, p: macro_f1(y, p, n_classes), labels, pred, seed=seed)


def classification_metrics(p: Predictions, class_names: list[str], seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics tree, report data) for one condition's predictions."""
    n_classes = len(class_names)
    labels = np.asarray(p.labels, dtype=np.int64)
    n = len(labels)
    pred = predicted_labels(p.logits)
    finite = pred >= 0
    correct = (pred == labels).astype(np.float64)
    metrics: dict[str, Any] = {
        "accuracy": metric(correct.mean() if n else None, n, bootstrap_mean_ci(correct, seed=seed) if n else None),
        "error_rate": metric(1 - correct.mean() if n else None, n, None, "lower"),
        "nonfinite_logits": metric(int((~finite).sum()), n, None, "lower"),
    }
    if n_classes >= 5:
        top5 = topk_correct(p.logits, labels, 5)
        metrics["top5_accuracy"] = metric(top5.mean() if n else None, n, bootstrap_mean_ci(top5, seed=seed) if n else None)
    mf1 = macro_f1(labels, pred, n_classes) if n else None
    metrics["macro_f1"] = metric(mf1, n, _macro_f1_ci(labels, pred, n_classes, seed) if n else None)
    nll = per_sample_nll(p.logits[finite], labels[finite]) if finite.any() else np.array([])
    metrics["nll"] = mean_metric(nll, direction="lower", seed=seed)
    cm = confusion(labels, pred, n_classes)
    stats = prf_from_confusion(cm, np.bincount(labels[~finite], minlength=n_classes))
    per_class: dict[str, Any] = {}
    for c, name in enumerate(class_names):
        support = int(stats["support"][c])
        per_class[name] = {
            "precision": metric(stats["precision"][c], int(cm[:, c].sum())),
            "recall": metric(stats["recall"][c], support),
            "f1": metric(stats["f1"][c], support),
        }
    metrics["per_class"] = per_class
    report = {
        "confusion_matrix": cm.tolist(),
        "class_names": list(class_names),
        "support": stats["support"].astype(int).tolist(),
    }
    return metrics, report


@dataclass
class CleanOptions:
    """``suites: {clean: {...}}``."""

    gallery: int = GALLERY_SIZE  # most confident mistakes shown (0 or less: none)


class CleanSuite(Suite):
    """Clean-data classification metrics and the misprediction gallery (options: :class:`CleanOptions`)."""

    name = "clean"
    Options = CleanOptions

    def metric_specs(self, run: RunContext, conditions: Sequence[Condition]) -> list[MetricSpec]:
        specs = [MetricSpec("clean.accuracy"), MetricSpec("clean.macro_f1"), MetricSpec("clean.nll"),
                 MetricSpec("clean.error_rate", ci=False), MetricSpec("clean.nonfinite_logits", ci=False)]
        if len(run.model.info.class_names) >= 5:
            specs.append(MetricSpec("clean.top5_accuracy"))
        specs += specs_under("clean.per_class.*", ("precision", "recall", "f1"), ci=False)
        return specs

    def summarize(self, run: RunContext, preds: PredictionSet) -> SuiteOutput:
        p = preds.clean
        class_names = list(run.model.info.class_names)
        metrics, report = classification_metrics(p, class_names, seed=run.seed)
        report["gallery"] = self._gallery(run, p, class_names, self.opts.gallery)
        report["n_classes"] = len(class_names)
        return SuiteOutput(metrics=metrics, report=report)

    @staticmethod
    def _gallery(run: RunContext, p: Predictions, class_names: list[str], k: int) -> list[dict[str, Any]]:
        """The ``k`` most confident errors, with thumbnails saved as artifacts."""
        pred = predicted_labels(p.logits)
        wrong = np.flatnonzero((pred != p.labels) & (pred >= 0))
        if k <= 0 or wrong.size == 0 or run.image_source is None:
            return []
        conf = p.probs[wrong, pred[wrong]]
        order = wrong[np.argsort(-conf, kind="stable")[:k]]
        images = run.image_source(p.index[order])
        items = []
        for rank, (row, image) in enumerate(zip(order, images, strict=True)):
            path = run.save_artifact(f"gallery_{rank:02d}.png", thumbnail_png(image))
            items.append(
                {
                    "id": str(p.ids[row]),
                    "label": class_names[int(p.labels[row])],
                    "predicted": class_names[int(pred[row])],
                    "confidence": float(p.probs[row, pred[row]]),
                    "label_probability": float(p.probs[row, int(p.labels[row])]),
                    "image": path,
                }
            )
        return items
