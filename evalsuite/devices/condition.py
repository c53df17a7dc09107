"""The device condition: a batch seen through a profile's (or one operation's) chain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evalsuite.conditions import BatchContext, Condition, ConditionIdentity
from evalsuite.devices.base import DeviceOp, apply_chain


@dataclass
class DeviceCondition(Condition):
    """Applies ``ops`` in order; randomness keyed by (run seed, ``key``, step, sample id).

    Keys: ``device/<profile>`` for a profile, ``device/op/<operation>/<severity>`` for one rung of
    an operation's severity ladder.
    """

    ops: tuple[DeviceOp, ...] = ()
    indices: Any = None  # dataset positions the condition covers (the suite's subset); None: every sample

    def apply(self, x: Any, ctx: BatchContext) -> Any:
        return apply_chain(self.ops, x, ids=[str(i) for i in ctx.ids], seed=int(ctx.seed), key=self.key)


def profile_identity(profile: str, suite: str = "device") -> ConditionIdentity:
    """Identity of a device profile's condition (key ``device/<profile>``)."""
    return ConditionIdentity(suite=suite, kind="device", parts=(profile,))


def op_identity(op: str, severity: int, suite: str = "device") -> ConditionIdentity:
    """Identity of one rung of an operation's severity ladder (key ``device/op/<operation>/<severity>``)."""
    return ConditionIdentity(suite=suite, kind="device", parts=("op", op, int(severity)))


def profile_key(profile: str) -> str:
    """Condition key of a device profile."""
    return profile_identity(profile).key


def op_key(op: str, severity: int) -> str:
    """Condition key of one rung of an operation's severity ladder."""
    return op_identity(op, severity).key
