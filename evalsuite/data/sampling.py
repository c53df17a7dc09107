"""Quick runs on part of a dataset: ``--limit N`` (first N) and ``--sample N`` (seeded, stratified).

The stratified sample allocates ``N`` across labels in proportion to their frequency (largest
remainder rounding), giving every label at least one sample when ``N`` is at least the number of
labels. With fewer slots than labels, which labels get one is drawn with the seed, weighted by
frequency. Within a label the samples are drawn without replacement with
``numpy.random.default_rng(seed)``; the result keeps dataset order. Same data and seed, same sample.
"""

from __future__ import annotations

import numpy as np

from evalsuite.data.base import Dataset
from evalsuite.errors import DataError, UsageError


def select(dataset: Dataset, *, limit: int | None = None, sample: int | None = None, seed: int = 0) -> Dataset:
    """The part of ``dataset`` to evaluate.

    ``limit``: the first ``limit`` samples in dataset order. ``sample``: a stratified sample of
    ``sample`` samples (see the module docstring). Neither: the dataset itself. A request at
    least as large as the dataset returns the whole dataset. Ids are kept, so per-sample seeds
    and results line up with a full run; the fingerprint of a strict subset is derived from the
    parent fingerprint and the chosen positions.

    Raises :class:`UsageError` for non-positive values or both options at once and
    :class:`DataError` when the result would be empty.
    """
    if limit is not None and sample is not None:
        raise UsageError("use either --limit or --sample, not both")
    for flag, value in (("limit", limit), ("sample", sample)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise UsageError(f"--{flag} must be a positive integer, got {value!r}")
    n = len(dataset)
    if n == 0:
        raise DataError(f"dataset {dataset.name} is empty")
    if limit is not None:
        if limit >= n:
            return dataset
        return dataset.subset(np.arange(int(limit)))
    if sample is not None:
        if sample >= n:
            return dataset
        return dataset.subset(stratified_indices(dataset.labels, int(sample), seed))
    return dataset


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Per-class sample counts summing to ``total``: proportional, at least one each (needs total >= K)."""
    n = counts.sum()
    quota = total * counts / n
    alloc = np.minimum(np.maximum(np.floor(quota).astype(np.int64), 1), counts)
    # Largest remainder: add where the quota is furthest above the allocation, take away where
    # the allocation is furthest above the quota (never below one). Ties go to the earlier class.
    while alloc.sum() < total:
        room = np.where(alloc < counts, quota - alloc, -np.inf)
        alloc[int(np.argmax(room))] += 1
    while alloc.sum() > total:
        excess = np.where(alloc > 1, alloc - quota, -np.inf)
        alloc[int(np.argmax(excess))] -= 1
    return alloc


def stratified_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded sample of ``size`` stratified by ``labels`` (``size < len(labels)``)."""
    keys = np.array([str(v) for v in labels], dtype=object)
    classes, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    if size >= len(classes):
        alloc = _allocate(counts, size)
    else:
        chosen = rng.choice(len(classes), size=size, replace=False, p=counts / counts.sum())
        alloc = np.zeros(len(classes), dtype=np.int64)
        alloc[chosen] = 1
    picked: list[np.ndarray] = []
    for c in range(len(classes)):
        if alloc[c] == 0:
            continue
        members = np.flatnonzero(inverse == c)
        picked.append(rng.choice(members, size=int(alloc[c]), replace=False))
    return np.sort(np.concatenate(picked))
