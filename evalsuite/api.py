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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evalsuite.atomic_io import atomic_write_text
from evalsuite.config import RunConfig, config_hash, resolve_suites
from evalsuite.decision import BaselineRecord, Decision
from evalsuite.errors import UsageError
from evalsuite.gates import Gate, GateOutcome, Severity, evaluate, load_policy_record
from evalsuite.metric_specs import MetricSpec
from evalsuite.results import SCHEMA_VERSION, check_gate_paths, write_results
from evalsuite.stats import metric

if TYPE_CHECKING:
    from evalsuite.conditions import Condition
    from evalsuite.suites.base import RunContext, Suite

log = logging.getLogger(__name__)

TRACKED_PACKAGES = (
    "evalsuite", "torch", "torchvision", "numpy", "numba", "onnx", "onnxruntime", "onnxruntime-gpu", "timm",
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
    from evalsuite.suites.subset import apply_budget, takes_budget

    resolved = resolve_suites(config, SUITES.names())
    resolved.pop("clean", None)
    if getattr(config, "reference", None):  # run --reference: the paired comparison runs (docs/compare.md)
        resolved.setdefault("compare", {})
    elif "compare" in resolved:
        raise UsageError("suite 'compare' needs a reference model: add --reference MODEL (or use `evalsuite compare A B` "
                         "on two finished runs)")
    suites = [SUITES.get("clean")(load_clean_options(config))]
    budget = config.sample_budget()  # --perturbation-samples / --ci-half-width win over the suite file
    for name, opts in resolved.items():
        cls = SUITES.get(name)
        suites.append(cls(apply_budget(opts, budget) if takes_budget(cls) else opts))
    if budget and not any(takes_budget(type(s)) for s in suites):
        flag = "--ci-half-width" if "ci_half_width" in budget else "--perturbation-samples"
        raise UsageError(f"{flag} sets the sample subset of the corruption and device suites, and this run "
                         f"(--suite {config.suite}) runs neither")
    order = {"perturbation": 0, "analysis": 1}
    suites = [suites[0]] + sorted(suites[1:], key=lambda s: order.get(getattr(s, "stage", "perturbation"), 0))
    for suite in suites:  # a suite may default options to another suite's (slices' n_bins to calibration's)
        link = getattr(suite, "link_suites", None)
        if link is not None:
            link(suites)
    return suites, {s.name: dict(s.options) for s in suites}


def load_clean_options(config: RunConfig) -> dict[str, Any]:
    from evalsuite.suites import SUITES

    return resolve_suites(config, SUITES.names()).get("clean", {})


# Settings that cannot change a number (a resume under another batch size or pixel limit is the same run).
UNHASHED = frozenset({"batch_size", "max_image_pixels", "target_threads"})


@dataclass
class RunPlan:
    """Everything a run needs, checked before the first prediction (see :func:`plan_run`)."""

    config: RunConfig
    gates: list[Gate]
    baseline: dict[str, Any] | None
    policy_record: Any
    baseline_record: Any
    suites: list[Any]
    device: str
    model: Any
    dataset: Any
    labels: np.ndarray
    resolved: dict[str, Any]
    config_hash: str
    source: Any
    context: Any
    conditions: list[Any]
    specs: list[MetricSpec]
    reference: Any = None  # the reference model of run --reference
    reference_twins: dict[str, Any] = field(default_factory=dict)  # key -> condition built for the reference


def plan_run(config: RunConfig) -> RunPlan:
    """Validate every input of a run and build its conditions; nothing is written.

    Policy, baseline, suites and their options, model, data, labels, the output folder and the
    metric paths every gate names are all checked here, so a mistake costs a second and exit 2,
    never minutes of predictions followed by an error.
    """
    from evalsuite.compute import resolve_device
    from evalsuite.conditions import CleanCondition
    from evalsuite.data import open_dataset, resolve_labels, select
    from evalsuite.gates import check_baseline_matches, check_policy
    from evalsuite.models import load_model
    from evalsuite.run_folder import RunFolder
    from evalsuite.runner import ImageSource
    from evalsuite.suites.base import RunContext

    RunFolder(config.out_dir, resume=config.resume).check()
    policy_gates, policy_record = load_policy_record(config.policy)
    baseline, baseline_record = _read_baseline(config.baseline)
    suites, suite_options = build_suites(config)
    device = resolve_device(config.device)
    # The unresolved spec: under ``auto`` an ONNX model without onnxruntime's CUDA provider runs on
    # the CPU while perturbations still use the GPU; an explicit ``cuda`` without it is an error.
    model = load_model(config.model, device=config.device, checkpoint=config.checkpoint, overrides=config.model_overrides or None)
    check_batch_memory(config.batch_size, tuple(model.info.input_size))
    dataset = open_dataset(config.data, skip_bad_images=config.skip_bad_images,
                           max_image_pixels=config.max_image_pixels, follow_symlinks=config.follow_symlinks)
    dataset = select(dataset, limit=config.limit, sample=config.sample, seed=config.seed)
    labels = resolve_labels(dataset, list(model.info.class_names))
    from evalsuite.quantize.record import check_calibration_overlap

    # An INT8 model from `evalsuite quantize` is never measured on its own calibration samples.
    check_calibration_overlap(model, dataset, allow=config.allow_calibration_overlap)
    reference = load_reference(config, model) if config.reference else None
    resolved = {
        "model": config.model,
        "data": config.data,
        "suite": config.suite,
        "suites": suite_options,
        "policy": policy_record.source,
        "baseline": config.baseline,
        "seed": config.seed,
        "device": device,
        "batch_size": config.batch_size,
        "limit": config.limit,
        "sample": config.sample,
        "skip_bad_images": config.skip_bad_images,
        "max_image_pixels": config.max_image_pixels,
        "follow_symlinks": config.follow_symlinks,
        "checkpoint": config.checkpoint,
        "model_overrides": config.model_overrides,
        **({"reference": config.reference} if config.reference else {}),
        **({"target_threads": config.target_threads} if config.target_threads else {}),
    }
    source = ImageSource(dataset, model.info, batch_size=config.batch_size, workers=config.workers,
                         skip_bad=config.skip_bad_images, cache_limit_mb=config.cache_limit_mb)
    ctx = RunContext(model=model, dataset=dataset, labels=labels, out_dir=Path(config.out_dir), seed=config.seed,
                     device=device, batch_size=config.batch_size, baseline=baseline, progress=bool(config.progress),
                     image_source=source.get, target_threads=config.target_threads,
                     reference_model=reference)
    conditions = [CleanCondition()]
    owner: dict[str, str] = {"clean": "clean"}
    for suite in suites[1:]:
        for cond in suite.conditions(ctx):
            if cond.key in owner:
                raise UsageError(f"condition {cond.key!r} is produced by both {owner[cond.key]} and {suite.name}")
            owner[cond.key] = suite.name
            conditions.append(cond)
    check_gate_paths(c.key for c in conditions)
    twins = reference_twins(ctx, reference, suites, conditions) if reference is not None else {}
    specs = declared_metric_specs(ctx, suites, conditions)
    check_policy(policy_gates, specs, baseline)
    if baseline is not None:
        check_baseline_matches(baseline, fingerprint=dataset.fingerprint,
                               conditions={c.key: dict(c.params) for c in conditions},
                               allow_mismatch=config.allow_baseline_mismatch, origin=str(config.baseline))
    return RunPlan(config, policy_gates, baseline, policy_record, baseline_record, suites, device, model, dataset, labels, resolved,
                   config_hash({k: v for k, v in resolved.items() if k not in UNHASHED}), source, ctx, conditions, specs,
                   reference, twins)


def load_reference(config: RunConfig, model: Any) -> Any:
    """The reference model of ``run --reference`` (its own metadata; the run's ``--device``),
    checked against the candidate: the same class names in the same order and the same input
    size, since both predict the very same preprocessed tensors. One-line exit 2 otherwise."""
    from evalsuite.errors import ModelError
    from evalsuite.models import load_model

    ref = load_model(config.reference, device=config.device)
    a, b = list(model.info.class_names), list(ref.info.class_names)
    if a != b:
        first = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), None)
        what = f"{len(a)} classes vs {len(b)}" if first is None else f"class {first} is {a[first]!r} vs {b[first]!r}"
        raise ModelError(f"--reference {config.reference}: its class names differ from the candidate's ({what}); "
                         "a paired comparison needs the same classes in the same order")
    if tuple(model.info.input_size) != tuple(ref.info.input_size):
        raise ModelError(f"--reference {config.reference}: input size {tuple(ref.info.input_size)} differs from the "
                         f"candidate's {tuple(model.info.input_size)}; both must predict the same preprocessed images")
    if (ref.info.resize, getattr(ref.info, "interpolation", None)) != (model.info.resize, getattr(model.info, "interpolation", None)):
        log.warning("--reference %s declares other resize/interpolation than the candidate; it is scored on the "
                    "candidate's preprocessed images (the comparison is of the networks on identical pixels)",
                    config.reference)
    return ref


