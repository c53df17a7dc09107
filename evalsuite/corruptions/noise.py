"""Noise corruptions: gaussian, shot (Poisson), impulse (salt and pepper), speckle.

Constants are imagecorruptions' (``corruptions.py``), i.e. ImageNet-C's, at every image size.
Each corruption is a ``draw`` (random fields from the per-sample streams) and an ``apply``
(deterministic given the draws), so tests can feed the reference's own random numbers to
``apply`` and compare pixel by pixel. ``@register_corruption`` on each apply function registers
it; their order here is the listing order (ImageNet-C's).
"""

from __future__ import annotations

import numpy as np
import torch

from evalsuite.corruptions._ops import cached
from evalsuite.corruptions._random import SampleRandom
from evalsuite.corruptions.registry import register_corruption

GAUSSIAN_NOISE = (0.08, 0.12, 0.18, 0.26, 0.38)
SHOT_NOISE = (60, 25, 12, 5, 3)
IMPULSE_NOISE = (0.03, 0.06, 0.09, 0.17, 0.27)
SPECKLE_NOISE = (0.15, 0.2, 0.35, 0.45, 0.6)


def draw_gaussian_noise(x: torch.Tensor, severity: int, rand: SampleRandom) -> dict:
    return {"noise": rand.normal(x.shape[1:], 0.0, GAUSSIAN_NOISE[severity - 1])}


@register_corruption("gaussian_noise", family="noise", benchmark=True, description="additive Gaussian noise",
                     draw=draw_gaussian_noise)
def apply_gaussian_noise(x: torch.Tensor, severity: int, draws: dict) -> torch.Tensor:
    """``x + noise``; the noise buffer from ``draw`` is reused for the result."""
    return draws["noise"].to(x).add_(x)


def draw_shot_noise(x: torch.Tensor, severity: int, rand: SampleRandom) -> dict:
    """Poisson counts with rate ``level / 255 * c`` per pixel, by exact inverse-CDF sampling.

    The rate uses the pixel's 8-bit level (the reference's input is uint8; images from the
    runner are on the 8-bit grid already), so per-level CDF tables make sampling a table lookup.
    """
    from evalsuite.corruptions import _numba

    c = SHOT_NOISE[severity - 1]
    u = rand.uniform(x.shape[1:])
    if _numba.use_kernels(x):  # CPU: the same lookups, image by image
        cdf, guide, k_max = _poisson_tables(c, x.device)
        counts = _numba.per_image("poisson_table", x, cdf.numpy(), guide.numpy(), k_max, _GUIDE, fields=(u,))
        return {"counts": counts}
    levels = torch.round(x * 255.0)
    return {"counts": _poisson_from_table(levels, u, c)}


@register_corruption("shot_noise", family="noise", benchmark=True, description="Poisson (photon) noise",
                     draw=draw_shot_noise)
def apply_shot_noise(x: torch.Tensor, severity: int, draws: dict) -> torch.Tensor:
    """``counts / c``; the counts buffer from ``draw`` is reused for the result."""
    return draws["counts"].to(x).div_(float(SHOT_NOISE[severity - 1]))


def draw_impulse_noise(x: torch.Tensor, severity: int, rand: SampleRandom) -> dict:
    """skimage's ``random_noise(mode='s&p', amount=p)``: flip with probability p, salt half of them.

    One uniform per pixel does both draws: ``u < p`` flips, and given a flip ``u / p`` is
    uniform, so ``u < p / 2`` is an independent fair coin for salt versus pepper.
    """
    p = IMPULSE_NOISE[severity - 1]
    u = rand.uniform(x.shape[1:])
    return {"flip": u < p, "salt": u < p / 2}


@register_corruption("impulse_noise", family="noise", benchmark=True, description="salt-and-pepper noise",
                     draw=draw_impulse_noise)
def apply_impulse_noise(x: torch.Tensor, severity: int, draws: dict) -> torch.Tensor:
    flip, salt = draws["flip"].to(x.device), draws["salt"].to(x.device)
    out = x.masked_fill(flip, 0.0)
    return out.masked_fill_(flip & salt, 1.0)


