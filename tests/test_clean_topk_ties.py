"""Top-k accuracy with tied logits: deterministic, and exactly scikit-learn's tie rule (issue #21)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import top_k_accuracy_score

from evalsuite.stats.probability import topk_correct
from evalsuite.suites.base import Predictions
from evalsuite.suites.clean import classification_metrics


def _quantised(seed: int, n: int, c: int, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Logits rounded to ``step`` (as 8-bit or low-precision outputs are): many rows hold ties."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    z = rng.normal(size=(n, c))
    z[np.arange(n), labels] += rng.uniform(0, 2, n)
    return (np.round(z / step) * step).astype(np.float32), labels


def test_hand_computed_ties_rank_the_higher_class_first():
    """Six classes tie at 1.0: the higher index ranks first, so class 0 is sixth and class 1 fifth."""
    z = np.array([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]] * 4)
    y = np.array([0, 1, 5, 6])
    np.testing.assert_array_equal(topk_correct(z, y, 5), [0.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(topk_correct(z, y, 1), [0.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(topk_correct(z, y, 6), [1.0, 1.0, 1.0, 0.0])
    for k in (1, 5, 6):
        for row, label in enumerate(y):
            assert topk_correct(z, y, k)[row] == top_k_accuracy_score([label], z[row : row + 1], k=k, labels=range(7))


@pytest.mark.parametrize(("seed", "c", "step", "k"), [(0, 10, 1.0, 5), (1, 10, 0.5, 3), (2, 30, 1.0, 5), (3, 7, 2.0, 2)])
def test_matches_sklearn_row_by_row_on_quantised_logits(seed, c, step, k):
    z, y = _quantised(seed, 300, c, step)
    ties = np.array([np.sum(row == row[label]) > 1 for row, label in zip(z, y, strict=True)])
    assert ties.mean() > 0.2  # the case is about ties: a good share of label logits is tied
    ours = topk_correct(z, y, k)
    ref = np.array([top_k_accuracy_score([label], z[i : i + 1], k=k, labels=range(c)) for i, label in enumerate(y)])
    np.testing.assert_array_equal(ours, ref)
    assert ours.mean() == top_k_accuracy_score(y, z, k=k, labels=range(c))


def test_clean_top5_leaf_equals_sklearn_and_does_not_depend_on_row_order_or_dtype():
    z, y = _quantised(4, 500, 12, 1.0)
    names = [f"c{i}" for i in range(12)]

    def top5(logits: np.ndarray, labels: np.ndarray) -> float:
        p = Predictions("clean", "clean", {}, np.arange(len(labels)), np.array([str(i) for i in range(len(labels))],
                        dtype=object), labels, logits)
        return classification_metrics(p, names)[0]["top5_accuracy"]["value"]

    assert top5(z, y) == top_k_accuracy_score(y, z, k=5, labels=range(12))
    perm = np.random.default_rng(5).permutation(len(y))
    assert top5(z[perm], y[perm]) == top5(z, y)
    assert top5(z.astype(np.float64), y) == top5(z, y)
    np.testing.assert_array_equal(topk_correct(z[perm], y[perm], 5), topk_correct(z, y, 5)[perm])


def test_nonfinite_rows_are_wrong_and_chunks_do_not_matter(monkeypatch):
    z, y = _quantised(6, 200, 10, 1.0)
    whole = topk_correct(z, y, 5)
    import evalsuite.stats.probability as probability

    monkeypatch.setattr(probability, "_CHUNK_ELEMENTS", 35)  # 3 rows per chunk
    np.testing.assert_array_equal(topk_correct(z, y, 5), whole)
    bad = z.copy()
    bad[0, 3], bad[1, int(y[1])] = np.nan, np.inf
    out = topk_correct(bad, y, 5)
    assert out[0] == 0.0 and out[1] == 0.0
    np.testing.assert_array_equal(out[2:], whole[2:])
