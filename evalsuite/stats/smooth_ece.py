"""Smooth ECE (Błasiok & Nakkiran 2023) with its automatic bandwidth, vectorised over bootstrap replicates.

The smooth ECE of (confidence ``f_i``, correctness ``y_i``) kernel-smooths the residuals
``r_i = f_i - y_i`` with a Gaussian of width ``sigma`` reflected at 0 and 1, and integrates the
absolute smoothed residual against the smoothed density of the confidences:

    smECE_sigma = sum_t |R(t)| / sum_t (D(t) + eps),  R = K_sigma * r,  D = K_sigma * 1

on a mesh ``t`` of ``max(round(10 / sigma), 200)`` points. The bandwidth is the fixed point
``sigma* = smECE_sigma*`` found by bisection on [0, 1] (10 halvings, floor 0.001), which makes
the estimator free of a bin-count choice and consistent (Błasiok & Nakkiran, "Smooth ECE:
Principled reliability diagrams via kernel smoothing", ICLR 2024).

Every discretisation step is the one of the reference implementation, ``relplot`` 1.0.3
(``relplot.smECE``, ``relplot.kernels.ReflectedGaussianKernel``), so values agree with it to
rounding (``tests/test_calibration_smooth_ece.py``): samples are spread linearly onto a grid of
``max(2000, round(20 / sigma)) // 2 + 1`` points, the grid is reflected at both ends and
convolved with the kernel sampled on that grid, and the result is interpolated linearly onto
the mesh. relplot is a test-time reference only: it runs one sample set at a time (about 0.1 s
for n = 10,000, so 100 s for a 1,000-replicate bootstrap of one condition) and imports
matplotlib, seaborn, pandas and scikit-learn. Here the grid sums of all replicates are one
sparse product, the convolutions one batched FFT, and the bisection runs for all replicates
together (replicates that share a bandwidth share the work).

Inputs are weights ``w`` (``m x n`` resampling counts, :func:`evalsuite.stats.count_blocks`;
a row of ones is the data as given), so a replicate is the estimator applied to the resampled
data exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: relplot's bandwidth floor (``smECE(eps=0.001)``): the search accepts any sigma below it.
BANDWIDTH_FLOOR = 1e-3
#: Bisection halvings of the bandwidth search (relplot ``search_param(refine=10)``).
SEARCH_STEPS = 10
#: Added to the smoothed (unnormalised) density before dividing (relplot ``BaseKernelMixin.smooth``).
DENSITY_EPS = 1e-4
#: Minimum mesh the smooth ECE is integrated on (relplot ``config.smECE_mesh_pts``).
MESH_POINTS = 200
#: Mesh of the smoothed reliability curve in reports (relplot ``config.plot_mesh_pts``).
CURVE_POINTS = 200


def grid_size(sigma: float) -> int:
    """Points of the grid the samples are spread on for bandwidth ``sigma`` (relplot's rule)."""
    return (max(2000, round(20 / sigma)) // 2) + 1


def mesh_size(sigma: float) -> int:
    """Points of the mesh the smooth ECE is integrated on for bandwidth ``sigma``."""
    return max(round(10 / sigma), MESH_POINTS)


def _spread_matrix(confidence: np.ndarray, points: int):  # -> scipy.sparse.csr_matrix
    """``n x points`` sparse matrix spreading each confidence linearly onto its two grid neighbours."""
    from scipy import sparse

    n = len(confidence)
    pos = confidence * (points - 1)
    lo = pos.astype(np.int64).clip(0, points - 2)
    frac = pos - lo
    rows = np.repeat(np.arange(n), 2)
    cols = np.stack([lo, lo + 1], axis=1).ravel()
    vals = np.stack([1.0 - frac, frac], axis=1).ravel()
    return sparse.csr_matrix((vals, (rows, cols)), shape=(n, points))


def _kernel(sigma: float, points: int) -> np.ndarray:
    """The Gaussian of width ``sigma`` sampled on ``linspace(0, 1, points)``, centred at 0.5."""
    t = np.linspace(0, 1, points)
    return np.exp(-(t - 0.5) * (t - 0.5) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)


def _fft_size(points: int) -> int:
    """FFT length for the reflected grid (``3E - 2`` values) and the kernel (``E``): a circular
    convolution this long wraps around only outside the ``E`` outputs that are kept."""
    from scipy.fft import next_fast_len

    return next_fast_len(3 * points - 2, real=True)


def _reflect(values: np.ndarray) -> np.ndarray:
    """Rows of grid values mirrored at both ends (relplot ``ReflectedGaussianKernel``): ``3E - 2`` columns."""
    return np.concatenate([values[:, ::-1][:, :-1], values, values[:, ::-1][:, 1:]], axis=1)


def _reflect_padded(values: np.ndarray, size: int) -> np.ndarray:
    """:func:`_reflect` written into zeros ``size`` columns wide: the array ``rfft(_reflect(values), size)``
    zero-pads to, built in place (the same transform input, without the padding copy)."""
    k, points = values.shape
    out = np.empty((k, size))
    out[:, : points - 1] = values[:, :0:-1]
    out[:, points - 1 : 2 * points - 1] = values
    out[:, 2 * points - 1 : 3 * points - 2] = values[:, -2::-1]
    out[:, 3 * points - 2 :] = 0.0
    return out


@lru_cache(maxsize=128)
def _kernel_spectrum(sigma: float, points: int) -> np.ndarray:
    """``rfft(_kernel(sigma, points), _fft_size(points))``, kept per bandwidth: bisections of every
    condition and replicate meet the same dyadic bandwidths. Read-only."""
    from scipy.fft import rfft

    spec = rfft(_kernel(sigma, points), _fft_size(points))
    spec.setflags(write=False)
    return spec


@lru_cache(maxsize=128)
def _mesh_weights(sigma: float) -> tuple[int, int, np.ndarray]:
    """(grid points, mesh points, :func:`_density_weights` on that mesh) of bandwidth ``sigma``,
    kept per bandwidth (an ``O(points^2)`` correlation each). The weights are read-only."""
    points = grid_size(sigma)
    t = np.linspace(0, 1, mesh_size(sigma))
    v = _density_weights(sigma, points, t)
    v.setflags(write=False)
    return points, len(t), v


def _reflect_convolve(values: np.ndarray, sigma: float) -> np.ndarray:
    """Rows of grid ``values`` (``k x E``) reflected at both ends and convolved with the kernel
    (``np.convolve(reflected, kernel, "valid")[E // 2 : E // 2 + E]``, by FFT)."""
    from scipy.fft import irfft, rfft

    points = values.shape[1]
    size = _fft_size(points)
    spec = rfft(_reflect(values), size, axis=1) * rfft(_kernel(sigma, points), size)
    off = points - 1 + points // 2
    return irfft(spec, size, axis=1)[:, off : off + points]


def _interpolate(t: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Rows of ``grid`` (values at ``i / (E - 1)``) interpolated linearly at the points ``t``."""
    points = grid.shape[1]
    step = 1 / (points - 1)
    idx = (t * (points - 1)).astype(np.int64).clip(0, points - 2)
    res = (t - idx * step) / step
    return grid[:, idx] * (1 - res) + grid[:, idx + 1] * res


def _density_weights(sigma: float, points: int, t: np.ndarray) -> np.ndarray:
    """``v`` with ``g @ v = sum_t (K * g)(t)`` for a count grid ``g``: the smoothing pipeline's adjoint
    applied to ones (interpolation, slice, convolution, reflection, each transposed), so the
    denominator of every replicate is one dot product instead of a convolution."""
    step = 1 / (points - 1)
    idx = (t * (points - 1)).astype(np.int64).clip(0, points - 2)
    res = (t - idx * step) / step
    u = np.bincount(idx, 1 - res, minlength=points) + np.bincount(idx + 1, res, minlength=points)
    z = np.zeros(4 * points - 3)
    off = points - 1 + points // 2
    z[off : off + points] = u
    x = np.correlate(z, _kernel(sigma, points), "valid")  # 3E - 2 values: the reflected grid's adjoint
    v = x[points - 1 : 2 * points - 1].copy()
    v[1:] += x[points - 2 :: -1]  # ext[E-1-p] = values[p], p = 1..E-1
    v[:-1] += x[3 * points - 3 : 2 * points - 2 : -1]  # ext[3E-3-p] = values[p], p = 0..E-2
    return v


@dataclass
class _GridSums:
    """Per-replicate grid sums of a per-sample value (its reflected spectrum) and of the count, per
    grid size, and the bisection's cheap bounds."""

    confidence: np.ndarray
    values: np.ndarray  # per-sample value spread on the grid (the residual f - y)
    w: np.ndarray
    cache: dict[int, tuple[np.ndarray, np.ndarray]]

    def get(self, points: int) -> tuple[np.ndarray, np.ndarray]:
        """(rfft of the reflected residual grids, count grids) of every replicate on ``points`` grid
        points: what a full evaluation (:func:`_smooth_at`) needs, built the first time one runs there."""
        from scipy.fft import rfft

        if points not in self.cache:
            a = _spread_matrix(self.confidence, points)
            wt = self.w.T
            g_v = np.asarray((a.multiply(self.values[:, None]).tocsr().T @ wt).T)
            size = _fft_size(points)
            spec = rfft(_reflect_padded(g_v, size), size, axis=1)
            self.cache[points] = (spec, np.asarray((a.T @ wt).T))
        return self.cache[points]

    def bounds(self, rows: np.ndarray, points: int, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(g_r @ v, g_abs @ v, g_1 @ v)`` for the replicates ``rows``, where ``g_*`` are their grids
        of the residual, its absolute value and the count on ``points`` points and ``v`` a weight
        per grid point (:func:`_density_weights`).

        Computed as ``w @ (value_i * (A v)_i)`` with ``A`` the spreading (:func:`_spread_matrix`):
        the same sums in another order, ``n`` values per replicate instead of a grid, so no grid is
        built for a bandwidth that the bounds settle. Only the bisection's decisions use them, with
        a margin (``_BOUND_MARGIN``) far above the rounding this reordering changes.
        """
        pos = self.confidence * (points - 1)
        lo = pos.astype(np.int64).clip(0, points - 2)
        frac = pos - lo
        av = (1.0 - frac) * v[lo] + frac * v[lo + 1]
        w = self.w[rows]
        return w @ (self.values * av), w @ (np.abs(self.values) * av), w @ av


def _smooth_at(sums: _GridSums, rows: np.ndarray, sigma: float) -> np.ndarray:
    """smECE at one bandwidth for the replicates ``rows``: ``sum_t |K * r| / sum_t (K * 1 + eps)``."""
    from scipy.fft import irfft

    points = grid_size(sigma)
    spec_r, g_1 = sums.get(points)
    # every replicate: the spectra as they are (a copy of ~m x 1.5 points complex values saved); the
    # count grids are still taken by index, whose row-major copy fixes the matrix product's order
    spec_r = spec_r if len(rows) == len(g_1) and np.array_equal(rows, np.arange(len(g_1))) else spec_r[rows]
    g_1 = g_1[rows]
    size = _fft_size(points)
    off = points - 1 + points // 2
    smoothed = irfft(spec_r * _kernel_spectrum(sigma, points), size, axis=1)[:, off : off + points]
    t = np.linspace(0, 1, mesh_size(sigma))
    ys = _interpolate(t, smoothed)
    denominator = g_1 @ _mesh_weights(sigma)[2] + len(t) * DENSITY_EPS
    return np.abs(ys).sum(axis=1) / denominator


def _evaluate(sums: _GridSums, sigmas: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """smECE of each replicate in ``rows`` at its own bandwidth (replicates sharing one share the work)."""
    out = np.empty(len(rows))
    for s in np.unique(sigmas):
        pick = sigmas == s
        out[pick] = _smooth_at(sums, rows[pick], float(s))
    return out


#: Relative margin by which a bound must clear the bandwidth before it decides a bisection step.
_BOUND_MARGIN = 1e-9


def _below(sums: _GridSums, sigmas: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``sigma < smECE_sigma`` for each replicate in ``rows``, at its own bandwidth.

    ``|sum_t K * r| <= sum_t |K * r| <= sum_t K * |r|`` bounds the numerator by two dot products
    with the pipeline's adjoint, which settles most steps; only replicates whose bounds straddle
    ``sigma`` (with a 1e-9 relative margin) get the full convolution.
    """
    out = np.empty(len(rows), dtype=bool)
    for s in np.unique(sigmas):
        pick = np.flatnonzero(sigmas == s)
        sigma = float(s)
        points, mesh, v = _mesh_weights(sigma)
        r = rows[pick]
        sum_r, sum_abs, sum_1 = sums.bounds(r, points, v)
        denominator = sum_1 + mesh * DENSITY_EPS
        lower, upper = np.abs(sum_r) / denominator, sum_abs / denominator
        yes, no = lower > sigma * (1 + _BOUND_MARGIN), upper < sigma * (1 - _BOUND_MARGIN)
        out[pick[yes]], out[pick[no]] = True, False
        open_ = ~(yes | no)
        if open_.any():
            out[pick[open_]] = sigma < _smooth_at(sums, r[open_], sigma)
    return out


def smooth_ece_weighted(
    confidence: np.ndarray, correct: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(smooth ECE, its bandwidth) of every row of resampling counts ``w`` (``m x n``).

    The bandwidth search is relplot's: accept ``sigma = 1`` if ``1 < smECE_1``, else bisect
    ``[0, 1]`` ten times, moving the upper end down wherever ``sigma < 0.001`` or
    ``sigma < smECE_sigma`` and the lower end up otherwise; the result is the lower end.
    """
    f = np.asarray(confidence, dtype=np.float64)
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    m = w.shape[0]
    sums = _GridSums(f, f - np.asarray(correct, dtype=np.float64), w, {})
    every = np.arange(m)
    at_one = _below(sums, np.ones(m), every)
    start, end = np.ones(m), np.zeros(m)
    for _ in range(SEARCH_STEPS):
        mid = (start + end) / 2
        accept = mid < BANDWIDTH_FLOOR
        need = ~accept
        if need.any():
            accept[need] = _below(sums, mid[need], every[need])
        end = np.where(accept, mid, end)
        start = np.where(accept, start, mid)
    sigma = np.where(at_one, 1.0, start)
    return _evaluate(sums, sigma, every), sigma


def smooth_ece(confidence: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """(smooth ECE, bandwidth) of top-label confidences and 0/1 correctness (relplot ``smECE``)."""
    f = np.asarray(confidence, dtype=np.float64)
    if f.size == 0:
        return float("nan"), float("nan")
    value, sigma = smooth_ece_weighted(f, correct, np.ones((1, f.size)))
    return float(value[0]), float(sigma[0])


def smooth_curve_weighted(
    confidence: np.ndarray, correct: np.ndarray, w: np.ndarray, sigma: float, points: int = CURVE_POINTS
) -> np.ndarray:
    """Kernel-smoothed accuracy ``E[y | f = t]`` on ``linspace(0, 1, points)`` for every row of ``w``.

    relplot's reliability curve (``KernelSmoother(ReflectedGaussianKernel(sigma))``):
    ``(K * y)(t) / ((K * 1)(t) + eps)``, at the smooth ECE's own bandwidth.
    """
    f = np.asarray(confidence, dtype=np.float64)
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    a = _spread_matrix(f, grid_size(sigma))
    g_y = np.asarray((a.multiply(np.asarray(correct, dtype=np.float64)[:, None]).tocsr().T @ w.T).T)
    g_1 = np.asarray((a.T @ w.T).T)
    t = np.linspace(0, 1, points)
    ys = _interpolate(t, _reflect_convolve(g_y, sigma))
    dens = _interpolate(t, _reflect_convolve(g_1, sigma)) + DENSITY_EPS
    return ys / dens


__all__ = [
    "BANDWIDTH_FLOOR",
    "CURVE_POINTS",
    "grid_size",
    "mesh_size",
    "smooth_curve_weighted",
    "smooth_ece",
    "smooth_ece_weighted",
]
