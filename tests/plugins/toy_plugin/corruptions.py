"""Toy corruption: drop a severity-dependent share of the pixels to black."""

from __future__ import annotations

from evalsuite.corruptions import register_corruption

DROP = (0.1, 0.2, 0.3, 0.4, 0.5)  # share of pixels dropped at severity 1..5


def draw_toy_dropout(x, severity, rand):
    """Random part: one uniform per pixel from the sample's own stream (seeded by its id)."""
    return {"u": rand.uniform((1, *x.shape[-2:]))}


@register_corruption("toy_dropout", family="toy", description="pixels dropped to black (toy plug-in)",
                     draw=draw_toy_dropout)
def apply_toy_dropout(x, severity, draws):
    """Deterministic part: ``x`` where ``u >= DROP[severity - 1]``, else 0."""
    keep = draws["u"].to(x.device) >= DROP[severity - 1]
    return x * keep
