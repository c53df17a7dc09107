"""Batched tensor primitives the corruption engine is built from.

Every function works on float tensors shaped ``(..., H, W)`` on any device and reproduces the
boundary handling of the library the reference calls (SciPy ``ndimage``, OpenCV, Pillow), so
that the engine matches ``imagecorruptions`` pixel for pixel where the reference is
deterministic. Index tables and filter matrices depend only on sizes and constants; they are
cached per device.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

# The 8-bit grid helpers live in evalsuite.tensors (shared with the JPEG kernels); re-exported here.
from evalsuite.tensors import levels_to_unit, to_levels  # noqa: F401

# Separable filters longer than this use a banded matrix product on the CPU (one GEMM per
# axis, independent of the kernel length); shorter ones sum shifted slices.
_MATMUL_MIN_TAPS = 20

_cache_lock = threading.Lock()


def extend_index(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """Source index of every position of a length-``n`` axis extended by ``before``/``after``.

    ``mode`` follows SciPy's names: ``nearest`` (edge repeated), ``reflect`` (half-sample
    symmetric, ``d c b a | a b c d | d c b a``), ``mirror`` (whole-sample symmetric,
    ``d c b | a b c d | c b a``; OpenCV's ``BORDER_REFLECT_101``), ``wrap``. Extensions longer
    than the axis repeat periodically, as both libraries do.
    """
    i = np.arange(-before, n + after, dtype=np.int64)
    if n == 1:
        return np.zeros_like(i)
    if mode == "nearest":
        return np.clip(i, 0, n - 1)
    if mode == "reflect":
        period = 2 * n
        i = np.mod(i, period)
        return np.where(i >= n, period - 1 - i, i)
    if mode == "mirror":
        period = 2 * n - 2
        i = np.mod(i, period)
        return np.where(i >= n, period - i, i)
    if mode == "wrap":
        return np.mod(i, n)
    raise ValueError(f"unknown boundary mode {mode!r}")


@lru_cache(maxsize=256)
def _index_tensor(n: int, before: int, after: int, mode: str, device: str) -> torch.Tensor:
    return torch.from_numpy(extend_index(n, before, after, mode)).to(device)


def _pad_dim(x: torch.Tensor, dim: int, before: int, after: int, mode: str) -> torch.Tensor:
    n = x.shape[dim]
    if x.ndim == 4 and x.is_floating_point() and (mode == "nearest" or (mode == "mirror" and max(before, after) < n)):
        widths = (before, after, 0, 0) if dim % 4 == 3 else (0, 0, before, after)
        return F.pad(x, widths, mode="replicate" if mode == "nearest" else "reflect")
    if before <= n and after <= n and n > 1 and mode in ("nearest", "reflect", "mirror"):
        # the common case with cheap slices instead of a gather
        parts = []
        if mode == "nearest":
            if before:
                parts.append(x.narrow(dim, 0, 1).expand(*[before if d == dim % x.ndim else -1 for d in range(x.ndim)]))
            parts.append(x)
            if after:
                parts.append(x.narrow(dim, n - 1, 1).expand(*[after if d == dim % x.ndim else -1 for d in range(x.ndim)]))
            return torch.cat(parts, dim=dim)
        off = 0 if mode == "reflect" else 1
        if mode == "reflect" or (before < n and after < n):
            if before:
                parts.append(x.narrow(dim, off, before).flip(dim))
            parts.append(x)
            if after:
                parts.append(x.narrow(dim, n - after - off, after).flip(dim))
            return torch.cat(parts, dim=dim)
    return x.index_select(dim, _index_tensor(n, before, after, mode, str(x.device)))


def pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int, mode: str) -> torch.Tensor:
    """Extend the last two axes of ``x`` with a SciPy/OpenCV boundary mode (any widths)."""
    if top or bottom:
        x = _pad_dim(x, -2, top, bottom, mode)
    if left or right:
        x = _pad_dim(x, -1, left, right, mode)
    return x


def gaussian_weights(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """SciPy's ``gaussian_filter1d`` weights: radius ``int(truncate * sigma + 0.5)``, sum 1."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (float(sigma) * float(sigma)) * x * x)
    return phi / phi.sum()


@lru_cache(maxsize=128)
def _band_matrix(n: int, weights: tuple[float, ...], mode: str, device: str, dtype: torch.dtype) -> torch.Tensor:
    """``M`` with ``(M @ v)[i] = sum_t w[t] * ext(v)[i + t - r]``: boundary folded into the matrix."""
    r = len(weights) // 2
    ext = extend_index(n, r, r, mode)
    m = np.zeros((n, n), dtype=np.float64)
    rows = np.arange(n)
    for t, wt in enumerate(weights):
        np.add.at(m, (rows, ext[rows + t]), wt)
    return torch.from_numpy(m).to(device=device, dtype=dtype)


def correlate1d(x: torch.Tensor, weights: Sequence[float] | np.ndarray, dim: int, mode: str) -> torch.Tensor:
    """SciPy ``correlate1d`` along ``dim`` (-1 or -2) of an odd-length kernel centred on each sample."""
    w = tuple(float(v) for v in np.asarray(weights, dtype=np.float64).ravel())
    k = len(w)
    if k % 2 != 1:
        raise ValueError("correlate1d needs an odd kernel length")
    if k == 1:
        return x * w[0]
    n = x.shape[dim]
    if x.device.type == "cpu" and k >= _MATMUL_MIN_TAPS:
        m = _band_matrix(n, w, mode, str(x.device), x.dtype)
        if dim in (-1, x.ndim - 1):
            return torch.matmul(x, m.t())
        return torch.matmul(m, x)
    r = k // 2
    if r < n and dim % x.ndim == x.ndim - 2:  # rows: shifted views are contiguous blocks
        return _correlate_slices(x, w, dim % x.ndim, mode)
    if dim in (-1, x.ndim - 1):
        xp = pad(x, 0, 0, r, r, mode)
        out = xp[..., 0:n] * w[0]
        for t in range(1, k):
            out.add_(xp[..., t : t + n], alpha=w[t])
    else:
        xp = pad(x, r, r, 0, 0, mode)
        out = xp[..., 0:n, :] * w[0]
        for t in range(1, k):
            out.add_(xp[..., t : t + n, :], alpha=w[t])
    return out


def _correlate_slices(x: torch.Tensor, w: tuple[float, ...], dim: int, mode: str) -> torch.Tensor:
    """Shifted-slice correlation without a padded copy: interior rows add shifted views, the few
    border rows add their boundary-mode sources (one small gather per tap and side)."""
    n = x.shape[dim]
    k = len(w)
    r = k // 2
    ext = _index_tensor(n, r, r, mode, str(x.device))
    out = x * w[r]
    for t in range(k):
        d = t - r
        if d == 0:
            continue
        lo, hi = max(0, -d), n - max(0, d)
        out.narrow(dim, lo, hi - lo).add_(x.narrow(dim, lo + d, hi - lo), alpha=w[t])
        if lo:  # rows 0 .. lo-1 read ext positions t .. t+lo-1
            out.narrow(dim, 0, lo).add_(x.index_select(dim, ext[t : t + lo]), alpha=w[t])
        if hi < n:
            out.narrow(dim, hi, n - hi).add_(x.index_select(dim, ext[hi + t : n + t]), alpha=w[t])
    return out


def gaussian_filter(
    x: torch.Tensor, sigma: float | tuple[float, float], mode: str = "nearest", truncate: float = 4.0
) -> torch.Tensor:
    """``scipy.ndimage.gaussian_filter`` over the last two axes (rows first, as SciPy does).

    This is what ``skimage.filters.gaussian`` calls (default ``mode='nearest'``,
    ``truncate=4``); per-channel filtering (``channel_axis``) is the batch dimension here.
    """
    sh, sw = (sigma, sigma) if not isinstance(sigma, tuple) else sigma
    if x.ndim >= 3 and x.dtype == torch.float32:
        out = _gaussian_filter_numba(x, sh, sw, mode, truncate)
        if out is not None:
            return out
    if sh > 1e-15:
        x = correlate1d(x, gaussian_weights(sh, truncate), -2, mode)
    if sw > 1e-15:
        x = correlate1d(x, gaussian_weights(sw, truncate), -1, mode)
    return x


def _gaussian_filter_numba(x: torch.Tensor, sh: float, sw: float, mode: str, truncate: float) -> torch.Tensor | None:
    """:func:`gaussian_filter` by the numba kernel on the CPU (in cache, float64 sums as SciPy),
    planes split over the thread pool; None where the torch code is used instead (CUDA, no
    numba, long kernels where the banded GEMM wins: a choice by device and sigma, never by batch)."""
    from evalsuite.corruptions import _numba

    if not _numba.use_kernels(x):
        return None
    h, w = x.shape[-2:]
    wy = gaussian_weights(sh, truncate) if sh > 1e-15 else np.ones(1)
    wx = gaussian_weights(sw, truncate) if sw > 1e-15 else np.ones(1)
    if max(len(wy), len(wx)) >= _MATMUL_MIN_TAPS:
        return None
    ey = extend_index(h, len(wy) // 2, len(wy) // 2, mode)
    ex = extend_index(w, len(wx) // 2, len(wx) // 2, mode)
    planes = x.detach().reshape(-1, h, w).numpy()
    out = np.empty(planes.shape, dtype=np.float32)
    fn = _numba.kernel("separable")
    from evalsuite.parallel import parallel_slices

    parallel_slices(lambda lo, hi: fn(planes[lo:hi], out[lo:hi], wy, ey, wx, ex), planes.shape[0])
    return torch.from_numpy(out).view(x.shape)


def next_fast_len(n: int) -> int:
    """Smallest 2-3-5-smooth integer >= ``n`` (fast FFT length)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            v = p35
            while v < n:
                v *= 2
            best = min(best, v)
            p35 *= 3
        p5 *= 5
    return best


def fft_correlate2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    anchor: tuple[int, int],
    mode: str,
) -> torch.Tensor:
    """2-D correlation of ``x`` (N, C, H, W) with a kernel via real FFTs.

    ``out[y, x] = sum_{u,v} k[u, v] * ext(x)[y + u - anchor_y, x + v - anchor_x]`` with ``ext``
    the boundary extension ``mode``. ``kernel`` is ``(kh, kw)`` (shared) or ``(N, kh, kw)``
    (one per image). The padded signal is long enough that the circular product never wraps
    into the output. Transform sizes depend only on the image and kernel shapes, and
    per-image kernel spectra are computed one kernel at a time. On the CPU the padded batch
    is made contiguous (NCHW) first: MKL's batched transforms of channels-last input (what the
    runner hands over) give different last bits for batches of 1 or 3 than for 2 or 64, those of
    contiguous planes do not, so an image's result does not depend on the rest of its batch
    (``tests/test_batch_invariance_corruptions.py``; one transform per image would hold it by
    construction but made defocus blur 5 times slower).
    """
    n, c, h, w = x.shape
    kh, kw = kernel.shape[-2:]
    ay, ax = anchor
    sh, sw = next_fast_len(h + kh - 1), next_fast_len(w + kw - 1)
    # extend straight to the transform size (values past h + kh - 1 never reach the output)
    xp = pad(x, ay, sh - h - ay, ax, sw - w - ax, mode)
    spec = torch.fft.rfft2(xp.contiguous() if x.device.type == "cpu" else xp)
    k = kernel.to(x.dtype)
    if k.ndim == 3:
        kspec = torch.stack([torch.fft.rfft2(k[i], s=(sh, sw)) for i in range(k.shape[0])]).unsqueeze(1).conj().resolve_conj()
    else:
        key = ("kspec", k.data_ptr(), tuple(k.shape), sh, sw, str(k.device), k.dtype)
        kspec = cached(key, lambda: torch.fft.rfft2(k, s=(sh, sw)).conj().resolve_conj(), _spectra) if kernel_cacheable(kernel) else (
            torch.fft.rfft2(k, s=(sh, sw)).conj().resolve_conj()
        )
    out = torch.fft.irfft2(spec.mul_(kspec), s=(sh, sw))
    return out[..., :h, :w]


_spectra: dict = {}
_cacheable_kernels: set = set()


def kernel_cacheable(kernel: torch.Tensor) -> bool:
    """Shared kernels registered with :func:`register_kernel` (long-lived tensors) get cached spectra."""
    return kernel.data_ptr() in _cacheable_kernels


def register_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """Mark a kernel tensor kept alive for the process (e.g. a cached disk) so its spectra are cached."""
    _cacheable_kernels.add(kernel.data_ptr())
    return kernel


def bilinear_zoom_layer(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """``imagecorruptions.clipped_zoom`` of a batch: centre crop, ``scipy.ndimage.zoom(order=1)``.

    SciPy's zoom maps output pixel ``o`` to input ``o * (in - 1) / (out - 1)`` (corners aligned)
    with ``out = round(in * zoom)``; the result is *not* cropped back (callers crop).
    """
    h, w = x.shape[-2:]
    ch0 = int(math.ceil(h / float(zoom)))
    ch1 = int(math.ceil(w / float(zoom)))
    top0 = (h - ch0) // 2
    top1 = (w - ch1) // 2
    oh, ow = int(round(ch0 * zoom)), int(round(ch1 * zoom))
    crop = x[..., top0 : top0 + ch0, top1 : top1 + ch1]
    if (oh, ow) == (ch0, ch1):
        return crop
    return F.interpolate(crop, size=(oh, ow), mode="bilinear", align_corners=True)


def quantize_floor(y: torch.Tensor) -> torch.Tensor:
    """What ``np.uint8(np.clip(v, 0, 255))`` does to a float result, back in [0, 1] (in place).

    The reference returns ``np.uint8`` of a float image in 0-255, which truncates. A tolerance
    of 1e-4 (in 0-255 units) keeps exact integers from dropping a level through float32
    rounding. ``y`` must be a tensor the caller owns.
    """
    return levels_to_unit(y.mul_(255.0).add_(1e-4).floor_().clamp_(0.0, 255.0))


def rgb_to_gray_cv2(x: torch.Tensor) -> torch.Tensor:
    """OpenCV ``COLOR_RGB2GRAY`` on float data: ``0.299 R + 0.587 G + 0.114 B`` (keeps dim 1)."""
    return x[:, 0:1] * 0.299 + x[:, 1:2] * 0.587 + x[:, 2:3] * 0.114


def cached(key: tuple, build, store: dict):
    """Thread-safe memo for heavy one-time tables (textures, kernels) keyed by sizes/devices."""
    with _cache_lock:
        hit = store.get(key)
    if hit is not None:
        return hit
    value = build()
    with _cache_lock:
        return store.setdefault(key, value)
