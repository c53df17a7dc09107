"""Policy gates: turn results into PASS / WARN / FAIL outcomes and an exit code.

A policy YAML holds ``gates:``, a list of mappings::

    - metric: clean.accuracy      # dotted path into results.metrics
      min: 0.90                    # and/or max
      max_drop: 0.02               # against --baseline results (drop in the bad direction)
      severity: fail               # fail | warn
      bound: ci_lower              # point | ci_lower | ci_upper
      name: clean accuracy         # optional label
      description: ...             # optional, shown in reports
      optional: true               # skip (not error) when the run lacks this metric

Evaluation is a pure function of (results, policy, baseline). Built-in checks that suites
record in ``results["checks"]`` are evaluated with the policy's gates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from evalsuite.errors import PolicyError
from evalsuite.registry import did_you_mean
from evalsuite.results import iter_metric_paths, resolve_metric

GATE_KEYS = ("name", "metric", "min", "max", "max_drop", "severity", "bound", "description", "optional")
POLICY_KEYS = ("version", "description", "gates")
DEFAULT_POLICY = "default"

class Severity(StrEnum):
    """What a gate that does not hold does to the verdict."""

    FAIL = "fail"
    WARN = "warn"


class Bound(StrEnum):
    """Which number of a metric leaf a gate compares: the estimate or an end of its CI."""

    POINT = "point"
    CI_LOWER = "ci_lower"
    CI_UPPER = "ci_upper"


class Status(StrEnum):
    """The outcome of one gate."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


PASS, WARN, FAIL, SKIP = Status.PASS, Status.WARN, Status.FAIL, Status.SKIP


