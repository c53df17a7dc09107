"""Exact Poisson-Gaussian sensor noise from a counter-based generator (numba kernel + NumPy twin).

Every draw is a function of (sample seed, pixel position) only, so results never depend on the
batch, its memory layout, the slice a thread gets or the device the batch lives on:

- The sample's 63-bit seed is mixed into a key ``K = mix64(seed)``. The pixel at ``(y, x, c)``
  of an ``H x W x 3`` image has the logical index ``i = (y W + x) 3 + c`` and its own
  SplitMix64 stream, seeded with ``mix64(K + (i + 1) G)`` (``G`` the golden-ratio increment,
  ``mix64`` SplitMix64's finaliser): the ``j``-th 64-bit word of that stream is
  ``mix64(state + j G)``, ``j = 1, 2, ...``. The top 53 bits give a uniform in (0, 1):
  ``u = ((w >> 11) + 1/2) 2^-53``.
- The pixel's standard normal comes from words 1, 2, ... by Marsaglia and Tsang's ziggurat
  with 256 layers, as NumPy draws normals (``random_standard_normal``): 8 bits pick a layer, one
  a sign, 52 the abscissa; 99.3% of draws take one word, the rest go through the exact wedge
  test or Marsaglia's tail algorithm beyond ``r = 3.654...`` with further words.
- Below ``gaussian_above`` expected electrons the photon count is Poisson(``lam``) exactly, from
  words ``2^32 + 1, 2^32 + 2, ...`` (a range of its own): for ``lam < 10`` by sequential-search
  inversion of the CDF with one word (``P(X = k)`` by the recurrence ``p_k = p_(k-1) (lam (1 / k))``
  from ``exp(-lam)``, in double precision); from 10 on by Hoermann's transformed rejection with
  squeeze (PTRS, 1993, the method NumPy uses for ``lam >= 10``), two words per trial
  (acceptance above 85%).

Electrons then follow :class:`evalsuite.devices.sensor.SensorNoise`'s model:
``Poisson(lam) + read_noise z`` below the threshold, ``lam + sqrt(lam + read_noise^2) z`` from it
on, and the output is ``clip(electrons / k, 0, 1)``.

The numba kernel (:mod:`evalsuite.devices._noise_kernels`: compiled once per machine into
numba's disk cache, loaded on first use, ``nogil``) processes a slice of a batch per call, so a
batch runs on the shared thread pool in one call per worker; :func:`noise_numpy` is the same
algorithm vectorised in NumPy, the fallback without numba and the tests' reference.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Version tag of the random stream; part of the operation's ``config()`` (and so of the
#: resume identity of stored predictions): a change of draws must change it.
RNG_VERSION = "splitmix64-inversion-ptrs/1"

GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_MASK = (1 << 64) - 1
#: Below this mean the Poisson draw is made by inversion, from it on by PTRS.
INVERSION_BELOW = 10.0
_TWO53 = 2.0**-53
#: Cap of the inversion search (P(X > 1000) for a mean below 10 is far below 2^-53).
MAX_INVERSION_STEPS = 1000
#: 1 / k for the inversion recurrence ``p_k = p_(k-1) (lam / k)`` (a multiply, not a divide).
RECIPROCALS = np.concatenate([[0.0], 1.0 / np.arange(1, MAX_INVERSION_STEPS + 1, dtype=np.float64)])

#: Words of a pixel's stream from which Poisson draws start (normal draws use 1, 2, ...).
POISSON_WORDS = 1 << 32

# Ziggurat for exp(-x^2 / 2) with 256 layers of equal area ZIG_V (Marsaglia and Tsang 2000; the
# constants NumPy uses): layer edges x_255 = r > ... > x_1, x_0 = 0; layer 0 is the base strip
# with the tail, of virtual width q = v / f(r). A 52-bit magnitude m is accepted at once when
# m < ki[i] (inside the layer's rectangle core); x = m wi[i].
ZIG_R = 3.6541528853610088
ZIG_V = 0.00492867323399


def _ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, m1 = 256, 2.0**52
    x = np.zeros(n)
    x[n - 1] = ZIG_R
    for i in range(n - 2, 0, -1):
        x[i] = math.sqrt(-2.0 * math.log(ZIG_V / x[i + 1] + math.exp(-0.5 * x[i + 1] ** 2)))
    q = ZIG_V / math.exp(-0.5 * ZIG_R**2)
    ki = np.zeros(n, dtype=np.int64)
    ki[0] = int(ZIG_R / q * m1)
    ki[2:] = (x[1:-1] / x[2:] * m1).astype(np.int64)
    wi = x / m1
    wi[0] = q / m1
    fi = np.exp(-0.5 * x * x)
    return ki, wi, fi


ZIG_K, ZIG_W, ZIG_F = _ziggurat_tables()


def mix64_int(z: int) -> int:
    """SplitMix64's finaliser on a Python int (the seed key is mixed once per sample)."""
    z &= _MASK
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def seed_keys(seeds: Any) -> np.ndarray:
    """``mix64(seed)`` per sample seed, as uint64."""
    return np.array([mix64_int(int(s)) for s in seeds], dtype=np.uint64)


