"""Parity of the engine with ``imagecorruptions``: replayed draws, pixel and distribution checks.

Every corruption's random numbers can be *replayed*: seeding NumPy (or numba, or skimage's
generator) as :func:`evalsuite.corruptions.reference.corrupt_image` does and drawing the same
arrays in the same order gives the exact random inputs the reference consumed. Feeding them
to the engine's deterministic ``apply`` isolates the image arithmetic, so every corruption
(random or not) can be compared pixel by pixel. Separately, the engine's own sampler is
compared with the reference in distribution (perturbation mean and std per channel).

Used by ``tests/test_corruptions_parity.py`` and ``python -m benchmarks.bench_corruptions --parity``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from evalsuite.corruptions import blur, noise, weather


def glass_offsets(seed: int, height: int, width: int, severity: int, numba_rng: bool) -> np.ndarray:
    """The reference's glass-blur offsets ``(iters, rows, cols, 2)`` for a seed."""
    _, delta, iters = blur.GLASS_BLUR[severity - 1]
    if numba_rng:
        from evalsuite.corruptions._numba_kernels import glass_draws

        return glass_draws(int(seed), height, width, delta, iters)
    np.random.seed(seed)
    rows, cols = max(0, height - 2 * delta), max(0, width - 2 * delta)
    out = np.zeros((iters, rows, cols, 2), dtype=np.int64)
    for i in range(iters):
        for h in range(height - delta, delta, -1):
            for w in range(width - delta, delta, -1):
                out[i, (height - delta) - h, (width - delta) - w] = np.random.randint(-delta, delta, size=(2,))
    return out


def replay_draws(name: str, severity: int, image: np.ndarray, seed: int) -> dict[str, Any]:
    """The reference's random inputs for ``image`` (H x W x 3 uint8) under ``seed``, as engine draws (batch of 1)."""
    import torch

    from evalsuite.corruptions.reference import load_reference

    info = load_reference()
    h, w = image.shape[:2]
    seed = int(seed) % (2**32)

    def t(a: np.ndarray, chw: bool = False) -> torch.Tensor:
        a = np.asarray(a)
        if chw:
            a = a.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(a)).unsqueeze(0)

    np.random.seed(seed)
    if name == "gaussian_noise":
        return {"noise": t(np.random.normal(size=(h, w, 3), scale=noise.GAUSSIAN_NOISE[severity - 1]), True).float()}
    if name == "speckle_noise":
        return {"noise": t(np.random.normal(size=(h, w, 3), scale=noise.SPECKLE_NOISE[severity - 1]), True).float()}
    if name == "shot_noise":
        c = noise.SHOT_NOISE[severity - 1]
        return {"counts": t(np.random.poisson((image / 255.0) * c), True).float()}
    if name == "impulse_noise":
        rng = np.random.default_rng(seed)
        p = noise.IMPULSE_NOISE[severity - 1]
        flip = rng.random((h, w, 3)) <= p
        salt = rng.random((h, w, 3)) <= 0.5
        return {"flip": t(flip, True), "salt": t(salt, True)}
    if name == "glass_blur":
        numba_rng = info.numba_glass_blur
        return {"offsets": t(glass_offsets(seed, h, w, severity, numba_rng))}
    if name == "motion_blur":
        return {"angle": np.array([np.random.uniform(-45, 45)])}
    if name == "snow":
        loc, scale = weather.SNOW[severity - 1][:2]
        field = np.random.normal(size=(h, w), loc=loc, scale=scale)
        return {"field": t(field).float(), "angle": np.array([np.random.uniform(-135, -45)])}
    if name == "frost":
        idx = np.random.randint(info.frost_textures or weather.FROST_TEXTURES)
        shape = weather.frost_texture(idx, h, w, torch.device("cpu")).shape
        top = np.random.randint(0, shape[1] - h)
        left = np.random.randint(0, shape[2] - w)
        return {"texture": np.array([idx]), "top": np.array([top]), "left": np.array([left])}
    if name == "fog":
        count = weather.plasma_draw_count(weather.fog_map_size(h, w))
        return {"uniform": t(np.random.random_sample(count)).float()}
    if name == "spatter":
        loc, scale = weather.SPATTER[severity - 1][:2]
        return {"liquid": t(np.random.normal(size=(h, w), loc=loc, scale=scale))}  # float64: apply blurs in float64
    if name == "elastic_transform":
        m = h * 0.005
        dx = np.random.uniform(-m, m, size=(h, w))
        dy = np.random.uniform(-m, m, size=(h, w))
        return {"dx": t(dx).float(), "dy": t(dy).float()}
    return {}


