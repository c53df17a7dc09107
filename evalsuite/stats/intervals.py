"""Confidence intervals from bootstrap replicates: percentile and BCa, scalar and vectorised.

Non-finite replicates (a metric undefined on a resample, e.g. a group that drew no rows) are
left out rather than poisoning the interval; an interval with no finite replicate is NaN.
"""

from __future__ import annotations

import math

import numpy as np

CI_LEVEL = 0.95


def percentile_ci(samples: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates, ignoring NaN replicates."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return (math.nan, math.nan)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(samples, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def percentiles(reps: np.ndarray, level: float = CI_LEVEL) -> np.ndarray:
    """:func:`percentile_ci` along axis 0 for every other axis at once: ``(2, ...)``.

    NumPy's linear method over the finite replicates, vectorised (``np.nanquantile`` loops in
    Python when NaNs are present)."""
    a = np.where(np.isfinite(reps), reps, np.nan)
    s = np.sort(a, axis=0)  # NaN sort last
    cnt = np.sum(~np.isnan(a), axis=0)
    alpha = (1.0 - level) / 2.0
    out = np.full((2,) + a.shape[1:], np.nan)
    valid = cnt > 0
    top = np.maximum(cnt - 1, 0)
    for i, q in enumerate((alpha, 1.0 - alpha)):
        pos = q * top
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, top)
        frac = pos - lo
        vlo = np.take_along_axis(s, lo[None, ...], axis=0)[0]
        vhi = np.take_along_axis(s, hi[None, ...], axis=0)[0]
        out[i] = np.where(valid, vlo + (vhi - vlo) * frac, np.nan)
    return out


def quantiles_per_column(reps: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Linear-interpolated quantile ``q[k, j]`` of column ``j`` of ``reps`` (``R x J``) for each row
    ``k`` of ``q``, ignoring non-finite replicates: ``(K, J)``."""
    a = np.where(np.isfinite(reps), reps, np.nan)
    s = np.sort(a, axis=0)
    cnt = np.sum(~np.isnan(a), axis=0)
    top = np.maximum(cnt - 1, 0)
    out = np.full(q.shape, np.nan)
    for k in range(q.shape[0]):
        pos = np.clip(q[k], 0.0, 1.0) * top
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, top)
        vlo = np.take_along_axis(s, lo[None, :], axis=0)[0]
        vhi = np.take_along_axis(s, hi[None, :], axis=0)[0]
        out[k] = np.where(cnt > 0, vlo + (vhi - vlo) * (pos - lo), np.nan)
    return out


def bca_interval(reps: np.ndarray, point: np.ndarray, accel: np.ndarray, level: float = CI_LEVEL) -> np.ndarray:
    """Bias-corrected and accelerated (BCa) bootstrap intervals, one per column: ``(2, J)``.

    ``z0`` is the normal quantile of the share of replicates below the point estimate (ties
    count half); ``accel`` the acceleration (for a mean: :func:`mean_acceleration`). The
    percentile levels ``Phi(z0 + (z0 + z) / (1 - a (z0 + z)))`` replace ``alpha`` and ``1 - alpha``.
    """
    from scipy.special import ndtr, ndtri

    reps = np.asarray(reps, dtype=np.float64)
    ok = np.isfinite(reps)
    cnt = ok.sum(axis=0)
    below = (np.where(ok, reps < point, False).sum(axis=0) + 0.5 * np.where(ok, reps == point, False).sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.clip(below / np.maximum(cnt, 1), 0.5 / np.maximum(cnt, 1), 1 - 0.5 / np.maximum(cnt, 1))
    z0 = ndtri(frac)
    alpha = (1.0 - level) / 2.0
    q = []
    for z in (ndtri(alpha), ndtri(1.0 - alpha)):
        denom = 1.0 - accel * (z0 + z)
        adj = np.where(denom > 0, z0 + (z0 + z) / np.where(denom > 0, denom, 1.0), np.sign(z) * np.inf)
        q.append(ndtr(adj))
    out = quantiles_per_column(reps, np.array(q))
    return np.where((cnt > 0) & np.isfinite(point), out, np.nan)


def mean_acceleration(values: np.ndarray, codes: np.ndarray, n_groups: int, weights: np.ndarray | None = None) -> np.ndarray:
    """BCa acceleration of a per-group mean: ``sum(u^3) / (6 (sum(u^2))^1.5)``, ``u = x - mean``
    (0 where the group has no spread); ``weights`` (0/1) selects the rows that enter the mean.
    Computed from raw power sums (three ``np.bincount`` calls)."""
    x = np.asarray(values, dtype=np.float64)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    wx = w * x
    cnt = np.bincount(codes, weights=w, minlength=n_groups)
    s1 = np.bincount(codes, weights=wx, minlength=n_groups)
    s2 = np.bincount(codes, weights=wx * x, minlength=n_groups)
    s3 = np.bincount(codes, weights=wx * x * x, minlength=n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s1 / cnt
        m2 = s2 - cnt * mean**2
        m3 = s3 - 3 * mean * s2 + 2 * cnt * mean**3
        a = m3 / (6.0 * np.maximum(m2, 0.0) ** 1.5)
    tiny = m2 <= 1e-12 * np.maximum(s2, 1e-300)  # no spread (up to rounding): no skew correction
    return np.where(np.isfinite(a) & ~tiny, a, 0.0)
