"""The corruption registry: ``@register_corruption`` on each apply function, where it is defined.

The decorator is the single source of a corruption's name, family, ImageNet-C membership
(``benchmark``: one of the 15 scored by mCE; ``held_out``: one of the 4 validation ones),
one-line description and engine hints. :data:`CORRUPTIONS` imports the built-in defining
modules (:data:`BUILTIN_MODULES`) and the ``evalsuite.corruptions`` entry-point plug-ins the
first time it is listed or queried, so importing this module stays light (no torch).

Listing order (``evalsuite ls corruptions``, ``corruption_names("all")``): the benchmark
corruptions, then the held-out ones, then every other (plug-in) corruption, each in definition
order (the order of :data:`BUILTIN_MODULES`, then the order of the decorators in a module,
which in the built-in modules is ImageNet-C's).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evalsuite.registry import Registry

# Reference minimum: imagecorruptions.corrupt refuses images under 32 x 32. All parameters are
# ImageNet's (224 px); below 32 px several corruptions cover the whole image.
MIN_SIZE = 32
ENTRY_POINT_GROUP = "evalsuite.corruptions"
BUILTIN_MODULES = (
    "evalsuite.corruptions.noise",
    "evalsuite.corruptions.blur",
    "evalsuite.corruptions.weather",
    "evalsuite.corruptions.digital",
)
_NAME = re.compile(r"[a-z][a-z0-9_]*")

CORRUPTIONS = Registry("corruption", modules=BUILTIN_MODULES, group=ENTRY_POINT_GROUP)


@dataclass(frozen=True)
class CorruptionSpec:
    """One corruption: its metadata and its code (``draw`` random parameters, ``apply`` them).

    ``apply(x, severity, draws) -> x'`` is deterministic given ``draws``; ``draw(x, severity,
    rand) -> dict`` samples them from per-sample streams (:class:`~evalsuite.corruptions._random.SampleRandom`),
    as torchvision.transforms.v2 splits ``make_params`` from ``transform``.
    """

    name: str
    family: str
    benchmark: bool
    description: str
    apply: Callable[..., Any]
    draw: Callable[..., dict] | None = None
    held_out: bool = False
    min_size: int = MIN_SIZE
    on_grid: bool = False  # apply's output is already k / 255 (codec or Pillow resampling)
    per_image_cpu: bool = False  # CPU batches run image by image (numba/codec): no chunking needed

    @property
    def random(self) -> bool:
        return self.draw is not None

    def key(self, severity: int) -> str:
        return f"corruption/{self.name}/{severity}"

    def listing(self) -> str:
        """The ``evalsuite ls corruptions`` line: ``family[ (held out)]: description``."""
        return f"{self.family}{' (held out)' if self.held_out else ''}: {self.description}"

    def run(self, x: Any, severity: int, rand: Any) -> Any:
        """Corrupt a validated float32 NCHW batch with the given random streams."""
        draws = self.draw(x, severity, rand) if self.draw is not None else {}
        return self.apply_draws(x, severity, draws)

    def apply_draws(self, x: Any, severity: int, draws: dict) -> Any:
        """Deterministic part plus the reference's final ``np.uint8`` truncation."""
        import torch

        from evalsuite.corruptions._ops import quantize_floor

        out = self.apply(x, severity, draws)
        if self.on_grid:
            return out
        if out.dtype != torch.float32 or not out.is_contiguous():
            out = out.to(torch.float32).contiguous()
        if out.data_ptr() == x.data_ptr():
            out = out.clone()
        return quantize_floor(out)


def register_corruption(
    name: str,
    *,
    family: str,
    description: str,
    benchmark: bool = False,
    held_out: bool = False,
    draw: Callable[..., dict] | None = None,
    min_size: int = MIN_SIZE,
    on_grid: bool = False,
    per_image_cpu: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated ``apply(x, severity, draws)`` function as corruption ``name``.

    Args:
        name: lower-case identifier (``[a-z][a-z0-9_]*``); it appears in condition keys
            ``corruption/<name>/<severity>`` and in gate paths.
        family: group name (``noise``, ``blur``, ``weather``, ``digital`` or a plug-in's own);
            ``corruption_names(family)`` selects it.
        description: one line for ``evalsuite ls corruptions``.
        benchmark: one of ImageNet-C's 15 benchmark corruptions (scored by mCE).
        held_out: one of ImageNet-C's 4 held-out (validation) corruptions.
        draw: ``draw(x, severity, rand) -> dict`` for random corruptions; ``None`` when
            ``apply`` is deterministic.
        min_size: smallest height and width accepted (default 32, the reference's minimum).
        on_grid: ``apply`` already returns values on the 8-bit grid (skip the final truncation).
        per_image_cpu: ``apply`` streams CPU batches image by image (no chunking needed).

    Arguments are checked up front (``ValueError``/``TypeError``); a name registered twice is a
    ``ValueError``. The function is returned unchanged.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"corruption name must match [a-z][a-z0-9_]*, got {name!r}")
    if not isinstance(family, str) or not _NAME.fullmatch(family):
        raise ValueError(f"corruption {name!r}: family must match [a-z][a-z0-9_]*, got {family!r}")
    if family in ("all", "benchmark", "held_out"):
        raise ValueError(f"corruption {name!r}: family {family!r} is a subset name; choose another")
    if not isinstance(description, str) or not description.strip() or "\n" in description:
        raise ValueError(f"corruption {name!r}: description must be one non-empty line")
    if benchmark and held_out:
        raise ValueError(f"corruption {name!r}: benchmark and held_out exclude each other")
    if draw is not None and not callable(draw):
        raise TypeError(f"corruption {name!r}: draw must be callable or None, got {type(draw).__name__}")
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
        raise ValueError(f"corruption {name!r}: min_size must be a positive integer, got {min_size!r}")

    def decorate(apply: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(apply):
            raise TypeError(f"@register_corruption({name!r}) decorates a function, got {type(apply).__name__}")
        spec = CorruptionSpec(
            name=name,
            family=family,
            benchmark=bool(benchmark),
            description=description.strip(),
            apply=apply,
            draw=draw,
            held_out=bool(held_out),
            min_size=int(min_size),
            on_grid=bool(on_grid),
            per_image_cpu=bool(per_image_cpu),
        )
        CORRUPTIONS.register(name, spec, spec.listing(), origin=getattr(apply, "__module__", None) or name)
        return apply

    return decorate


def specs() -> list[CorruptionSpec]:
    """Every registered corruption in listing order (benchmark, held out, others)."""
    all_specs = [CORRUPTIONS.get(n) for n in CORRUPTIONS.ordered()]
    return (
        [s for s in all_specs if s.benchmark]
        + [s for s in all_specs if s.held_out]
        + [s for s in all_specs if not (s.benchmark or s.held_out)]
    )
