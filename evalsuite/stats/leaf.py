"""The metric leaf: the one shape every reported number takes in results.json.

A leaf is ``{"value", "n", "ci", "direction"}``. ``ci`` is a two-element list (95% percentile
bootstrap unless stated) or ``None`` when the number is exact (a count) rather than an
estimate. ``direction`` says whether higher or lower is better, so gates and reports never guess.
"""

from __future__ import annotations

import math
from typing import Any

DIRECTIONS = ("higher", "lower", "none")


def finite_or_none(x: Any) -> float | None:
    """``float(x)``, or ``None`` for ``None`` and non-finite values (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def metric(
    value: float | None,
    n: int,
    ci: tuple[float, float] | list[float] | None = None,
    direction: str = "higher",
    **extra: Any,
) -> dict[str, Any]:
    """Build a metric leaf. Non-finite values become ``None`` (JSON has no NaN)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'higher', 'lower' or 'none', got {direction!r}")
    leaf: dict[str, Any] = {
        "value": finite_or_none(value),
        "n": int(n),
        "ci": None if ci is None else [finite_or_none(ci[0]), finite_or_none(ci[1])],
        "direction": direction,
    }
    leaf.update(extra)
    return leaf


def is_metric(node: Any) -> bool:
    """True for a metric leaf (a dict carrying ``value`` and ``n``)."""
    return isinstance(node, dict) and "value" in node and "n" in node
