"""Conditions: what a batch looks like under clean, corrupted, device-shifted or attacked input.

A condition turns a float ``N x 3 x H x W`` batch in [0, 1] into a perturbed batch of the same
shape. Randomness must come from :mod:`evalsuite.seeding` keyed by (run seed, ``key``, sample
id) so batch size and sharding never change a result. Conditions that need the model
(attacks) set ``uses_model``; the runner cannot prefetch those on a worker thread.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

IDENTITY_PARAM = "condition"  # the key of a condition's identity inside its ``params``


def condition_key(kind: str, parts: Sequence[str | int] = ()) -> str:
    """The one rule from an identity to a condition key: ``kind/part/...`` (``clean`` has no parts)."""
    return "/".join([kind, *(str(p) for p in parts)])


@dataclass(frozen=True)
class ConditionIdentity:
    """What a condition is, as data.

    ``suite`` made it, ``kind`` says what sort of input it is (``clean``, ``corruption``,
    ``device``, ``attack``; a plug-in may add its own), ``parts`` are the rest of its key, in
    order (``("fog", 3)``, ``("webcam-720p",)``, ``("op", "jpeg", 3)``, ``("linf", "8_255")``,
    ``("sanity", "linf_0p5")``; ints where the kind has a severity) and ``label`` is how a person
    reads it (default: the parts joined by spaces, or the kind). ``key`` is derived, never stored
    apart from it (:func:`condition_key`).
    """

    suite: str
    kind: str
    parts: tuple[str | int, ...] = ()
    label: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.suite, str) or not self.suite:
            raise ValueError(f"condition identity: suite must be a non-empty string, got {self.suite!r}")
        if not isinstance(self.kind, str) or not self.kind or "/" in self.kind:
            raise ValueError(f"condition identity: kind must be a non-empty string without '/', got {self.kind!r}")
        if isinstance(self.parts, (str, bytes)) or not isinstance(self.parts, Sequence):
            raise ValueError(f"condition identity: parts must be a sequence, got {self.parts!r}")
        parts = tuple(self.parts)
        for part in parts:
            if isinstance(part, bool) or not isinstance(part, (str, int)) or (isinstance(part, str) and "/" in part):
                raise ValueError(f"condition identity: each part must be an int or a string without '/', got {part!r}")
        if not isinstance(self.label, str):
            raise ValueError(f"condition identity: label must be a string, got {self.label!r}")
        object.__setattr__(self, "parts", parts)
        if not self.label:
            object.__setattr__(self, "label", " ".join(str(p) for p in parts) or self.kind)

    @property
    def key(self) -> str:
        return condition_key(self.kind, self.parts)

    def to_params(self) -> dict[str, Any]:
        """The JSON form stored at ``params["condition"]`` (predictions files, results.json)."""
        return {"suite": self.suite, "kind": self.kind, "parts": list(self.parts), "label": self.label}

    @classmethod
    def from_params(cls, raw: Any) -> ConditionIdentity:
        """Read :meth:`to_params` back; ValueError when it is not one."""
        if not isinstance(raw, Mapping) or not isinstance(raw.get("parts", []), (list, tuple)):
            raise ValueError(f"condition identity: not an identity mapping: {raw!r}")
        return cls(suite=raw.get("suite"), kind=raw.get("kind"), parts=tuple(raw.get("parts", ())),
                   label=raw.get("label") or "")


def identity_from_key(key: str, suite: str) -> ConditionIdentity:
    """Compatibility only: the identity of a condition known by its key alone.

    For prediction files and results.json written before conditions carried an identity, and
    for plug-in conditions constructed with a bare ``key``. The first segment is the kind, the
    rest are the parts; the built-in severities (``corruption/<name>/<s>``,
    ``device/op/<operation>/<s>``) become ints, as the suites record them.
    """
    kind, *rest = str(key).split("/")
    parts: list[str | int] = list(rest)
    if kind == "corruption" and len(rest) == 2 and rest[1].isdigit():
        parts[1] = int(rest[1])
    elif kind == "device" and len(rest) == 3 and rest[0] == "op" and rest[2].isdigit():
        parts[2] = int(rest[2])
    return ConditionIdentity(suite=suite or kind, kind=kind, parts=tuple(parts))


def condition_identity(key: str, suite: str, params: Mapping[str, Any] | None) -> ConditionIdentity:
    """The identity of stored predictions: ``params["condition"]``, or, where the params predate
    identities, :func:`identity_from_key` (the one compatibility rule). ValueError when the
    recorded identity names another key."""
    raw = params.get(IDENTITY_PARAM) if isinstance(params, Mapping) else None
    if raw is None:
        return identity_from_key(key, suite)
    ident = ConditionIdentity.from_params(raw)
    if ident.key != key:
        raise ValueError(f"condition {key!r}: its recorded identity names {ident.key!r}")
    return ident


def with_identity(key: str, suite: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` carrying the condition's identity (added once when an older file lacks it)."""
    return {**params, IDENTITY_PARAM: condition_identity(key, suite, params).to_params()}


