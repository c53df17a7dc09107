"""ImageNet-C common corruptions as batched torch operations, validated against imagecorruptions.

``corrupt(images, name, severity, seed=0, ids=None)`` corrupts a float ``N x 3 x H x W``
batch in [0, 1] (or one ``3 x H x W`` image) on the CPU or a GPU and returns a tensor of the
same shape, dtype and device. The 19 corruptions and their severity parameters are
imagecorruptions' (Hendrycks & Dietterich's ImageNet-C), see ``docs/corruptions.md`` for the
measured parity of each. ``evalsuite.corruptions.reference`` wraps the reference library
itself (``--corruption-backend reference``).

Corruptions register where they are defined, with ``@register_corruption`` (see
:mod:`evalsuite.corruptions.registry`); plug-ins add theirs through the ``evalsuite.corruptions``
entry-point group. This module stays light (no torch import): the corruption modules are
imported the first time the registry is listed or queried, so ``evalsuite --help`` is fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalsuite.corruptions.registry import CORRUPTIONS, CorruptionSpec, register_corruption, specs

SUBSETS = ("all", "benchmark", "held_out")


def __getattr__(name: str) -> Any:
    """``NAMES``, ``BENCHMARK``, ``HELD_OUT`` and ``FAMILIES``, derived from the registry on access.

    Reading one imports the corruption modules (torch) and the plug-ins; importing this package
    does not.
    """
    if name == "NAMES":
        return tuple(s.name for s in specs())
    if name == "BENCHMARK":
        return tuple(s.name for s in specs() if s.benchmark)
    if name == "HELD_OUT":
        return tuple(s.name for s in specs() if s.held_out)
    if name == "FAMILIES":
        families: dict[str, tuple[str, ...]] = {}
        for s in specs():
            families[s.family] = (*families.get(s.family, ()), s.name)
        return families
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def list_entries() -> list[tuple[str, str]]:
    """(name, one-line description) of every corruption, benchmark ones first (``evalsuite ls``)."""
    return [(s.name, s.listing()) for s in specs()]


def corruption_names(subset: str = "all") -> list[str]:
    """Names in a subset: ``all``, ``benchmark`` (15), ``held_out`` (4) or a family name."""
    every = specs()
    if subset == "all":
        return [s.name for s in every]
    if subset == "benchmark":
        return [s.name for s in every if s.benchmark]
    if subset == "held_out":
        return [s.name for s in every if s.held_out]
    if any(s.family == subset for s in every):
        return [s.name for s in every if s.family == subset]
    from evalsuite.errors import UsageError
    from evalsuite.registry import did_you_mean

    choices = [*SUBSETS, *dict.fromkeys(s.family for s in every)]
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


def get_corruption(name: str) -> CorruptionSpec:
    """The :class:`~evalsuite.corruptions.registry.CorruptionSpec` of ``name``."""
    return CORRUPTIONS.get(name)


__all__ = [
    "BENCHMARK",
    "CORRUPTIONS",
    "FAMILIES",
    "HELD_OUT",
    "NAMES",
    "CorruptionSpec",
    "corrupt",
    "corruption_names",
    "get_corruption",
    "list_entries",
    "register_corruption",
]
