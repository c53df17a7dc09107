"""The timing protocol: warm-up calls, then timed calls until enough samples and enough time.

One call is one ``fn(x)`` (``model.predict`` on a batch already in the form the runner hands
the model); its time is read with ``time.perf_counter_ns`` immediately around it, so the
samples hold the call and nothing of the loop. Warm-up calls (lazy allocation, kernel
selection, caches) are run and discarded. Timed calls continue until at least
``min_iterations`` samples *and* ``min_seconds`` of measured time are collected, or a cap is
hit (``max_iterations``, or ``max_seconds`` of wall time: a very slow model then reports fewer
samples, and interval ends that need more samples are absent rather than invented).

Summaries: latency quantiles (p50/p95/p99) with distribution-free order-statistic intervals
(:func:`evalsuite.stats.quantiles.quantile_ci`) and the mean with a bootstrap interval;
throughput ``batch / mean(call time)`` with the bootstrap interval of the mean call time
carried through that (monotone) map.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalsuite.stats import bootstrap_mean_ci, metric
from evalsuite.stats.quantiles import quantile_ci

QUANTILES = (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99))


@dataclass(frozen=True)
class TimingProtocol:
    """How many calls to discard and to time (see the module docstring)."""

    warmup: int = 10
    min_iterations: int = 400
    min_seconds: float = 2.0
    max_iterations: int = 100_000
    max_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.min_iterations < 1:
            raise ValueError(f"min_iterations must be >= 1, got {self.min_iterations}")
        if self.max_iterations < self.min_iterations:
            raise ValueError(f"max_iterations ({self.max_iterations}) must be >= min_iterations ({self.min_iterations})")
        if self.min_seconds < 0 or self.max_seconds <= 0:
            raise ValueError(f"min_seconds must be >= 0 and max_seconds > 0, got {self.min_seconds}, {self.max_seconds}")


@dataclass
class Timing:
    """What :func:`time_calls` measured: per-call times in ms, and the warm-up count."""

    samples_ms: np.ndarray
    warmup: int
    wall_seconds: float  # of the timed phase, loop included
    capped: bool  # stopped by max_iterations / max_seconds before the minimums were met

    @property
    def n(self) -> int:
        return int(self.samples_ms.size)


def time_calls(
    fn: Callable[[Any], Any],
    inputs: Sequence[Any],
    protocol: TimingProtocol,
    *,
    sync: Callable[[], None] | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> Timing:
    """Time ``fn`` over ``inputs`` (cycled) under ``protocol``; ``sync`` (e.g. a CUDA
    synchronise) runs inside every timed interval after the call, so asynchronous work counts.
    ``clock`` returns integer nanoseconds (``time.perf_counter_ns``; tests pass a fake one)."""
    if not inputs:
        raise ValueError("time_calls needs at least one input")
    k = len(inputs)
    for i in range(protocol.warmup):
        fn(inputs[i % k])
        if sync is not None:
            sync()
    min_ns = int(protocol.min_seconds * 1e9)
    max_ns = int(protocol.max_seconds * 1e9)
    samples: list[int] = []
    measured = 0
    i = 0
    start = clock()
    while True:
        x = inputs[i % k]
        t0 = clock()
        fn(x)
        if sync is not None:
            sync()
        t1 = clock()
        samples.append(t1 - t0)
        measured += t1 - t0
        i += 1
        done = i >= protocol.min_iterations and measured >= min_ns
        if done or i >= protocol.max_iterations or t1 - start >= max_ns:
            break
    wall = (clock() - start) / 1e9
    return Timing(np.asarray(samples, dtype=np.float64) / 1e6, protocol.warmup, wall, capped=not done)


def latency_metrics(timing: Timing, *, seed: int = 0, **extra: Any) -> dict[str, Any]:
    """``{p50_ms, p95_ms, p99_ms, mean_ms}`` metric leaves (lower is better) from one timing."""
    s = timing.samples_ms
    out: dict[str, Any] = {}
    for name, q in QUANTILES:
        out[name] = metric(float(np.quantile(s, q)), s.size, quantile_ci(s, q), "lower",
                           ci_method="order statistics (binomial)", **extra)
    out["mean_ms"] = metric(float(s.mean()), s.size, bootstrap_mean_ci(s, seed=seed), "lower", **extra)
    return out


def throughput_metric(timing: Timing, batch_size: int, *, seed: int = 0, **extra: Any) -> dict[str, Any]:
    """Images per second at ``batch_size``: ``batch_size / mean(call time)`` (higher is better),
    with the bootstrap interval of the mean call time mapped through it (ends swap)."""
    s = timing.samples_ms
    mean = float(s.mean())
    lo, hi = bootstrap_mean_ci(s, seed=seed)
    per_s = batch_size * 1000.0
    ci = (per_s / hi if hi > 0 else float("nan"), per_s / lo if lo > 0 else float("nan"))
    return metric(per_s / mean if mean > 0 else None, s.size, ci, "higher", batch_size=int(batch_size), **extra)
