"""Reported numbers: the metric leaf format and bootstrap confidence intervals.

Every number in results.json is a *metric leaf*: ``{"value", "n", "ci", "direction"}``.
``ci`` is a two-element list (95% percentile bootstrap unless stated) or ``None`` when the
number is exact (a count) rather than an estimate. ``direction`` says whether higher or lower
is better, so gates and reports never guess.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

DEFAULT_BOOTSTRAP = 1000
CI_LEVEL = 0.95


def _clean(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def metric(
    value: float | None,
    n: int,
    ci: tuple[float, float] | list[float] | None = None,
    direction: str = "higher",
    **extra: Any,
) -> dict[str, Any]:
    """Build a metric leaf. Non-finite values become ``None`` (JSON has no NaN)."""
    if direction not in ("higher", "lower", "none"):
        raise ValueError(f"direction must be 'higher', 'lower' or 'none', got {direction!r}")
    leaf: dict[str, Any] = {
        "value": _clean(value),
        "n": int(n),
        "ci": None if ci is None else [_clean(ci[0]), _clean(ci[1])],
        "direction": direction,
    }
    leaf.update(extra)
    return leaf


def is_metric(node: Any) -> bool:
    """True for a metric leaf (a dict carrying ``value`` and ``n``)."""
    return isinstance(node, dict) and "value" in node and "n" in node


def bootstrap_indices(n: int, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` resampling indices from a seeded generator."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_boot, n))


def percentile_ci(samples: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates, ignoring NaN replicates."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return (math.nan, math.nan)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(samples, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def bootstrap_mean_ci(
    values: np.ndarray, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0, level: float = CI_LEVEL
) -> tuple[float, float]:
    """95% bootstrap CI of a mean (accuracy when ``values`` is 0/1 correctness).

    Uses the multinomial-count form (resampling counts per sample) so memory stays O(n_boot x n)
    only for small n and falls back to chunked resampling for large n.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    n = values.size
    if n == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, int(2e7 // max(n, 1)))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return percentile_ci(means, level)


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: np.ndarray,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> tuple[float, float]:
    """95% percentile bootstrap CI of ``statistic(*arrays)``, resampling rows jointly."""
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("bootstrap_ci arrays must have equal length")
    if n == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        reps[b] = statistic(*(np.asarray(a)[idx] for a in arrays))
    return percentile_ci(reps, level)


def mean_metric(values: np.ndarray, direction: str = "higher", seed: int = 0, **extra: Any) -> dict[str, Any]:
    """Metric leaf for a mean of per-sample values with its bootstrap CI."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return metric(None, 0, None, direction, **extra)
    return metric(values.mean(), values.size, bootstrap_mean_ci(values, seed=seed), direction, **extra)
