"""The performance suite: latency, throughput, memory, size, parameters and MACs of the model.

It adds no condition. After the run's predictions it times the model object that served them
(same runtime, same onnxruntime session or torch module, same device) on real clean images of
the run, shaped and converted exactly as the runner hands them to ``predict``
(:func:`evalsuite.tensors.to_tensor` on the run's device):

- ``latency.batch<B>.p50_ms|p95_ms|p99_ms`` (order-statistic CIs) and ``mean_ms`` (bootstrap CI)
  for every ``latency_batch_sizes`` entry (default ``[1]``), per the timing protocol of
  :mod:`evalsuite.perf.latency` (warm-up, then at least ``iterations`` calls and
  ``min_seconds`` of measured time);
- ``throughput.images_per_s`` at the run's ``--batch-size`` (or ``throughput_batch_size``),
  at least ``throughput_iterations`` batches and ``min_seconds``;
- ``memory.peak_rss_mb`` (the process's peak resident memory after the measurement) and, when
  the model runs on CUDA, ``memory.gpu_peak_mb``;
- ``model.file_mb``, ``model.parameters`` and ``model.macs`` (one image; :mod:`evalsuite.perf.macs`).

Threads, execution providers, device and runtime version are recorded on the timing leaves
(``threads``) and in the report (``runtime``); every timed call's milliseconds are saved as the
artifact ``performance-samples.json``. ``--target-threads N`` (``RunContext.target_threads``)
measures with N threads (:mod:`evalsuite.perf.runtime`) without touching the predictions.
MB here is MiB (2**20 bytes).

Options (``suites: {performance: {...}}``, :class:`PerformanceOptions`): ``warmup`` (untimed
calls before each measurement, 10), ``iterations`` (minimum timed calls per latency batch size,
400), ``throughput_iterations`` (minimum timed batches, 30), ``min_seconds`` (minimum measured
time, 2.0) and ``max_seconds`` (a measurement stops after this much wall time, 60.0),
``latency_batch_sizes`` ([1]), ``throughput_batch_size`` (default: the run's ``--batch-size``),
``images`` (distinct clean images cycled through at batch 1, 16) and ``macs`` (count parameters
and MACs, true).

With ``run --reference`` the reference model is timed right after the candidate with the same
protocol and images: ``performance.reference.*`` holds its leaves and ``performance.speedup``
the ratios ``latency_p50_batch<B>`` (reference p50 / candidate p50) and ``throughput``
(candidate / reference), so above 1 means the candidate is faster.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.conditions import Condition
from evalsuite.errors import UsageError
from evalsuite.metric_specs import MetricSpec
from evalsuite.perf.latency import QUANTILES, TimingProtocol, latency_metrics, throughput_metric, time_calls
from evalsuite.perf.memory import MIB, GpuPeak, current_rss_bytes, is_cuda, peak_rss_bytes
from evalsuite.perf.runtime import describe_runtime, is_onnx, measurement_model, torch_threads
from evalsuite.predictions import PredictionSet
from evalsuite.stats import metric
from evalsuite.suites.base import RunContext, Suite, SuiteOutput
from evalsuite.tensors import to_tensor

log = logging.getLogger(__name__)

LATENCY_LEAVES = (*(name for name, _ in QUANTILES), "mean_ms")
MODEL_LEAVES = ("file_mb", "parameters", "macs")
SAMPLES_ARTIFACT = "performance-samples.json"


@dataclass
class PerformanceOptions:
    """``suites: {performance: {...}}``; the field types are the schema."""

    warmup: int = 10  # untimed calls before each measurement
    iterations: int = 400  # minimum timed calls per latency batch size (368 give a p99 its upper CI end)
    throughput_iterations: int = 30  # minimum timed batches for throughput
    min_seconds: float = 2.0  # minimum measured time of each measurement
    max_seconds: float = 60.0  # stop a measurement after this much wall time even below the minimums
    latency_batch_sizes: list[int] = field(default_factory=lambda: [1])
    throughput_batch_size: int | None = None  # default: the run's --batch-size
    images: int = 16  # distinct clean images cycled through at batch 1
    macs: bool = True  # count parameters and MACs (one forward pass at batch 1, not timed)

    def __post_init__(self) -> None:
        def bad(what: str) -> UsageError:
            return UsageError(f"suite 'performance': {what}")

        for name in ("iterations", "throughput_iterations", "images"):
            if getattr(self, name) < 1:
                raise bad(f"option {name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise bad(f"option warmup must be >= 0, got {self.warmup}")
        if self.min_seconds < 0:
            raise bad(f"option min_seconds must be >= 0, got {self.min_seconds}")
        if self.max_seconds <= 0 or self.max_seconds < self.min_seconds:
            raise bad(f"option max_seconds must be > 0 and >= min_seconds, got {self.max_seconds}")
        if not self.latency_batch_sizes or any(b < 1 for b in self.latency_batch_sizes):
            raise bad(f"option latency_batch_sizes must be a non-empty list of sizes >= 1, got {self.latency_batch_sizes}")
        if len(set(self.latency_batch_sizes)) != len(self.latency_batch_sizes):
            raise bad("option latency_batch_sizes lists a size twice")
        if self.throughput_batch_size is not None and self.throughput_batch_size < 1:
            raise bad(f"option throughput_batch_size must be >= 1, got {self.throughput_batch_size}")

    def protocol(self, iterations: int) -> TimingProtocol:
        return TimingProtocol(warmup=self.warmup, min_iterations=iterations, min_seconds=self.min_seconds,
                              max_iterations=max(iterations, 1_000_000), max_seconds=self.max_seconds)


class PerformanceSuite(Suite):
    """Latency, throughput, memory, size, parameters and MACs (options: :class:`PerformanceOptions`)."""

    name = "performance"
    Options = PerformanceOptions

    def metric_specs(self, run: RunContext, conditions: Sequence[Condition]) -> list[MetricSpec]:
        specs = self._model_specs(run.model, "performance")
        if getattr(run, "reference_model", None) is not None:  # run --reference: both models, and the ratios
            specs += self._model_specs(run.reference_model, "performance.reference")
            specs += [MetricSpec(f"performance.speedup.latency_p50_batch{b}", ci=False)
                      for b in self.opts.latency_batch_sizes]
            specs.append(MetricSpec("performance.speedup.throughput", ci=False))
        return specs

    def _model_specs(self, model: Any, prefix: str) -> list[MetricSpec]:
        specs = [MetricSpec(f"{prefix}.latency.batch{b}.{leaf}") for b in self.opts.latency_batch_sizes
                 for leaf in LATENCY_LEAVES]
        specs.append(MetricSpec(f"{prefix}.throughput.images_per_s"))
        specs.append(MetricSpec(f"{prefix}.memory.peak_rss_mb", ci=False))
        if str(getattr(model, "device", "cpu")).startswith("cuda"):
            specs.append(MetricSpec(f"{prefix}.memory.gpu_peak_mb", ci=False))
        specs += [MetricSpec(f"{prefix}.model.{leaf}", ci=False) for leaf in MODEL_LEAVES]
        return specs

    def throughput_batch(self, run: RunContext) -> int:
        return int(self.opts.throughput_batch_size or run.batch_size)

    def summarize(self, run: RunContext, preds: PredictionSet) -> SuiteOutput:
        positions = np.asarray(preds.clean.index, dtype=np.int64)
        if positions.size == 0:
            raise UsageError("suite 'performance': the run has no clean images to time the model on")
        tb = self.throughput_batch(run)
        sizes = list(self.opts.latency_batch_sizes)
        need = max([tb, self.opts.images, *sizes])
        images = run.image_source(positions[:need])
        images = images[np.resize(np.arange(len(images)), need)]  # fewer images than a batch: cycled
        t0 = time.perf_counter()
        metrics, samples, runtime, gpu_method, counted = self._measure(run.model, run, images, tb, sizes)
        report: dict[str, Any] = {}
        reference = getattr(run, "reference_model", None)
        if reference is not None:  # run --reference: the same protocol on the reference, right after
            ref_metrics, ref_samples, ref_runtime, _, _ = self._measure(reference, run, images, tb, sizes)
            metrics["reference"] = ref_metrics
            metrics["speedup"] = speedups(metrics, ref_metrics, sizes)
            samples.update({f"reference.{k}": v for k, v in ref_samples.items()})
            report["reference_runtime"] = ref_runtime
        measured_s = time.perf_counter() - t0
        current = current_rss_bytes()
        report.update({
            "runtime": runtime,
            "protocol": {k: v for k, v in asdict(self.opts).items() if k != "macs"},
            "throughput_batch_size": tb,
            "latency_batch_sizes": sizes,
            "seconds": round(measured_s, 3),
            "current_rss_mb": None if current is None else round(current / MIB, 1),
            "macs_by_op": counted.get("by_op", {}),
            "macs_method": counted.get("method", ""),
            "samples": run.save_artifact(SAMPLES_ARTIFACT, json.dumps(samples).encode()),
            "gpu_method": gpu_method,
        })
        log.info("performance: measured in %.1f s on %s (%s threads)", measured_s, runtime["device"], runtime["threads"])
        return SuiteOutput(metrics=metrics, report=report)

    def _measure(self, model: Any, run: RunContext, images: np.ndarray, tb: int,
                 sizes: list[int]) -> tuple[dict[str, Any], dict[str, list[float]], dict[str, Any], Any, dict[str, Any]]:
        """(metrics, per-call samples, runtime, GPU method, MAC breakdown) of one model on ``images``."""
        threads = getattr(run, "target_threads", None)
        device = run.device
        timed = measurement_model(model, threads)
        sync = _cuda_sync(str(getattr(model, "device", device)))
        samples: dict[str, list[float]] = {}
        metrics: dict[str, Any] = {"latency": {}, "throughput": {}, "memory": {}}
        with torch_threads(None if is_onnx(model) else threads):
            runtime = describe_runtime(timed, threads)
            extra = {"threads": runtime["threads"]}
            gpu = GpuPeak(str(getattr(model, "device", device)), torch_allocated=not is_onnx(model))
            with gpu:
                for b in sizes:
                    if b == 1:
                        inputs = [to_tensor(images[i : i + 1], device) for i in range(min(self.opts.images, len(images)))]
                    else:
                        inputs = [to_tensor(images[:b], device)]
                    timing = time_calls(timed.predict, inputs, self.opts.protocol(self.opts.iterations), sync=sync)
                    metrics["latency"][f"batch{b}"] = latency_metrics(timing, seed=run.seed, batch_size=b, **extra)
                    samples[f"latency.batch{b}"] = timing.samples_ms.round(6).tolist()
                    if timing.capped:
                        log.warning("performance: batch-%d latency stopped at %d calls after %.0f s (max_seconds)",
                                    b, timing.n, timing.wall_seconds)
                batch = [to_tensor(images[:tb], device)]
                timing = time_calls(timed.predict, batch, self.opts.protocol(self.opts.throughput_iterations), sync=sync)
                metrics["throughput"]["images_per_s"] = throughput_metric(timing, tb, seed=run.seed, **extra)
                samples[f"throughput.batch{tb}"] = timing.samples_ms.round(6).tolist()
        rss = peak_rss_bytes()
        metrics["memory"]["peak_rss_mb"] = metric(rss / MIB, 1, None, "lower", bytes=rss)
        if gpu.value_bytes is not None:
            metrics["memory"]["gpu_peak_mb"] = metric(gpu.value_bytes / MIB, 1, None, "lower", bytes=gpu.value_bytes,
                                                      method=gpu.method)
        metrics["model"], counted = model_metrics(model, self.opts.macs)
        return metrics, samples, runtime, gpu.method, counted


def speedups(candidate: dict[str, Any], reference: dict[str, Any], sizes: list[int]) -> dict[str, Any]:
    """Candidate over reference: ``latency_p50_batch<B>`` (reference p50 / candidate p50, > 1 means
    the candidate is faster) and ``throughput`` (candidate / reference images per second). Point
    ratios of two separate measurements on the same machine, hence no interval."""
    def ratio(num: Any, den: Any) -> dict[str, Any]:
        ok = num is not None and den is not None and den > 0
        return metric(float(num) / float(den) if ok else None, 1 if ok else 0, None, "higher")

    out = {f"latency_p50_batch{b}": ratio(reference["latency"][f"batch{b}"]["p50_ms"]["value"],
                                          candidate["latency"][f"batch{b}"]["p50_ms"]["value"]) for b in sizes}
    out["throughput"] = ratio(candidate["throughput"]["images_per_s"]["value"],
                              reference["throughput"]["images_per_s"]["value"])
    return out


def _cuda_sync(device: str) -> Any:
    if not is_cuda(device):
        return None
    import torch

    return lambda: torch.cuda.synchronize(device)


def model_file(model: Any) -> Path | None:
    """The file the model's weights were read from: the ONNX/TorchScript/.pt2 file, or a timm
    checkpoint (paths the user gave, never one named inside a model file)."""
    inner = getattr(model, "inner", model)
    candidates = [getattr(inner, "path", None), model.info.extra.get("checkpoint"), model.info.source]
    for c in candidates:
        if c and Path(str(c)).is_file():
            return Path(str(c))
    return None


def model_metrics(model: Any, count: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """``{file_mb, parameters, macs}`` leaves and how MACs were counted (``by_op``, ``method``)."""
    path = model_file(model)
    size = path.stat().st_size if path is not None else None
    out = {"file_mb": metric(None if size is None else size / MIB, 1 if size is not None else 0, None, "lower",
                             bytes=size, file=None if path is None else path.name)}
    if not count:
        out["parameters"] = metric(None, 0, None, "lower", reason="option macs is false")
        out["macs"] = metric(None, 0, None, "lower", reason="option macs is false")
        return out, {}
    from evalsuite.perf import macs as mc

    h, w = model.info.input_size
    k = int(model.info.extra.get("fixed_batch") or 1)  # a fixed-batch graph is counted at its batch, per image
    counted: dict[str, Any] = {}
    params: int | None = None
    value: int | None = None
    reason = ""
    try:
        if is_onnx(model):
            if path is None:
                raise mc.UncountableError("the ONNX model's file is not found")
            graph = mc.load_onnx_graph(path)
            params = mc.onnx_parameters(graph)
            total, by_op = mc.onnx_macs(graph, (k, 3, h, w))
            value, counted = total // k, {"by_op": {op: m // k for op, m in by_op.items()},
                                          "method": "ONNX shape inference over " + ", ".join(mc.COUNTED_ONNX_OPS)}
        else:
            module = model.torch_module()
            import torch

            dtypes = [p.dtype for p in module.parameters() if p.is_floating_point()]
            params = mc.torch_parameters(module)
            value = mc.torch_macs(module, (k, 3, h, w), device=str(model.device),
                                  dtype=dtypes[0] if dtypes else torch.float32) // k
            counted = {"method": "torch.utils.flop_counter.FlopCounterMode (FLOPs / 2)"}
    except mc.UncountableError as exc:
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001 - counting is best effort: a model it cannot trace has no count
        reason = f"{type(exc).__name__}: {str(exc)[:160]}"
    if reason:
        log.warning("performance: MACs not counted (%s)", reason)
    out["parameters"] = metric(params, 1 if params is not None else 0, None, "lower",
                               **({"reason": reason} if params is None and reason else {}))
    out["macs"] = metric(value, 1 if value is not None else 0, None, "lower", **({"reason": reason} if reason else {}))
    return out, counted
