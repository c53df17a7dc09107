"""Compiled (numba) CPU kernels of the device operations where NumPy is slow.

- :func:`shear_warp`: the rolling-shutter warp of ``motion_blur`` (a bilinear resampling whose
  source row and column shift with the output row). NumPy's gathers cost about 5 ms per
  224 x 224 image; the kernel does the same float32 arithmetic in the same order, so its
  result is bit-identical (checked in the tests against :func:`~evalsuite.devices.optics._shear_warp_np`
  and the torch path's gathers). :func:`shear_warp_batch` runs it over a slice of a batch.

Images are ``N x H x W x 3`` float32 arrays of any strides, so one compilation serves every
layout. Compiled on first use and cached on disk by numba. (The PSF itself stays with OpenCV
and torch's vectorised shifted sums: per-pixel numba convolutions were slower, measured.)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_IMG = "float32[:, :, :, :]"


@njit(cache=True)
def _lerp(src, n):  # pragma: no cover - compiled
    # (i0, i1, frac) of _lerp_index: floor, clamped neighbours, float32 fraction
    f = math.floor(src)
    frac = np.float32(src - f)
    i0 = int(f)
    return min(max(i0, 0), n - 1), min(max(i0 + 1, 0), n - 1), frac


@njit(f"void({_IMG}, int64, {_IMG}, int64, float64, float64)", nogil=True, cache=True)
def shear_warp(src, si, dst, di, dx, dy):  # pragma: no cover - compiled
    """Image ``si`` of ``src`` warped into image ``di`` of ``dst`` (``motion_blur``'s rolling
    shutter: row ``y`` samples ``y - dy t``, columns ``x - dx t``, ``t = y / (H - 1) - 1/2``)."""
    _, h, w, c = src.shape
    one = np.float32(1.0)
    for y in range(h):
        t = y / max(h - 1, 1) - 0.5
        r0, r1, fr = _lerp(y - dy * t, h)
        gr = one - fr
        for x in range(w):
            c0, c1, fc = _lerp(x - dx * t, w)
            gc = one - fc
            for ch in range(c):
                a = src[si, r0, c0, ch] * gr + src[si, r1, c0, ch] * fr
                b = src[si, r0, c1, ch] * gr + src[si, r1, c1, ch] * fr
                dst[di, y, x, ch] = a * gc + b * fc


@njit(f"void({_IMG}, {_IMG}, float64[:, :], int64, int64)", nogil=True, cache=True)
def shear_warp_batch(src, dst, shear, lo, hi):  # pragma: no cover - compiled
    """:func:`shear_warp` of images ``lo..hi-1`` (``shear[n] = (dx, dy)``), image ``n`` into image
    ``n`` of ``dst``; images without shear are copied."""
    _, h, w, c = src.shape
    for n in range(lo, hi):
        dx, dy = shear[n, 0], shear[n, 1]
        if dx != 0.0 or dy != 0.0:
            shear_warp(src, n, dst, n, dx, dy)
        else:
            for y in range(h):
                for x in range(w):
                    for ch in range(c):
                        dst[n, y, x, ch] = src[n, y, x, ch]
