"""Distribution-free confidence intervals for quantiles (order statistics and the binomial).

For ``n`` independent draws of a continuous quantity, the number ``B`` of draws at or below its
``q``-quantile is Binomial(n, q) whatever the distribution, so the interval between two order
statistics ``[x_(l), x_(u)]`` covers the quantile with a probability computed exactly from the
binomial. :func:`quantile_ci` picks the equal-tailed pair the way
``scipy.stats.quantile_test(...).confidence_interval()`` does (two-sided), so a p95 latency
carries an interval that needs no assumption about the shape of the latency distribution
(long right tails are the rule, and a bootstrap of an extreme quantile is known to undercover).
An end that would need an order statistic beyond the sample (too few draws for that
confidence, e.g. the upper end of a p99 from fewer than 368 draws) is NaN: no such interval
exists, and none is invented.
"""

from __future__ import annotations

import math

import numpy as np

from evalsuite.stats.intervals import CI_LEVEL


def quantile_order_indices(n: int, q: float, level: float = CI_LEVEL) -> tuple[int, int]:
    """0-based order-statistic indices ``(low, high)`` of the two-sided ``level`` interval of the
    ``q``-quantile from ``n`` draws; ``low < 0`` or ``high >= n`` where that end does not exist.

    ``low = F^-1(alpha/2) - 1`` and ``high = S^-1(alpha/2)`` for ``B ~ Binomial(n, q)`` (``F^-1``
    the smallest ``k`` with ``P(B <= k) >= alpha/2``, ``S^-1`` the smallest ``k`` with
    ``P(B > k) <= alpha/2``), as scipy's ``quantile_test`` computes them.
    """
    from scipy.stats import binom

    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be strictly between 0 and 1, got {q!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1, got {level!r}")
    if n <= 0:
        return (-1, 0)
    alpha = (1.0 - level) / 2.0
    dist = binom(n, q)
    return (int(dist.ppf(alpha)) - 1, int(dist.isf(alpha)))


def quantile_ci(values: np.ndarray, q: float, level: float = CI_LEVEL) -> tuple[float, float]:
    """Two-sided ``level`` order-statistic (binomial) confidence interval of the ``q``-quantile.

    Non-finite values are dropped first. An end that does not exist for this many values is NaN
    (see the module docstring); an empty sample gives ``(nan, nan)``.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    x = np.sort(x[np.isfinite(x)])
    n = x.size
    lo_i, hi_i = quantile_order_indices(n, q, level)
    lo = float(x[lo_i]) if 0 <= lo_i < n else math.nan
    hi = float(x[hi_i]) if 0 <= hi_i < n else math.nan
    return (lo, hi)
