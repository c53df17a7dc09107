"""The run plan a person sees before long work, and where a running evaluation is.

Before the first prediction the plan lists suites, conditions and samples with an estimated
time from a short measured probe on this machine (a few batches of clean inference and, when
an attack runs, one forward+backward step), so a 20-minute run says so before it starts
(``evalsuite run --dry-run`` prints it and exits). Each condition reports its cost as forward
and gradient sample-passes (:meth:`evalsuite.conditions.Condition.cost`); perturbation time is
not probed, so while the run goes the estimate is replaced by the measured rate of each suite.
Each suite's line gives the samples per condition (a suite measured on a subset, such as the
standard preset's corruption and device suites, shows ``n of N``), and the first line the run's
model work as a multiple of one clean pass (:func:`clean_pass_multiple`): what the standard
tier's budget bounds.
:class:`RunProgress` logs a line when a suite starts and at least every ``interval`` seconds
(a heartbeat thread, so a long attack condition still shows in a CI log).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger("evalsuite.plan")

#: Batches timed by the probe after one warm-up batch.
PROBE_BATCHES = 2
HEARTBEAT_SECONDS = 30.0


@dataclass(frozen=True)
class Rates:
    """Measured seconds per image: one forward pass, and one forward+backward (None: not probed)."""

    forward_s: float
    gradient_s: float | None


@dataclass
class SuitePlan:
    """One suite's share of the run."""

    suite: str
    conditions: int = 0
    samples: int = 0
    forward_passes: float = 0.0
    gradient_passes: float = 0.0
    sizes: list[int] = field(default_factory=list)  # samples of each condition, in order

    def seconds(self, rates: Rates) -> float:
        grad = rates.gradient_s if rates.gradient_s is not None else 3.0 * rates.forward_s
        return self.forward_passes * rates.forward_s + self.gradient_passes * grad

    def per_condition(self, n_images: int) -> str:
        """``1797``, ``500 of 1797`` (every condition on a subset) or ``128-500 of 1797``."""
        if not self.sizes:
            return "0"
        lo, hi = min(self.sizes), max(self.sizes)
        size = str(lo) if lo == hi else f"{lo}-{hi}"
        return size if lo == hi == n_images else f"{size} of {n_images}"


