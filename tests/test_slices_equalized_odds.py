"""Multiclass equalized odds: one-vs-rest TPR/FPR gaps per class, worst over classes.

Checked against a hand computation (four classes, three groups, one class absent from a group)
and against ``fairlearn.metrics.equalized_odds_difference`` (with its two parts,
``true_positive_rate_difference`` and ``false_positive_rate_difference``) on each one-vs-rest
binarised problem ``(y == k, pred == k)``.
"""

from __future__ import annotations

import numpy as np
import pytest

from evalsuite.slices.audit import audit_groups, audit_metrics
from evalsuite.slices.metrics import RowStats

# (true class, predicted class) per row, by group; class 3 has no true sample in group C
HAND = {
    "A": [(0, 0), (0, 0), (1, 1), (2, 2), (2, 1), (3, 3)],
    "B": [(0, 0), (1, 1), (1, 1), (2, 2), (3, 3), (3, 3)],
    "C": [(0, 0), (0, 0), (0, 2), (1, 1), (2, 1), (2, 2)],
}
CLASSES = ["c0", "c1", "c2", "c3"]
# by hand, one-vs-rest per class (A, B, C):
#   c0: TPR 2/2, 1/1, 2/3 -> gap 1/3;  FPR 0, 0, 0 -> 0                   => 1/3 (TPR-driven)
#   c1: TPR 1/1, 2/2, 1/1 -> gap 0;    FPR 1/5 (the (2,1) row), 0/4, 1/5   => 1/5 (FPR-driven)
#   c2: TPR 1/2, 1/1, 1/2 -> gap 1/2;  FPR 0/4, 0/5, 1/4 (the (0,2) row)   => 1/2 (the worst class)
#   c3: TPR 1/1, 2/2, undefined in C -> gap 0; FPR 0, 0, 0                  => 0 (fairlearn: 1, TPR 0 in C)
HAND_TPR_GAP = [1 / 3, 0.0, 1 / 2, 0.0]
HAND_FPR_GAP = [0.0, 1 / 5, 1 / 4, 0.0]
HAND_EOD = [1 / 3, 1 / 5, 1 / 2, 0.0]


def _hand_rows():
    pairs = [(y, p, g) for g, rows in HAND.items() for y, p in rows]
    y = np.array([r[0] for r in pairs])
    pred = np.array([r[1] for r in pairs])
    groups = np.array([r[2] for r in pairs], dtype=object)
    probs = np.full((len(y), 4), 0.1)
    probs[np.arange(len(y)), pred] = 0.7
    return y, pred, groups, probs


def test_hand_computed_multiclass_equalized_odds():
    y, pred, groups, probs = _hand_rows()
    codes = np.searchsorted(np.array(list(HAND)), groups)
    a = audit_groups(RowStats.from_probs(y, probs), codes, list(HAND), min_group_size=1, n_boot=0, class_names=CLASSES)
    np.testing.assert_allclose(a.est["eod.tpr"], HAND_TPR_GAP, atol=1e-15)
    np.testing.assert_allclose(a.est["eod.fpr"], HAND_FPR_GAP, atol=1e-15)
    np.testing.assert_allclose(a.est["eod.class"], HAND_EOD, atol=1e-15)
    m = audit_metrics(a)
    worst = m["equalized_odds_difference"]
    assert worst["value"] == pytest.approx(0.5) and worst["class"] == "c2" and worst["direction"] == "lower"
    by_class = m["equalized_odds_by_class"]
    assert list(by_class) == CLASSES
    for k, name in enumerate(CLASSES):
        leaf = by_class[name]
        assert leaf["value"] == pytest.approx(HAND_EOD[k], abs=1e-15)
        assert leaf["tpr_difference"] == pytest.approx(HAND_TPR_GAP[k], abs=1e-15)
        assert leaf["fpr_difference"] == pytest.approx(HAND_FPR_GAP[k], abs=1e-15)
        assert leaf["n"] == len(y)


