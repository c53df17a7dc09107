"""results.json: the versioned, typed document every other output is rendered from.

``gate`` and ``report`` are pure functions of this document (plus the artifacts folder beside
it), so re-gating with a new policy or re-rendering a scorecard never re-runs a model.
Writes are atomic: a temporary file in the same folder, fsynced, then renamed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from evalsuite.atomic_io import atomic_write_text
from evalsuite.errors import ResultsError, UsageError
from evalsuite.stats import is_metric

SCHEMA_VERSION = "1.0"

_METRIC_LEAF = {
    "type": "object",
    "required": ["value", "n", "ci", "direction"],
    "properties": {
        "value": {"type": ["number", "null"]},
        "n": {"type": "integer", "minimum": 0},
        "ci": {
            "oneOf": [
                {"type": "null"},
                {"type": "array", "items": {"type": ["number", "null"]}, "minItems": 2, "maxItems": 2},
            ]
        },
        "direction": {"enum": ["higher", "lower", "none"]},
    },
}

_GATE = {
    "type": "object",
    "required": ["metric"],
    "properties": {
        "name": {"type": "string"},
        "metric": {"type": "string"},
        "min": {"type": "number"},
        "max": {"type": "number"},
        "max_drop": {"type": "number"},
        "severity": {"enum": ["fail", "warn"]},
        "bound": {"enum": ["point", "ci_lower", "ci_upper"]},
        "description": {"type": "string"},
        "optional": {"type": "boolean"},
    },
}

JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "evalsuite/results.schema.json",
    "title": "evalsuite results",
    "description": (
        "Results of one `evalsuite run`. Every number under `metrics` is a metric leaf "
        "(value, n, ci, direction); gate paths are dotted paths into `metrics`."
    ),
    "type": "object",
    "required": ["schema_version", "evalsuite_version", "provenance", "model", "data", "config", "conditions",
                 "metrics", "checks", "report"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "evalsuite_version": {"type": "string"},
        "provenance": {
            "type": "object",
            "required": ["model_sha256", "data_fingerprint", "config_hash", "packages", "device", "seed",
                         "started_at", "finished_at", "seconds", "suite_seconds"],
            "properties": {
                "model_sha256": {"type": "string"},
                "data_fingerprint": {"type": "string"},
                "config_hash": {"type": "string"},
                "packages": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
                "device": {"type": "string"},
                "host": {"type": "object"},
                "seed": {"type": "integer"},
                "started_at": {"type": "string"},
                "finished_at": {"type": "string"},
                "seconds": {"type": "number"},
                "suite_seconds": {"type": "object", "additionalProperties": {"type": "number"}},
                "resumed_conditions": {"type": "array", "items": {"type": "string"}},
                # run --target-threads N: the threads the performance suite measured with (null: as served)
                "target_threads": {"type": ["integer", "null"]},
                # run --reference / evalsuite compare: the reference model the compare.* metrics pair with
                "reference": {"type": "object", "required": ["source", "format", "sha256"],
                              "properties": {k: {"type": "string"} for k in ("source", "format", "sha256")}},
            },
        },
        "model": {"type": "object", "required": ["source", "format", "sha256", "class_names"]},
        "data": {"type": "object", "required": ["name", "n", "fingerprint"]},
        "config": {"type": "object"},
        "conditions": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["suite", "params", "n"],
                "properties": {"suite": {"type": "string"}, "params": {"type": "object"},
                               "n": {"type": "integer"}, "seconds": {"type": "number"}},
            },
        },
        "metrics": {"type": "object", "additionalProperties": {"$ref": "#/$defs/metric_tree"}},
        "checks": {"type": "array", "items": _GATE},
        "report": {"type": "object"},
    },
    "$defs": {
        "metric_leaf": _METRIC_LEAF,
        "metric_tree": {
            "if": {"type": "object", "required": ["value", "n"]},
            "then": {"$ref": "#/$defs/metric_leaf"},
            # Below a suite every value is a metric leaf or a group of them: a hand-edited
            # ``clean.accuracy: "high"`` fails here, as it would fail gating.
            "else": {"type": "object", "additionalProperties": {"$ref": "#/$defs/metric_tree"}},
        },
    },
}


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats so json.dumps is strict and portable."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a hard dependency
        np = None  # type: ignore[assignment]
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if np is not None:
        if isinstance(obj, np.ndarray):
            return _jsonable(obj.tolist())
        if isinstance(obj, np.generic):
            obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(results: dict[str, Any]) -> str:
    return json.dumps(_jsonable(results), indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_results(results: dict[str, Any], path: str | Path) -> Path:
    """Validate and atomically write results.json."""
    validate(results)
    atomic_write_text(path, dumps(results))
    return Path(path)


def validate(results: dict[str, Any]) -> None:
    """Check ``results`` against :data:`JSON_SCHEMA`; raise ResultsError with the first problem."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(JSON_SCHEMA)
    err = jsonschema.exceptions.best_match(validator.iter_errors(_jsonable(results)))
    if err is not None:
        while err.context:  # the innermost reason, not "... is not valid under any of the given schemas"
            err = jsonschema.exceptions.best_match(err.context)
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        found = json.dumps(err.instance, default=str)
        found = found if len(found) <= 60 else found[:57] + "..."
        reason = err.message if len(err.message) <= 160 else f"{err.validator} {err.validator_value!r} not met"
        raise ResultsError(f"results do not follow schema {SCHEMA_VERSION} at {where} (found {found}): {reason}")
    _check_leaves(results.get("metrics", {}), "metrics")


