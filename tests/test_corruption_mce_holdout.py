"""mCE averages the 15 benchmark corruptions only; the 4 held-out ones are reported apart (issue #21).

A hand-computed 19 x 5 case through every baseline route: a ``--baseline`` results document,
a ``baseline_errors`` results.json file and the built-in AlexNet table (which has no held-out
errors). CE_c = sum_s E_{s,c} / sum_s E^base_{s,c}; relative CE subtracts each model's clean
error from every term (Hendrycks & Dietterich 2019).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from evalsuite.corruptions import BENCHMARK, HELD_OUT
from evalsuite.data.base import Dataset
from evalsuite.results import write_results
from evalsuite.stats import metric
from evalsuite.suites.base import Predictions, PredictionSet, RunContext
from evalsuite.suites.corruption import CorruptionSuite, load_alexnet_errors

N = 4  # samples; a cell's accuracy is a multiple of 1/4
SEVERITIES = (1, 2, 3, 4, 5)
CORRUPTIONS = list(BENCHMARK) + list(HELD_OUT)
BASE_CLEAN_ACC = 0.9


def _right(name: str, sev: int) -> int:
    """How many of the 4 samples the model gets right under (name, sev): a fixed pattern over 0..4."""
    return (CORRUPTIONS.index(name) * 3 + sev) % (N + 1)


def _base_error(name: str, sev: int) -> float:
    """The baseline model's error under (name, sev): above its clean error 0.1 everywhere."""
    return 0.3 + 0.02 * CORRUPTIONS.index(name) + 0.08 * sev


def _preds(key: str, suite: str, right: int, params: dict | None = None) -> Predictions:
    """Two-class predictions, label 0, right on the first ``right`` of N samples."""
    c = (np.arange(N) < right).astype(np.float32)
    return Predictions(key, suite, params or {}, np.arange(N), np.array([f"s{i}" for i in range(N)], dtype=object),
                       np.zeros(N, dtype=np.int64), np.stack([c, 1 - c], axis=1))


def _prediction_set(clean_right: int = N) -> PredictionSet:
    items = {"clean": _preds("clean", "clean", clean_right)}
    for name in CORRUPTIONS:
        for sev in SEVERITIES:
            key = f"corruption/{name}/{sev}"
            items[key] = _preds(key, "corruption", _right(name, sev), {"name": name, "severity": sev, "backend": "torch"})
    return PredictionSet(items)


def _ctx(tmp_path: Path, baseline=None, classes: int = 10) -> RunContext:
    ds = Dataset(name="t", ids=np.array([f"s{i}" for i in range(N)], dtype=object), labels=np.zeros(N, dtype=np.int64),
                 columns={}, fingerprint="f", loader=lambda i: np.zeros((32, 32, 3), np.uint8))
    model = SimpleNamespace(info=SimpleNamespace(input_size=(32, 32), num_classes=classes, class_names=["a", "b"]))
    return RunContext(model=model, dataset=ds, labels=np.zeros(N, dtype=np.int64), out_dir=tmp_path, seed=0,
                      baseline=baseline)


def _baseline_metrics(skip: tuple[str, int] | None = None) -> dict:
    corr: dict = {}
    for name in CORRUPTIONS:
        for sev in SEVERITIES:
            if (name, sev) != skip:
                corr.setdefault(name, {})[str(sev)] = {"accuracy": metric(1.0 - _base_error(name, sev), 100)}
    return {"clean": {"accuracy": metric(BASE_CLEAN_ACC, 100)}, "corruption": corr}


def _expected(errors: dict[tuple[str, int], float], base_clean_err: float, clean_err: float = 0.0):
    """Hand-computed CE and relative CE per corruption from the definitions."""
    ce, rel = {}, {}
    for name in CORRUPTIONS:
        sevs = [s for s in SEVERITIES if (name, s) in errors]
        if not sevs:
            continue
        model_err = [1.0 - _right(name, s) / N for s in sevs]
        base = [errors[(name, s)] for s in sevs]
        ce[name] = sum(model_err) / sum(base)
        rel[name] = sum(e - clean_err for e in model_err) / sum(b - base_clean_err for b in base)
    return ce, rel


