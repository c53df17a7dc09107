"""Streamed, threaded decoding plus the model's geometric preprocessing -> uint8 NHWC batches.

:func:`iter_batches` decodes images on a thread pool (Pillow releases the GIL while decoding
and resizing), keeps a bounded number of images in flight (never the whole dataset), and yields
:class:`~evalsuite.data.base.Batch` objects in the order of the requested indices.

Geometric preprocessing (:func:`preprocess_image`) matches torchvision's ``Resize`` /
``CenterCrop`` on PIL images, which is how most classifiers are evaluated:

- ``resize is None``: resize straight to ``input_size`` (H, W) unless the image already has
  that size (aspect ratio is not kept);
- ``resize = S``: resize the shorter side to ``S`` keeping the aspect ratio (the longer side
  becomes ``int(S * long / short)``), then take the centre ``input_size`` crop (offsets
  ``int(round((h - crop_h) / 2))``); an image smaller than the crop is zero-padded first, as
  torchvision does.

Resizing uses Pillow's ``Image.resize`` with the named filter (``nearest``, ``bilinear``,
``bicubic``, ``lanczos``, ``box``, ``hamming``); Pillow antialiases when downscaling.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from typing import Any

import numpy as np

from evalsuite.data.base import Batch, Dataset
from evalsuite.errors import DataError, UsageError

log = logging.getLogger(__name__)

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def default_workers() -> int:
    """Decoding threads when not told: ``min(8, cpu count)``."""
    return max(1, min(8, os.cpu_count() or 1))


def _pil_filter(interpolation: str) -> Any:
    from PIL import Image

    if interpolation not in INTERPOLATIONS:
        from evalsuite.registry import did_you_mean

        raise UsageError(
            f"unknown interpolation {interpolation!r}{did_you_mean(interpolation, list(INTERPOLATIONS))}; "
            f"valid: {', '.join(INTERPOLATIONS)}"
        )
    return getattr(Image.Resampling, interpolation.upper())


def _check_size(input_size: Sequence[int], resize: int | None) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise UsageError(f"input_size must be (height, width), got {input_size!r}") from None
    if h < 1 or w < 1:
        raise UsageError(f"input_size must be positive, got {h}x{w}")
    if resize is not None and int(resize) < 1:
        raise UsageError(f"resize must be a positive integer, got {resize!r}")
    return h, w


def resized_shape(height: int, width: int, resize: int) -> tuple[int, int]:
    """(H, W) after resizing the shorter side to ``resize`` (torchvision's ``Resize(int)`` rule)."""
    if height <= width:
        return resize, int(resize * width / height)
    return int(resize * height / width), resize


def center_crop_offsets(height: int, width: int, crop_h: int, crop_w: int) -> tuple[int, int]:
    """(top, left) of a centre crop, rounded like torchvision's ``center_crop``."""
    return int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0))