def _time(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def probe_rates(model: Any, images: np.ndarray, batch_size: int, device: str, *, gradient: bool) -> Rates:
    """Time ``model.predict`` on up to :data:`PROBE_BATCHES` batches of ``images`` (uint8 NHWC)
    after a warm-up batch, and (``gradient``) one forward+backward through the torch module."""
    from evalsuite.tensors import to_tensor

    b = max(1, min(batch_size, len(images)))
    batches = [images[i : i + b] for i in range(0, min(len(images), b * (PROBE_BATCHES + 1)), b)]
    tensors = [to_tensor(x, device) for x in batches]
    model.predict(tensors[0])  # warm-up: session creation, kernel selection, caches
    timed = tensors[1:] or tensors
    seconds = sum(_time(lambda x=x: model.predict(x)) for x in timed)
    forward = seconds / max(1, sum(int(x.shape[0]) for x in timed))
    grad = _probe_gradient(model, tensors[0]) if gradient else None
    return Rates(forward, grad)


def _probe_gradient(model: Any, x: Any) -> float | None:
    """Seconds per image of one forward+backward through the model's torch module (None without one)."""
    try:
        module = model.torch_module().eval()
    except Exception:  # noqa: BLE001 - any failure (ModelError included): no white-box cost to measure
        return None
    import torch

    def step() -> None:
        xx = x.detach().clone().requires_grad_(True)
        module(xx).sum().backward()

    try:
        step()  # warm-up
        return _time(step) / max(1, int(x.shape[0]))
    except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
        log.debug("plan: gradient probe failed (%s)", exc)
        return None


def build_plan(conditions: Sequence[Any], samples: dict[str, int]) -> list[SuitePlan]:
    """Per-suite totals of conditions, samples and sample-passes, in run order."""
    plans: dict[str, SuitePlan] = {}
    for c in conditions:
        p = plans.setdefault(c.suite, SuitePlan(c.suite))
        n = samples[c.key]
        fwd, grad = c.cost(n)
        p.conditions += 1
        p.samples += n
        p.forward_passes += fwd
        p.gradient_passes += grad
        p.sizes.append(int(n))
    return list(plans.values())


def add_reference_work(plans: Sequence[SuitePlan], conditions: Sequence[Any], samples: dict[str, int],
                       twin_of: Any, rates: Rates, reference_rates: Rates) -> None:
    """Add the reference model's work of ``run --reference`` to each suite's plan, in the
    candidate's pass units (scaled by the two models' probed rates, so the seconds are right).

    ``twin_of(condition)`` is the condition the reference is scored on (itself, an attack's twin,
    or None); a condition that does not need the model costs the reference its forward passes only,
    since both models predict the same perturbed tensor.
    """
    fwd_ratio = reference_rates.forward_s / rates.forward_s if rates.forward_s > 0 else 1.0
    ref_grad = reference_rates.gradient_s if reference_rates.gradient_s is not None else 3.0 * reference_rates.forward_s
    cand_grad = rates.gradient_s if rates.gradient_s is not None else 3.0 * rates.forward_s
    grad_ratio = ref_grad / cand_grad if cand_grad > 0 else 1.0
    by_suite = {p.suite: p for p in plans}
    for c in conditions:
        twin = twin_of(c)
        if twin is None:
            continue
        fwd, grad = twin.cost(samples[c.key])
        p = by_suite[c.suite]
        p.forward_passes += fwd * fwd_ratio
        p.gradient_passes += grad * grad_ratio


def clean_pass_multiple(plans: Sequence[SuitePlan], rates: Rates) -> float | None:
    """The run's estimated model time over that of one clean pass (None without a clean condition):
    ``1 + sum over perturbed conditions of n_c / N`` when every pass costs a forward pass, more
    where attacks take gradient steps. Perturbation (image generation) time is not in it."""
    clean = next((p for p in plans if p.suite == "clean"), None)
    if clean is None or not clean.seconds(rates) > 0:
        return None
    return sum(p.seconds(rates) for p in plans) / clean.seconds(rates)


def format_seconds(s: float) -> str:
    """``42 s``, ``3.5 min``, ``1.2 h``."""
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def format_plan(plans: list[SuitePlan], rates: Rates, n_images: int, device: str) -> str:
    """The plan as lines of text (what ``--dry-run`` prints and a run logs)."""
    total = sum(p.seconds(rates) for p in plans)
    grad = (f", forward+backward {rates.gradient_s * 1e3:.2f} ms/image" if rates.gradient_s is not None else "")
    multiple = clean_pass_multiple(plans, rates)
    cost = f" = {multiple:.1f} x one clean pass" if multiple is not None else ""
    lines = [f"plan: {sum(p.conditions for p in plans)} conditions over {n_images} images on {device}; "
             f"estimated {format_seconds(total)} of model time{cost} (probe: forward {rates.forward_s * 1e3:.2f} ms/image"
             f"{grad}; perturbation time comes on top and is measured as the run goes)"]
    for p in plans:
        lines.append(f"  {p.suite:<12} {p.conditions:>4} condition(s) x {p.per_condition(n_images):>12} samples "
                     f"{p.samples:>8} sample-conditions  ~{format_seconds(p.seconds(rates))}")
    return "\n".join(lines)


@dataclass
class RunProgress:
    """Where the run is: a log line per suite, per condition at DEBUG, and a heartbeat."""

    plans: list[SuitePlan]
    rates: Rates
    interval: float = HEARTBEAT_SECONDS
    _done_passes: dict[str, float] = field(default_factory=dict)
    _spent: dict[str, float] = field(default_factory=dict)
    _current: str = ""
    _suite: str = ""
    _since: float = 0.0
    _t0: float = field(default_factory=time.perf_counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _index: int = 0

    def __enter__(self) -> RunProgress:
        self._thread = threading.Thread(target=self._beat, name="evalsuite-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)

    @property
    def total_conditions(self) -> int:
        return sum(p.conditions for p in self.plans)

    def remaining_seconds(self) -> float:
        """Estimated seconds left: measured seconds per sample-pass where a suite has run, else the probe's."""
        left = 0.0
        for p in self.plans:
            passes = p.forward_passes + p.gradient_passes
            done = self._done_passes.get(p.suite, 0.0)
            rate = self._spent[p.suite] / done if done else (p.seconds(self.rates) / passes if passes else 0.0)
            left += max(0.0, passes - done) * rate
        return left

    def started(self, condition: Any, n: int) -> None:
        self._index += 1
        self._current, self._since = condition.key, time.perf_counter()
        if condition.suite != self._suite:
            self._suite = condition.suite
            plan = next((p for p in self.plans if p.suite == condition.suite), None)
            count = plan.conditions if plan else 1
            log.info("suite %s: %d condition(s); %s elapsed, about %s left", condition.suite, count,
                     format_seconds(time.perf_counter() - self._t0), format_seconds(self.remaining_seconds()))
        log.debug("condition %d/%d %s (%d samples)", self._index, self.total_conditions, condition.key, n)

    def finished(self, condition: Any, n: int, seconds: float) -> None:
        fwd, grad = condition.cost(n)
        self._done_passes[condition.suite] = self._done_passes.get(condition.suite, 0.0) + fwd + grad
        self._spent[condition.suite] = self._spent.get(condition.suite, 0.0) + seconds

    def describe(self) -> str:
        """``condition 12/95 corruption/fog/3`` for a progress bar."""
        return f"{self._index}/{self.total_conditions} {self._current}"

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            if self._current:
                log.info("at condition %s (%s in it); %s elapsed, about %s left", self.describe(),
                         format_seconds(time.perf_counter() - self._since),
                         format_seconds(time.perf_counter() - self._t0), format_seconds(self.remaining_seconds()))
