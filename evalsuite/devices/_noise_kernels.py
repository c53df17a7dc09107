"""The compiled kernel of :mod:`evalsuite.devices._noise` (imported on first use: importing it imports numba).

The algorithm, its constants and its NumPy twin are documented and defined in
:mod:`evalsuite.devices._noise`. Module-level values are frozen into the machine code;
``cache=True`` keeps the compiled kernels in numba's on-disk cache, so only the first process
on a machine pays the compilation (seconds). numba invalidates that cache when this file
changes, not when :mod:`evalsuite.devices._noise` does: a change to the constants imported
below (which changes the draws, and so ``RNG_VERSION``) must be accompanied by an edit here.
"""

from __future__ import annotations

import math

from numba import int64, njit, uint64

from evalsuite.devices._noise import (
    _M1,
    _M2,
    _TWO53,
    GOLDEN,
    INVERSION_BELOW,
    MAX_INVERSION_STEPS,
    POISSON_WORDS,
    RECIPROCALS,
    ZIG_F,
    ZIG_K,
    ZIG_R,
    ZIG_W,
)

golden = uint64(GOLDEN)
m1 = uint64(_M1)
m2 = uint64(_M2)
s30, s27, s31, s11, s8, s1 = uint64(30), uint64(27), uint64(31), uint64(11), uint64(8), uint64(1)
low8 = uint64(0xFF)
mant = uint64(0x000FFFFFFFFFFFFF)
one = uint64(1)
pois = uint64(POISSON_WORDS)
two53 = _TWO53
inversion_below = INVERSION_BELOW
zig_r = ZIG_R
zk, zw, zf = ZIG_K, ZIG_W, ZIG_F
recip = RECIPROCALS
max_k = MAX_INVERSION_STEPS


@njit(inline="always", cache=True)
def mix64(z):  # pragma: no cover - compiled
    z = (z ^ (z >> s30)) * m1
    z = (z ^ (z >> s27)) * m2
    return z ^ (z >> s31)


@njit(inline="always", cache=True)
def uniform(w):  # pragma: no cover - compiled
    return (float(w >> s11) + 0.5) * two53


@njit(nogil=True, cache=True)
def normal_slow(state, j, w):  # pragma: no cover - compiled
    # the wedge and tail of a ziggurat draw whose word j (value w) failed the fast test
    while True:
        idx = int64(w & low8)
        w = w >> s8
        sign = (w & s1) != uint64(0)
        m = int64((w >> s1) & mant)
        x = m * zw[idx]
        if sign:
            x = -x
        if m < zk[idx]:
            return x
        if idx == 0:
            while True:
                xx = -math.log(uniform(mix64(state + uint64(j + 1) * golden))) / zig_r
                yy = -math.log(uniform(mix64(state + uint64(j + 2) * golden)))
                j += 2
                if yy + yy > xx * xx:
                    return -(zig_r + xx) if sign else zig_r + xx
        j += 1
        if (zf[idx - 1] - zf[idx]) * uniform(mix64(state + uint64(j) * golden)) + zf[idx] < math.exp(-0.5 * x * x):
            return x
        j += 1
        w = mix64(state + uint64(j) * golden)


@njit(inline="always", cache=True)
def normal(state):  # pragma: no cover - compiled
    w = mix64(state + golden)
    idx = int64(w & low8)
    m = int64((w >> uint64(9)) & mant)
    if m < zk[idx]:  # 99.3%: the layer's rectangle core
        sign = float(int64((w >> s8) & s1))
        return (m * zw[idx]) * (1.0 - 2.0 * sign)
    return normal_slow(state, 1, w)


@njit(inline="always", cache=True)
def poisson(lam, state):  # pragma: no cover - compiled
    if lam < inversion_below:
        u = uniform(mix64(state + (pois + one) * golden))
        p = math.exp(-lam)
        f = p
        i = 0
        while u > f and i < max_k:
            i += 1
            p = p * (lam * recip[i])
            f += p
        return float(i)
    b = 0.931 + 2.53 * math.sqrt(lam)
    a = -0.059 + 0.02483 * b
    vr = 0.9277 - 3.6224 / (b - 2.0)
    j = pois + one
    while True:
        uu = uniform(mix64(state + j * golden)) - 0.5
        v = uniform(mix64(state + (j + one) * golden))
        j += uint64(2)
        us = 0.5 - abs(uu)
        kk = math.floor((2.0 * a / us + b) * uu + lam + 0.43)
        if us >= 0.07 and v <= vr:
            return kk
        if kk < 0.0 or (us < 0.013 and v > us):
            continue
        invalpha = 1.1239 + 1.1328 / (b - 3.4)
        if math.log(v) + math.log(invalpha) - math.log(a / (us * us) + b) <= -lam + kk * math.log(lam) - math.lgamma(kk + 1.0):
            return kk


@njit(nogil=True, cache=True)
def noise(src, keys, out, k, read_noise, gaussian_above, lo, hi):  # pragma: no cover - compiled
    # src, out: N x H x W x 3 views (any strides); images lo..hi-1; keys: uint64 seed keys.
    _, h, w, c = src.shape
    inv_k = 1.0 / k
    rn2 = read_noise * read_noise
    planar = src.strides[3] > src.strides[2]  # NCHW memory: walk channel planes
    for n in range(lo, hi):
        key = keys[n]
        for outer in range(c if planar else 1):
            for y in range(h):
                for x in range(w):
                    for inner in range(1 if planar else c):
                        ch = outer if planar else inner
                        i = uint64((y * w + x) * c + ch + 1)
                        state = mix64(key + i * golden)
                        lam = max(float(src[n, y, x, ch]), 0.0) * k
                        z = normal(state)
                        if lam < gaussian_above:
                            e = poisson(lam, state) + read_noise * z
                        else:
                            e = lam + math.sqrt(lam + rn2) * z
                        out[n, y, x, ch] = min(max(e * inv_k, 0.0), 1.0)
