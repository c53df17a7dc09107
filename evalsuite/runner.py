"""Compute every condition's predictions: decode once, perturb on a worker, predict, store.

Images are decoded and geometrically preprocessed once and cached in memory when they fit
(``cache_limit_mb``); otherwise they are streamed again for each condition. Conditions that do
not need the model run on a producer thread one batch ahead of inference, so generation and
inference overlap; conditions that need the model (attacks) run inline.

With a *reference* model (``run --reference``, :mod:`evalsuite.suites.compare`) every condition
that does not need the model is applied once per batch and both models predict that very
tensor, so the comparison is paired pixel for pixel; a condition that needs the model (an
attack crafts pixels against it) runs again for the reference as its own twin (built by the
suite for the reference model, on the same sample subset and seed), so it is paired by sample.
Reference predictions are stored beside the candidate's (``predictions/reference/<key>.npz``)
and resume the same way.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evalsuite.conditions import BatchContext, Condition
from evalsuite.predictions import Predictions, PredictionStore
from evalsuite.progress import progress
from evalsuite.tensors import to_tensor

log = logging.getLogger(__name__)


class ImageSource:
    """Preprocessed uint8 NHWC images of a dataset at the model's input size.

    ``valid`` holds the dataset positions that decoded (all of them unless bad images were
    skipped); ``bad`` the ones that did not.
    """

    def __init__(
        self,
        dataset: Any,
        model_info: Any,
        *,
        batch_size: int,
        workers: int | None,
        skip_bad: bool,
        cache_limit_mb: int,
    ) -> None:
        self.dataset = dataset
        self.info = model_info
        self.batch_size = batch_size
        self.workers = workers
        self.skip_bad = skip_bad
        h, w = model_info.input_size
        self.cacheable = len(dataset) * h * w * 3 <= cache_limit_mb * 1024 * 1024
        self._cache: np.ndarray | None = None
        self._row_of: np.ndarray | None = None
        self.bad: list[int] = []
        self.valid: np.ndarray = np.arange(len(dataset), dtype=np.int64)
        self._scanned = False

    def _stream(self, indices: np.ndarray, batch_size: int) -> Iterator[Any]:
        from evalsuite.data.loader import iter_batches

        return iter_batches(
            self.dataset,
            indices,
            batch_size,
            input_size=tuple(self.info.input_size),
            resize=self.info.resize,
            interpolation=self.info.interpolation,
            workers=self.workers,
            skip_bad=self.skip_bad,
        )

    def scan(self) -> None:
        """First pass: decode everything once (filling the cache when it fits), find bad images."""
        if self._scanned:
            return
        n = len(self.dataset)
        h, w = self.info.input_size
        cache = np.empty((n, h, w, 3), dtype=np.uint8) if self.cacheable else None
        ok = np.zeros(n, dtype=bool)
        for batch in progress(self._stream(np.arange(n), self.batch_size), total=-(-n // self.batch_size), desc="decoding"):
            idx = np.asarray(batch.index, dtype=np.int64)
            ok[idx] = True
            if cache is not None:
                cache[idx] = batch.images
            self.bad.extend(int(b) for b in batch.bad)
        self.valid = np.flatnonzero(ok)
        self._cache = cache
        self._scanned = True
        if self.bad:
            log.warning("skipped %d unreadable image(s)", len(self.bad))

    def batches(self, indices: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(positions, uint8 images) batches over ``indices`` (which must be valid positions)."""
        if self._cache is not None:
            for start in range(0, len(indices), batch_size):
                idx = indices[start : start + batch_size]
                yield idx, self._cache[idx]
        else:
            for batch in self._stream(indices, batch_size):
                if len(batch.index):  # a batch of only unreadable images has no rows
                    yield np.asarray(batch.index, dtype=np.int64), batch.images

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Images at dataset positions ``indices`` (uint8 NHWC)."""
        indices = np.asarray(indices, dtype=np.int64)
        if self._cache is not None:
            return self._cache[indices]
        parts = [imgs for _, imgs in self.batches(indices, max(1, len(indices)))]
        return np.concatenate(parts) if parts else np.empty((0, *self.info.input_size, 3), np.uint8)


@dataclass
class ConditionRun:
    predictions: Predictions
    seconds: float
    resumed: bool
    reference: Predictions | None = None  # the reference model's, with ``run --reference``


@dataclass
class _Produced:
    index: np.ndarray
    x: Any
    extras: dict[str, np.ndarray] = field(default_factory=dict)


_DONE = object()


def _split_output(out: Any) -> tuple[Any, dict[str, np.ndarray]]:
    if isinstance(out, tuple):
        x, extras = out
        return x, {k: np.asarray(v) for k, v in (extras or {}).items()}
    return out, {}


def condition_positions(condition: Condition, source: ImageSource) -> np.ndarray:
    """Dataset positions a condition covers: its ``indices`` (if any) among the readable images."""
    subset = getattr(condition, "indices", None)
    if subset is None:
        return source.valid
    return np.intersect1d(np.asarray(subset, dtype=np.int64), source.valid)


def run_condition(
    condition: Condition,
    *,
    source: ImageSource,
    model: Any,
    labels: np.ndarray,
    ids: np.ndarray,
    seed: int,
    device: str,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
    positions: np.ndarray | None = None,
) -> Predictions:
    """Predictions of ``model`` on ``condition`` over the condition's sample positions (or over
    ``positions``, a work unit's contiguous share of them; see :mod:`evalsuite.shards`)."""
    return run_condition_pair(condition, source=source, model=model, reference=None, labels=labels, ids=ids,
                              seed=seed, device=device, batch_size=batch_size, on_batch=on_batch,
                              positions=positions)[0]


