"""The numba kernels behind :mod:`evalsuite.corruptions._numba`, compiled once per machine.

They are module-level functions with ``cache=True``, so numba stores the machine code on disk
(beside this file, or under ``NUMBA_CACHE_DIR``) and later processes load it instead of
compiling again; closures built inside a function could not be cached. This module imports
numba at the top: it is imported only when a kernel is first used (``_numba.kernel``), never by
``evalsuite --help``. What each kernel computes, and the torch twin it matches bit for bit, is
described in its body and in ``_numba``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# The constants the kernels freeze into their machine code live here, not in another module:
# numba invalidates a cached kernel when this file changes, not when a module it imports does.

#: Adding and subtracting 1.5 * 2**23 rounds a float32 in [0, 2**22) to the nearest integer,
#: ties to even: exactly ``rint`` under the default rounding mode, without a libm call.
_ROUND_MAGIC = np.float32(12582912.0)
#: ``level / 255`` in float32 for every 8-bit level (bit-identical to the division).
_LEVELS = np.arange(256, dtype=np.float32) / np.float32(255.0)


@njit(nogil=True, cache=True)
def zoom_blur(src, out, layers):  # pragma: no cover - compiled
    # (src + sum of layers) / (L + 1): every layer is SciPy's order-1 zoom of a centre crop
    # (corner-aligned coordinates, float64 weights and sums, float32 result) accumulated in
    # float32 in the reference's order; separable, rows first.
    c, h, w = src.shape
    n_layers = layers.shape[0]
    acc = np.empty((h, w), dtype=np.float32)
    rows = np.empty((h, w), dtype=np.float64)
    ix0 = np.empty(w, dtype=np.int64)
    ix1 = np.empty(w, dtype=np.int64)
    fx = np.empty(w, dtype=np.float64)
    for ch in range(c):
        acc[:, :] = 0.0
        for k in range(n_layers):
            top, left, ch0, ch1, oh, ow = layers[k, 0], layers[k, 1], layers[k, 2], layers[k, 3], layers[k, 4], layers[k, 5]
            if oh == ch0 and ow == ch1:  # zoom 1: the crop itself
                for y in range(h):
                    for x in range(w):
                        acc[y, x] += src[ch, top + y, left + x]
                continue
            sy = (ch0 - 1) / (oh - 1) if oh > 1 else 0.0
            sx = (ch1 - 1) / (ow - 1) if ow > 1 else 0.0
            for x in range(w):
                p = x * sx
                i = int(math.floor(p))
                ix0[x] = i
                ix1[x] = min(i + 1, ch1 - 1)
                fx[x] = p - i
            for y in range(h):
                p = y * sy
                i = int(math.floor(p))
                f = p - i
                r0 = top + i
                r1 = top + min(i + 1, ch0 - 1)
                for x in range(ch1):
                    a = np.float64(src[ch, r0, left + x])
                    b = np.float64(src[ch, r1, left + x])
                    rows[y, x] = (1.0 - f) * a + f * b
            for y in range(h):
                for x in range(w):
                    a = rows[y, ix0[x]]
                    b = rows[y, ix1[x]]
                    f = fx[x]
                    acc[y, x] += np.float32((1.0 - f) * a + f * b)
        denom = np.float32(n_layers + 1)
        for y in range(h):
            for x in range(w):
                out[ch, y, x] = (src[ch, y, x] + acc[y, x]) / denom
    return out


@njit(nogil=True, cache=True)
def separable(src, out, wy, ey, wx, ex):  # pragma: no cover - compiled
    # SciPy's correlate1d along rows then along columns of every H x W plane of ``src``
    # (P x H x W): float64 sums of float32 samples, a float32 result after each pass, as
    # SciPy writes float32 input. ``ey``/``ex`` map the extended axes to source indices
    # (the boundary mode), ``wy``/``wx`` are the taps.
    n_planes, h, w = src.shape
    ky, kx = wy.shape[0], wx.shape[0]
    acc = np.empty(w, dtype=np.float64)
    tmp = np.empty((h, w), dtype=np.float32)
    ext = np.empty(w + kx - 1, dtype=np.float64)
    for p in range(n_planes):
        for y in range(h):
            acc[:] = 0.0
            for t in range(ky):
                wt = wy[t]
                row = ey[y + t]
                for x in range(w):
                    acc[x] += wt * src[p, row, x]
            for x in range(w):
                tmp[y, x] = np.float32(acc[x])
        for y in range(h):
            for j in range(w + kx - 1):
                ext[j] = tmp[y, ex[j]]
            acc[:] = 0.0
            for t in range(kx):
                wt = wx[t]
                for x in range(w):
                    acc[x] += wt * ext[x + t]
            for x in range(w):
                out[p, y, x] = np.float32(acc[x])
    return out


@njit(nogil=True, cache=True)
def box_pass(v, taps, recip, out):  # pragma: no cover - compiled
    # out[o, :] = floor(sum of v[taps[o, t], :] * recip[o] + 0.5); tap == len(v) is a zero row
    n_in = v.shape[0]
    m = v.shape[1]
    for o in range(taps.shape[0]):
        for x in range(m):
            out[o, x] = 0.0
        for t in range(taps.shape[1]):
            j = taps[o, t]
            if j < n_in:
                for x in range(m):
                    out[o, x] += v[j, x]
        r = recip[o]
        for x in range(m):
            out[o, x] = np.floor(out[o, x] * r + np.float32(0.5))

@njit(nogil=True, cache=True)
def pixelate(src, out, ix, rx, iy, ry, nx, ny, vertical_first):  # pragma: no cover - compiled
    # Pillow's 8-bit BOX down-sampling (one rounding per pass) then NEAREST up-sampling,
    # in exactly the float32 operations of the torch path (apply_pixelate).
    c, h, w = src.shape
    sw, sh = ix.shape[0], iy.shape[0]
    lv = np.empty((h, w), dtype=np.float32)
    lvt = np.empty((w, h), dtype=np.float32)
    for ch in range(c):
        for y in range(h):
            for x in range(w):
                lv[y, x] = np.rint(src[ch, y, x] * np.float32(255.0))
        if vertical_first:
            a = np.empty((sh, w), dtype=np.float32)
            box_pass(lv, iy, ry, a)
            at = np.ascontiguousarray(a.T)
            b = np.empty((sw, sh), dtype=np.float32)
            box_pass(at, ix, rx, b)
            small = np.ascontiguousarray(b.T)
        else:
            for y in range(h):
                for x in range(w):
                    lvt[x, y] = lv[y, x]
            a = np.empty((sw, h), dtype=np.float32)
            box_pass(lvt, ix, rx, a)
            at = np.ascontiguousarray(a.T)
            small = np.empty((sh, sw), dtype=np.float32)
            box_pass(at, iy, ry, small)
        for y in range(h):
            sy = ny[y]
            for x in range(w):
                out[ch, y, x] = small[sy, nx[x]] / np.float32(255.0)
    return out


@njit(nogil=True, cache=True)
def poisson_table(src, u, out, cdf, guide, k_max, n_guide):  # pragma: no cover - compiled
    # Inverse-CDF Poisson counts for rates level / 255 * c (see noise._poisson_from_table,
    # whose float32 operations this repeats element by element): the guide table gives the
    # count directly unless the uniform's bucket spans a CDF step.
    c, h, w = src.shape
    g_hi = np.float32(n_guide - 1)
    for ch in range(c):
        for y in range(h):
            for x in range(w):
                level = int((min(max(src[ch, y, x] * np.float32(255.0), np.float32(0.0)), np.float32(255.0)) + _ROUND_MAGIC) - _ROUND_MAGIC)
                v = u[ch, y, x]
                g = level * (n_guide + 1) + int(min(v * np.float32(n_guide), g_hi))
                k = np.int64(guide[g])
                if k != guide[g + 1]:
                    base = level * k_max
                    while v > cdf[base + k]:
                        k += 1
                out[ch, y, x] = np.float32(k)
    return out


@njit(nogil=True, cache=True)
def fog(src, u, out, mapsize, decay, strength):  # pragma: no cover - compiled
    # weather.plasma_fractal for one image, then apply_fog's blend, repeating the torch
    # code's operations and their order: float32 map, float64 wibble arithmetic, grid
    # neighbours wrapping around as torch.roll does, the same uniforms in the same order.
    m = np.empty((mapsize, mapsize), dtype=np.float32)
    m[0, 0] = np.float32(0.0)
    four = np.float32(4.0)
    step = mapsize
    wibble = 100.0
    off = 0
    while step >= 2:
        half = step // 2
        g = mapsize // step
        for i in range(g):  # squares: centre from the four corners
            i1 = ((i + 1) % g) * step
            for j in range(g):
                j1 = ((j + 1) % g) * step
                s = (m[i * step, j * step] + m[i1, j * step]) + (m[i * step, j1] + m[i1, j1])
                d = np.float64(u[off + i * g + j])
                m[half + i * step, half + j * step] = np.float32(np.float64(s / four) + wibble * (-wibble + (2.0 * wibble) * d))
        off += g * g
        for i in range(g):  # diamonds on the corner rows
            i0 = ((i - 1) % g) * step
            for j in range(g):
                j1 = ((j + 1) % g) * step
                s = (m[half + i * step, half + j * step] + m[half + i0, half + j * step]) + (m[i * step, j * step] + m[i * step, j1])
                d = np.float64(u[off + i * g + j])
                m[i * step, half + j * step] = np.float32(np.float64(s / four) + wibble * (-wibble + (2.0 * wibble) * d))
        off += g * g
        for i in range(g):  # diamonds on the corner columns
            i1 = ((i + 1) % g) * step
            for j in range(g):
                j0 = ((j - 1) % g) * step
                s = (m[half + i * step, half + j * step] + m[half + i * step, half + j0]) + (m[i * step, j * step] + m[i1, j * step])
                d = np.float64(u[off + i * g + j])
                m[half + i * step, j * step] = np.float32(np.float64(s / four) + wibble * (-wibble + (2.0 * wibble) * d))
        off += g * g
        step //= 2
        wibble /= decay
    lo = m[0, 0]
    for y in range(mapsize):
        for x in range(mapsize):
            lo = min(lo, m[y, x])
    hi = np.float32(m[0, 0] - lo)
    for y in range(mapsize):
        for x in range(mapsize):
            m[y, x] = m[y, x] - lo
            hi = max(hi, m[y, x])
    c, h, w = src.shape
    mv = src[0, 0, 0]
    for ch in range(c):
        for y in range(h):
            for x in range(w):
                mv = max(mv, src[ch, y, x])
    st = np.float32(strength)
    den = mv + st
    for ch in range(c):
        for y in range(h):
            for x in range(w):
                out[ch, y, x] = ((src[ch, y, x] + st * (m[y, x] / hi)) * mv) / den
    return out


@njit(nogil=True, cache=True)
def to_u8_hwc(src, out, reverse):  # pragma: no cover - compiled
    # rint(clamp(v * 255, 0, 255)) of a 3 x H x W float image into an H x W x 3 uint8 image,
    # channels reversed (BGR for OpenCV) when ``reverse`` (clamping first and rounding second
    # equals rounding first for every float)
    _, h, w = src.shape
    lo = np.float32(0.0)
    hi = np.float32(255.0)
    for y in range(h):
        for x in range(w):
            for ch in range(3):
                v = min(max(src[ch, y, x] * hi, lo), hi)
                out[y, x, 2 - ch if reverse else ch] = np.uint8((v + _ROUND_MAGIC) - _ROUND_MAGIC)
    return out


@njit(nogil=True, cache=True)
def from_u8_hwc(src, out, reverse):  # pragma: no cover - compiled
    # an H x W x 3 uint8 image (BGR when ``reverse``) into a 3 x H x W float image of level / 255
    h, w, _ = src.shape
    for ch in range(3):
        sc = 2 - ch if reverse else ch
        for y in range(h):
            for x in range(w):
                out[ch, y, x] = _LEVELS[src[y, x, sc]]
    return out


@njit(nogil=True, cache=True)
def glass_shuffle(x, offsets, delta):  # pragma: no cover - compiled
    # imagecorruptions' glass-blur pixel shuffle, the sequential loop over every image of the
    # batch (in place): each swap reads pixels an earlier swap may have written.
    n, c, h, w = x.shape
    iters = offsets.shape[1]
    for i in range(n):
        for it in range(iters):
            for hh in range(h - delta, delta, -1):
                for ww in range(w - delta, delta, -1):
                    dx = offsets[i, it, (h - delta) - hh, (w - delta) - ww, 0]
                    dy = offsets[i, it, (h - delta) - hh, (w - delta) - ww, 1]
                    for ch in range(c):
                        x[i, ch, hh, ww] = x[i, ch, hh + dy, ww + dx]
    return x


@njit(cache=True)
def glass_draws(seed, d0, d1, delta, iters):  # pragma: no cover - compiled
    # The offsets imagecorruptions' numba glass blur draws from numba's own generator (seeded
    # per call), for the parity check against that reference.
    np.random.seed(seed)
    rows = max(0, d0 - 2 * delta)
    cols = max(0, d1 - 2 * delta)
    out = np.zeros((iters, rows, cols, 2), dtype=np.int64)
    for i in range(iters):
        for h in range(d0 - delta, delta, -1):
            for w in range(d1 - delta, delta, -1):
                d = np.random.randint(-delta, delta, size=(2,))
                out[i, (d0 - delta) - h, (d1 - delta) - w, 0] = d[0]
                out[i, (d0 - delta) - h, (d1 - delta) - w, 1] = d[1]
    return out
