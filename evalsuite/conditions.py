"""Conditions: what a batch looks like under clean, corrupted, device-shifted or attacked input.

A condition turns a float ``N x 3 x H x W`` batch in [0, 1] into a perturbed batch of the same
shape. Randomness must come from :mod:`evalsuite.seeding` keyed by (run seed, ``key``, sample
id) so batch size and sharding never change a result. Conditions that need the model
(attacks) set ``uses_model``; the runner cannot prefetch those on a worker thread.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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

    ``key`` is unique in a run and doubles as the prediction file name (``/`` becomes ``__``):
    ``clean``, ``corruption/fog/3``, ``device/webcam-720p``, ``attack/linf/8_255``.
    ``params`` are JSON-serialisable facts recorded in results.json.
    """

    key: str
    suite: str
    params: dict[str, Any] = field(default_factory=dict)
    uses_model: bool = False

    def prepare(self, run: Any) -> None:  # noqa: B027 - optional hook
        """One-time set-up before the first batch (e.g. build an attack bridge)."""

    @abstractmethod
    def apply(self, x: Any, ctx: BatchContext) -> Any:
        """Return the perturbed batch, or ``(batch, extras)`` where ``extras`` maps names to
        per-sample numpy arrays stored beside the predictions (e.g. perturbation norms)."""


@dataclass
class CleanCondition(Condition):
    """The unperturbed data."""

    key: str = "clean"
    suite: str = "clean"

    def apply(self, x: Any, ctx: BatchContext) -> Any:
        return x
