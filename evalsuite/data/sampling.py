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


def stratified_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded sample of ``size`` stratified by ``labels`` (``size < len(labels)``).

    Labels are grouped as strings; one ``default_rng(seed)`` draws the allocation, then each
    label's members (:func:`evalsuite.stats.allocated_sizes`, :func:`evalsuite.stats.draw_order`).
    """
    from evalsuite.stats import allocated_sizes, draw_order, stratified_split

    keys = np.array([str(v) for v in labels], dtype=object)
    rng = np.random.default_rng(seed)
    return stratified_split(keys, allocated_sizes(size, rng), draw_order(rng))[0]


def subset_positions(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Dataset positions of a suite's seeded stratified subset of ``n`` samples (int64, sorted).

    The one rule every suite that measures on part of the data uses (adversarial ``n``, the
    perturbation suites' ``n`` / ``ci_half_width``): ``n`` None or at least ``len(labels)`` is every
    position, else :func:`stratified_indices`. A function of (labels, ``n``, seed) only, so the plan,
    shards, ``--resume`` and a baseline of the same data all see the same subset.
    """
    total = len(labels)
    if n is None or n >= total:
        return np.arange(total, dtype=np.int64)
    return np.asarray(stratified_indices(np.asarray(labels), int(n), seed), dtype=np.int64)
