"""The batched corruption engine: input checks, seeding, chunking and quantisation.

A corruption is a :class:`~evalsuite.corruptions.registry.CorruptionSpec`, registered with
``@register_corruption`` where its apply function is defined: ``draw(x, severity, rand)`` samples its random
parameters from per-sample streams (:mod:`evalsuite.corruptions._random`) and
``apply(x, severity, draws)`` is deterministic given them (torchvision's
``make_params``/``transform`` split). :func:`corrupt` validates the input, seeds every sample
from ``(seed, "corruption/<name>/<severity>", sample id)``, works through the batch in chunks
and rounds the result down to the 8-bit grid exactly as the reference's ``np.uint8`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from evalsuite.corruptions._random import SampleRandom
from evalsuite.corruptions.registry import MIN_SIZE, CorruptionSpec
from evalsuite.errors import UsageError

log = logging.getLogger(__name__)

__all__ = ["MIN_SIZE", "CorruptionSpec", "check_images", "check_severity", "corrupt", "get_spec"]

# Pixels per chunk: bounds peak memory (FFT buffers, zoom layers) and keeps the CPU working set
# in cache; results never depend on it (every sample has its own random stream).
_CHUNK_PIXELS = {"cpu": 8 * 224 * 224, "cuda": 512 * 224 * 224}


def get_spec(name: str) -> CorruptionSpec:
    """The registered corruption ``name`` (UsageError with suggestions when unknown)."""
    from evalsuite.corruptions.registry import CORRUPTIONS

    return CORRUPTIONS.get(name)


def check_severity(severity: object) -> int:
    """Severity as an int in 1..5, or a UsageError."""
    if isinstance(severity, bool) or not isinstance(severity, int | float) or int(severity) != severity:
        raise UsageError(f"severity must be an integer from 1 to 5, got {severity!r}")
    if not 1 <= int(severity) <= 5:
        raise UsageError(f"severity must be from 1 to 5, got {int(severity)}")
    return int(severity)


def check_images(images: object, spec: CorruptionSpec) -> tuple[torch.Tensor, bool]:
    """(float32 N x 3 x H x W view of ``images``, whether a single CHW image was given)."""
    if not isinstance(images, torch.Tensor):
        raise UsageError(f"corrupt() takes a torch tensor (float, N x 3 x H x W in [0, 1]), got {type(images).__name__}")
    if not images.is_floating_point():
        raise UsageError(
            f"corrupt() takes float images in [0, 1], got dtype {images.dtype}; convert with x.float() / 255"
        )
    single = images.ndim == 3
    x = images.unsqueeze(0) if single else images
    if x.ndim != 4:
        raise UsageError(f"corrupt() takes N x 3 x H x W or 3 x H x W images, got shape {tuple(images.shape)}")
    c, h, w = x.shape[1:]
    if c != 3:
        kind = {1: "grayscale", 4: "RGBA"}.get(c, f"{c}-channel")
        raise UsageError(
            f"corrupt() takes RGB images (3 channels), got {kind} input of shape {tuple(images.shape)}; "
            "convert explicitly (grayscale: x.expand(-1, 3, -1, -1); RGBA: drop or composite the alpha channel)"
        )
    if h < spec.min_size or w < spec.min_size:
        raise UsageError(
            f"{spec.name} needs images of at least {spec.min_size} x {spec.min_size} pixels "
            f"(the reference's minimum), got {h} x {w}"
        )
    if x.numel():
        lo_t, hi_t = torch.aminmax(x)
        lo, hi = float(lo_t), float(hi_t)
        if lo < -1e-6 or hi > 1 + 1e-6 or lo != lo or hi != hi:
            raise UsageError(
                f"corrupt() takes images with values in [0, 1], got range [{lo:.4g}, {hi:.4g}]"
                + ("; divide 0-255 data by 255" if hi > 1.5 else "")
            )
    return x.to(torch.float32), single


def corrupt(
    images: torch.Tensor,
    name: str,
    severity: int,
    *,
    seed: int = 0,
    ids: Sequence[object] | None = None,
) -> torch.Tensor:
    """See :func:`evalsuite.corruptions.corrupt`."""
    spec = get_spec(name)
    severity = check_severity(severity)
    x, single = check_images(images, spec)
    n = x.shape[0]
    if ids is None:
        ids = [str(i) for i in range(n)]
    else:
        ids = [str(i) for i in ids]
        if len(ids) != n:
            raise UsageError(f"corrupt() got {len(ids)} ids for {n} images")
    from evalsuite.seeding import sample_seeds

    seeds = sample_seeds(seed, spec.key(severity), ids).tolist() if n else []
    h, w = x.shape[-2:]
    budget = _CHUNK_PIXELS["cuda" if x.device.type == "cuda" else "cpu"]
    chunk = max(1, budget // max(1, h * w))
    if spec.per_image_cpu and x.device.type == "cpu":
        chunk = max(chunk, n)  # kernels stream image by image: chunks would only add a copy
    if n <= chunk:
        out = spec.run(x, severity, SampleRandom(seeds, x.device)) if n else x.clone()
    else:
        out = torch.empty_like(x)
        for start in range(0, n, chunk):
            rand = SampleRandom(seeds[start : start + chunk], x.device)
            out[start : start + chunk] = spec.run(x[start : start + chunk], severity, rand)
    out = out.to(images.dtype)
    return out[0] if single else out
