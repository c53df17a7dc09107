"""One stratified split (evalsuite.stats.split) reproduces each former copy bit for bit.

The frozen functions below are the implementations as they were before issue #16 moved them
onto :func:`evalsuite.stats.stratified_split` (calibration/split.py, data/sampling.py,
data/builtin.py, training/data.py); each caller must still give exactly their output.
"""

from __future__ import annotations

import numpy as np
import pytest

from evalsuite.stats import fraction_sizes, shuffle_order, stratified_split

# ------------------------------------------------------------------ frozen former copies


def _frozen_calibration(ids, labels, fraction, seed):
    from evalsuite.seeding import sample_seeds

    ids = np.asarray(ids).astype(str)
    labels = np.asarray(labels, dtype=np.int64)
    keys = sample_seeds(seed, "calibration/split", list(ids))
    cal_parts = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        ranked = members[np.lexsort((ids[members], keys[members]))]
        k = int(np.floor(fraction * len(members) + 0.5))
        cal_parts.append(ranked[:k])
    cal = np.sort(np.concatenate(cal_parts)) if cal_parts else np.zeros(0, dtype=np.int64)
    mask = np.zeros(len(labels), dtype=bool)
    mask[cal] = True
    held = np.flatnonzero(~mask)
    return cal.astype(np.int64), held.astype(np.int64)


def _frozen_allocate(counts, total):
    n = counts.sum()
    quota = total * counts / n
    alloc = np.minimum(np.maximum(np.floor(quota).astype(np.int64), 1), counts)
    while alloc.sum() < total:
        room = np.where(alloc < counts, quota - alloc, -np.inf)
        alloc[int(np.argmax(room))] += 1
    while alloc.sum() > total:
        excess = np.where(alloc > 1, alloc - quota, -np.inf)
        alloc[int(np.argmax(excess))] -= 1
    return alloc


def _frozen_sampling(labels, size, seed):
    keys = np.array([str(v) for v in labels], dtype=object)
    classes, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    if size >= len(classes):
        alloc = _frozen_allocate(counts, size)
    else:
        chosen = rng.choice(len(classes), size=size, replace=False, p=counts / counts.sum())
        alloc = np.zeros(len(classes), dtype=np.int64)
        alloc[chosen] = 1
    picked = []
    for c in range(len(classes)):
        if alloc[c] == 0:
            continue
        members = np.flatnonzero(inverse == c)
        picked.append(rng.choice(members, size=int(alloc[c]), replace=False))
    return np.sort(np.concatenate(picked))


def _frozen_builtin(labels, seed, fractions=(0.6, 0.2, 0.2)):
    rng = np.random.default_rng(seed)
    parts = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_train = int(round(fractions[0] * len(idx)))
        n_val = int(round(fractions[1] * len(idx)))
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train : n_train + n_val])
        parts["test"].append(idx[n_train + n_val :])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def _frozen_holdout(labels, fraction, seed):
    rng = np.random.default_rng(seed)
    keep, hold = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        else:
            k = 0
        hold.append(idx[:k])
        keep.append(idx[k:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(hold))


# ------------------------------------------------------------------------- label vectors


def _label_vectors():
    rng = np.random.default_rng(12345)
    yield "balanced", np.arange(60) % 3
    yield "imbalanced", rng.choice(5, size=137, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    yield "eleven_classes", rng.integers(0, 11, size=230)  # str order 0, 1, 10, 2, ... differs from int order
    yield "singletons", np.array([0, 1, 1, 2, 2, 2, 3, 4, 4, 4, 4, 4])
    yield "odd_halves", np.repeat(np.arange(4), [1, 3, 5, 7])  # .5 cases for both roundings
    yield "large_class", rng.integers(0, 3, size=30_000)  # rng.choice's tail-shuffle path (> 10,000 members)
    yield "digits", np.repeat(np.arange(10), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])


LABELS = list(_label_vectors())
SEEDS = (0, 1, 7, 2**40 + 3)


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name,labels", LABELS, ids=[n for n, _ in LABELS])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fraction", (0.5, 0.3, 0.9))
def test_calibration_split_matches_frozen(name, labels, seed, fraction):
    from evalsuite.calibration.split import stratified_split as calibration_split

    if name == "large_class" and fraction != 0.5:
        pytest.skip("one fraction is enough for the large vector")
    ids = np.array([f"img/{i:05d}" for i in np.random.default_rng(seed % 97).permutation(len(labels))])
    cal, held = _frozen_calibration(ids, labels, fraction, seed)
    if len(cal) == 0 or len(held) == 0:
        pytest.skip("the caller refuses an empty part")
    got = calibration_split(ids, labels, fraction, seed)
    _same(got.calibration, cal)
    _same(got.heldout, held)