def draw_speckle_noise(x: torch.Tensor, severity: int, rand: SampleRandom) -> dict:
    return {"noise": rand.normal(x.shape[1:], 0.0, SPECKLE_NOISE[severity - 1])}


@register_corruption("speckle_noise", family="noise", held_out=True, description="multiplicative Gaussian noise",
                     draw=draw_speckle_noise)
def apply_speckle_noise(x: torch.Tensor, severity: int, draws: dict) -> torch.Tensor:
    """``x + x * noise``; the noise buffer from ``draw`` is reused for the result."""
    return draws["noise"].to(x).add_(1.0).mul_(x)


# -- exact Poisson sampling for 8-bit inputs -------------------------------------------------

_GUIDE = 1024
_tables: dict = {}


def _poisson_tables(c: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(CDF table 256 x K float32, guide table 256 x (G+1) uint8, K) for rates ``l / 255 * c``.

    ``guide[l, b]`` is the smallest count whose CDF reaches ``b / G``, so a uniform in bucket
    ``b`` maps to a count between ``guide[l, b]`` and ``guide[l, b + 1]``; only pixels whose
    bucket spans a CDF step need a comparison with the CDF itself.
    """

    def build():
        from math import lgamma

        lam = (np.arange(256, dtype=np.float64) / 255.0) * c
        k_max = int(np.ceil(c + 14.0 * np.sqrt(c) + 20.0))
        if k_max > 255:
            raise ValueError("Poisson table supports rates up to about 150")
        ks = np.arange(k_max, dtype=np.float64)
        lg = np.array([lgamma(k + 1.0) for k in ks])
        with np.errstate(divide="ignore", invalid="ignore"):
            logp = ks[None, :] * np.log(lam[:, None]) - lam[:, None] - lg[None, :]
        logp[0, :] = -np.inf
        logp[0, 0] = 0.0
        cdf = np.cumsum(np.exp(logp), axis=1)
        cdf = np.minimum(cdf, 1.0).astype(np.float32)
        cdf[:, -1] = np.inf  # the last count absorbs the (< 1e-20) tail: the search always ends
        edges = (np.arange(_GUIDE + 1, dtype=np.float64) / _GUIDE).astype(np.float32)
        guide = np.stack([np.searchsorted(row, edges, side="left") for row in cdf])
        guide = np.minimum(guide, k_max - 1).astype(np.uint8)
        return (
            torch.from_numpy(cdf.reshape(-1)).to(device),
            torch.from_numpy(guide.reshape(-1)).to(device),
            k_max,
        )

    return cached(("poisson", float(c), str(device)), build, _tables)


def _poisson_from_table(levels: torch.Tensor, u: torch.Tensor, c: float) -> torch.Tensor:
    """Smallest k with CDF(k; level / 255 * c) >= u for every pixel (inverse CDF, float32 CDF).

    ``u`` is consumed (overwritten).
    """
    cdf, guide, k_max = _poisson_tables(c, levels.device)
    shape = levels.shape
    fu = u.reshape(-1)
    # bucket index, then the guide-table row of the pixel's level: exact integers in float32
    g = fu.mul(_GUIDE).clamp_(max=_GUIDE - 1).add_(levels.reshape(-1), alpha=_GUIDE + 1)
    gidx = g.to(torch.int32)
    k = guide.index_select(0, gidx)
    k_hi = guide.index_select(0, gidx.add_(1))
    todo = (k != k_hi).nonzero().squeeze(1)
    counts = k.to(torch.float32)
    if todo.numel():
        kt = k.index_select(0, todo).to(torch.int32)
        ut = fu.index_select(0, todo)
        base = levels.reshape(-1).index_select(0, todo).to(torch.int32).mul_(k_max)
        while True:
            step = ut > cdf.index_select(0, base + kt)
            if not bool(step.any()):
                break
            kt.add_(step.to(torch.int32))
        counts.index_copy_(0, todo, kt.to(torch.float32))
    return counts.view(shape)