def to_tensor(image: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def to_uint8(x: Any) -> np.ndarray:
    import torch

    return torch.round(x[0].clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def engine_with_draws(image: np.ndarray, name: str, severity: int, draws: dict[str, Any], **kwargs: Any) -> np.ndarray:
    """The engine's deterministic part on one uint8 image with the given draws -> uint8."""
    from evalsuite.corruptions import get_corruption
    from evalsuite.corruptions._ops import quantize_floor

    spec = get_corruption(name)
    x = to_tensor(image)
    if kwargs:
        return to_uint8(quantize_floor(spec.apply(x, severity, draws, **kwargs).float().contiguous().clone()))
    return to_uint8(spec.apply_draws(x, severity, draws))


def matched_batch(images: np.ndarray, name: str, severity: int, seeds: list[int]) -> np.ndarray:
    """The engine on a batch of uint8 images with each image's replayed reference draws (one apply call)."""
    import torch

    from evalsuite.corruptions import get_corruption

    spec = get_corruption(name)
    draws = [replay_draws(name, severity, im, s) for im, s in zip(images, seeds, strict=True)]
    merged: dict[str, Any] = {}
    for key in draws[0] if draws else {}:
        vals = [d[key] for d in draws]
        merged[key] = torch.cat(vals) if isinstance(vals[0], torch.Tensor) else np.concatenate(vals)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    y = spec.apply_draws(x, severity, merged)
    return torch.round(y * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference in 0-255 units."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


@dataclass
class MatchedResult:
    name: str
    severity: int
    mad: float  # mean |ours - reference| over pixels and channels, 0-255 units
    max_abs: int
    frac_exact: float  # share of values identical


def matched_parity(image: np.ndarray, name: str, severity: int, seed: int) -> MatchedResult:
    """Reference vs engine on the same image with the reference's own random draws."""
    from evalsuite.corruptions.reference import corrupt_image

    ref = corrupt_image(image, name, severity, seed)
    ours = engine_with_draws(image, name, severity, replay_draws(name, severity, image, seed))
    diff = np.abs(ref.astype(np.int64) - ours.astype(np.int64))
    return MatchedResult(name, severity, float(diff.mean()), int(diff.max()), float((diff == 0).mean()))


def perturbation_stats(clean: np.ndarray, corrupted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of ``corrupted - clean`` (0-255 units) over a stack of images."""
    d = corrupted.astype(np.float64) - clean.astype(np.float64)
    d = d.reshape(-1, d.shape[-1])
    return d.mean(axis=0), d.std(axis=0)


def _benchmark_frost_seed(seed: int) -> bool:
    """Whether the reference's frost draws one of ImageNet-C's five textures under ``seed``.

    imagecorruptions-imaug draws ``randint(6)`` (all six files) where ImageNet-C and the engine
    draw ``randint(5)``; conditioning the reference on the first five compares like with like.
    """
    from evalsuite.corruptions.reference import load_reference
    from evalsuite.corruptions.weather import FROST_TEXTURES

    n = load_reference().frost_textures or FROST_TEXTURES
    np.random.seed(seed)
    return bool(np.random.randint(n) < FROST_TEXTURES)


def benchmark_seed(name: str, seed: int) -> int:
    """``seed``, or the next one that draws an ImageNet-C frost texture when ``name`` is frost (see above)."""
    seed = int(seed) % (2**32)
    while name == "frost" and not _benchmark_frost_seed(seed):
        seed = (seed + 104729) % (2**32)
    return seed


def sampled_images(images: np.ndarray, name: str, severity: int, seeds: list[int], backend: str) -> np.ndarray:
    """``len(seeds)`` independent corruptions of every image: engine (own sampler) or reference."""
    import torch

    from evalsuite.corruptions import corrupt
    from evalsuite.corruptions.reference import corrupt_image

    outs = []
    for s in seeds:
        if backend == "reference":
            for k, im in enumerate(images):
                outs.append(corrupt_image(im, name, severity, benchmark_seed(name, s * 7919 + k)))
        else:
            x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
            y = corrupt(x, name, severity, seed=s)
            outs.extend(torch.round(y * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.stack(outs)


def distribution_parity(
    images: np.ndarray, name: str, severity: int, seeds: list[int]
) -> dict[str, Any]:
    """Relative difference of per-channel perturbation mean and std, engine sampler vs reference.

    Relative to the reference's perturbation std per channel for the mean (a mean near zero
    has no useful relative scale) and to the reference std for the std.
    """
    clean = np.concatenate([images] * len(seeds))
    ref = sampled_images(images, name, severity, seeds, "reference")
    ours = sampled_images(images, name, severity, seeds, "engine")
    rm, rs = perturbation_stats(clean, ref)
    om, os_ = perturbation_stats(clean, ours)
    scale = np.maximum(rs, 1e-9)
    return {
        "ref_mean": rm.tolist(),
        "ours_mean": om.tolist(),
        "ref_std": rs.tolist(),
        "ours_std": os_.tolist(),
        "mean_rel": float(np.max(np.abs(om - rm) / scale)),
        "std_rel": float(np.max(np.abs(os_ - rs) / scale)),
    }


__all__ = [
    "MatchedResult",
    "distribution_parity",
    "engine_with_draws",
    "glass_offsets",
    "matched_parity",
    "mean_abs_diff",
    "perturbation_stats",
    "replay_draws",
]
