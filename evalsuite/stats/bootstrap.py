"""The bootstrap engine: seeded resampling of rows and the replicates every suite reports.

Every interval in results.json comes from here. A replicate resamples the ``n`` rows with
replacement from ``numpy.random.default_rng(seed)``; the row draws of replicate ``b`` are the
``b``-th block of ``rng.integers(0, n, size=n)``, whatever chunk size a caller computes in, so
index and count forms of the same seed describe the same replicates:

- *index* form: statistic of ``values[idx]`` (:func:`bootstrap_ci`, :func:`bootstrap_mean_ci`,
  :func:`joint_mean_replicates`);
- *count* form: how often each row was drawn (:func:`resample_counts`, :func:`count_blocks`),
  so a statistic that is a weighted sum becomes one matrix product per chunk
  (:func:`joint_count_replicates`, the calibration and slice audits);
- *closed* forms where the resampling distribution is known exactly (a 0/1 mean is Binomial:
  :func:`binomial_difference_ci`; a discrete value per group is Multinomial).

Intervals are computed from the replicates in :mod:`evalsuite.stats.intervals`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from evalsuite.stats.intervals import CI_LEVEL, percentile_ci

DEFAULT_BOOTSTRAP = 1000
#: Index arrays per chunk stay under this many elements (about 160 MB of int64).
_CHUNK_ELEMENTS = int(2e7)


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def resample_counts(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """``(m, n)`` float64 draw counts of ``m`` replicates (row ``b``: how often each sample was drawn)."""
    idx = rng.integers(0, n, size=(m, n))
    flat = (np.arange(m, dtype=np.int64)[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=m * n).reshape(m, n).astype(np.float64)


def count_blocks(
    n: int, n_boot: int = DEFAULT_BOOTSTRAP, seed: int | np.random.Generator = 0, chunk: int | None = None
) -> Iterator[np.ndarray]:
    """Chunks of :func:`resample_counts`, ``n_boot`` replicates in all (``chunk`` rows at a time;
    by default as many as keep one chunk near 4 M counts). Nothing is yielded for ``n == 0``."""
    if n <= 0:
        return
    rng = _rng(seed)
    chunk = max(1, (1 << 22) // n) if chunk is None else max(1, int(chunk))
    for start in range(0, n_boot, chunk):
        yield resample_counts(rng, n, min(chunk, n_boot - start))


def bootstrap_mean_ci(
    values: np.ndarray, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0, level: float = CI_LEVEL
) -> tuple[float, float]:
    """95% bootstrap CI of a mean (accuracy when ``values`` is 0/1 correctness), in index chunks
    small enough to bound memory for large ``n``."""
    values = np.asarray(values, dtype=np.float64).ravel()
    n = values.size
    if n == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return percentile_ci(means, level)


def statistic_replicates(
    statistic: Callable[..., float], *arrays: np.ndarray, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0
) -> np.ndarray:
    """``statistic(*arrays)`` on each of ``n_boot`` replicates, rows of all arrays resampled jointly."""
    if not arrays:
        raise ValueError("the bootstrap needs at least one array")
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("bootstrap arrays must have equal length")
    if n == 0:
        return np.full(n_boot, np.nan)
    rng = np.random.default_rng(seed)
    cols = [np.asarray(a) for a in arrays]
    reps = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        reps[b] = statistic(*(a[idx] for a in cols))
    return reps


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: np.ndarray,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> tuple[float, float]:
    """95% percentile bootstrap CI of any ``statistic(*arrays)`` (rows resampled jointly)."""
    if arrays and len(arrays[0]) == 0:
        return (math.nan, math.nan)
    return percentile_ci(statistic_replicates(statistic, *arrays, n_boot=n_boot, seed=seed), level)


def joint_mean_replicates(matrix: np.ndarray, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """``(n_boot, P)`` column means of row-resampled ``matrix`` (``n x P``), rows drawn jointly
    for all columns (index form: paired comparisons between columns keep their correlation)."""
    n, p = matrix.shape
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, p))
    chunk = max(1, _CHUNK_ELEMENTS // max(n * p, 1))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = matrix[idx].mean(axis=1)
    return out


def joint_count_replicates(matrix: np.ndarray, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0, chunk: int = 50) -> np.ndarray:
    """:func:`joint_mean_replicates` in count form: ``counts @ matrix / n`` per chunk of ``chunk``
    replicates (one BLAS product instead of a gather; NaN when there are no rows)."""
    n = matrix.shape[0]
    out = np.empty((n_boot, matrix.shape[1]))
    if n == 0:
        out.fill(np.nan)
        return out
    start = 0
    for counts in count_blocks(n, n_boot, seed, chunk=chunk):
        out[start : start + len(counts)] = counts @ matrix / n
        start += len(counts)
    return out


def binomial_difference_ci(
    a: np.ndarray, b: np.ndarray, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0, level: float = CI_LEVEL
) -> tuple[float, float]:
    """95% CI of ``mean(a) - mean(b)`` for 0/1 arrays resampled independently.

    Resampling ``n`` Bernoulli values with replacement gives a Binomial(n, mean) count, so the
    bootstrap is drawn directly from binomials (same distribution, no index arrays).
    """
    rng = np.random.default_rng(seed)
    ra = rng.binomial(len(a), float(np.mean(a)), size=n_boot) / len(a)
    rb = rng.binomial(len(b), float(np.mean(b)), size=n_boot) / len(b)
    return percentile_ci(ra - rb, level)


def multinomial_mean_ci(
    values: np.ndarray, codes: np.ndarray, n_groups: int, n_boot: int, seed: int, level: float = CI_LEVEL
) -> tuple[np.ndarray, np.ndarray]:
    """Per-group means of a *discrete* per-row value and their stratified bootstrap CIs.

    Resampling rows within a group makes the counts of each distinct value multinomial, so
    this draws counts instead of rows (exact, cost independent of the number of rows). Returns
    ``(means (G,), ci (G, 2))``; empty groups give ``NaN``.
    """
    values = np.asarray(values, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    levels, inv = np.unique(values, return_inverse=True)
    inv = inv.ravel()
    counts = np.bincount(codes * len(levels) + inv, minlength=n_groups * len(levels)).reshape(n_groups, len(levels))
    sizes = counts.sum(axis=1)
    means = np.full(n_groups, np.nan)
    ci = np.full((n_groups, 2), np.nan)
    rng = np.random.default_rng(seed)
    alpha = (1.0 - level) / 2.0
    for g in range(n_groups):
        if sizes[g] == 0:
            continue
        means[g] = counts[g] @ levels / sizes[g]
        m = rng.multinomial(sizes[g], counts[g] / sizes[g], size=n_boot)
        reps = m @ levels / sizes[g]
        ci[g] = np.quantile(reps, [alpha, 1.0 - alpha])
    return means, ci
