"""Threat models: which norm, which epsilons, and whether an adversarial example respects them.

An epsilon is written as in the configuration: a fraction string such as ``"8/255"`` or a number
such as ``0.5``. Each one gets a *safe key* used in condition keys and gate paths, because ``/``
and ``.`` are path separators:

- ``"8/255"`` -> ``8_255`` (numerator ``_`` denominator)
- ``0.5`` or ``"0.5"`` -> ``0p5`` (the decimal point becomes ``p``)
- ``1`` -> ``1``

so ``adversarial.linf.8_255.robust_accuracy`` and ``adversarial.l2.0p5.robust_accuracy`` are gate
paths.

Budget check (applied to every adversarial example every attack returns): with ``d = x_adv - x``,

- L-inf: ``max|d| <= eps + LINF_ATOL``
- L2: ``||d||_2 <= eps * (1 + L2_RTOL) + L2_ATOL``
- range: every value in ``[0, 1]`` exactly (attacks clamp, so no tolerance), and finite.

The tolerances only absorb float32 rounding of ``x + d`` (one unit in the last place of a value
near 1 is 6e-8); a real projection bug overshoots by far more.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from evalsuite.errors import UsageError

NORMS = ("linf", "l2")
NORM_LABELS = {"linf": "L∞", "l2": "L2"}
TORCHATTACKS_NORM = {"linf": "Linf", "l2": "L2"}

DEFAULT_LINF_EPS = ("1/255", "2/255", "4/255", "8/255")
DEFAULT_L2_EPS = ("0.25", "0.5")

LINF_ATOL = 1e-6
L2_RTOL = 1e-5
L2_ATOL = 1e-6

_FRACTION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class Epsilon:
    """One perturbation budget: its value, its label as configured and its safe key."""

    value: float
    label: str
    key: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "label": self.label, "key": self.key}


def _decimal_key(text: str) -> str:
    return text.replace(".", "p")


def parse_eps(raw: Any, norm: str = "linf") -> Epsilon:
    """Parse one epsilon (``"8/255"``, ``0.5``, ``"0.5"``, ``1``); raise UsageError when invalid."""
    if norm not in NORMS:
        raise UsageError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    if isinstance(raw, bool):
        raise UsageError(f"{norm} epsilon {raw!r} is not a number or a fraction like '8/255'")
    if isinstance(raw, (int, float)):
        value = float(raw)
        if not math.isfinite(value):
            raise UsageError(f"{norm} epsilon {raw!r} is not finite")
        label = str(raw) if isinstance(raw, int) else np.format_float_positional(value, trim="-")
        key = _decimal_key(label)
    elif isinstance(raw, str):
        text = raw.strip()
        m = _FRACTION.match(text)
        if m:
            num, den = m.group(1), m.group(2)
            if float(den) == 0:
                raise UsageError(f"{norm} epsilon {raw!r} divides by zero")
            value = float(Fraction(num) / Fraction(den))
            label = f"{num}/{den}"
            key = f"{_decimal_key(num)}_{_decimal_key(den)}"
        else:
            try:
                value = float(text)
            except ValueError:
                raise UsageError(f"{norm} epsilon {raw!r} is not a number or a fraction like '8/255'") from None
            if not math.isfinite(value) or not re.match(r"^\d+(\.\d+)?$", text):
                raise UsageError(f"{norm} epsilon {raw!r} must be written like '0.5' or '8/255'")
            label = text
            key = _decimal_key(text)
    else:
        raise UsageError(f"{norm} epsilon {raw!r} is not a number or a fraction like '8/255'")
    if value <= 0:
        raise UsageError(f"{norm} epsilon {raw!r} must be positive")
    if norm == "linf" and value > 1:
        raise UsageError(f"linf epsilon {raw!r} exceeds 1, the whole pixel range")
    return Epsilon(value=value, label=label, key=key)


def parse_eps_list(raw: Any, norm: str) -> list[Epsilon]:
    """Parse a list of epsilons (a single value is accepted), sorted ascending, no duplicates."""
    if raw is None:
        raw = DEFAULT_LINF_EPS if norm == "linf" else DEFAULT_L2_EPS
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not raw:
        raise UsageError(f"{norm}_eps must be a non-empty list such as ['4/255', '8/255'] or [0.25, 0.5]")
    eps = [parse_eps(r, norm) for r in raw]
    seen: dict[float, Epsilon] = {}
    for e in eps:
        if any(math.isclose(e.value, v, rel_tol=1e-12) for v in seen):
            raise UsageError(f"{norm}_eps lists {e.label} twice")
        seen[e.value] = e
    keys = [e.key for e in eps]
    if len(set(keys)) != len(keys):
        raise UsageError(f"{norm}_eps: two epsilons share the key {keys}")
    return sorted(eps, key=lambda e: e.value)


def perturbation_norms(x: Any, x_adv: Any) -> tuple[Any, Any]:
    """Per-sample (L-inf, L2) norms of ``x_adv - x`` as float64 tensors."""
    # The float32 difference of two values in [0, 1] is off by at most half an ulp of the result
    # (< 1e-9 for a perturbation below 0.1), far inside the budget tolerances; the norms
    # themselves accumulate in float64.
    d = (x_adv.detach() - x.detach()).flatten(1)
    return d.abs().amax(dim=1).double(), d.double().norm(p=2, dim=1)


def budget_status(x: Any, x_adv: Any, norm: str, eps: float) -> dict[str, Any]:
    """Per-sample checks of adversarial examples against the threat model (torch bool tensors).

    Returns ``linf``, ``l2`` (float64 norms), ``finite`` (no NaN/inf), ``in_range`` (all values
    in [0, 1]), ``in_budget`` (norm within eps + tolerance) and ``valid`` (all three).
    """
    import torch

    flat = x_adv.detach().flatten(1)
    finite = torch.isfinite(flat).all(dim=1)
    in_range = ((flat >= 0) & (flat <= 1)).all(dim=1) & finite
    linf, l2 = perturbation_norms(x, x_adv)
    if norm == "linf":
        in_budget = linf <= eps + LINF_ATOL
    elif norm == "l2":
        in_budget = l2 <= eps * (1 + L2_RTOL) + L2_ATOL
    else:
        raise ValueError(f"unknown norm {norm!r}")
    in_budget = in_budget & finite
    return {
        "linf": linf,
        "l2": l2,
        "finite": finite,
        "in_range": in_range,
        "in_budget": in_budget,
        "valid": finite & in_range & in_budget,
    }


def project(x: Any, x_adv: Any, norm: str, eps: float) -> Any:
    """Project ``x_adv`` onto the ``eps`` ball around ``x`` intersected with [0, 1].

    Used for minimum-norm attacks (CW-L2) whose outputs are not bounded by construction. Scaling
    an L2 perturbation towards ``x`` keeps the point inside [0, 1] (a convex combination of two
    points in the box).
    """
    import torch

    d = x_adv.detach() - x.detach()
    if norm == "linf":
        d = d.clamp(-eps, eps)
    else:
        n = d.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
        factor = torch.clamp(eps * (1 - 1e-6) / n, max=1.0).view(-1, *([1] * (d.dim() - 1)))
        d = d * factor
    return (x.detach() + d).clamp(0.0, 1.0)
