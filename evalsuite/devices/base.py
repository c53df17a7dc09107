"""The device-operation contract: declared parameters, validation, severity ladders, chains.

Every operation (:class:`DeviceOp`) declares its parameters as :class:`Param` specs, so a
constructor validates its arguments up front (unknown names with "did you mean", types, ranges)
and a profile file is checked before any image is touched. An operation also declares:

- ``domain``: ``"linear"`` when its physics acts on light (noise, blur, vignetting, white
  balance, mosaicking), ``"srgb"`` when it acts on encoded values (tone curves, codecs,
  quantisation, ISP scalers). The chain runner decodes/encodes sRGB only when the domain
  changes, so a profile of several linear ops pays for one decode and one encode.
- ``ladder``: the parameters at severities 1-5 (mild to severe).
- ``random``: whether it draws random numbers. Every draw comes from a per-sample seed derived
  from (run seed, condition key + step, sample id) by :mod:`evalsuite.seeding` and is made on
  the CPU (a seeded ``torch.Generator``), so batch size, sharding and the device (CPU or CUDA)
  never change a result.

Two implementations of every operation exist and are tested against each other:

- ``apply_numpy(img, p)``: one ``H x W x 3`` float32 image, OpenCV/NumPy kernels. The CPU
  path for images larger than :data:`SMALL_IMAGE_PIXELS` runs a whole chain per image in a
  thread pool (``torch.get_num_threads()`` workers), because per-image kernels stay in cache
  and OpenCV's filters and resamplers are several times faster than torch's CPU kernels
  (see ``docs/devices.md``). Channels-last keeps OpenCV on its fast interleaved paths and
  avoids a transpose: the runner's batches already are channels-last in memory.
- ``apply_torch(x, ps)``: the batch ``N x 3 x H x W`` on its device; used for CUDA input and
  for small CPU images, where per-image Python overhead would dominate.

Every operation maps [0, 1] to [0, 1] (outputs are clipped, as an 8-bit pipeline would).
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from evalsuite.errors import UsageError
from evalsuite.parallel import parallel_for
from evalsuite.registry import did_you_mean

log = logging.getLogger(__name__)

SEVERITIES = (1, 2, 3, 4, 5)
BACKENDS = ("auto", "numpy", "torch")
#: On the CPU, images up to this many pixels run through the batched torch path (per-image
#: Python overhead dominates there); larger ones run per image through OpenCV/NumPy (measured
#: crossover between 48 x 48 and 64 x 64, see docs/devices.md).
SMALL_IMAGE_PIXELS = 56 * 56


class InvalidParameter(UsageError, ValueError):
    """A device operation or profile got a bad argument (a ``UsageError`` and a ``ValueError``)."""


@dataclass(frozen=True)
class Param:
    """Declaration of one operation parameter.

    ``kind`` is ``float``, ``int``, ``bool`` or ``choice``. Numeric ranges are closed unless
    ``low_open``/``high_open``. ``nullable`` allows ``None`` (meaning given in ``doc``).
    """

    kind: str
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    nullable: bool = False
    unit: str = ""

    def describe(self) -> str:
        """Human-readable type and range, e.g. ``float in (0, 1]``."""
        if self.kind == "choice":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "bool":
            text = "true or false"
        else:
            lo = "-inf" if self.low is None else _num(self.low)
            hi = "inf" if self.high is None else _num(self.high)
            text = f"{'an integer' if self.kind == 'int' else 'a number'} in {'(' if self.low_open else '['}{lo}, {hi}{')' if self.high_open else ']'}"
        if self.unit:
            text += f" ({self.unit})"
        if self.nullable:
            text += " or null"
        return text

    def check(self, op: str, name: str, value: Any) -> Any:
        """Return ``value`` normalised (int/float/bool) or raise :class:`InvalidParameter`."""

        def bad() -> InvalidParameter:
            return InvalidParameter(f"{op}: {name} must be {self.describe()}, got {value!r}")

        if value is None:
            if self.nullable:
                return None
            raise bad()
        if self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise bad()
            return bool(value)
        if self.kind == "choice":
            if value not in self.choices:
                hint = did_you_mean(str(value), [str(c) for c in self.choices])
                raise InvalidParameter(f"{op}: {name} must be {self.describe()}, got {value!r}{hint}")
            return value
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise bad()
        if self.kind == "int":
            if isinstance(value, (float, np.floating)):
                if not float(value).is_integer():
                    raise bad()
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise bad()
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise bad()
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise bad()
        return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


class DeviceOp(ABC):
    """Base class of device operations. See the module docstring for the contract.

    Construct with keyword parameters (validated); ``at_severity(s)`` gives the ladder's
    operation. Call an instance on a batch (``op(x, ids=..., seed=..., key=...)``) or put
    several in a chain (:func:`apply_chain`).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    domain: ClassVar[str] = "linear"
    random: ClassVar[bool] = False
    params: ClassVar[dict[str, Param]] = {}
    ladder: ClassVar[dict[int, dict[str, Any]]] = {}

    def __init__(self, **kwargs: Any) -> None:
        unknown = [k for k in kwargs if k not in self.params]
        if unknown:
            raise InvalidParameter(
                f"{self.name}: unknown parameter {unknown[0]!r}{did_you_mean(unknown[0], list(self.params))}; "
                f"valid: {', '.join(self.params) or '(none)'}"
            )
        values = {k: spec.default for k, spec in self.params.items()}
        for k, v in kwargs.items():
            values[k] = self.params[k].check(self.name, k, v)
        self.values: dict[str, Any] = values
        self.given: tuple[str, ...] = tuple(k for k in self.params if k in kwargs)
        self._validate()

    # -- construction helpers -------------------------------------------------------------

    def _validate(self) -> None:  # noqa: B027 - optional hook
        """Cross-parameter checks; raise :class:`InvalidParameter`."""

    def __getattr__(self, item: str) -> Any:
        values = self.__dict__.get("values")
        if values is not None and item in values:
            return values[item]
        raise AttributeError(f"{type(self).__name__} has no attribute {item!r}")

    @classmethod
    def at_severity(cls, severity: int, **overrides: Any) -> DeviceOp:
        """The operation at ladder ``severity`` (1-5), with ``overrides`` on top."""
        if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or int(severity) not in SEVERITIES:
            raise InvalidParameter(f"{cls.name}: severity must be an integer in 1-5, got {severity!r}")
        params = dict(cls.ladder[int(severity)])
        params.update(overrides)
        return cls(**params)

    def config(self) -> dict[str, Any]:
        """JSON-serialisable ``{"op": name, **parameters}``."""
        return {"op": self.name, **self.values}

    def describe(self) -> str:
        """``name(k=v, ...)`` with the parameters given explicitly (or by the severity ladder)."""
        parts = [f"{k}={_fmt_value(self.values[k])}" for k in self.given]
        return f"{self.name}({', '.join(parts)})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.values.items())})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.values == other.values  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted((k, repr(v)) for k, v in self.values.items()))))

    # -- randomness and application --------------------------------------------------------

    def sample(self, seed: int | None, shape: tuple[int, int]) -> dict[str, Any]:
        """Per-sample parameters. ``seed`` is the sample's 63-bit seed from
        :func:`evalsuite.seeding.sample_seed` (``None`` unless ``random``); every random draw
        of the sample comes from it. ``shape`` is the image ``(H, W)``. The default draws nothing."""
        return {}

    @abstractmethod
    def apply_numpy(self, img: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        """One ``H x W x 3`` float32 image in ``domain``; returns a new C-contiguous array in [0, 1].
        ``img`` may be a view of the caller's data and must not be written to."""

    def apply_numpy_into(self, img: np.ndarray, p: Mapping[str, Any], out: np.ndarray) -> None:
        """:meth:`apply_numpy` writing into ``out`` (the chain's output slot when this is its last
        step); cheap operations override it to save a copy."""
        out[...] = self.apply_numpy(img, p)

    @abstractmethod
    def apply_torch(self, x: Any, ps: Sequence[Mapping[str, Any]]) -> Any:
        """The batch ``N x 3 x H x W`` (float32, in ``domain``) on its device; ``ps`` per sample."""

    def __call__(
        self,
        x: Any,
        *,
        ids: Sequence[Any] | None = None,
        seed: int = 0,
        key: str | None = None,
        backend: str = "auto",
    ) -> Any:
        """Apply this operation to a float ``N x 3 x H x W`` batch in [0, 1] (see :func:`apply_chain`)."""
        return apply_chain([self], x, ids=ids, seed=seed, key=key or f"device/op/{self.name}", backend=backend)


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# ----------------------------------------------------------------------------- execution


def to_nhwc(x: Any) -> np.ndarray:
    """A float32 ``N x H x W x 3`` NumPy array of an ``N x 3 x H x W`` tensor (no copy when the
    tensor is a CPU float32 channels-last batch, as the runner makes them)."""
    import torch

    return x.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).contiguous().numpy()