def test_hand_case_against_fairlearn_on_each_binarised_problem():
    from fairlearn.metrics import equalized_odds_difference

    y, pred, groups, _ = _hand_rows()
    ref = [equalized_odds_difference(y == k, pred == k, sensitive_features=groups) for k in range(4)]
    np.testing.assert_allclose(ref[:3], HAND_EOD[:3], atol=1e-15)
    # the one deliberate difference: fairlearn counts the TPR of a group without positives as 0
    assert ref[3] == pytest.approx(1.0)  # evalsuite: 0 (HAND_EOD), class 3 has no gap where it is defined


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_fairlearn_on_each_one_vs_rest_problem(seed):
    from fairlearn.metrics import (
        equalized_odds_difference,
        false_positive_rate_difference,
        true_positive_rate_difference,
    )

    rng = np.random.default_rng(seed)
    n, c = 3000, 5
    codes = rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1])  # unequal group sizes
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) * 1.5
    logits[np.arange(n), y] += 0.5 + 0.5 * codes + 0.3 * y  # accuracy depends on group and class
    names = ["g0", "g1", "g2", "g3"]
    sf = np.array(names, dtype=object)[codes]
    rows = RowStats.from_logits(y, logits)
    a = audit_groups(rows, codes, names, min_group_size=1, n_boot=200, seed=seed, class_names=[f"k{k}" for k in range(c)])
    m = audit_metrics(a)
    pred = logits.argmax(axis=1)
    ref = []
    for k in range(c):
        yt, yp = y == k, pred == k
        leaf = m["equalized_odds_by_class"][f"k{k}"]
        ref.append(equalized_odds_difference(yt, yp, sensitive_features=sf))
        assert leaf["value"] == pytest.approx(ref[-1], abs=1e-12)
        assert leaf["tpr_difference"] == pytest.approx(true_positive_rate_difference(yt, yp, sensitive_features=sf), abs=1e-12)
        assert leaf["fpr_difference"] == pytest.approx(false_positive_rate_difference(yt, yp, sensitive_features=sf), abs=1e-12)
        lo, hi = leaf["ci"]
        assert 0.0 <= lo <= leaf["value"] <= hi <= 1.0
    worst = m["equalized_odds_difference"]
    assert worst["value"] == pytest.approx(max(ref), abs=1e-12)
    assert worst["class"] == f"k{int(np.argmax(ref))}"
    lo, hi = worst["ci"]
    assert lo <= worst["value"] <= hi
    # other conditions keep only the worst class, to keep results.json small
    assert "equalized_odds_by_class" not in audit_metrics(a, full=False)


def test_fairlearn_cross_check_covers_equalized_odds_per_class():
    from evalsuite.slices.reference import compare_with_metricframe

    rng = np.random.default_rng(4)
    n, c = 900, 4
    codes = rng.integers(0, 3, n)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), y] += 1.0 + 0.5 * codes
    names = np.array(["a", "b", "c"], dtype=object)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    a = audit_groups(RowStats.from_logits(y, logits), codes, list(names), min_group_size=1, n_boot=0)
    res = compare_with_metricframe(a, y, probs, names[codes])
    assert res["max_abs_diff"] < 1e-10
    # its per-class reference is fairlearn's equalized_odds_difference on the binarised problem
    from fairlearn.metrics import equalized_odds_difference

    from evalsuite.slices.reference import _equalized_odds_reference, metric_frame

    ref = _equalized_odds_reference(metric_frame(y, probs, names[codes]), y, names[codes], c)
    pred = probs.argmax(axis=1)
    assert sorted(ref) == list(range(c))
    for k, v in ref.items():
        assert v == pytest.approx(equalized_odds_difference(y == k, pred == k, sensitive_features=names[codes]), abs=1e-12)
    # the check would see a wrong per-class value
    a.est["eod.class"] = a.est["eod.class"] + np.array([0.0, 0.0, 0.01, 0.0])
    res = compare_with_metricframe(a, y, probs, names[codes])
    assert res["worst"] == "equalized_odds.2" and res["max_abs_diff"] == pytest.approx(0.01)