def run_condition_pair(
    condition: Condition,
    *,
    source: ImageSource,
    model: Any,
    reference: Any,
    labels: np.ndarray,
    ids: np.ndarray,
    seed: int,
    device: str,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
    positions: np.ndarray | None = None,
) -> tuple[Predictions, Predictions | None]:
    """:func:`run_condition` for ``model`` and, when ``reference`` is a model, for it too on the
    very same perturbed batches (one ``apply`` per batch, both models predict its output).

    ``model`` may be None (only the reference's predictions are wanted: a resumed run whose
    candidate file exists); ``condition`` must then not need a model. A condition that needs the
    model is applied for ``model`` only; its reference predictions come from its twin.
    """
    import torch

    if positions is None:
        positions = condition_positions(condition, source)
    labels_t_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    if condition.uses_model and (model is None or reference is not None):
        raise ValueError(f"condition {condition.key} crafts its pixels against a model: run its twin for the reference")

    def produce(idx: np.ndarray, images: np.ndarray) -> _Produced:
        x = to_tensor(images, device)
        ctx = BatchContext(
            ids=ids[idx],
            labels=labels_t_all[idx].to(device),
            seed=seed,
            model=model if condition.uses_model else None,
            device=device,
        )
        if condition.uses_model:
            out = condition.apply(x, ctx)
        else:
            with torch.no_grad():
                out = condition.apply(x, ctx)
        x_out, extras = _split_output(out)
        if tuple(x_out.shape) != tuple(x.shape):
            raise RuntimeError(f"condition {condition.key} changed the batch shape {tuple(x.shape)} -> {tuple(x_out.shape)}")
        return _Produced(idx, x_out, extras)

    results: list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]] = []
    ref_results: list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]] = []

    def consume(item: _Produced) -> None:
        # A condition that already ran model.predict on exactly the batch it returns (attacks
        # confirm every adversarial example that way) hands the logits over instead of a rerun.
        given = item.extras.pop("predict_logits", None)
        if model is not None:
            logits = np.asarray(given if given is not None else model.predict(item.x), dtype=np.float32)
            results.append((item.index, logits, item.extras))
        if reference is not None:
            ref_logits = np.asarray(reference.predict(item.x), dtype=np.float32)
            ref_results.append((item.index, ref_logits, dict(item.extras)))
        if on_batch is not None:
            on_batch(len(item.index))

    # A condition that fixes its own batch composition (attacks: random starts are drawn per batch)
    # is batched by it, so --batch-size never changes its result.
    batches = source.batches(positions, getattr(condition, "batch_size", None) or batch_size)
    if condition.uses_model:
        for idx, images in batches:
            consume(produce(idx, images))
    else:
        _prefetch((produce(idx, images) for idx, images in batches), consume, name=f"evalsuite-{condition.key}")
    preds = _assemble(condition, results, ids, labels, model.info.num_classes) if model is not None else None
    ref = _assemble(condition, ref_results, ids, labels, reference.info.num_classes) if reference is not None else None
    return preds, ref  # type: ignore[return-value]


def _prefetch(items: Iterator[Any], consume: Callable[[Any], None], name: str) -> None:
    """Drain ``items`` on a worker thread (two ahead) while ``consume`` runs on this one, so
    perturbing the next batch overlaps the model's forward pass; a worker error is re-raised here."""
    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def worker() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
            q.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the consumer thread
            q.put(exc)

    thread = threading.Thread(target=worker, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            consume(item)
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def _assemble(
    condition: Condition,
    results: list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]],
    ids: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
) -> Predictions:
    """One condition's per-batch outputs joined into its :class:`Predictions`."""
    if results:
        index = np.concatenate([r[0] for r in results])
        logits = np.concatenate([r[1] for r in results])
        extra_names = results[0][2].keys()
        extras = {k: np.concatenate([r[2][k] for r in results]) for k in extra_names}
    else:
        index = np.empty(0, dtype=np.int64)
        logits = np.empty((0, n_classes), dtype=np.float32)
        extras = {}
    return Predictions(
        key=condition.key,
        suite=condition.suite,
        params=dict(condition.params),
        index=index,
        ids=ids[index],
        labels=np.asarray(labels, dtype=np.int64)[index],
        logits=logits,
        extras=extras,
    )