@pytest.mark.parametrize("name,labels", LABELS, ids=[n for n, _ in LABELS])
@pytest.mark.parametrize("seed", SEEDS)
def test_sampling_matches_frozen(name, labels, seed):
    from evalsuite.data.sampling import stratified_indices

    k = len(np.unique(labels))
    for size in sorted({1, max(1, k - 1), k, k + 3, len(labels) // 3, len(labels) - 1}):
        _same(stratified_indices(labels, size, seed), _frozen_sampling(labels, size, seed))
        # string labels (folder datasets) group the same way
        str_labels = np.array([f"class_{v}" for v in labels], dtype=object)
        _same(stratified_indices(str_labels, size, seed), _frozen_sampling(str_labels, size, seed))


@pytest.mark.parametrize("name,labels", LABELS, ids=[n for n, _ in LABELS])
@pytest.mark.parametrize("seed", SEEDS)
def test_builtin_split_matches_frozen(name, labels, seed):
    from evalsuite.data.builtin import _stratified_split

    want = _frozen_builtin(labels, seed)
    got = _stratified_split(labels, seed)
    assert list(got) == list(want)
    for part in want:
        _same(got[part], want[part])


@pytest.mark.parametrize("name,labels", LABELS, ids=[n for n, _ in LABELS])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fraction", (0.1, 0.25, 0.5))
def test_training_holdout_matches_frozen(name, labels, seed, fraction):
    from training.data import stratified_holdout

    keep, hold = _frozen_holdout(labels, fraction, seed)
    got_keep, got_hold = stratified_holdout(labels, fraction, seed)
    _same(got_keep, keep)
    _same(got_hold, hold)


def test_builtin_digits_split_unchanged():
    """The shipped 60/20/20 digits split (seed 0) is the one every recorded result used."""
    from sklearn.datasets import load_digits

    from evalsuite.data.builtin import SPLIT_SEED, _stratified_split

    labels = load_digits().target.astype(np.int64)
    want = _frozen_builtin(labels, SPLIT_SEED)
    got = _stratified_split(labels, SPLIT_SEED)
    for part in want:
        _same(got[part], want[part])


def test_parts_partition_and_sizes():
    labels = np.repeat(np.arange(3), [10, 7, 4])
    parts = stratified_split(labels, fraction_sizes((0.5, 0.25), "half_up"), shuffle_order(0))
    assert len(parts) == 3
    allpos = np.concatenate(parts)
    np.testing.assert_array_equal(np.sort(allpos), np.arange(len(labels)))
    assert [int((labels[parts[0]] == c).sum()) for c in range(3)] == [5, 4, 2]  # floor(f n + 0.5)
    half_even = stratified_split(labels, fraction_sizes(0.5, "half_even"), shuffle_order(0))
    assert [int((labels[half_even[0]] == c).sum()) for c in range(3)] == [5, 4, 2]  # round(3.5) = 4
    assert [int((labels[stratified_split(labels, fraction_sizes(0.25, "half_even"), shuffle_order(0))[0]] == c).sum())
            for c in range(3)] == [2, 2, 1]  # round(2.5) = 2, round(1.75) = 2, round(1.0) = 1
    assert stratified_split(np.zeros(0, dtype=np.int64), fraction_sizes(0.5), shuffle_order(0))[0].dtype == np.int64


def test_unknown_rounding_is_refused():
    with pytest.raises(ValueError, match="rounding"):
        fraction_sizes(0.5, "banker")
