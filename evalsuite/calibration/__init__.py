"""Calibration: the ECE family, reliability data, temperature scaling, baking T into models.

Public API (probabilities ``N x C`` and integer labels, NumPy arrays or torch tensors):
:func:`ece`, :func:`adaptive_ece`, :func:`smooth_ece`, :func:`sweep_ece`, :func:`debiased_l2_ece`, :func:`mce`, :func:`classwise_ece`, :func:`brier`,
:func:`nll`, :func:`nll_from_logits`, :func:`overconfidence`, :func:`risk_coverage`,
:func:`aurc`, :func:`eaurc`, :func:`reliability`, :func:`confidence_histogram`;
:func:`sliceable_metrics` gives ``(y_true, probs)`` callables for fairlearn's ``MetricFrame``; temperature
scaling with :func:`fit_temperature`. Conventions are documented in
:mod:`evalsuite.calibration.metrics` and ``docs/calibration.md``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CalibrationInputError",
    "Reliability",
    "RiskCoverage",
    "TemperatureFit",
    "adaptive_ece",
    "aurc",
    "brier",
    "classwise_ece",
    "confidence_histogram",
    "debiased_l2_ece",
    "eaurc",
    "ece",
    "fit_temperature",
    "list_entries",
    "mce",
    "nll",
    "nll_from_logits",
    "overconfidence",
    "reliability",
    "risk_coverage",
    "sliceable_metrics",
    "smooth_ece",
    "sweep_ece",
]

_METRICS = ("CalibrationInputError", "Reliability", "RiskCoverage", "adaptive_ece", "aurc", "brier", "classwise_ece",
            "confidence_histogram", "eaurc", "ece", "mce", "nll", "nll_from_logits", "overconfidence", "reliability",
            "risk_coverage", "sliceable_metrics", "smooth_ece", "sweep_ece", "debiased_l2_ece")
# Everything is imported on first use: `evalsuite --help` loads this package (for the
# `calibrate` command) and must not pay for NumPy, let alone torch.
_LAZY = {**dict.fromkeys(_METRICS, "evalsuite.calibration.metrics"),
         "fit_temperature": "evalsuite.calibration.temperature", "TemperatureFit": "evalsuite.calibration.temperature"}


def __getattr__(name: str) -> Any:
    """The public names, imported when first asked for (metrics need NumPy, temperature torch)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def list_entries() -> list[tuple[str, str]]:
    """(name, one-line description) of every calibration metric, for ``evalsuite ls calibration``."""
    return [
        ("ece", "expected calibration error, 15 equal-width bins (top-label confidence vs accuracy)"),
        ("adaptive_ece", "ECE with 15 equal-mass (quantile) bins, netcal's equal_intervals=False"),
        ("smooth_ece", "smooth ECE: kernel-smoothed gap, automatic bandwidth (Blasiok & Nakkiran 2023; relplot)"),
        ("sweep_ece", "ECE over the most equal-mass bins with monotone accuracies (Roelofs et al. 2022)"),
        ("debiased_l2_ece", "debiased L2 calibration error, 15 equal-mass bins (Kumar et al. 2019; an RMS gap)"),
        ("mce", "maximum calibration error: worst |accuracy - confidence| over populated bins"),
        ("classwise_ece", "mean over classes of the ECE of p_k against 1[y = k] (Kull et al. 2019)"),
        ("brier", "multiclass Brier score: squared error summed over classes, mean over samples"),
        ("nll", "negative log-likelihood of the true class (natural log)"),
        ("overconfidence_share", "fraction of the ECE coming from bins where confidence exceeds accuracy"),
        ("confidence_gap", "mean confidence minus accuracy (> 0: over-confident on average)"),
        ("aurc", "area under the selective risk-coverage curve (Geifman et al. 2018)"),
        ("eaurc", "AURC minus the AURC of a perfect confidence ranking"),
        ("temperature", "temperature T minimising NLL on a calibration split (LBFGS on log T)"),
        ("ece_after_temperature", "ECE on the held-out split after dividing logits by the fitted T"),
    ]