def preprocess_image(
    image: np.ndarray,
    input_size: Sequence[int],
    resize: int | None = None,
    interpolation: str = "bilinear",
) -> np.ndarray:
    """One ``H x W x 3`` uint8 image -> ``input_size`` uint8 (rules in the module docstring)."""
    out_h, out_w = _check_size(input_size, resize)
    resample = _pil_filter(interpolation)
    h, w = image.shape[:2]
    if resize is None:
        if (h, w) == (out_h, out_w):
            return image
        from PIL import Image

        return np.asarray(Image.fromarray(image).resize((out_w, out_h), resample=resample))
    new_h, new_w = resized_shape(h, w, int(resize))
    if (new_h, new_w) != (h, w):
        from PIL import Image

        image = np.asarray(Image.fromarray(image).resize((new_w, new_h), resample=resample))
    if new_h < out_h or new_w < out_w:
        pad_t, pad_l = max(0, (out_h - new_h) // 2), max(0, (out_w - new_w) // 2)
        pad_b, pad_r = max(0, (out_h - new_h + 1) // 2), max(0, (out_w - new_w + 1) // 2)
        image = np.pad(image, ((pad_t, pad_b), (pad_l, pad_r), (0, 0)))
        new_h, new_w = image.shape[:2]
    top, left = center_crop_offsets(new_h, new_w, out_h, out_w)
    return np.ascontiguousarray(image[top : top + out_h, left : left + out_w])


def _load_chunk(
    dataset: Dataset,
    positions: np.ndarray,
    input_size: tuple[int, int],
    resize: int | None,
    interpolation: str,
    skip_bad: bool,
) -> list[tuple[int, np.ndarray | None]]:
    out: list[tuple[int, np.ndarray | None]] = []
    for pos in positions:
        pos = int(pos)
        try:
            img = dataset.read_image(pos)
        except DataError as exc:
            if not skip_bad:
                raise
            log.warning("skipping unreadable image %s: %s", dataset.ids[pos], exc)
            out.append((pos, None))
            continue
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise DataError(
                f"reader of {dataset.name} returned {img.dtype} {tuple(img.shape)} for {dataset.ids[pos]}; "
                "expected H x W x 3 uint8"
            )
        out.append((pos, preprocess_image(img, input_size, resize, interpolation)))
    return out


def iter_batches(
    dataset: Dataset,
    indices: Sequence[int] | np.ndarray,
    batch_size: int,
    *,
    input_size: Sequence[int],
    resize: int | None = None,
    interpolation: str = "bilinear",
    workers: int | None = None,
    skip_bad: bool = False,
    labels: np.ndarray | None = None,
    prefetch: int = 2,
) -> Iterator[Batch]:
    """Yield batches of preprocessed images for dataset positions ``indices``, in that order.

    Args:
        dataset: the dataset to read.
        indices: dataset positions to load.
        batch_size: images per batch (the last may be smaller).
        input_size, resize, interpolation: geometric preprocessing (see the module docstring).
        workers: decoding threads (default :func:`default_workers`).
        skip_bad: skip images that fail to decode instead of raising; their positions are
            reported in ``Batch.bad`` of the batch being filled when they were met.
        labels: resolved int labels for the *whole* dataset (aligned with positions); each
            batch gets ``labels[batch.index]``. Without it ``Batch.labels`` holds the raw
            dataset labels of the batch.
        prefetch: batches' worth of images decoded ahead of the consumer.

    Batches are full (``batch_size`` images) except the last; skipped images do not leave
    holes. When the stream ends with skipped images only, a final batch with zero images
    carries them in ``bad``: callers must not run a model on an empty batch.
    Raises :class:`DataError` for an unreadable image unless ``skip_bad``.
    """
    out_size = _check_size(input_size, resize)
    _pil_filter(interpolation)
    batch_size, idx, labels = _checked_batch_args(dataset, indices, batch_size, labels)
    n_workers = default_workers() if workers is None else max(1, int(workers))
    chunk = max(1, min(32, math.ceil(batch_size / n_workers)))
    chunks = [idx[i : i + chunk] for i in range(0, len(idx), chunk)]
    window = max(2 * n_workers, math.ceil(max(1, prefetch) * batch_size / chunk))
    source_labels = np.asarray(dataset.labels if labels is None else labels)
    ids = np.asarray(dataset.ids)

    def make_batch(positions: list[int], images: list[np.ndarray], bad: list[int]) -> Batch:
        pos = np.asarray(positions, dtype=np.int64)
        stacked = (
            np.stack(images) if images else np.zeros((0, out_size[0], out_size[1], 3), dtype=np.uint8)
        )
        return Batch(index=pos, ids=ids[pos], labels=source_labels[pos], images=stacked, bad=list(bad))

    def load(positions: np.ndarray) -> list[tuple[int, np.ndarray | None]]:
        return _load_chunk(dataset, positions, out_size, resize, interpolation, skip_bad)

    positions: list[int] = []
    images: list[np.ndarray] = []
    bad: list[int] = []
    with closing(_decoded_in_order(load, chunks, n_workers, window)) as decoded:  # closing stops the pool
        for pos, img in decoded:
            if img is None:
                bad.append(pos)
                continue
            positions.append(pos)
            images.append(img)
            if len(images) == batch_size:
                yield make_batch(positions, images, bad)
                positions, images, bad = [], [], []
    if images or bad:
        yield make_batch(positions, images, bad)


def _checked_batch_args(
    dataset: Dataset, indices: Sequence[int] | np.ndarray, batch_size: int, labels: np.ndarray | None
) -> tuple[int, np.ndarray, np.ndarray | None]:
    """(batch size, positions, labels) of :func:`iter_batches`, checked against the dataset."""
    if int(batch_size) < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(idx) and (idx.min() < 0 or idx.max() >= len(dataset)):
        raise IndexError(f"indices out of range for a dataset of {len(dataset)} samples")
    if labels is not None:
        labels = np.asarray(labels)
        if len(labels) != len(dataset):
            raise ValueError(f"labels has {len(labels)} entries for a dataset of {len(dataset)}")
    return int(batch_size), idx, labels


def _decoded_in_order(
    load: Callable[[np.ndarray], list[tuple[int, np.ndarray | None]]],
    chunks: list[np.ndarray],
    n_workers: int,
    window: int,
) -> Iterator[tuple[int, np.ndarray | None]]:
    """``(position, image or None)`` of every chunk in order, decoded by ``n_workers`` threads
    with at most ``window`` chunks in flight (bounded memory, order kept)."""
    pool = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="evalsuite-decode")
    pending: deque[Future[list[tuple[int, np.ndarray | None]]]] = deque()
    next_chunk = 0
    try:

        def submit_more() -> None:
            nonlocal next_chunk
            while next_chunk < len(chunks) and len(pending) < window:
                pending.append(pool.submit(load, chunks[next_chunk]))
                next_chunk += 1

        submit_more()
        while pending:
            results = pending.popleft().result()
            submit_more()
            yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def load_images(
    dataset: Dataset,
    indices: Sequence[int] | np.ndarray,
    *,
    input_size: Sequence[int],
    resize: int | None = None,
    interpolation: str = "bilinear",
    workers: int | None = None,
    skip_bad: bool = False,
    batch_size: int = 64,
) -> np.ndarray:
    """Preprocessed uint8 ``N x H x W x 3`` images for ``indices`` (same rules as :func:`iter_batches`).

    With ``skip_bad`` the unreadable images are left out, so the result can be shorter than
    ``indices``; use :func:`iter_batches` when the positions of the survivors matter.
    """
    h, w = _check_size(input_size, resize)
    parts = [
        b.images
        for b in iter_batches(
            dataset,
            indices,
            batch_size,
            input_size=(h, w),
            resize=resize,
            interpolation=interpolation,
            workers=workers,
            skip_bad=skip_bad,
        )
    ]
    if not parts:
        return np.zeros((0, h, w, 3), dtype=np.uint8)
    return np.concatenate(parts)
