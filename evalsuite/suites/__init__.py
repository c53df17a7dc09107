"""Suite registry: every suite ``evalsuite run`` can run, imported only when chosen."""

from __future__ import annotations

from evalsuite.registry import Registry

SUITES = Registry("suite")
SUITES.register("clean", "evalsuite.suites.clean:CleanSuite", "accuracy, top-5, per-class P/R/F1, NLL, confusion, gallery")
SUITES.register("adversarial", "evalsuite.suites.adversarial:AdversarialSuite", "robust accuracy under L-inf/L2 attacks, ONNX gradient bridge, gradient-masking checks")
SUITES.register("corruption", "evalsuite.suites.corruption:CorruptionSuite", "ImageNet-C corruptions x severities (batched torch engine or the imagecorruptions reference), mCE")
SUITES.register("calibration", "evalsuite.suites.calibration:CalibrationSuite", "ECE family on every condition, temperature scaling on a held-out split, ECE under shift")
SUITES.register("slices", "evalsuite.suites.slices:SliceSuite", "per-slice bias audit: group metrics, disparities with CIs, on every condition")
SUITES.register("device", "evalsuite.suites.device:DeviceSuite", "simulated device profiles, per-operation severity ladder, real per-device shift")


def list_entries() -> list[tuple[str, str]]:
    """(name, description) of every registered suite."""
    return [(n, SUITES.description(n)) for n in SUITES.names()]
