"""Suite registry: every suite ``evalsuite run`` can run, imported only when chosen.

Third-party suites register through the ``evalsuite.suites`` entry-point group as
``<suite name> = package.module:SuiteClass``; like the built-ins they are imported only when a
suite file names them, and must be :class:`~evalsuite.suites.base.Suite` subclasses whose
``name`` is the entry point's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evalsuite.registry import Registry

ENTRY_POINT_GROUP = "evalsuite.suites"


def _check_plugin(name: str, obj: Any) -> None:
    from evalsuite.suites.base import Suite

    if not (isinstance(obj, type) and issubclass(obj, Suite)):
        raise TypeError(f"{obj!r} is not a Suite subclass (evalsuite.suites.base.Suite)")
    if getattr(obj, "name", None) != name:
        raise ValueError(f"{obj.__name__}.name is {getattr(obj, 'name', None)!r}, not the entry point's name {name!r}")


SUITES = Registry("suite", group=ENTRY_POINT_GROUP, lazy_plugins=True, check=_check_plugin)
SUITES.register("clean", "evalsuite.suites.clean:CleanSuite", "accuracy, top-5, per-class P/R/F1, NLL, confusion, gallery")
SUITES.register("adversarial", "evalsuite.suites.adversarial:AdversarialSuite", "robust accuracy under L-inf/L2 attacks, ONNX gradient bridge, gradient-masking checks")
SUITES.register("corruption", "evalsuite.suites.corruption:CorruptionSuite", "ImageNet-C corruptions x severities (batched torch engine or the imagecorruptions reference), mCE")
SUITES.register("calibration", "evalsuite.suites.calibration:CalibrationSuite", "ECE family on every condition, temperature scaling on a held-out split, ECE under shift")
SUITES.register("slices", "evalsuite.suites.slices:SliceSuite", "per-slice bias audit: group metrics, disparities with CIs, on every condition")
SUITES.register("device", "evalsuite.suites.device:DeviceSuite", "simulated device profiles, per-operation severity ladder, real per-device shift")
SUITES.register("compare", "evalsuite.suites.compare:CompareSuite", "paired candidate vs --reference model on identical inputs: accuracy diff, McNemar, flips, ECE diff")
SUITES.register("performance", "evalsuite.suites.performance:PerformanceSuite", "latency p50/p95/p99 at batch 1, throughput, peak RSS/GPU memory, file size, parameters, MACs")
SUITES.register("preprocessing", "evalsuite.suites.preprocessing:PreprocessingSuite", "preprocessing parity: declared pipeline vs plausible mistakes (channel order, scale, mean/std, crop, filter), training record")


def register_suite(name: str, description: str = "") -> Callable[[type], type]:
    """Register the decorated :class:`~evalsuite.suites.base.Suite` subclass as suite ``name``.

    For suites defined in code that is imported anyway (a notebook, a test, a package's
    ``__init__``). The built-in suites above are declared by import path instead, so that
    ``evalsuite --help`` and ``ls suites`` never import torch; packages should prefer the entry
    point, which stays lazy the same way. ``description`` defaults to the docstring's first line.
    """

    def decorate(cls: type) -> type:
        _check_plugin(name, cls)
        doc = (cls.__doc__ or "").strip().splitlines()
        SUITES.register(name, cls, description or (doc[0] if doc else ""), origin=cls.__module__)
        return cls

    return decorate


def list_entries() -> list[tuple[str, str]]:
    """(name, description) of every registered suite."""
    return [(n, SUITES.description(n)) for n in SUITES.names()]