def reference_twins(ctx: RunContext, reference: Any, suites: list[Any], conditions: list[Condition]) -> dict[str, Any]:
    """For every condition that needs the model (attacks craft their pixels against it): the same
    condition built by its suite for the reference model, on the same samples and seed.

    The suite is asked again with the reference as the run's model, on a shallow copy, so the
    candidate's suite keeps its own state for its summary. Keys it does not produce again have
    no reference predictions (the comparison says so)."""
    import copy
    from dataclasses import replace

    wanted = {c.key for c in conditions if c.uses_model}
    if not wanted:
        return {}
    ref_ctx = replace(ctx, model=reference)
    twins: dict[str, Any] = {}
    for suite in suites[1:]:
        if not any(c.uses_model and c.suite == suite.name for c in conditions):
            continue
        for cond in copy.copy(suite).conditions(ref_ctx):
            if cond.key in wanted:
                twins[cond.key] = cond
    return twins


def check_batch_memory(batch_size: int, input_size: tuple[int, int]) -> None:
    """Refuse a batch whose float32 tensors alone could not fit in this machine's memory.

    A batch lives as uint8 NHWC, float32 NCHW and a few perturbed copies at once; eight float32
    copies is a conservative bound. An absurd ``--input-size`` or ``--batch-size`` is then a
    one-line exit 2, not a ``MemoryError`` minutes later.
    """
    h, w = input_size
    need = batch_size * h * w * 3 * 4 * 8
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > total:
        raise UsageError(
            f"a batch of {batch_size} images at {h}x{w} needs about {need / 2**30:.1f} GiB, more than this machine's "
            f"{total / 2**30:.1f} GiB; lower --batch-size or check --input-size/--resize"
        )