def run_conditions(
    conditions: list[Condition],
    *,
    source: ImageSource,
    model: Any,
    labels: np.ndarray,
    ids: np.ndarray,
    seed: int,
    device: str,
    batch_size: int,
    store: PredictionStore,
    resume: bool,
    run_context: Any,
    reporter: Any = None,
    select: Callable[[Condition, np.ndarray], np.ndarray] | None = None,
    reference: Any = None,
) -> dict[str, ConditionRun]:
    """Run (or, with ``resume``, reload) every condition, saving each as it completes.

    ``select(condition, positions)`` narrows each condition to a work unit (a shard's contiguous
    share of its positions, :mod:`evalsuite.shards`); a condition whose unit is empty is skipped
    and absent from the result. The clean condition's outputs are checked
    (:func:`evalsuite.models.outputs.check_output_kind`) before any other condition runs:
    undeclared probabilities scored as logits are refused.

    ``reference`` (a :class:`ReferenceRun`) adds the reference model's predictions of every
    condition (:attr:`ConditionRun.reference`): same tensor for conditions that do not need the
    model, the condition's twin for those that do (none: that condition has no reference).
    """
    from evalsuite.models.outputs import check_output_kind, declared_kind

    done: dict[str, ConditionRun] = {}
    bar = progress(conditions, total=len(conditions), desc="conditions", unit="cond")
    for condition in bar:
        positions = condition_positions(condition, source)
        if select is not None:
            positions = select(condition, positions)
            if len(positions) == 0:
                continue
        if hasattr(bar, "set_description"):
            bar.set_description(f"{condition.suite}: {condition.key}")
        cached = store.load(condition.key, dict(condition.params), positions) if resume else None
        twin = reference.twin(condition) if reference is not None else None
        ref_cached = reference.load(twin, positions) if (twin is not None and resume) else None
        if cached is not None and (twin is None or ref_cached is not None):
            log.info("resume: reusing predictions of %s", condition.key)
            if condition.key == "clean":
                check_output_kind(cached.logits, declared_kind(model), model.info.source)
                if ref_cached is not None:
                    check_output_kind(ref_cached.logits, declared_kind(reference.model), reference.model.info.source)
            done[condition.key] = ConditionRun(cached, 0.0, True, ref_cached)
            continue
        t0 = time.perf_counter()
        if reporter is not None:
            reporter.started(condition, len(positions))
        common = {"source": source, "labels": labels, "ids": ids, "seed": seed, "device": device,
                  "batch_size": batch_size, "positions": positions}
        if cached is None:
            condition.prepare(run_context)
            log.info("condition %s (%d samples)", condition.key, len(positions))
        for m in (model, reference.model if reference is not None else None):
            if m is not None and hasattr(m, "begin_condition"):  # ONNX in CUDA-bridge mode re-checks per condition
                m.begin_condition(condition.key)
        ref_preds = ref_cached
        if twin is None or condition.uses_model or ref_cached is not None:
            preds = cached if cached is not None else run_condition(condition, model=model, **common)
            if twin is not None and ref_preds is None:  # an attack: its twin crafts pixels against the reference
                twin.prepare(reference.context)
                log.info("condition %s for the reference model (%d samples)", condition.key, len(positions))
                ref_preds = run_condition(twin, model=reference.model, **common)
        else:  # one perturbation, both models predict the same tensor
            preds, ref_preds = run_condition_pair(condition, model=None if cached is not None else model,
                                                  reference=reference.model, **common)
            preds = cached if cached is not None else preds
        if condition.key == "clean":
            check_output_kind(preds.logits, declared_kind(model), model.info.source)
            if ref_preds is not None:
                check_output_kind(ref_preds.logits, declared_kind(reference.model), reference.model.info.source)
        if cached is None:
            store.save(preds)
        if ref_preds is not None and ref_cached is None:
            reference.store.save(ref_preds)
        done[condition.key] = ConditionRun(preds, time.perf_counter() - t0, cached is not None, ref_preds)
        if reporter is not None:
            reporter.finished(condition, len(positions), done[condition.key].seconds)
    return done


@dataclass
class ReferenceRun:
    """The reference model of ``run --reference`` and what the runner needs to predict with it.

    ``twins`` maps the key of each condition that needs the model (attacks) to the same condition
    built by its suite for the reference model (``plan_run`` builds them); such a condition
    without a twin has no reference predictions. ``context`` is the run context with the
    reference as its model (twins are prepared with it); ``store`` its prediction files.
    """

    model: Any
    store: PredictionStore
    context: Any
    twins: dict[str, Condition] = field(default_factory=dict)

    def twin(self, condition: Condition) -> Condition | None:
        """The condition the reference is scored on: itself, its twin, or None (no reference)."""
        if not condition.uses_model:
            return condition
        return self.twins.get(condition.key)

    def load(self, condition: Condition, positions: np.ndarray) -> Predictions | None:
        return self.store.load(condition.key, dict(condition.params), positions)