def _check_batch(x: Any) -> None:
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"device operations take a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"device operations take an N x 3 x H x W batch, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"device operations take float images in [0, 1], got dtype {x.dtype}")


def step_key(key: str, index: int, op: DeviceOp) -> str:
    """The seeding key of step ``index`` of a chain: distinct per step, stable across runs."""
    return f"{key}#{index}:{op.name}"


def sample_chain_params(
    ops: Sequence[DeviceOp], ids: Sequence[Any], seed: int, key: str, shape: tuple[int, int]
) -> list[list[dict[str, Any]]]:
    """``params[step][sample]``: every random draw of the chain, one generator per (step, sample)."""
    from evalsuite.seeding import sample_seeds

    out: list[list[dict[str, Any]]] = []
    for i, op in enumerate(ops):
        if op.random:
            seeds = sample_seeds(seed, step_key(key, i, op), [str(s) for s in ids])
            out.append([op.sample(int(s), shape) for s in seeds])
        else:
            out.append([op.sample(None, shape) for _ in ids])
    return out


def apply_chain(
    ops: Sequence[DeviceOp],
    x: Any,
    *,
    ids: Sequence[Any] | None = None,
    seed: int = 0,
    key: str = "device",
    backend: str = "auto",
) -> Any:
    """Apply ``ops`` in order to a float ``N x 3 x H x W`` sRGB batch in [0, 1].

    ``ids`` are the sample ids that key the randomness (default ``0..N-1``); ``key`` is the
    condition key. ``backend``: ``auto`` (torch for CUDA tensors and for small CPU images,
    NumPy/OpenCV per image on a thread pool for larger CPU images), ``numpy`` or ``torch``;
    both compute the same result (to float rounding). Returns a tensor of the input's shape,
    dtype and device.
    """
    import torch

    from evalsuite.devices.color import linear_to_srgb, linear_to_srgb_np, srgb_to_linear, srgb_to_linear_np

    _check_batch(x)
    if backend not in BACKENDS:
        raise InvalidParameter(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    n, _, h, w = x.shape
    if ids is None:
        ids = [str(i) for i in range(n)]
    if len(ids) != n:
        raise ValueError(f"got {len(ids)} sample ids for a batch of {n}")
    if not ops or n == 0:
        return x.clone()
    params = sample_chain_params(ops, ids, seed, key, (int(h), int(w)))
    if backend == "auto":
        backend = "numpy" if x.device.type == "cpu" and h * w > SMALL_IMAGE_PIXELS else "torch"

    if backend == "numpy":
        src = to_nhwc(x)
        out = np.empty_like(src)

        last = len(ops) - 1

        def one(i: int) -> None:
            img = src[i]
            domain = "srgb"
            for step, op in enumerate(ops):
                if op.domain != domain:
                    img = srgb_to_linear_np(img) if op.domain == "linear" else linear_to_srgb_np(img)
                    domain = op.domain
                if step == last and domain == "srgb":
                    op.apply_numpy_into(img, params[step][i], out[i])
                    return
                img = op.apply_numpy(img, params[step][i])
            linear_to_srgb_np(img, out=out[i])

        parallel_for(one, n)
        # channels-last memory, like the runner's input: no copy back to NCHW
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype)

    y = x.detach().to(torch.float32)
    domain = "srgb"
    for step, op in enumerate(ops):
        if op.domain != domain:
            y = srgb_to_linear(y) if op.domain == "linear" else linear_to_srgb(y)
            domain = op.domain
        y = op.apply_torch(y, params[step])
    if domain == "linear":
        y = linear_to_srgb(y)
    return y.clamp_(0.0, 1.0).to(x.dtype)
