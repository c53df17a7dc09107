"""results.json schema, atomic writes and loading errors."""

from __future__ import annotations

import json

import pytest

from evalsuite.errors import ResultsError
from evalsuite.results import (
    SCHEMA_VERSION,
    atomic_write_text,
    iter_metric_paths,
    load_results,
    validate,
    write_results,
)
from evalsuite.stats import metric


def minimal_results() -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "evalsuite_version": "0.1.0",
        "provenance": {
            "model_sha256": "a" * 64, "data_fingerprint": "b" * 64, "config_hash": "c" * 64,
            "packages": {"torch": "2"}, "device": "cpu", "seed": 0, "started_at": "t0", "finished_at": "t1",
            "seconds": 1.0, "suite_seconds": {"clean": 0.5},
        },
        "model": {"source": "m.onnx", "format": "onnx", "sha256": "a" * 64, "class_names": ["0", "1"]},
        "data": {"name": "d", "n": 2, "fingerprint": "b" * 64},
        "config": {},
        "conditions": {"clean": {"suite": "clean", "params": {}, "n": 2}},
        "metrics": {"clean": {"accuracy": metric(0.5, 2, (0.0, 1.0))}},
        "checks": [],
        "report": {},
    }


def test_roundtrip(tmp_path):
    path = write_results(minimal_results(), tmp_path / "results.json")
    data = load_results(path)
    assert data["metrics"]["clean"]["accuracy"]["value"] == 0.5
    assert [p for p, _ in iter_metric_paths(data["metrics"])] == ["clean.accuracy"]
    assert load_results(tmp_path)["schema_version"] == SCHEMA_VERSION  # a folder works too


def test_schema_rejects_bad_leaf_and_version(tmp_path):
    r = minimal_results()
    r["metrics"]["clean"]["accuracy"]["n"] = -1
    with pytest.raises(ResultsError, match="schema"):
        validate(r)
    r = minimal_results()
    r["schema_version"] = "9.0"
    (tmp_path / "r.json").write_text(json.dumps(r))
    with pytest.raises(ResultsError, match="schema_version 9.0"):
        load_results(tmp_path / "r.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ResultsError, match="not valid JSON"):
        load_results(tmp_path / "x.json")
    with pytest.raises(ResultsError, match="not found"):
        load_results(tmp_path / "missing.json")


def test_nan_is_written_as_null(tmp_path):
    r = minimal_results()
    r["metrics"]["clean"]["extra"] = {"value": float("nan"), "n": 1, "ci": None, "direction": "none"}
    write_results(r, tmp_path / "r.json")
    assert "NaN" not in (tmp_path / "r.json").read_text()


def test_atomic_write_keeps_old_content_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temp file left behind


@pytest.mark.parametrize(
    ("edit", "where", "found"),
    [
        (lambda m: m["clean"].__setitem__("accuracy", "high"), "metrics/clean/accuracy ", '"high"'),
        (lambda m: m["clean"]["accuracy"].__setitem__("value", "high"), "metrics/clean/accuracy/value", '"high"'),
        (lambda m: m["clean"]["accuracy"].__setitem__("n", 3.5), "metrics/clean/accuracy/n", "3.5"),
        (lambda m: m["clean"]["accuracy"].__setitem__("ci", [0.1]), "metrics/clean/accuracy/ci", "[0.1]"),
    ],
)
def test_metric_leaves_are_typed_strictly_with_a_short_message(edit, where, found):
    """A hand-edited leaf fails validation naming the exact path and the value found, in one
    short line (not a dump of the whole suite's metrics)."""
    r = minimal_results()
    r["metrics"]["clean"]["per_class"] = {"0": {"recall": metric(1.0, 1, None)}}
    edit(r["metrics"])
    with pytest.raises(ResultsError) as info:
        validate(r)
    msg = str(info.value)
    assert f"at {where.strip()} (found {found})" in msg and len(msg) < 300, msg