def _check_split(m: dict, ce: dict, rel: dict, source: str) -> None:
    """mce / relative_mce over the 15, *_holdout over the 4, each leaf naming its own set."""
    for name, value in ce.items():
        assert m[name]["ce"]["value"] == pytest.approx(value, rel=1e-12)
    mce15 = np.mean([ce[c] for c in BENCHMARK])
    mce19 = np.mean([ce[c] for c in CORRUPTIONS])
    assert abs(mce15 - mce19) > 0.01  # the case tells the two means apart
    assert m["mce"]["value"] == pytest.approx(mce15, rel=1e-12)
    assert m["relative_mce"]["value"] == pytest.approx(np.mean([rel[c] for c in BENCHMARK]), rel=1e-12)
    assert m["mce"]["corruptions"] == sorted(BENCHMARK) and m["mce"]["baseline"] == source
    assert m["mce_holdout"]["value"] == pytest.approx(np.mean([ce[c] for c in HELD_OUT]), rel=1e-12)
    assert m["relative_mce_holdout"]["value"] == pytest.approx(np.mean([rel[c] for c in HELD_OUT]), rel=1e-12)
    assert m["mce_holdout"]["corruptions"] == sorted(HELD_OUT)
    for key in ("mce", "relative_mce", "mce_holdout", "relative_mce_holdout"):
        lo, hi = m[key]["ci"]
        assert lo <= m[key]["value"] <= hi and m[key]["direction"] == "lower" and m[key]["n"] == N


def _all_suite() -> CorruptionSuite:
    return CorruptionSuite({"preset": "all"})


def test_mce_with_a_baseline_document_averages_the_15_and_reports_the_4_apart(tmp_path):
    errors = {(n, s): _base_error(n, s) for n in CORRUPTIONS for s in SEVERITIES}
    ce, rel = _expected(errors, 1.0 - BASE_CLEAN_ACC)
    out = _all_suite().summarize(_ctx(tmp_path, baseline={"metrics": _baseline_metrics()}), _prediction_set())
    m = out.metrics
    _check_split(m, ce, rel, "--baseline")
    assert m["mce"]["complete"] is True and m["mce_holdout"]["complete"] is True
    info = out.report["mce"]
    assert info["benchmark"] == {"corruptions": sorted(BENCHMARK), "complete": True}
    assert info["held_out"] == {"corruptions": sorted(HELD_OUT), "complete": True} and info["unscored"] == []


def test_mce_with_a_baseline_results_file_and_a_model_clean_error(tmp_path):
    """The ``baseline_errors: <results.json>`` route, read from disk; the model's clean error is 1/4."""
    doc = {
        "schema_version": "1.0", "evalsuite_version": "test",
        "provenance": {"model_sha256": "0", "data_fingerprint": "f", "config_hash": "0", "packages": {}, "device": "cpu",
                       "seed": 0, "started_at": "", "finished_at": "", "seconds": 0.0, "suite_seconds": {}},
        "model": {"source": "m", "format": "onnx", "sha256": "0", "class_names": ["a", "b"]},
        "data": {"name": "t", "n": 100, "fingerprint": "f"},
        "config": {}, "conditions": {}, "metrics": _baseline_metrics(), "checks": [], "report": {},
    }
    path = write_results(doc, tmp_path / "base.json")
    errors = {(n, s): _base_error(n, s) for n in CORRUPTIONS for s in SEVERITIES}
    ce, rel = _expected(errors, 1.0 - BASE_CLEAN_ACC, clean_err=0.25)
    suite = CorruptionSuite({"preset": "all", "baseline_errors": str(path)})
    m = suite.summarize(_ctx(tmp_path), _prediction_set(clean_right=3)).metrics
    _check_split(m, ce, rel, str(path))


