"""Clean-condition metrics against scikit-learn and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from evalsuite.stats import bootstrap_mean_ci, metric, per_sample_nll, predicted_labels, softmax
from evalsuite.suites.base import Predictions
from evalsuite.suites.clean import classification_metrics, confusion, macro_f1


def _preds(logits: np.ndarray, labels: np.ndarray) -> Predictions:
    n = len(labels)
    return Predictions("clean", "clean", {}, np.arange(n), np.array([str(i) for i in range(n)], dtype=object), labels, logits)


@pytest.fixture()
def random_case():
    rng = np.random.default_rng(3)
    n, c = 400, 7
    labels = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)).astype(np.float32)
    logits[np.arange(n), labels] += rng.uniform(0, 3, n).astype(np.float32)  # better than chance
    return logits, labels, c


def test_against_sklearn(random_case):
    logits, labels, c = random_case
    names = [f"class{i}" for i in range(c)]
    m, report = classification_metrics(_preds(logits, labels), names)
    pred = logits.argmax(1)
    assert m["accuracy"]["value"] == pytest.approx(accuracy_score(labels, pred))
    assert m["macro_f1"]["value"] == pytest.approx(f1_score(labels, pred, average="macro"))
    probs = softmax(logits)
    assert m["nll"]["value"] == pytest.approx(log_loss(labels, probs, labels=list(range(c))), rel=1e-6)
    assert m["top5_accuracy"]["value"] == pytest.approx(top_k_accuracy_score(labels, logits, k=5, labels=list(range(c))))
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=list(range(c)), zero_division=0)
    for i, name in enumerate(names):
        assert m["per_class"][name]["precision"]["value"] == pytest.approx(p[i])
        assert m["per_class"][name]["recall"]["value"] == pytest.approx(r[i])
        assert m["per_class"][name]["f1"]["value"] == pytest.approx(f[i])
        assert m["per_class"][name]["recall"]["n"] == s[i]
    np.testing.assert_array_equal(np.array(report["confusion_matrix"]), confusion_matrix(labels, pred, labels=list(range(c))))
    lo, hi = m["accuracy"]["ci"]
    assert lo < m["accuracy"]["value"] < hi


def test_no_top5_with_few_classes():
    logits = np.array([[2.0, 0.0, 1.0], [0.0, 1.0, 3.0]], dtype=np.float32)
    m, _ = classification_metrics(_preds(logits, np.array([0, 1])), ["a", "b", "c"])
    assert "top5_accuracy" not in m
    assert m["accuracy"]["value"] == 0.5


def test_hand_computed_nll():
    logits = np.array([[0.0, 0.0], [np.log(3.0), 0.0]])
    nll = per_sample_nll(logits, np.array([0, 1]))
    np.testing.assert_allclose(nll, [np.log(2.0), -np.log(0.25)])


def test_macro_f1_absent_class_matches_sklearn():
    labels = np.array([0, 0, 1, 1, 1])
    pred = np.array([0, 2, 1, 1, 0])  # class 2 predicted but never true; class 3 never seen
    assert macro_f1(labels, pred, 4) == pytest.approx(f1_score(labels, pred, average="macro"))


def test_nonfinite_logits_count_as_errors():
    logits = np.array([[5.0, 0.0], [np.nan, 1.0], [np.inf, 0.0], [0.0, 2.0]], dtype=np.float32)
    labels = np.array([0, 1, 0, 1])
    assert list(predicted_labels(logits)) == [0, -1, -1, 1]
    m, _ = classification_metrics(_preds(logits, labels), ["a", "b"])
    assert m["accuracy"]["value"] == 0.5
    assert m["nonfinite_logits"]["value"] == 2
    assert m["nll"]["n"] == 2  # NLL only over finite rows
    assert confusion(labels, predicted_labels(logits), 2).sum() == 2


def test_bootstrap_ci_covers_and_is_seeded():
    rng = np.random.default_rng(0)
    values = (rng.random(500) < 0.8).astype(float)
    a = bootstrap_mean_ci(values, seed=1)
    b = bootstrap_mean_ci(values, seed=1)
    assert a == b
    se = np.sqrt(0.8 * 0.2 / 500)
    assert a[0] == pytest.approx(values.mean() - 1.96 * se, abs=0.01)
    assert a[1] == pytest.approx(values.mean() + 1.96 * se, abs=0.01)


def test_metric_leaf_cleans_non_finite():
    leaf = metric(float("nan"), 3, (float("-inf"), 1.0), "lower")
    assert leaf == {"value": None, "n": 3, "ci": [None, 1.0], "direction": "lower"}
    with pytest.raises(ValueError):
        metric(1.0, 1, direction="up")