def measured_params(params: Any) -> Any:
    """``params`` without the identity: what decides the predictions (hashed for ``--resume``,
    compared with a baseline's). The identity follows from the key, which is compared anyway.
    Anything but a mapping (a damaged results.json) comes back as it is."""
    if not isinstance(params, Mapping):
        return params
    return {k: v for k, v in params.items() if k != IDENTITY_PARAM}


@dataclass
class BatchContext:
    """Per-batch facts a condition may use."""

    ids: np.ndarray  # sample ids (str)
    labels: Any  # torch.LongTensor on the batch device, model class indices
    seed: int  # the run seed
    model: Any = None  # evalsuite.models.base.Model, set for conditions with uses_model
    device: str = "cpu"


@dataclass
class Condition(ABC):
    """One evaluation condition.

    Built from an ``identity`` (:class:`ConditionIdentity`), which derives ``key`` and ``suite``;
    a bare ``key`` (plug-ins) gets its identity from :func:`identity_from_key`. ``key`` is unique
    in a run and doubles as the prediction file name (``/`` becomes ``__``): ``clean``,
    ``corruption/fog/3``, ``device/webcam-720p``, ``attack/linf/8_255``. ``params`` are
    JSON-serialisable facts recorded in results.json; ``params["condition"]`` is the identity.
    """

    key: str = ""
    suite: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    uses_model: bool = False
    identity: ConditionIdentity | None = None

    def __post_init__(self) -> None:
        if self.identity is None:
            self.identity = condition_identity(self.key, self.suite, self.params)
        elif self.key and self.key != self.identity.key:
            raise ValueError(f"condition key {self.key!r} differs from its identity's {self.identity.key!r}")
        if self.suite and self.suite != self.identity.suite:
            raise ValueError(f"condition {self.identity.key!r}: suite {self.suite!r} differs from its identity's "
                             f"{self.identity.suite!r}")
        self.key, self.suite = self.identity.key, self.identity.suite
        self.params = {**self.params, IDENTITY_PARAM: self.identity.to_params()}

    def prepare(self, run: Any) -> None:  # noqa: B027 - optional hook
        """One-time set-up before the first batch (e.g. build an attack bridge)."""

    def cost(self, n: int) -> tuple[float, float]:
        """Model work for ``n`` samples as (forward, forward+backward) sample-passes, for the run
        plan's estimate (:mod:`evalsuite.run_estimate`); one forward pass per sample by default."""
        return float(n), 0.0

    @abstractmethod
    def apply(self, x: Any, ctx: BatchContext) -> Any:
        """Return the perturbed batch, or ``(batch, extras)`` where ``extras`` maps names to
        per-sample numpy arrays stored beside the predictions (e.g. perturbation norms)."""


@dataclass
class CleanCondition(Condition):
    """The unperturbed data."""

    key: str = "clean"
    suite: str = "clean"

    def __post_init__(self) -> None:
        if self.identity is None and self.key == "clean":
            self.identity = ConditionIdentity(suite="clean", kind="clean")
        super().__post_init__()

    def apply(self, x: Any, ctx: BatchContext) -> Any:
        return x
