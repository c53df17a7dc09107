"""Adversarial attacks: threat models, torchattacks-backed runners, the ONNX gradient bridge.

- :mod:`evalsuite.attacks.threat`: L-inf / L2 threat models, epsilon parsing and safe keys,
  budget checks.
- :mod:`evalsuite.attacks.runners`: the attacks (torchattacks, with the papers' parameters),
  the tiers, seeding.
- :mod:`evalsuite.attacks.bridge`: :func:`~evalsuite.attacks.bridge.bridge_for` turns an ONNX
  model into a differentiable torch module checked against onnxruntime (it lives in
  :mod:`evalsuite.models.onnx_bridge`, re-exported here).
- :mod:`evalsuite.attacks.engine`: runs a tier's attacks on a batch and keeps the per-sample
  worst case, confirmed by the deployed model's own ``predict``.

The adversarial suite (:mod:`evalsuite.suites.adversarial`) plugs these into ``evalsuite run``.
Nothing heavy is imported here, so ``evalsuite ls attacks`` stays fast.
"""

from __future__ import annotations


def list_entries() -> list[tuple[str, str]]:
    """(name, one-line description) of every attack, alias and tier (for ``evalsuite ls attacks``)."""
    from evalsuite.attacks.runners import ALIASES, ATTACKS, TIER_DESCRIPTIONS

    rows = [(name, f"[{', '.join(info.norms)}] {info.description}") for name, info in ATTACKS.items()]
    rows += [(name, "alias: " + " + ".join(members) + " (AutoAttack standard)") for name, members in ALIASES.items()]
    rows += [(f"tier:{name}", text) for name, text in TIER_DESCRIPTIONS.items()]
    return rows
