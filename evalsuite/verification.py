"""What ``evalsuite calibrate`` and ``evalsuite quantize`` share: a model file written only after
named checks pass.

A failed check is exit code 1 (like a failed gate) and nothing is written; either way the
command prints its summary and, with ``--json PATH`` (``-`` for stdout), writes it as JSON.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from evalsuite.errors import EvalsuiteError, UsageError


class VerificationError(EvalsuiteError):
    """The new model failed a check; nothing was written. Exit code 1 (like a failed gate).

    The command's outcome (with ``summary_lines()`` and ``to_dict()``) may be attached as
    ``outcome`` so the summary of the failed checks is still shown."""

    exit_code = 1


@dataclass
class Check:
    """One verification check of the model about to be written."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


def report(outcome: Any, json_target: str | None) -> None:
    """Print ``outcome.summary_lines()`` and write ``outcome.to_dict()`` to ``json_target`` (if any)."""
    sys.stdout.write("\n".join(outcome.summary_lines()) + "\n")
    write_json(json_target, outcome.to_dict())


def report_failure(exc: VerificationError, json_target: str | None) -> None:
    """:func:`report` of the outcome a :class:`VerificationError` carries (nothing without one)."""
    failed = getattr(exc, "outcome", None)
    if failed is not None:
        report(failed, json_target)


def write_json(target: str | None, data: dict[str, Any]) -> None:
    """``data`` as indented JSON to ``target`` (atomically), to stdout for ``-``, nowhere for None."""
    if not target:
        return
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if target == "-":
        sys.stdout.write(text)
        return
    from evalsuite.atomic_io import atomic_write_text

    try:
        atomic_write_text(target, text)
    except OSError as exc:
        raise UsageError(f"cannot write --json {target}: {exc.strerror or exc}") from None