def test_complete_means_all_15_by_5_benchmark_cells_and_is_judged_per_set(tmp_path):
    """One missing benchmark cell makes mCE incomplete and leaves the held-out set complete, and back."""
    for skip, bench_complete, held_complete in ((("fog", 4), False, True), (("spatter", 2), True, False)):
        base = {"metrics": _baseline_metrics(skip=skip)}
        m = _all_suite().summarize(_ctx(tmp_path, baseline=base), _prediction_set()).metrics
        assert m["mce"]["complete"] is bench_complete and m["mce_holdout"]["complete"] is held_complete
        errors = {(n, s): _base_error(n, s) for n in CORRUPTIONS for s in SEVERITIES if (n, s) != skip}
        ce, _ = _expected(errors, 1.0 - BASE_CLEAN_ACC)
        assert m["mce"]["value"] == pytest.approx(np.mean([ce[c] for c in BENCHMARK]), rel=1e-12)
        assert m["mce_holdout"]["value"] == pytest.approx(np.mean([ce[c] for c in HELD_OUT]), rel=1e-12)


def test_mce_with_the_alexnet_table_has_no_held_out_figure(tmp_path):
    """AlexNet's published table covers the 15 only: held-out corruptions get no CE and no mean."""
    table = load_alexnet_errors()
    errors = {(n, s + 1): v for n, vals in table["errors"].items() for s, v in enumerate(vals)}
    ce, rel = _expected(errors, table["clean_error"])
    assert sorted(ce) == sorted(BENCHMARK)
    suite = CorruptionSuite({"preset": "all", "baseline_errors": "alexnet"})
    out = suite.summarize(_ctx(tmp_path, classes=1000), _prediction_set())
    m = out.metrics
    assert m["mce"]["value"] == pytest.approx(np.mean(list(ce.values())), rel=1e-12)
    assert m["relative_mce"]["value"] == pytest.approx(np.mean(list(rel.values())), rel=1e-12)
    assert m["mce"]["complete"] is True and m["mce"]["baseline"] == "alexnet"
    assert "mce_holdout" not in m and "relative_mce_holdout" not in m
    assert all("ce" not in m[c] for c in HELD_OUT)
    assert out.report["mce"]["held_out"] is None


def test_held_out_only_run_gives_only_the_held_out_figure(tmp_path):
    suite = CorruptionSuite({"corruptions": list(HELD_OUT)})
    items = {k: v for k, v in _prediction_set().items() if k == "clean" or v.params["name"] in HELD_OUT}
    m = suite.summarize(_ctx(tmp_path, baseline={"metrics": _baseline_metrics()}), PredictionSet(items)).metrics
    assert "mce" not in m and "relative_mce" not in m
    errors = {(n, s): _base_error(n, s) for n in CORRUPTIONS for s in SEVERITIES}
    ce, _ = _expected(errors, 1.0 - BASE_CLEAN_ACC)
    assert m["mce_holdout"]["value"] == pytest.approx(np.mean([ce[c] for c in HELD_OUT]), rel=1e-12)


def test_metric_specs_declare_each_mean_only_with_its_corruptions(tmp_path):
    run = _ctx(tmp_path, baseline={"metrics": _baseline_metrics()})

    def declared(options: dict) -> set[str]:
        suite = CorruptionSuite(options)
        return {s.pattern for s in suite.metric_specs(run, suite.conditions(run))}

    every = declared({"preset": "all"})
    assert {"corruption.mce", "corruption.relative_mce", "corruption.mce_holdout",
            "corruption.relative_mce_holdout"} <= every
    fast = declared({})
    assert "corruption.mce" in fast and "corruption.mce_holdout" not in fast
    held = declared({"corruptions": list(HELD_OUT)})
    assert "corruption.mce_holdout" in held and "corruption.mce" not in held
