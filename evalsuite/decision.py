"""What decided a verdict: the gate outcomes with the policy and baseline that produced them.

A :class:`Decision` is what ``gates.json`` stores (schema ``evalsuite.gates``, see
:data:`GATES_SCHEMA`) and what every artefact renders from, so the scorecard, junit.xml,
summary.md and gates.json of one folder always name the same policy (source, sha256, gates),
the same baseline (path, sha256, its model hash and data fingerprint) and the same verdict.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.errors import ResultsError
from evalsuite.gates import FAIL_ON, GateOutcome, PolicyRecord, exit_code, verdict

GATES_SCHEMA_NAME = "evalsuite.gates"
GATES_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BaselineRecord:
    """The baseline results a decision compared against (``max_drop`` gates, mCE)."""

    path: str
    sha256: str
    model_sha256: str
    data_fingerprint: str
    config_hash: str

    @classmethod
    def of(cls, path: str | Path, raw: bytes, results: dict[str, Any]) -> BaselineRecord:
        """The record of baseline ``results`` read from ``path`` as the bytes ``raw``."""
        prov = results.get("provenance", {})
        return cls(str(path), hashlib.sha256(raw).hexdigest(), str(prov.get("model_sha256", "")),
                   str(prov.get("data_fingerprint", "")), str(prov.get("config_hash", "")))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Decision:
    """Gate outcomes and what produced them; ``fail_on`` says which status makes exit code 1."""

    outcomes: list[GateOutcome]
    policy: PolicyRecord | None
    baseline: BaselineRecord | None = None
    fail_on: str = "fail"
    decided_at: str = ""
    #: sha256 of the results.json bytes the gates read ("" for a run's own decision, whose
    #: results.json is written in the same folder at the same time).
    results_sha256: str = ""

    def __post_init__(self) -> None:
        if self.fail_on not in FAIL_ON:
            raise ValueError(f"fail_on must be one of {FAIL_ON}, got {self.fail_on!r}")

    @property
    def verdict(self) -> str:
        """FAIL, WARN or PASS over every outcome."""
        return str(verdict(self.outcomes)) if self.outcomes else "PASS"

    @property
    def exit_code(self) -> int:
        """0 or 1 by :func:`evalsuite.gates.exit_code` under ``fail_on``."""
        return exit_code(self.outcomes, self.fail_on)

    @property
    def policy_text(self) -> str:
        """One line for people: which policy, and its sha256 prefix."""
        if self.policy is None:
            return "unknown (gates.json written by an older evalsuite)"
        return f"{self.policy.source} (sha256 {self.policy.sha256[:12]})"

    def counts(self) -> dict[str, int]:
        """How many outcomes have each status."""
        return {s: sum(1 for o in self.outcomes if str(o.status) == s) for s in ("PASS", "WARN", "FAIL", "SKIP")}

    def to_json(self) -> dict[str, Any]:
        """The gates.json document (:data:`GATES_SCHEMA`)."""
        return {
            "schema": GATES_SCHEMA_NAME,
            "schema_version": GATES_SCHEMA_VERSION,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "fail_on": self.fail_on,
            "decided_at": self.decided_at,
            "results_sha256": self.results_sha256,
            "counts": self.counts(),
            "policy": self.policy.to_dict() if self.policy else None,
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "outcomes": [o.to_dict() for o in self.outcomes],
        }

    @classmethod
    def from_json(cls, data: Any, origin: str) -> Decision:
        """A stored gates.json (this schema, or the bare outcome list older versions wrote)."""
        try:
            if isinstance(data, list):
                return cls([GateOutcome.from_dict(d) for d in data], None)
            if not isinstance(data, dict) or data.get("schema") != GATES_SCHEMA_NAME:
                raise ValueError("not a gates document")
            if int(data.get("schema_version", 0)) != GATES_SCHEMA_VERSION:
                raise ValueError(f"schema_version {data.get('schema_version')}")
            pol = data.get("policy")
            policy = None if pol is None else PolicyRecord(str(pol["source"]), str(pol["sha256"]),
                                                           bool(pol["builtin"]), tuple(pol["gates"]))
            base = data.get("baseline")
            baseline = None if base is None else BaselineRecord(**{k: str(base[k]) for k in BaselineRecord.__dataclass_fields__})
            return cls([GateOutcome.from_dict(d) for d in data["outcomes"]], policy, baseline,
                       str(data.get("fail_on", "fail")), str(data.get("decided_at", "")),
                       str(data.get("results_sha256", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ResultsError(f"{origin} is not a gates.json this evalsuite reads ({exc}); "
                               "pass --policy to re-evaluate the gates") from None


#: JSON Schema of gates.json (``evalsuite schema --gates`` prints it).
GATES_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "evalsuite gates.json",
    "type": "object",
    "required": ["schema", "schema_version", "verdict", "exit_code", "fail_on", "counts", "policy", "baseline",
                 "outcomes"],
    "properties": {
        "schema": {"const": GATES_SCHEMA_NAME},
        "schema_version": {"const": GATES_SCHEMA_VERSION},
        "verdict": {"enum": ["PASS", "WARN", "FAIL"]},
        "exit_code": {"enum": [0, 1]},
        "fail_on": {"enum": list(FAIL_ON)},
        "decided_at": {"type": "string"},
        "results_sha256": {"type": "string"},
        "counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        "policy": {
            "type": ["object", "null"],
            "required": ["source", "sha256", "builtin", "gates"],
            "properties": {"source": {"type": "string"}, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                           "builtin": {"type": "boolean"}, "gates": {"type": "array", "items": {"type": "object"}}},
        },
        "baseline": {
            "type": ["object", "null"],
            "required": ["path", "sha256", "model_sha256", "data_fingerprint", "config_hash"],
            "properties": {k: {"type": "string"} for k in ("path", "sha256", "model_sha256", "data_fingerprint",
                                                           "config_hash")},
        },
        "outcomes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["gate", "status", "value", "message", "baseline_value"],
                "properties": {
                    "gate": {"type": "object", "required": ["name", "metric", "severity", "bound"]},
                    "status": {"enum": ["PASS", "WARN", "FAIL", "SKIP"]},
                    "value": {"type": ["number", "null"]},
                    "message": {"type": "string"},
                    "baseline_value": {"type": ["number", "null"]},
                },
            },
        },
    },
}