def _enum(kind: type[StrEnum], value: Any, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        choices = " or ".join(repr(m.value) for m in kind)
        raise PolicyError(f"{what} must be {choices}, got {value!r}") from None


@dataclass(frozen=True)
class Gate:
    """One gate: a policy's or a suite's built-in check, validated when it is made.

    Suites build their checks as ``Gate.check(...)`` objects, so a malformed check is a bug
    found where it is written, not when a run is gated; policies go through :func:`parse_gate`.
    """

    metric: str
    name: str
    min: float | None = None
    max: float | None = None
    max_drop: float | None = None
    severity: Severity = Severity.FAIL
    bound: Bound = Bound.POINT
    description: str = ""
    optional: bool = False
    builtin: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric.strip():
            raise PolicyError("a gate needs 'metric' (a dotted path such as clean.accuracy)")
        object.__setattr__(self, "severity", _enum(Severity, self.severity, f"gate on {self.metric}: severity"))
        object.__setattr__(self, "bound", _enum(Bound, self.bound, f"gate on {self.metric}: bound"))
        for key in ("min", "max", "max_drop"):
            v = getattr(self, key)
            if v is not None:
                object.__setattr__(self, key, _number(v, f"gate on {self.metric}", key))
        if self.min is None and self.max is None and self.max_drop is None:
            raise PolicyError(f"gate on {self.metric} needs at least one of min, max, max_drop")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PolicyError(f"gate on {self.metric}: min {self.min:g} is greater than max {self.max:g}")
        if self.max_drop is not None and self.max_drop < 0:
            raise PolicyError(f"gate on {self.metric}: max_drop must be >= 0, got {self.max_drop:g}")

    @classmethod
    def check(
        cls,
        name: str,
        metric: str,
        *,
        min: float | None = None,  # noqa: A002 - the policy key
        max: float | None = None,  # noqa: A002 - the policy key
        severity: Severity = Severity.WARN,
        bound: Bound = Bound.POINT,
        description: str = "",
    ) -> Gate:
        """A suite's built-in check (evaluated with the policy's gates on every run)."""
        return cls(metric=metric, name=name, min=min, max=max, severity=severity, bound=bound,
                   description=description, builtin=True)

    def to_record(self) -> dict[str, Any]:
        """The gate as a policy mapping (what ``results["checks"]`` stores and :func:`parse_gate` reads)."""
        record: dict[str, Any] = {"name": self.name, "metric": self.metric}
        for key in ("min", "max", "max_drop"):
            if getattr(self, key) is not None:
                record[key] = getattr(self, key)
        record.update(severity=str(self.severity), bound=str(self.bound), description=self.description)
        if self.optional:
            record["optional"] = True
        return record

    def threshold_text(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        if self.max_drop is not None:
            parts.append(f"drop <= {self.max_drop:g}")
        return " and ".join(parts)


@dataclass(frozen=True)
class GateOutcome:
    """The verdict of one gate, with the numbers that produced it."""

    gate: Gate
    status: Status
    value: float | None
    message: str
    baseline_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        gate = asdict(self.gate)
        gate.update(severity=str(self.gate.severity), bound=str(self.gate.bound))
        return {"gate": gate, "status": str(self.status), "value": self.value, "message": self.message,
                "baseline_value": self.baseline_value}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateOutcome:
        return cls(Gate(**d["gate"]), Status(d["status"]), d.get("value"), d.get("message", ""), d.get("baseline_value"))


def _number(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise PolicyError(f"{where}: {key} must be a finite number, got {value!r}")
    return float(value)


def parse_gate(raw: Any, where: str, builtin: bool = False) -> Gate:
    """Validate one gate mapping (unknown keys and bad values are PolicyErrors)."""
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: a gate must be a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(GATE_KEYS))
    if unknown:
        raise PolicyError(f"{where}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], GATE_KEYS)}; valid: {', '.join(GATE_KEYS)}")
    metric = raw.get("metric")
    if not isinstance(metric, str) or not metric.strip():
        raise PolicyError(f"{where}: 'metric' (a dotted path such as clean.accuracy) is required")
    optional = raw.get("optional", False)
    if not isinstance(optional, bool):
        raise PolicyError(f"{where}: optional must be true or false")
    try:
        return Gate(
            metric=metric.strip(),
            name=str(raw.get("name") or metric),
            min=raw.get("min"),
            max=raw.get("max"),
            max_drop=raw.get("max_drop"),
            severity=raw.get("severity", "fail"),
            bound=raw.get("bound", "point"),
            description=str(raw.get("description", "")),
            optional=optional,
            builtin=builtin,
        )
    except PolicyError as exc:
        raise PolicyError(f"{where}: {exc}") from None


def parse_policy(data: Any, origin: str) -> list[Gate]:
    """Validate a policy document (already parsed YAML)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"policy {origin} must be a mapping with a 'gates' list")
    unknown = sorted(set(data) - set(POLICY_KEYS))
    if unknown:
        raise PolicyError(f"policy {origin}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], POLICY_KEYS)}; valid: {', '.join(POLICY_KEYS)}")
    gates = data.get("gates") or []
    if not isinstance(gates, list):
        raise PolicyError(f"policy {origin}: 'gates' must be a list")
    return [parse_gate(g, f"policy {origin} gate {i + 1}") for i, g in enumerate(gates)]


def load_policy(path: str | Path | None) -> tuple[list[Gate], str]:
    """Gates from a policy YAML, or the shipped default policy when ``path`` is None."""
    gates, record = load_policy_record(path)
    return gates, record.source


@dataclass(frozen=True)
class PolicyRecord:
    """Which policy decided a verdict: where it came from, the sha256 of its bytes, its gates."""

    source: str
    sha256: str
    builtin: bool
    gates: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "sha256": self.sha256, "builtin": self.builtin, "gates": list(self.gates)}


def load_policy_record(path: str | Path | None) -> tuple[list[Gate], PolicyRecord]:
    """:func:`load_policy` with the record of what was loaded (hash of the very bytes parsed)."""
    import hashlib

    from evalsuite.config import read_yaml_document
    from evalsuite.safe_yaml import safe_load

    if path is None:
        raw = resources.files("evalsuite.presets").joinpath("policy-default.yaml").read_bytes()
        gates = parse_policy(safe_load(raw.decode("utf-8")), DEFAULT_POLICY)
        source, builtin = "default (built in)", True
    else:
        data, raw = read_yaml_document(path, "policy file", PolicyError)
        if data is None:
            raise PolicyError(
                f"policy file {path} is empty; write `gates: []` to gate on the built-in checks only"
            )
        gates = parse_policy(data, str(path))
        source, builtin = str(path), False
        if not gates:
            import logging

            logging.getLogger(__name__).warning(
                "policy %s defines no gates: only the suites' built-in checks decide the verdict", path
            )
    record = PolicyRecord(source, hashlib.sha256(raw).hexdigest(), builtin, tuple(g.to_record() for g in gates))
    return gates, record


def builtin_gates(results: dict[str, Any]) -> list[Gate]:
    """The built-in checks recorded by suites in ``results["checks"]``."""
    return [parse_gate(c, f"built-in check {c.get('name', i)}", builtin=True) for i, c in enumerate(results.get("checks", []))]


def check_metric_paths(gates: list[Gate], results: dict[str, Any]) -> None:
    """Raise PolicyError for a non-optional gate whose metric the results lack, with close matches."""
    metrics = results.get("metrics", {})
    paths = [p for p, _ in iter_metric_paths(metrics)]
    for g in gates:
        if g.optional or resolve_metric(metrics, g.metric) is not None:
            continue
        raise PolicyError(
            f"gate {g.name!r}: no metric {g.metric!r} in these results{did_you_mean(g.metric, paths)}"
            f" (`evalsuite gate --list-metrics` lists all {len(paths)})"
        )


def check_policy(gates: list[Gate], specs: Sequence[Any], baseline: dict[str, Any] | None) -> None:
    """Before any prediction: every gate can be evaluated on what this run will produce.

    ``specs`` are the metric paths the run's suites declared (:meth:`Suite.metric_specs`). A
    non-optional gate naming no declared metric, a ``ci_lower``/``ci_upper`` bound on a metric
    that carries no interval, ``max_drop`` without a baseline, or a baseline lacking the metric
    are configuration mistakes (:class:`PolicyError`, exit 2), never a FAIL verdict.
    """
    from evalsuite.metric_specs import match_specs, spec_paths

    paths = spec_paths(specs)
    for g in gates:
        matched = match_specs(g.metric, specs)
        if not matched:
            if g.optional:
                continue
            raise PolicyError(
                f"gate {g.name!r}: this run produces no metric {g.metric!r}{did_you_mean(g.metric, paths)}"
                f" (`evalsuite gate --list-metrics` on a finished run lists them all)"
            )
        if g.bound != "point" and not any(s.ci for s in matched):
            raise PolicyError(
                f"gate {g.name!r}: bound {g.bound} needs a confidence interval, but {g.metric} is an exact "
                "count without one; use bound: point"
            )
    check_baseline_use(gates, baseline)


def check_baseline_use(gates: list[Gate], baseline: dict[str, Any] | None) -> None:
    """``max_drop`` gates need a baseline that has their metric (:class:`PolicyError` otherwise)."""
    for g in gates:
        if g.max_drop is None:
            continue
        if baseline is None:
            raise PolicyError(f"gate {g.name!r}: max_drop compares against a baseline; pass --baseline results.json")
        if resolve_metric(baseline.get("metrics", {}), g.metric) is None and not g.optional:
            paths = [p for p, _ in iter_metric_paths(baseline.get("metrics", {}))]
            raise PolicyError(
                f"gate {g.name!r}: the baseline has no metric {g.metric!r}{did_you_mean(g.metric, paths)}; "
                "it cannot be compared"
            )


def _canonical(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, sort_keys=True, default=str))


def check_baseline_matches(
    baseline: dict[str, Any],
    *,
    fingerprint: str,
    conditions: dict[str, dict[str, Any]],
    allow_mismatch: bool,
    origin: str,
) -> list[str]:
    """Refuse a baseline measured on other data or other conditions; returns the differences.

    A non-regression gate compares like with like only when both runs saw the same samples
    (data fingerprint) under the same conditions (keys and parameters; a condition's identity,
    ``params["condition"]``, follows from its key and is not compared, so a baseline written
    before conditions carried one still matches). A difference is a :class:`PolicyError`
    unless ``allow_mismatch`` (``--allow-baseline-mismatch``), in which case it is logged as a
    warning and returned so it can be recorded.
    """
    import logging

    from evalsuite.conditions import measured_params

    problems = []
    base_fp = baseline.get("provenance", {}).get("data_fingerprint") or baseline.get("data", {}).get("fingerprint")
    if base_fp != fingerprint:
        problems.append(f"data fingerprint {str(base_fp)[:12]} vs this run's {fingerprint[:12]}")
    base_conditions = {k: (v or {}).get("params", {}) for k, v in baseline.get("conditions", {}).items()}
    only_here = sorted(set(conditions) - set(base_conditions))
    only_there = sorted(set(base_conditions) - set(conditions))
    changed = sorted(k for k in set(conditions) & set(base_conditions)
                     if _canonical(measured_params(conditions[k])) != _canonical(measured_params(base_conditions[k])))
    for label, keys in (("conditions missing from the baseline", only_here),
                        ("conditions only in the baseline", only_there),
                        ("conditions with other parameters", changed)):
        if keys:
            problems.append(f"{len(keys)} {label} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
    if problems and not allow_mismatch:
        raise PolicyError(
            f"baseline {origin} was measured differently: {'; '.join(problems)}; compare runs on the same data "
            "and conditions, or pass --allow-baseline-mismatch"
        )
    for p in problems:
        logging.getLogger(__name__).warning("baseline %s differs from this run: %s (--allow-baseline-mismatch)", origin, p)
    return problems


def _observed(leaf: dict[str, Any], bound: str) -> float | None:
    if bound == "point":
        v = leaf.get("value")
    else:
        ci = leaf.get("ci")
        v = None if not ci else ci[0 if bound == "ci_lower" else 1]
    return None if v is None or not math.isfinite(float(v)) else float(v)


def evaluate_gate(gate: Gate, results: dict[str, Any], baseline: dict[str, Any] | None) -> GateOutcome:
    """PASS/WARN/FAIL/SKIP for one gate."""
    leaf = resolve_metric(results.get("metrics", {}), gate.metric)
    bad = FAIL if gate.severity is Severity.FAIL else WARN
    if leaf is None:
        return GateOutcome(gate, SKIP, None, f"{gate.metric} not in these results (optional gate)")
    value = _observed(leaf, gate.bound)
    if value is None:
        what = "value" if gate.bound == "point" else f"{gate.bound.replace('_', ' ')} of the CI"
        return GateOutcome(gate, bad, None, f"{gate.metric}: {what} is missing or not a number")
    failures = []
    label = gate.metric if gate.bound == "point" else f"{gate.metric} ({gate.bound.replace('_', ' ')})"
    if gate.min is not None and value < gate.min:
        failures.append(f"{label} = {value:.4g} < min {gate.min:g}")
    if gate.max is not None and value > gate.max:
        failures.append(f"{label} = {value:.4g} > max {gate.max:g}")
    base_value = None
    if gate.max_drop is not None:
        if baseline is None:
            return GateOutcome(gate, bad, value, f"{gate.metric}: max_drop needs --baseline results")
        base_leaf = resolve_metric(baseline.get("metrics", {}), gate.metric)
        base_value = None if base_leaf is None else base_leaf.get("value")
        if base_value is None:
            return GateOutcome(gate, bad, value, f"{gate.metric}: not in the baseline results")
        point = leaf.get("value")
        direction = leaf.get("direction", "higher")
        drop = (base_value - point) if direction != "lower" else (point - base_value)
        if drop > gate.max_drop + 1e-12:
            failures.append(f"{gate.metric} dropped {drop:.4g} vs baseline {base_value:.4g} > max_drop {gate.max_drop:g}")
    if failures:
        return GateOutcome(gate, bad, value, "; ".join(failures), base_value)
    return GateOutcome(gate, PASS, value, f"{label} = {value:.4g} ({gate.threshold_text()})", base_value)


def evaluate(
    results: dict[str, Any], gates: list[Gate], baseline: dict[str, Any] | None = None
) -> list[GateOutcome]:
    """Built-in checks first, then the policy's gates, each evaluated against ``results``."""
    all_gates = builtin_gates(results) + list(gates)
    check_metric_paths(all_gates, results)
    check_baseline_use(all_gates, baseline)
    return [evaluate_gate(g, results, baseline) for g in all_gates]


#: What turns the verdict into exit code 1: a FAIL only (default), or a WARN as well.
FAIL_ON = ("fail", "warn")


def exit_code(outcomes: list[GateOutcome], fail_on: str = "fail") -> int:
    """1 when any gate FAILs (or, with ``fail_on="warn"``, WARNs), else 0."""
    bad = {FAIL, WARN} if fail_on == "warn" else {FAIL}
    return 1 if any(o.status in bad for o in outcomes) else 0


def verdict(outcomes: list[GateOutcome]) -> str:
    """FAIL if any gate fails, WARN if any warns, else PASS."""
    statuses = {o.status for o in outcomes}
    if FAIL in statuses:
        return FAIL
    if WARN in statuses:
        return WARN
    return PASS