def _check_leaves(node: Any, where: str) -> None:
    if is_metric(node):
        missing = {"value", "n", "ci", "direction"} - set(node)
        if missing:
            raise ResultsError(f"metric {where} lacks {', '.join(sorted(missing))}")
        return
    if isinstance(node, dict):
        for k, v in node.items():
            _check_leaves(v, f"{where}.{k}")


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate a results.json (one-line ResultsError on any problem)."""
    return read_results_document(path)[0]


def read_results_document(path: str | Path) -> tuple[dict[str, Any], bytes, Path]:
    """A validated results.json with the exact bytes it was parsed from and its file path.

    The bytes are what a decision record hashes (a baseline's sha256), read once so the hash
    and the numbers cannot come from two versions of the file.
    """
    p = Path(path)
    if not p.exists():
        raise ResultsError(f"results file not found: {p}")
    if p.is_dir():
        p = p / "results.json"
        if not p.exists():
            raise ResultsError(f"no results.json in {p.parent}")
    try:
        raw = p.read_bytes()
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{p} is not valid JSON ({exc.__class__.__name__})") from None
    except RecursionError:
        raise ResultsError(f"{p} is nested too deeply to be a results document") from None
    except OSError as exc:
        raise ResultsError(f"cannot read {p}: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{p} does not hold a results object")
    version = str(data.get("schema_version", ""))
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise ResultsError(
            f"{p} has schema_version {version or '(none)'}; this evalsuite reads {SCHEMA_VERSION}"
        )
    validate(data)
    return data, raw, p


def gate_path(key: str) -> str:
    """The one rule from a condition key to its part of a gate path: ``/`` written as ``.``.

    ``corruption/fog/3`` -> ``corruption.fog.3`` (``calibration.corruption.fog.3.ece``,
    ``slices.corruption.fog.3.<column>...``); ``clean`` stays ``clean``. Every suite that puts a
    condition key into its metrics uses this; :func:`check_gate_paths` keeps it one-to-one.
    """
    return str(key).replace("/", ".")


def check_gate_paths(keys: Iterable[str]) -> None:
    """UsageError when two condition keys share a gate path (``device/op.jpeg.3`` and
    ``device/op/jpeg/3``): a gate could not tell them apart."""
    seen: dict[str, str] = {}
    for key in keys:
        path = gate_path(key)
        if path in seen and seen[path] != key:
            raise UsageError(
                f"conditions {seen[path]!r} and {key!r} share the gate path {path!r}; rename one of them "
                "(a device profile, say) so no two keys differ only in '/' versus '.'"
            )
        seen[path] = key


def iter_metric_paths(metrics: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (dotted path, leaf) under ``metrics``."""
    for key, node in metrics.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if is_metric(node):
            yield path, node
        elif isinstance(node, dict):
            yield from iter_metric_paths(node, path)


def resolve_metric(metrics: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The leaf at dotted ``path``; keys may themselves contain dots (longest match first)."""
    node: Any = metrics
    rest = path
    while rest:
        if not isinstance(node, dict) or is_metric(node):
            return None
        match = None
        for key in sorted(node, key=lambda k: -len(str(k))):
            k = str(key)
            if rest == k or rest.startswith(k + "."):
                match = key
                break
        if match is None:
            return None
        node = node[match]
        rest = rest[len(str(match)) + 1 :]
    return node if is_metric(node) else None