def run(config: RunConfig) -> RunOutcome:
    """Evaluate ``config.model`` on ``config.data`` with the configured suites; write all outputs.

    Every input is validated first (:func:`plan_run`); then every output is written into a
    staging folder under an exclusive lock on ``--out`` and moved into place whole at the end
    (:class:`evalsuite.run_folder.RunFolder`), so ``--out`` never holds a mix of two runs.
    """
    started = _now()
    t_start = time.perf_counter()
    plan = plan_run(config)
    return _write_run(plan, lambda staging: _evaluate(plan, staging, started, t_start))


def _write_run(plan: RunPlan, produce: Callable[[Path], dict[str, Any]]) -> RunOutcome:
    """Write a run folder whole: ``produce(staging)`` stores the predictions there and returns
    the results; config.json, results.json, gates.json and the reports follow, and the staging
    folder is swapped into ``--out`` only when all are written (:class:`RunFolder`)."""
    from evalsuite.report import write_reports
    from evalsuite.run_folder import RunFolder

    config = plan.config
    out_dir = Path(config.out_dir)
    with RunFolder(out_dir, resume=config.resume) as folder:
        staging = folder.staging
        plan.context.out_dir = staging
        try:
            atomic_write_text(staging / "config.json", json.dumps(plan.resolved, indent=2, default=str) + "\n")
            results = produce(staging)
            outcomes = evaluate(results, plan.gates, plan.baseline)
            decision = Decision(outcomes, plan.policy_record, plan.baseline_record, config.fail_on, _now())
            write_results(results, staging / "results.json")
            write_reports(results, decision, staging)
        except (OSError, MemoryError) as exc:
            raise _environment_error(exc) from None
        folder.commit()
    return RunOutcome(decision.exit_code, out_dir, results, outcomes)


