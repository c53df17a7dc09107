"""The suite plug-in contract.

A suite contributes *conditions* (perturbations whose predictions the runner computes and
stores) and a *summary* (metrics, built-in gates and report data computed from stored
predictions). Analysis suites such as calibration and slices add no conditions and summarise
the predictions of every condition in the run; they run after the perturbation suites
(``stage = "analysis"``).

Contract for implementers:

- ``Options`` is a dataclass whose typed fields (with their defaults) are the suite's options.
  ``__init__(options)`` builds it from the suite's mapping in the suite preset YAML with the
  shared loader (:func:`evalsuite.options.build`): an unknown key (with did-you-mean) or a
  wrongly typed value is a one-line :class:`~evalsuite.errors.UsageError` naming
  ``suites.<name>.<key>``; range checks and enumerations go in the dataclass's
  ``__post_init__``. The typed result is ``self.opts``; ``self.options`` keeps the mapping as
  given (the run records it in ``config.json`` and its hash). ``option_names`` is derived from
  the fields.
- ``conditions(run)`` returns :class:`~evalsuite.conditions.Condition` objects.
- ``metric_specs(run, conditions)`` declares, before any prediction, the gate paths
  ``summarize`` can write (:class:`~evalsuite.metric_specs.MetricSpec`), so a policy is
  checked in the first second of a run.
- ``summarize(run, preds)`` returns a :class:`SuiteOutput`. ``metrics`` becomes
  ``results["metrics"][suite.name]``; its leaves are :func:`evalsuite.stats.metric` dicts, so
  ``corruption.mean_accuracy`` is a gate path. ``checks`` are built-in gates
  (:meth:`evalsuite.gates.Gate.check` objects, validated when built and checked against the
  suite's declared metrics when the run records them); ``report`` is JSON data for the suite's template
  ``report/templates/sections/<name>.html.j2``.
"""

from __future__ import annotations

import dataclasses
import logging
from abc import ABC
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from evalsuite.atomic_io import atomic_write_bytes
from evalsuite.conditions import Condition
from evalsuite.gates import Gate
from evalsuite.metric_specs import MetricSpec
from evalsuite.options import build
from evalsuite.predictions import Predictions, PredictionSet

log = logging.getLogger(__name__)

# Predictions and PredictionSet live in evalsuite.predictions; re-exported here for plug-ins.
__all__ = ["PredictionSet", "Predictions", "RunContext", "Suite", "SuiteOutput", "softmax"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable); NaN rows stay NaN."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - np.max(z, axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class SuiteOutput:
    """What a suite adds to results.json."""

    metrics: dict[str, Any] = field(default_factory=dict)
    checks: list[Gate] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class NoOptions:
    """The options of a suite that takes none."""


class Suite(ABC):
    """Base class of every suite. See the module docstring for the contract."""

    name: ClassVar[str]
    stage: ClassVar[str] = "perturbation"  # or "analysis"
    Options: ClassVar[type] = NoOptions
    option_names: ClassVar[tuple[str, ...]] = ()  # derived from Options' fields

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Options" not in cls.__dict__ and cls.__dict__.get("option_names"):
            # An older plug-in that lists names only: its options are taken untyped (default None).
            cls.Options = dataclasses.make_dataclass(f"{cls.__name__}Options", [(n, Any, None) for n in cls.option_names])
        if not (isinstance(cls.Options, type) and dataclasses.is_dataclass(cls.Options)):
            raise TypeError(f"{cls.__name__}.Options must be a dataclass, got {cls.Options!r}")
        cls.option_names = tuple(f.name for f in dataclasses.fields(cls.Options))

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})
        self.opts = build(self.Options, self.options, prefix=f"suites.{self.name}", what="option")

    def conditions(self, run: RunContext) -> list[Condition]:
        return []

    def summarize(self, run: RunContext, preds: PredictionSet) -> SuiteOutput:
        return SuiteOutput()

    def metric_specs(self, run: RunContext, conditions: Sequence[Condition]) -> list[MetricSpec]:
        """Gate paths :meth:`summarize` can write for this run (before any prediction).

        ``conditions`` are every condition of the run. Declarations may over-approximate but
        must never miss a path (a policy naming it would be refused). A suite that does not
        declare its paths claims everything under its name, so its gates are checked only
        when gating.
        """
        return [MetricSpec(f"{self.name}.*", ci=True)]


@dataclass
class RunContext:
    """What a suite may use during a run.

    ``dataset`` is the evaluated subset (after ``--limit``/``--sample``), ``labels`` its model
    class indices; ``sample_images(n)`` returns preprocessed uint8 NHWC images for thumbnails;
    ``save_artifact`` writes a file under ``<out>/artifacts`` and returns the path relative
    to the output folder (store that in ``report`` data, the scorecard embeds it).
    """

    model: Any  # evalsuite.models.base.Model
    dataset: Any  # evalsuite.data.base.Dataset
    labels: np.ndarray
    out_dir: Path
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 64
    baseline: dict[str, Any] | None = None
    progress: bool = False
    image_source: Any = None  # callable(indices) -> uint8 NHWC at model size; set by the runner
    target_threads: int | None = None  # --target-threads: threads of the performance measurements
    reference_model: Any = None  # run --reference: the reference model (the performance suite times it too)

    def sample_images(self, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``n`` preprocessed images (uint8 NHWC) and their dataset positions, spread evenly."""
        total = len(self.labels)
        idx = np.unique(np.linspace(0, max(total - 1, 0), num=min(n, total)).astype(np.int64))
        return self.image_source(idx), idx

    def save_artifact(self, name: str, data: bytes) -> str:
        art = self.out_dir / "artifacts"
        art.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        atomic_write_bytes(art / safe, data)
        return f"artifacts/{safe}"