# ----------------------------------------------------------------------------- NumPy twin


def _mix64_np(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def _word_np(state: np.ndarray, j: Any) -> np.ndarray:
    with np.errstate(over="ignore"):
        return _mix64_np(state + np.asarray(j, dtype=np.uint64) * np.uint64(GOLDEN))


def _uniform_np(w: np.ndarray) -> np.ndarray:
    return ((w >> np.uint64(11)).astype(np.float64) + 0.5) * _TWO53


def _normal_scalar(state: int, j: int, w: int) -> float:
    """The rest of one ziggurat draw whose word ``j`` (value ``w``) failed the fast test."""
    while True:
        idx = w & 0xFF
        w >>= 8
        sign = w & 1
        m = (w >> 1) & 0x000FFFFFFFFFFFFF
        x = m * float(ZIG_W[idx])
        if sign:
            x = -x
        if m < int(ZIG_K[idx]):
            return x
        if idx == 0:  # the tail beyond r
            while True:
                xx = -math.log(_uniform_int(_word_int(state, j + 1))) / ZIG_R
                yy = -math.log(_uniform_int(_word_int(state, j + 2)))
                j += 2
                if yy + yy > xx * xx:
                    return -(ZIG_R + xx) if sign else ZIG_R + xx
        j += 1
        if (float(ZIG_F[idx - 1]) - float(ZIG_F[idx])) * _uniform_int(_word_int(state, j)) + float(ZIG_F[idx]) < math.exp(-0.5 * x * x):
            return x
        j += 1
        w = _word_int(state, j)


def _word_int(state: int, j: int) -> int:
    return mix64_int(state + j * GOLDEN)


def _uniform_int(w: int) -> float:
    return ((w >> 11) + 0.5) * _TWO53


def normal_np(states: np.ndarray) -> np.ndarray:
    """One standard normal per pixel stream (ziggurat, words 1, 2, ...), float64."""
    w = _word_np(states, 1)
    idx = (w & np.uint64(0xFF)).astype(np.intp)
    sign = ((w >> np.uint64(8)) & np.uint64(1)).astype(bool)
    m = ((w >> np.uint64(9)) & np.uint64(0x000FFFFFFFFFFFFF)).astype(np.int64)
    x = m * ZIG_W[idx]
    x = np.where(sign, -x, x)
    for i in np.flatnonzero(m >= ZIG_K[idx]):
        x.flat[i] = _normal_scalar(int(states.flat[i]), 1, int(w.flat[i]))
    return x


def pixel_states_np(key: int, n: int) -> np.ndarray:
    """The stream states of logical pixels ``0..n-1`` of a sample with seed key ``key``."""
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return _mix64_np(np.uint64(key) + i * np.uint64(GOLDEN))


def poisson_np(lam: np.ndarray, states: np.ndarray) -> np.ndarray:
    """Poisson draws (float64) for means ``lam`` from pixel streams ``states`` (words from 2^32 + 1)."""
    from scipy.special import gammaln

    lam = np.asarray(lam, dtype=np.float64)
    out = np.zeros(lam.shape, dtype=np.float64)
    inv = lam < INVERSION_BELOW
    if inv.any():  # sequential search: the smallest k with u < F(k)
        lm = lam[inv]
        u = _uniform_np(_word_np(states[inv], POISSON_WORDS + 1))
        p = np.exp(-lm)
        f = p.copy()
        k = np.zeros(lm.shape, dtype=np.intp)
        active = u > f
        while active.any():
            k = np.where(active, k + 1, k)
            p = np.where(active, p * (lm * RECIPROCALS[np.minimum(k, MAX_INVERSION_STEPS)]), p)
            f = np.where(active, f + p, f)
            active &= (u > f) & (k < MAX_INVERSION_STEPS)
        out[inv] = k
    idx = np.flatnonzero(~inv.ravel())
    if idx.size:  # PTRS (Hoermann 1993)
        lm = lam.ravel()[idx]
        st = states.ravel()[idx]
        loglam = np.log(lm)
        b = 0.931 + 2.53 * np.sqrt(lm)
        a = -0.059 + 0.02483 * b
        invalpha = 1.1239 + 1.1328 / (b - 3.4)
        vr = 0.9277 - 3.6224 / (b - 2.0)
        res = np.zeros_like(lm)
        todo = np.ones(lm.shape, dtype=bool)
        j = POISSON_WORDS + 1
        while todo.any():
            t = np.flatnonzero(todo)
            uu = _uniform_np(_word_np(st[t], j)) - 0.5
            v = _uniform_np(_word_np(st[t], j + 1))
            j += 2
            us = 0.5 - np.abs(uu)
            kk = np.floor((2.0 * a[t] / us + b[t]) * uu + lm[t] + 0.43)
            quick = (us >= 0.07) & (v <= vr[t])
            bad = (kk < 0.0) | ((us < 0.013) & (v > us))
            with np.errstate(divide="ignore", invalid="ignore"):
                lhs = np.log(v) + np.log(invalpha[t]) - np.log(a[t] / (us * us) + b[t])
                rhs = -lm[t] + kk * loglam[t] - gammaln(kk + 1.0)
            ok = quick | (~bad & (lhs <= rhs))
            res[t[ok]] = kk[ok]
            todo[t[ok]] = False
        out.ravel()[idx] = res
    return out


def noise_numpy(img: np.ndarray, key: int, k: float, read_noise: float, gaussian_above: float) -> np.ndarray:
    """One ``H x W x 3`` linear image through the noise model (float32 result); see module docstring."""
    h, w, c = img.shape
    lam = np.maximum(np.asarray(img, dtype=np.float64), 0.0).reshape(-1) * k
    states = pixel_states_np(key, lam.size)
    z = normal_np(states)
    electrons = lam + np.sqrt(lam + read_noise * read_noise) * z
    low = lam < gaussian_above
    if low.any():
        electrons[low] = poisson_np(lam[low], states[low]) + read_noise * z[low]
    y = np.clip(electrons * (1.0 / k), 0.0, 1.0).astype(np.float32)
    return y.reshape(h, w, c)


# ----------------------------------------------------------------------------- numba kernel

def available() -> bool:
    """Whether numba can be imported (:func:`evalsuite.parallel.numba_available`)."""
    from evalsuite.parallel import numba_available

    return numba_available()


def kernel() -> Any:
    """The compiled batch kernel (:mod:`evalsuite.devices._noise_kernels`, imported on first use:
    numba loads it from its disk cache, or compiles it once per machine; Python's import lock
    makes that thread-safe)."""
    from evalsuite.devices._noise_kernels import noise

    return noise


def noise_batch(src: np.ndarray, keys: np.ndarray, out: np.ndarray, k: float, read_noise: float,
                gaussian_above: float, lo: int, hi: int) -> None:
    """Images ``lo..hi-1`` of ``N x H x W x 3`` float32 ``src`` into ``out`` (any strides)."""
    if available():
        kernel()(src, keys, out, float(k), float(read_noise), float(gaussian_above), int(lo), int(hi))
        return
    for n in range(lo, hi):  # pragma: no cover - numba is a declared dependency
        out[n] = noise_numpy(src[n], int(keys[n]), k, read_noise, gaussian_above)