def _environment_error(exc: OSError | MemoryError) -> Exception:
    """The one-line RunEnvironmentError (exit 2, predictions kept for --resume) for a full disk,
    an unwritable folder or too little memory during a run."""
    from evalsuite.errors import RunEnvironmentError
    from evalsuite.run_folder import describe_os_error

    what = "not enough memory" if isinstance(exc, MemoryError) else describe_os_error(exc, "write the run's outputs")
    return RunEnvironmentError(f"{what}; --resume continues from the predictions already computed once the cause is fixed")


def estimate_run(plan: RunPlan) -> tuple[list[Any], Any]:
    """Per-suite plan and probed rates of a validated run (:mod:`evalsuite.run_estimate`);
    the dataset is scanned (decoded once) first, which validation of every image needs anyway."""
    from evalsuite.run_estimate import build_plan, probe_rates
    from evalsuite.runner import condition_positions

    source = _scanned_source(plan)
    samples = {c.key: int(len(condition_positions(c, source))) for c in plan.conditions}
    plans = build_plan(plan.conditions, samples)
    probe = source.get(source.valid[: plan.config.batch_size * 3])
    rates = probe_rates(plan.model, probe, plan.config.batch_size, plan.device,
                        gradient=any(p.gradient_passes for p in plans))
    if plan.reference is not None:  # run --reference: the reference's predictions and attack twins too
        from evalsuite.run_estimate import add_reference_work

        reference_rates = probe_rates(plan.reference, probe, plan.config.batch_size, plan.device,
                                      gradient=bool(plan.reference_twins))
        add_reference_work(plans, plan.conditions, samples,
                           lambda c: c if not c.uses_model else plan.reference_twins.get(c.key), rates, reference_rates)
    return plans, rates


def dry_run(config: RunConfig) -> str:
    """The plan of a run (validated as ``run`` validates it, probed on this machine); nothing is written."""
    from evalsuite.run_estimate import format_plan

    plan = plan_run(config)
    plans, rates = estimate_run(plan)
    return format_plan(plans, rates, len(plan.source.valid), plan.device)


def _scanned_source(plan: RunPlan) -> Any:
    """The plan's image source after its one decoding pass (idempotent); no readable image is exit 2."""
    plan.source.scan()
    if len(plan.source.valid) == 0:
        raise UsageError("no image of the dataset could be read")
    return plan.source


def _scanned_identity(plan: RunPlan) -> dict[str, Any]:
    """Decode the data once (finding unreadable images), then the identity every prediction file
    of the run carries: model hash, data fingerprint, seed, preprocessing, readable samples."""
    source = _scanned_source(plan)
    return {
        "model_sha256": plan.model.info.sha256,
        "data_fingerprint": plan.dataset.fingerprint,
        "seed": plan.config.seed,
        "preprocessing": plan.model.info.to_dict(),
        "valid": int(len(source.valid)),
    }


def _evaluate(plan: RunPlan, staging: Path, started: str, t_start: float) -> dict[str, Any]:
    """Predictions for every condition (stored in ``staging``), then every suite's summary."""
    from evalsuite.predictions import PredictionStore
    from evalsuite.run_estimate import RunProgress, format_plan
    from evalsuite.run_estimate import log as plan_log
    from evalsuite.runner import run_conditions

    config, source = plan.config, plan.source
    identity = _scanned_identity(plan)
    store = PredictionStore(staging / "predictions", identity)
    reference = _reference_run(plan, staging, identity)
    plans, rates = estimate_run(plan)
    plan_log.info("%s", format_plan(plans, rates, len(source.valid), plan.device))
    with RunProgress(plans, rates) as reporter:
        runs = run_conditions(plan.conditions, source=source, model=plan.model, labels=plan.labels,
                              ids=plan.dataset.ids, seed=config.seed, device=plan.device,
                              batch_size=config.batch_size, store=store, resume=config.resume,
                              run_context=plan.context, reporter=reporter, reference=reference)
    return _summarise(plan, runs, started, round(time.perf_counter() - t_start, 3))


