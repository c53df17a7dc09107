"""How many samples a proportion needs for a given confidence-interval half-width.

The perturbation suites (corruption, device) measure every condition on one seeded stratified
subset whose size is chosen from a target half-width of the 95% interval of an accuracy (a
proportion). The size uses the normal approximation at the worst case ``p = 0.5``::

    n = ceil(z**2 * p * (1 - p) / h**2),   z = the (1 + level) / 2 standard normal quantile

so ``h = 0.02`` at 95% is ``n = 2401`` (statsmodels' ``samplesize_confint_proportion`` gives the
same before rounding up). Why the worst case and not the clean accuracy: the subset must be fixed
before the first prediction (the plan, ``--dry-run``, shards and ``--resume`` all need it, and it
must be a function of the data, labels, seed and ``n`` only), and a perturbed accuracy can sit
anywhere below the clean one, so ``p = 0.5`` is the one bound that holds for every condition.
For a proportion away from 0.5 the interval is narrower than ``h``
(:func:`proportion_half_width`). The bootstrap percentile intervals the suites report agree with
this normal half-width to within a few percent at these sizes (``tests/test_tiers.py``).
"""

from __future__ import annotations

import math
from statistics import NormalDist

from evalsuite.stats.intervals import CI_LEVEL


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level!r}")
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def proportion_sample_size(half_width: float, level: float = CI_LEVEL, p: float = 0.5) -> int:
    """Smallest ``n`` whose normal-approximation ``level`` interval of a proportion ``p`` has a
    half-width of at most ``half_width`` (``p = 0.5``, the default, is the worst case)."""
    if not 0.0 < half_width <= 0.5 or not math.isfinite(half_width):
        raise ValueError(f"half-width must be in (0, 0.5], got {half_width!r}")
    if not 0.0 < p < 1.0:
        raise ValueError(f"proportion must be in (0, 1), got {p!r}")
    exact = _z(level) ** 2 * p * (1.0 - p) / half_width**2
    # Round before the ceiling so a float error of 1e-12 cannot add a sample (2401.0000000001).
    return max(1, math.ceil(round(exact, 9)))


def proportion_half_width(n: int, level: float = CI_LEVEL, p: float = 0.5) -> float:
    """Normal-approximation half-width of the ``level`` interval of a proportion ``p`` from ``n`` samples."""
    if n < 1:
        raise ValueError(f"sample size must be >= 1, got {n!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"proportion must be in [0, 1], got {p!r}")
    return _z(level) * math.sqrt(p * (1.0 - p) / n)
