"""Statistics: the one place for metric leaves, bootstrap replicates, intervals, softmax/NLL and ECE.

Suites, the calibration and slice packages and the training module call these instead of
keeping their own copies, so a fix to an interval or a loss reaches every reported number.

- :mod:`~evalsuite.stats.leaf`: the metric leaf written to results.json;
- :mod:`~evalsuite.stats.bootstrap`: seeded resampling (index, count and closed forms);
- :mod:`~evalsuite.stats.intervals`: percentile and BCa intervals from replicates;
- :mod:`~evalsuite.stats.simultaneous`: max-t critical values for simultaneous intervals;
- :mod:`~evalsuite.stats.probability`: softmax, NLL, predicted class and correctness;
- :mod:`~evalsuite.stats.binning`: confidence bins and ECE/MCE from bin sums;
- :mod:`~evalsuite.stats.split`: stratified splits;
- :mod:`~evalsuite.stats.sample_size`: the sample size of a proportion for a target CI half-width;
- :mod:`~evalsuite.stats.paired`: exact McNemar and the paired bootstrap of two models on the same samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evalsuite.stats.binning import (
    ece_from_sums,
    edge_bins,
    mass_edges,
    mce_from_sums,
    overconfidence_from_sums,
    width_bins,
)
from evalsuite.stats.bootstrap import (
    DEFAULT_BOOTSTRAP,
    binomial_difference_ci,
    bootstrap_ci,
    bootstrap_mean_ci,
    count_blocks,
    joint_count_replicates,
    joint_mean_replicates,
    multinomial_mean_ci,
    resample_counts,
    statistic_replicates,
)
from evalsuite.stats.intervals import (
    CI_LEVEL,
    bca_interval,
    mean_acceleration,
    percentile_ci,
    percentiles,
    quantiles_per_column,
)
from evalsuite.stats.leaf import finite_or_none, is_metric, metric
from evalsuite.stats.probability import (
    correct,
    finite_rows,
    per_sample_nll,
    predicted_labels,
    softmax,
    to_numpy,
)
from evalsuite.stats.sample_size import proportion_half_width, proportion_sample_size
from evalsuite.stats.simultaneous import (
    absmax_interval,
    bootstrap_se,
    critical_value,
    extreme_interval,
    max_abs_t,
    pair_index,
    t_factor,
)
from evalsuite.stats.split import (
    allocate,
    allocated_sizes,
    draw_order,
    fraction_sizes,
    hash_order,
    shuffle_order,
    stratified_split,
)


def mean_metric(values: np.ndarray, direction: str = "higher", seed: int = 0, **extra: Any) -> dict[str, Any]:
    """Metric leaf for a mean of per-sample values with its bootstrap CI."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return metric(None, 0, None, direction, **extra)
    return metric(values.mean(), values.size, bootstrap_mean_ci(values, seed=seed), direction, **extra)


__all__ = [
    "CI_LEVEL", "DEFAULT_BOOTSTRAP", "bca_interval", "binomial_difference_ci", "bootstrap_ci", "bootstrap_mean_ci",
    "correct", "count_blocks", "ece_from_sums", "edge_bins", "finite_or_none", "finite_rows", "is_metric",
    "joint_count_replicates", "joint_mean_replicates", "mass_edges", "mce_from_sums", "mean_acceleration",
    "mean_metric", "metric", "multinomial_mean_ci", "overconfidence_from_sums", "per_sample_nll", "percentile_ci",
    "percentiles", "predicted_labels", "quantiles_per_column", "resample_counts", "softmax", "statistic_replicates",
    "to_numpy", "width_bins",
    "absmax_interval", "bootstrap_se", "critical_value", "extreme_interval", "max_abs_t", "pair_index", "t_factor",
    "allocate", "allocated_sizes", "draw_order", "fraction_sizes", "hash_order", "shuffle_order", "stratified_split",
    "proportion_half_width", "proportion_sample_size",
]