def _reference_run(plan: RunPlan, staging: Path, identity: dict[str, Any]) -> Any:
    """The runner's :class:`~evalsuite.runner.ReferenceRun` of ``run --reference`` (None without
    one): its predictions go to ``predictions/reference/``, their identity names its model."""
    if plan.reference is None:
        return None
    from dataclasses import replace

    from evalsuite.predictions import REFERENCE_FOLDER, PredictionStore
    from evalsuite.runner import ReferenceRun

    ref_identity = {**identity, "model_sha256": plan.reference.info.sha256,
                    "preprocessing": plan.reference.info.to_dict(), "role": "reference"}
    return ReferenceRun(plan.reference, PredictionStore(staging / "predictions" / REFERENCE_FOLDER, ref_identity),
                        replace(plan.context, model=plan.reference), plan.reference_twins)


def _summarise(plan: RunPlan, runs: dict[str, Any], started: str, seconds: float,
               extra_provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The results document from every condition's predictions (``runs``: key -> ConditionRun):
    each suite's summary, the sanity block and provenance. ``seconds`` is the run's wall time
    (summaries included, added here); ``extra_provenance`` adds keys (a sharded run's record)."""
    from evalsuite.predictions import PredictionSet

    t0_summary = time.perf_counter()
    model, dataset, source = plan.model, plan.dataset, plan.source
    refs = {k: r.reference for k, r in runs.items() if getattr(r, "reference", None) is not None}
    preds = PredictionSet({k: r.predictions for k, r in runs.items()},
                          reference=PredictionSet(refs) if plan.reference is not None else None)
    suite_seconds: dict[str, float] = {}
    for cond in plan.conditions:
        suite_seconds[cond.suite] = suite_seconds.get(cond.suite, 0.0) + runs[cond.key].seconds
    metrics: dict[str, Any] = {}
    checks: list[Gate] = []
    report: dict[str, Any] = {}
    for suite in plan.suites:
        t0 = time.perf_counter()
        output = suite.summarize(plan.context, preds)
        suite_seconds[suite.name] = suite_seconds.get(suite.name, 0.0) + (time.perf_counter() - t0)
        metrics[suite.name] = output.metrics
        report[suite.name] = output.report
        checks.extend(output.checks)
    metrics["sanity"], sanity_checks = sanity_metrics(preds, len(dataset), len(source.bad))
    provenance = {
        "model_sha256": model.info.sha256,
        "data_fingerprint": dataset.fingerprint,
        "config_hash": plan.config_hash,
        "packages": package_versions(),
        "device": _device_description(plan.device) + _model_device_note(plan.device, model),
        "host": {"hostname": platform.node() or "localhost", "platform": platform.platform(),
                 "python": platform.python_version(), "cpus": os.cpu_count()},
        "seed": plan.config.seed,
        "started_at": started,
        "finished_at": _now(),
        "seconds": round(seconds + time.perf_counter() - t0_summary, 3),
        "suite_seconds": {k: round(v, 3) for k, v in suite_seconds.items()},
        "resumed_conditions": [k for k, r in runs.items() if r.resumed],
        "target_threads": plan.config.target_threads,
        **({"reference": reference_record(plan.reference.info)} if plan.reference is not None else {}),
        **(extra_provenance or {}),
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "evalsuite_version": package_versions().get("evalsuite") or "unknown",
        "provenance": provenance,
        "model": model.info.to_dict(),
        "data": {
            "name": dataset.name,
            "n": int(len(source.valid)),
            "n_total": int(len(dataset)),
            "fingerprint": dataset.fingerprint,
            "skipped_bad_images": [str(dataset.ids[i]) for i in source.bad],
            "columns": sorted(dataset.columns),
            "class_counts": np.bincount(plan.labels[source.valid], minlength=model.info.num_classes).tolist(),
        },
        "config": plan.resolved,
        "conditions": {
            k: {"suite": r.predictions.suite, "params": r.predictions.params, "n": len(r.predictions),
                "seconds": round(r.seconds, 3)}
            for k, r in runs.items()
        },
        "metrics": metrics,
        "checks": [_builtin_record(g, plan.specs) for g in sanity_checks + checks],
        "report": report,
    }


def reference_record(info: Any) -> dict[str, Any]:
    """The reference model's identity in provenance (``run --reference``, ``evalsuite compare``)."""
    d = info.to_dict() if hasattr(info, "to_dict") else dict(info)
    return {"source": str(d.get("source", "")), "format": str(d.get("format", "")), "sha256": str(d.get("sha256", ""))}


def _builtin_record(gate: Gate, specs: list[MetricSpec]) -> dict[str, Any]:
    """A suite's built-in check as stored in results.json, after checking it names a metric the
    suite declared (a check on an undeclared path is a bug in the suite: exit 3, not a verdict)."""
    from evalsuite.errors import PolicyError
    from evalsuite.gates import check_policy

    try:
        check_policy([gate], specs, None)
    except PolicyError as exc:
        raise RuntimeError(f"built-in check {gate.name!r} does not match the metrics its suite declared: {exc}") from exc
    return gate.to_record()


def declared_metric_specs(ctx: RunContext, suites: list[Suite], conditions: list[Condition]) -> list[MetricSpec]:
    """Every gate path this run can produce: each suite's declaration plus the run's sanity block."""
    specs = [MetricSpec("sanity.nonfinite_logits", ci=False), MetricSpec("sanity.skipped_bad_images", ci=False)]
    for suite in suites:
        specs += suite.metric_specs(ctx, conditions)
    return specs


def sanity_metrics(preds: Any, n_total: int, n_bad: int) -> tuple[dict[str, Any], list[Gate]]:
    """Non-finite logits across every condition and unreadable images, with built-in gates."""
    rows = sum(len(p) for p in preds.values())
    nonfinite = sum(int((~p.finite).sum()) for p in preds.values())
    by_condition = {k: int((~p.finite).sum()) for k, p in preds.items() if (~p.finite).any()}
    metrics = {
        "nonfinite_logits": metric(nonfinite, rows, None, "lower", by_condition=by_condition),
        "skipped_bad_images": metric(n_bad, n_total, None, "lower"),
    }
    checks = [
        Gate.check(
            "sanity: finite logits", "sanity.nonfinite_logits", max=0, severity=Severity.FAIL,
            description="The model emitted NaN or infinite logits; its outputs cannot be trusted.",
        )
    ]
    return metrics, checks


def regate(
    results_path: str | Path, policy: str | None, baseline: str | None, *, allow_mismatch: bool = False,
    fail_on: str = "fail",
) -> tuple[dict[str, Any], Decision]:
    """Evaluate a policy against stored results (no model is run); the decision records both inputs."""
    import hashlib

    from evalsuite.gates import check_baseline_matches
    from evalsuite.results import read_results_document

    results, raw, _ = read_results_document(results_path)
    gates, policy_record = load_policy_record(policy)
    base, baseline_record = _read_baseline(baseline)
    if base is not None:
        conditions = {k: (v or {}).get("params", {}) for k, v in results.get("conditions", {}).items()}
        fingerprint = str(results.get("provenance", {}).get("data_fingerprint", ""))
        check_baseline_matches(base, fingerprint=fingerprint, conditions=conditions, allow_mismatch=allow_mismatch,
                               origin=str(baseline))
    outcomes = evaluate(results, gates, base)
    return results, Decision(outcomes, policy_record, baseline_record, fail_on, _now(), hashlib.sha256(raw).hexdigest())


def _read_baseline(path: str | None) -> tuple[dict[str, Any] | None, BaselineRecord | None]:
    """A baseline results.json and the record of exactly what was read (None, None without one)."""
    if not path:
        return None, None
    from evalsuite.results import read_results_document

    data, raw, where = read_results_document(path)
    return data, BaselineRecord.of(where, raw, data)


# ------------------------------------------------------------------------------ sharded runs
@dataclass
class ShardOutcome:
    """What one shard of a sharded run wrote (:func:`run_shard`)."""

    shard: Any  # evalsuite.shards.ShardSpec
    units_dir: Path
    units: int
    finished: list[int]

    @property
    def complete(self) -> bool:
        """Every shard of the run has finished: ``evalsuite merge`` can run."""
        return len(self.finished) == self.shard.count


# RunConfig fields a shard does not pass on to the merge (where it writes, whether it resumed).
_NOT_MERGED = ("out_dir", "resume", "progress")


def run_shard(config: RunConfig, shard: Any) -> ShardOutcome:
    """Evaluate only shard ``shard`` (a :class:`evalsuite.shards.ShardSpec`) of every condition.

    Validation is :func:`plan_run`'s; the unit files go to the units folder beside ``--out``
    (:class:`evalsuite.shards.UnitFolder`) under this shard's own lock, never into ``--out``,
    which :func:`merge` writes once every shard has finished. With ``--resume`` the shard's
    finished units are reused.
    """
    return _run_shard(config, shard)[0]


def _run_shard(config: RunConfig, shard: Any) -> tuple[ShardOutcome, RunPlan]:
    """:func:`run_shard`, also returning the plan (rank 0 under torchrun merges with it)."""
    from evalsuite.predictions import PredictionStore
    from evalsuite.runner import run_conditions
    from evalsuite.shards import UnitFolder, unit_positions

    started, t_start = _now(), time.time()
    if config.reference:
        raise UsageError("--reference is not supported with --shard or torchrun yet: run the paired comparison in one "
                         "process, or shard two runs and compare them with `evalsuite compare`")
    plan = plan_run(config)
    units = UnitFolder(config.out_dir)
    with units.hold(shard):
        try:
            identity = {**_scanned_identity(plan), "config_hash": plan.config_hash}
            config_doc = {k: v for k, v in asdict(config).items() if k not in _NOT_MERGED}
            units.claim({"shards": shard.count, "identity": identity, "batch_size": config.batch_size, "config": config_doc})
            units.clear_record(shard)
            store = PredictionStore(units.predictions, identity, part=shard.part)
            log.info("shard %s: units into %s", shard, units.root)
            runs = run_conditions(plan.conditions, source=plan.source, model=plan.model, labels=plan.labels,
                                  ids=plan.dataset.ids, seed=config.seed, device=plan.device,
                                  batch_size=config.batch_size, store=store, resume=config.resume,
                                  run_context=plan.context,
                                  select=lambda c, pos: unit_positions(c, pos, shard, config.batch_size))
            units.write_record(shard, {
                "shard": str(shard), "identity": identity, "host": platform.node() or "localhost",
                "device": _device_description(plan.device), "started_at": started, "finished_at": _now(),
                "started": t_start, "seconds": round(time.time() - t_start, 3),
                "units": {k: {"n": len(r.predictions), "seconds": round(r.seconds, 3), "resumed": r.resumed}
                          for k, r in runs.items()},
            })
        except (OSError, MemoryError) as exc:
            raise _environment_error(exc) from None
    return ShardOutcome(shard, units.root, len(runs), units.finished(shard.count)), plan


def run_distributed(config: RunConfig, info: Any) -> RunOutcome | ShardOutcome:
    """One rank of ``torchrun ... -m evalsuite run``: shard ``RANK`` of ``WORLD_SIZE``, then the
    barrier; rank 0 merges and writes the run folder once (:func:`merge_plan`), the other ranks
    return their shard. A rank that fails makes every rank stop with exit 2 (its own error, or
    one line saying which ranks failed); rerunning with ``--resume`` completes the missing units.
    """
    from evalsuite import distributed
    from evalsuite.errors import RunEnvironmentError
    from evalsuite.shards import ShardSpec, UnitFolder

    shard = ShardSpec(info.rank, info.world_size)
    with distributed.process_group(info) as dist:
        try:
            outcome, plan = _run_shard(config, shard)
        except BaseException:
            distributed.failed_ranks(dist, True)
            raise
        failed = distributed.failed_ranks(dist, False)
        if failed:
            raise RunEnvironmentError(f"{failed} of {info.world_size} rank(s) failed; the finished units are kept: "
                                      "rerun the same command with --resume to complete only the missing ones")
        if info.rank != 0:
            return outcome
        units = UnitFolder(config.out_dir)
        return merge_plan(plan, units, units.read_manifest())


def merge(out: str | Path, *, fail_on: str | None = None) -> RunOutcome:
    """Join the units of every shard of ``out`` and write the run folder once, as :func:`run` does.

    The configuration is the one the shards recorded; it is validated again (:func:`plan_run`),
    its identity (model sha256, data fingerprint, seed, preprocessing, config hash) must equal
    the shards', and every unit must be present and carry that identity, all before ``out`` is
    touched. The units folder is removed once ``out`` is in place.
    """
    from evalsuite.shards import UnitFolder

    units = UnitFolder(out)
    manifest = units.read_manifest()
    overrides = {"out_dir": str(out), "resume": False, **({"fail_on": fail_on} if fail_on else {})}
    try:
        config = RunConfig(**{**manifest["config"], **overrides})
    except TypeError as exc:
        raise UsageError(f"{units.manifest_path} does not hold a run configuration ({exc})") from None
    return merge_plan(plan_run(config), units, manifest)


def merge_plan(plan: RunPlan, units: Any, manifest: dict[str, Any]) -> RunOutcome:
    """:func:`merge` for a run already planned in this process (rank 0 under torchrun reuses the
    plan of its own shard, so its suites' state is the one a single process would have)."""
    from evalsuite.models.outputs import check_output_kind, declared_kind
    from evalsuite.predictions import PredictionStore
    from evalsuite.shards import json_roundtrip

    out = plan.config.out_dir
    identity = _scanned_identity(plan)
    if json_roundtrip({**identity, "config_hash": plan.config_hash}) != manifest["identity"]:
        raise UsageError(f"the model, data or configuration of {out} changed since its shards ran (the run identity "
                         f"differs from {units.manifest_path}); merge from the shards' working directory or rerun them")
    records = units.read_records(manifest)
    seconds: dict[str, float] = {}
    for rec in records:
        for key, unit in rec.get("units", {}).items():
            seconds[key] = seconds.get(key, 0.0) + float(unit.get("seconds", 0.0))
    runs = units.assemble(plan.conditions, plan.source, manifest, labels=plan.labels, ids=plan.dataset.ids,
                          n_classes=plan.model.info.num_classes, seconds=seconds)
    for key, r in runs.items():  # resumed: every unit of it was reused
        r.resumed = all(rec["units"][key]["resumed"] for rec in records if key in rec.get("units", {}))
    check_output_kind(runs["clean"].predictions.logits, declared_kind(plan.model), plan.model.info.source)
    first = min(records, key=lambda rec: float(rec.get("started", 0.0)))
    shards_record = {"count": int(manifest["shards"]), "records": [
        {k: rec.get(k) for k in ("shard", "host", "device", "started_at", "finished_at", "seconds")}
        | {"units": len(rec.get("units", {}))} for rec in records]}

    def produce(staging: Path) -> dict[str, Any]:
        store = PredictionStore(staging / "predictions", identity)
        for r in runs.values():
            store.save(r.predictions)
        return _summarise(plan, runs, str(first.get("started_at")), time.time() - float(first.get("started", time.time())),
                          {"shards": shards_record})

    outcome = _write_run(plan, produce)
    units.remove()
    return outcome
