"""Per-slice bias audits: group metrics, disparities with bootstrap CIs, derived image slices.

- :mod:`evalsuite.slices.columns`: metadata / numeric / missing / intersection columns -> group codes
- :mod:`evalsuite.slices.derived`: image properties from the pixels (brightness, contrast, ...)
- :mod:`evalsuite.slices.metrics`: group metrics as vectorised reductions (fairlearn MetricFrame semantics)
- :mod:`evalsuite.slices.bootstrap`: stratified-by-group bootstrap, vectorised over replicates
- :mod:`evalsuite.slices.intervals`: simultaneous (max-t) bands for gaps between groups
- :mod:`evalsuite.slices.audit`: one audit (column x condition) -> metric leaves and report tables
- :mod:`evalsuite.slices.reference`: the same numbers through fairlearn's MetricFrame (tests, benchmark)

The statistics underneath (percentile/BCa intervals, count resampling, max-t critical values,
NLL, predictions, confidence bins) are :mod:`evalsuite.stats`'s, shared with the other suites.
The suite that runs audits inside ``evalsuite run`` is :class:`evalsuite.suites.slices.SliceSuite`.
This module imports nothing heavy, so ``evalsuite ls slices`` stays fast.
"""

from __future__ import annotations

_DERIVED = (
    ("brightness", "derived slice: mean luma of the original image, quantile bins"),
    ("contrast", "derived slice: RMS contrast (std of luma / 255), quantile bins"),
    ("colourfulness", "derived slice: Hasler-Süsstrunk colourfulness, quantile bins"),
    ("sharpness", "derived slice: variance of the Laplacian of luma (low = blurry), quantile bins"),
    ("resolution", "derived slice: shorter side of the original image, fixed buckets"),
    ("aspect", "derived slice: width/height bucket (portrait, square, landscape, wide)"),
)
_METRICS = (
    ("accuracy", "metric per group: share classified correctly"),
    ("error_rate", "metric per group: 1 - accuracy"),
    ("macro_recall", "metric per group: mean recall over classes present (balanced accuracy)"),
    ("ece", "metric per group: expected calibration error of the top-1 confidence (n_bins, default 15)"),
    ("nll", "metric per group: mean negative log-likelihood of the true class"),
    ("tpr / fpr / selection_rate", "per group and class, one-vs-rest (report tables)"),
    ("equalized_odds_difference", "disparity: max over classes of max(TPR gap, FPR gap) between groups, one-vs-rest"),
    ("equalized_odds_by_class", "disparity per class: max(TPR gap, FPR gap) of class k vs the rest, with both gaps"),
    ("demographic_parity_difference", "disparity: selection-rate gap between groups, per class and max"),
)


def list_entries() -> list[tuple[str, str]]:
    """(name, one-line description) of every derived slice and slice metric (``evalsuite ls slices``)."""
    return list(_DERIVED) + list(_METRICS)
