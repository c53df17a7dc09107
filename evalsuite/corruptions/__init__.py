"""ImageNet-C common corruptions as batched torch operations, validated against imagecorruptions.

``corrupt(images, name, severity, seed=0, ids=None)`` corrupts a float ``N x 3 x H x W``
batch in [0, 1] (or one ``3 x H x W`` image) on the CPU or a GPU and returns a tensor of the
same shape, dtype and device. The 19 corruptions and their severity parameters are
imagecorruptions' (Hendrycks & Dietterich's ImageNet-C), see ``docs/corruptions.md`` for the
measured parity of each. ``evalsuite.corruptions.reference`` wraps the reference library
itself (``--corruption-backend reference``).

This module stays light (no torch import) so ``evalsuite ls corruptions`` is fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalsuite.registry import Registry

BENCHMARK = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
HELD_OUT = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
NAMES = BENCHMARK + HELD_OUT
FAMILIES = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"),
    "weather": ("snow", "frost", "fog", "brightness", "spatter"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"),
}
DESCRIPTIONS = {
    "gaussian_noise": "noise: additive Gaussian noise",
    "shot_noise": "noise: Poisson (photon) noise",
    "impulse_noise": "noise: salt-and-pepper noise",
    "defocus_blur": "blur: out-of-focus disk blur",
    "glass_blur": "blur: frosted glass (blur, local pixel shuffle, blur)",
    "motion_blur": "blur: linear motion blur at a random angle",
    "zoom_blur": "blur: radial blur from zooming towards the centre",
    "snow": "weather: falling snow over a whitened scene",
    "frost": "weather: frost texture on the lens",
    "fog": "weather: diamond-square fog",
    "brightness": "weather: brighter scene (HSV value up)",
    "contrast": "digital: reduced contrast",
    "elastic_transform": "digital: smooth random elastic warp",
    "pixelate": "digital: box downsample, nearest upsample",
    "jpeg_compression": "digital: JPEG compression artefacts",
    "speckle_noise": "noise (held out): multiplicative Gaussian noise",
    "gaussian_blur": "blur (held out): Gaussian blur",
    "spatter": "weather (held out): water or mud spatter",
    "saturate": "digital (held out): HSV saturation change",
}

CORRUPTIONS = Registry("corruption")
for _name in NAMES:
    CORRUPTIONS.register(_name, f"evalsuite.corruptions._engine:SPECS_{_name}", DESCRIPTIONS[_name])


def list_entries() -> list[tuple[str, str]]:
    """(name, one-line description) of every corruption, benchmark ones first (``evalsuite ls``)."""
    return [(n, DESCRIPTIONS[n]) for n in NAMES]


def corruption_names(subset: str = "all") -> list[str]:
    """Names in a subset: ``all`` (19), ``benchmark`` (15), ``held_out`` (4) or a family name."""
    if subset == "all":
        return list(NAMES)
    if subset == "benchmark":
        return list(BENCHMARK)
    if subset == "held_out":
        return list(HELD_OUT)
    if subset in FAMILIES:
        return list(FAMILIES[subset])
    from evalsuite.errors import UsageError
    from evalsuite.registry import did_you_mean

    choices = ["all", "benchmark", "held_out", *FAMILIES]
    raise UsageError(f"unknown corruption subset {subset!r}{did_you_mean(subset, choices)}; valid: {', '.join(choices)}")


def corrupt(images: Any, name: str, severity: int, *, seed: int = 0, ids: Sequence[object] | None = None) -> Any:
    """Corrupt ``images`` with corruption ``name`` at ``severity`` (1-5).

    Args:
        images: float tensor ``N x 3 x H x W`` (or ``3 x H x W``) with values in [0, 1], on the
            CPU or a CUDA device; at least 32 x 32 pixels (the reference's minimum).
        name: one of :data:`NAMES` (unknown names raise a UsageError with suggestions).
        severity: 1 to 5.
        seed: run seed.
        ids: one id per image. Sample ``i``'s randomness comes from
            ``evalsuite.seeding.sample_seed(seed, f"corruption/{name}/{severity}", ids[i])``,
            so a sample is corrupted the same way in any batch or shard. When ``None`` the
            position in this batch (``"0"``, ``"1"``, ...) is the id, so results then depend on
            where an image sits in the batch: pass ids for shard-independent results.

    Returns:
        A tensor of the same shape, dtype and device. Values lie on the 8-bit grid
        (``k / 255``), as the reference's ``np.uint8`` output does.
    """
    from evalsuite.corruptions._engine import corrupt as _corrupt

    return _corrupt(images, name, severity, seed=seed, ids=ids)


def get_corruption(name: str) -> Any:
    """The :class:`~evalsuite.corruptions._engine.CorruptionSpec` of ``name``."""
    return CORRUPTIONS.get(name)


__all__ = [
    "BENCHMARK",
    "CORRUPTIONS",
    "FAMILIES",
    "HELD_OUT",
    "NAMES",
    "corrupt",
    "corruption_names",
    "get_corruption",
    "list_entries",
]
