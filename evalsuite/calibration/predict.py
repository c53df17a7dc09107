"""Logits of a model over a whole dataset (for ``evalsuite calibrate`` and ``calibration_data``)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def predict_dataset(
    model: Any,
    dataset: Any,
    labels: np.ndarray,
    *,
    batch_size: int = 64,
    indices: np.ndarray | None = None,
    workers: int | None = None,
    desc: str = "predict",
) -> np.ndarray:
    """float32 ``len(indices) x C`` logits of ``model`` on ``dataset`` positions ``indices`` (default all).

    Images go through the model's geometric preprocessing (:func:`evalsuite.data.iter_batches`),
    become float NCHW in [0, 1] on the model's device (:func:`evalsuite.tensors.to_tensor`) and
    are passed to ``model.predict``, exactly as ``evalsuite run`` does for the clean condition.
    Unreadable images raise :class:`~evalsuite.errors.DataError`.
    """
    from evalsuite.data import iter_batches
    from evalsuite.progress import progress
    from evalsuite.tensors import to_tensor

    info = model.info
    idx = np.arange(len(dataset), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
    out = np.empty((len(idx), info.num_classes), dtype=np.float32)
    where = {int(p): i for i, p in enumerate(idx)}
    batches = iter_batches(
        dataset,
        idx,
        batch_size,
        input_size=info.input_size,
        resize=info.resize,
        interpolation=info.interpolation,
        labels=labels,
        workers=workers,
    )
    n_batches = (len(idx) + batch_size - 1) // batch_size
    for batch in progress(batches, total=n_batches, desc=desc, unit="batch"):
        if len(batch.index) == 0:
            continue
        logits = np.asarray(model.predict(to_tensor(batch.images, getattr(model, "device", "cpu"))), dtype=np.float32)
        rows = np.fromiter((where[int(p)] for p in batch.index), dtype=np.int64, count=len(batch.index))
        out[rows] = logits
    return out
