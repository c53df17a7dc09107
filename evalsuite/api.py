"""The Python API behind ``evalsuite run``: one call from a RunConfig to written results.

Order matters for the "never a half-written output" rule: everything that can be wrong with
the user's input (policy, suites and their options, model, data, labels) is checked before the
output folder is touched; every file is then written atomically.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.config import RunConfig, config_hash, resolve_suites
from evalsuite.errors import UsageError
from evalsuite.gates import Gate, GateOutcome, evaluate, exit_code, load_policy
from evalsuite.results import SCHEMA_VERSION, atomic_write_text, load_results, write_results
from evalsuite.stats import metric

log = logging.getLogger(__name__)

TRACKED_PACKAGES = (
    "evalsuite", "torch", "torchvision", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "timm",
    "imagecorruptions-imaug", "imagecorruptions", "torchattacks", "netcal", "fairlearn",
    "scikit-learn", "scikit-image", "pillow", "onnx2torch", "onnxscript",
)


@dataclass
class RunOutcome:
    """What a finished run produced."""

    exit_code: int
    out_dir: Path
    results: dict[str, Any]
    outcomes: list[GateOutcome] = field(default_factory=list)

    @property
    def results_path(self) -> Path:
        return self.out_dir / "results.json"

    @property
    def scorecard_path(self) -> Path:
        return self.out_dir / "scorecard.html"


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _device_description(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        idx = torch.device(device).index or 0
        return f"{device} ({torch.cuda.get_device_name(idx)})"
    return f"cpu ({os.cpu_count()} cores)"


def _model_device_note(device: str, model: Any) -> str:
    """``"; model on cpu"`` when the model runs elsewhere than the perturbations (ONNX without CUDA provider)."""
    where = str(getattr(model, "device", device) or device)
    return "" if where.split(":")[0] == device.split(":")[0] else f"; model on {where}"


def build_suites(config: RunConfig) -> tuple[list[Any], dict[str, dict[str, Any]]]:
    """Instantiate the configured suites (validating their options); clean always runs first."""
    from evalsuite.suites import SUITES

    resolved = resolve_suites(config)
    resolved.pop("clean", None)
    suites = [SUITES.get("clean")(load_clean_options(config))]
    for name, opts in resolved.items():
        suites.append(SUITES.get(name)(opts))
    order = {"perturbation": 0, "analysis": 1}
    suites = [suites[0]] + sorted(suites[1:], key=lambda s: order.get(getattr(s, "stage", "perturbation"), 0))
    return suites, {s.name: dict(s.options) for s in suites}


def load_clean_options(config: RunConfig) -> dict[str, Any]:
    return resolve_suites(config).get("clean", {})


def _ensure_out_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path} exists and is not a folder")


def run(config: RunConfig) -> RunOutcome:
    """Evaluate ``config.model`` on ``config.data`` with the configured suites; write all outputs."""
    from evalsuite.conditions import CleanCondition
    from evalsuite.data import open_dataset, resolve_labels, select
    from evalsuite.models import load_model
    from evalsuite.models.device import resolve_device
    from evalsuite.predictions import PredictionStore
    from evalsuite.report import write_reports
    from evalsuite.runner import ImageSource, run_conditions
    from evalsuite.suites.base import PredictionSet, RunContext

    started = _now()
    t_start = time.perf_counter()
    out_dir = Path(config.out_dir)
    _ensure_out_dir(out_dir)

    # 1. Validate everything the user gave before touching the output folder.
    policy_gates, policy_origin = load_policy(config.policy)
    baseline = load_results(config.baseline) if config.baseline else None
    suites, suite_options = build_suites(config)
    device = resolve_device(config.device)
    # The unresolved spec: under ``auto`` an ONNX model without onnxruntime's CUDA provider runs on
    # the CPU while perturbations still use the GPU; an explicit ``cuda`` without it is an error.
    model = load_model(config.model, device=config.device, checkpoint=config.checkpoint, overrides=config.model_overrides or None)
    dataset = open_dataset(config.data, skip_bad_images=config.skip_bad_images)
    dataset = select(dataset, limit=config.limit, sample=config.sample, seed=config.seed)
    labels = resolve_labels(dataset, list(model.info.class_names))

    resolved = {
        "model": config.model,
        "data": config.data,
        "suite": config.suite,
        "suites": suite_options,
        "policy": policy_origin,
        "baseline": config.baseline,
        "seed": config.seed,
        "device": device,
        "batch_size": config.batch_size,
        "limit": config.limit,
        "sample": config.sample,
        "skip_bad_images": config.skip_bad_images,
        "checkpoint": config.checkpoint,
        "model_overrides": config.model_overrides,
    }
    chash = config_hash({k: v for k, v in resolved.items() if k not in ("batch_size",)})

    source = ImageSource(
        dataset,
        model.info,
        batch_size=config.batch_size,
        workers=config.workers,
        skip_bad=config.skip_bad_images,
        cache_limit_mb=config.cache_limit_mb,
    )
    ctx = RunContext(
        model=model,
        dataset=dataset,
        labels=labels,
        out_dir=out_dir,
        seed=config.seed,
        device=device,
        batch_size=config.batch_size,
        baseline=baseline,
        progress=bool(config.progress),
        image_source=source.get,
        suites=suites,
    )
    conditions = [CleanCondition()]
    owner: dict[str, str] = {"clean": "clean"}
    for suite in suites[1:]:
        for cond in suite.conditions(ctx):
            if cond.key in owner:
                raise UsageError(f"condition {cond.key!r} is produced by both {owner[cond.key]} and {suite.name}")
            owner[cond.key] = suite.name
            conditions.append(cond)

    # 2. Compute predictions (each condition saved as it completes: the resume unit).
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.json", json.dumps(resolved, indent=2, default=str) + "\n")
    source.scan()
    if len(source.valid) == 0:
        raise UsageError("no image of the dataset could be read")
    run_identity = {
        "model_sha256": model.info.sha256,
        "data_fingerprint": dataset.fingerprint,
        "seed": config.seed,
        "preprocessing": model.info.to_dict(),
        "valid": int(len(source.valid)),
    }
    store = PredictionStore(out_dir / "predictions", run_identity)
    runs = run_conditions(
        conditions,
        source=source,
        model=model,
        labels=labels,
        ids=dataset.ids,
        seed=config.seed,
        device=device,
        batch_size=config.batch_size,
        store=store,
        resume=config.resume,
        run_context=ctx,
    )
    preds = PredictionSet({k: r.predictions for k, r in runs.items()})
    suite_seconds: dict[str, float] = {}
    for cond in conditions:
        suite_seconds[cond.suite] = suite_seconds.get(cond.suite, 0.0) + runs[cond.key].seconds

    # 3. Summaries from stored predictions.
    metrics: dict[str, Any] = {}
    checks: list[dict[str, Any]] = []
    report: dict[str, Any] = {}
    for suite in suites:
        t0 = time.perf_counter()
        output = suite.summarize(ctx, preds)
        suite_seconds[suite.name] = suite_seconds.get(suite.name, 0.0) + (time.perf_counter() - t0)
        metrics[suite.name] = output.metrics
        report[suite.name] = output.report
        checks.extend(output.checks)
    metrics["sanity"], sanity_checks = sanity_metrics(preds, len(dataset), len(source.bad))
    checks = sanity_checks + checks

    results = {
        "schema_version": SCHEMA_VERSION,
        "evalsuite_version": package_versions().get("evalsuite") or "unknown",
        "provenance": {
            "model_sha256": model.info.sha256,
            "data_fingerprint": dataset.fingerprint,
            "config_hash": chash,
            "packages": package_versions(),
            "device": _device_description(device) + _model_device_note(device, model),
            "host": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
            "seed": config.seed,
            "started_at": started,
            "finished_at": _now(),
            "seconds": round(time.perf_counter() - t_start, 3),
            "suite_seconds": {k: round(v, 3) for k, v in suite_seconds.items()},
            "resumed_conditions": [k for k, r in runs.items() if r.resumed],
        },
        "model": model.info.to_dict(),
        "data": {
            "name": dataset.name,
            "n": int(len(source.valid)),
            "n_total": int(len(dataset)),
            "fingerprint": dataset.fingerprint,
            "skipped_bad_images": [str(dataset.ids[i]) for i in source.bad],
            "columns": sorted(dataset.columns),
            "class_counts": np.bincount(labels[source.valid], minlength=model.info.num_classes).tolist(),
        },
        "config": resolved,
        "conditions": {
            k: {"suite": r.predictions.suite, "params": r.predictions.params, "n": len(r.predictions),
                "seconds": round(r.seconds, 3)}
            for k, r in runs.items()
        },
        "metrics": metrics,
        "checks": checks,
        "report": report,
    }

    # 4. Results, gates and reports, each written atomically.
    outcomes = evaluate(results, policy_gates, baseline)  # unknown metric paths fail before any write
    write_results(results, out_dir / "results.json")
    atomic_write_text(out_dir / "gates.json", json.dumps([o.to_dict() for o in outcomes], indent=2) + "\n")
    write_reports(results, outcomes, out_dir)
    return RunOutcome(exit_code(outcomes), out_dir, results, outcomes)


def sanity_metrics(preds: Any, n_total: int, n_bad: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Non-finite logits across every condition and unreadable images, with built-in gates."""
    rows = sum(len(p) for p in preds.values())
    nonfinite = sum(int((~p.finite).sum()) for p in preds.values())
    by_condition = {k: int((~p.finite).sum()) for k, p in preds.items() if (~p.finite).any()}
    metrics = {
        "nonfinite_logits": metric(nonfinite, rows, None, "lower", by_condition=by_condition),
        "skipped_bad_images": metric(n_bad, n_total, None, "lower"),
    }
    checks = [
        {
            "name": "sanity: finite logits",
            "metric": "sanity.nonfinite_logits",
            "max": 0,
            "severity": "fail",
            "bound": "point",
            "description": "The model emitted NaN or infinite logits; its outputs cannot be trusted.",
        }
    ]
    return metrics, checks


def regate(results_path: str | Path, policy: str | None, baseline: str | None) -> tuple[dict[str, Any], list[GateOutcome]]:
    """Evaluate a policy against stored results (no model is run)."""
    results = load_results(results_path)
    gates: list[Gate]
    gates, _ = load_policy(policy)
    base = load_results(baseline) if baseline else None
    return results, evaluate(results, gates, base)
