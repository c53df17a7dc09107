"""Training data through the same readers as ``evalsuite run``, with the splits recorded.

:func:`load_splits` opens ``data.train`` / ``data.val`` / ``data.test`` with
:func:`evalsuite.data.open_dataset`, resolves labels to class indices with
:func:`evalsuite.data.resolve_labels` (the class vocabulary comes from the training set), and
returns images at the model's input size as uint8 NHWC. Small datasets are decoded once and
kept in memory; larger ones (over ``cache_limit_mb``) are decoded batch by batch with
:func:`evalsuite.data.load_images`. When ``data.val`` is null a seeded stratified fraction of
the training set is held out. The ids of every split are written to ``splits.json`` so a
scorecard can always say which images a model was trained on.

The batch sampler is deterministic per (seed, epoch), which is what makes a resumed run
bit-identical to an uninterrupted one: shuffling, or class-balanced sampling with replacement
(each sample weighted by 1 / its class count, so every class is drawn equally often).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalsuite.errors import DataError

log = logging.getLogger(__name__)

CACHE_LIMIT_MB = 4096


@dataclass
class ImageSplit:
    """One split: ids, int labels and a way to get uint8 NHWC images at the input size."""

    name: str  # the spec (or "<train spec> (held out)")
    ids: np.ndarray
    labels: np.ndarray
    _images: np.ndarray | None = None
    _dataset: Any = None
    _input_size: tuple[int, int] = (32, 32)
    _resize: int | None = None
    _interpolation: str = "bilinear"
    _workers: int | None = None
    fingerprint: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_memory(self) -> bool:
        return self._images is not None

    def images(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """uint8 ``N x H x W x 3`` images for positions ``indices`` of this split."""
        idx = np.asarray(indices, dtype=np.int64)
        if self._images is not None:
            return self._images[idx]
        from evalsuite.data import load_images

        return load_images(
            self._dataset,
            idx,
            input_size=self._input_size,
            resize=self._resize,
            interpolation=self._interpolation,
            workers=self._workers,
        )


@dataclass
class TrainData:
    """Train / val (/ test) splits sharing one class vocabulary."""

    train: ImageSplit
    val: ImageSplit
    test_spec: str | None
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_arrays(
        cls,
        train_images: np.ndarray,
        train_labels: np.ndarray,
        val_images: np.ndarray,
        val_labels: np.ndarray,
        class_names: Sequence[str] | None = None,
        test_spec: str | None = None,
    ) -> TrainData:
        """In-memory splits from uint8 NHWC arrays and int labels (for the Python API and tests)."""
        k = int(max(np.max(train_labels), np.max(val_labels))) + 1
        names = [str(c) for c in (class_names or range(k))]

        def split(images: np.ndarray, labels: np.ndarray, name: str) -> ImageSplit:
            images = np.asarray(images)
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
                raise DataError(f"{name} images must be uint8 N x H x W x 3, got {images.dtype} {images.shape}")
            return ImageSplit(
                name=name,
                ids=np.array([f"{name}/{i}" for i in range(len(labels))], dtype=object),
                labels=np.asarray(labels, dtype=np.int64),
                _images=images,
                _input_size=(images.shape[1], images.shape[2]),
            )

        return cls(split(train_images, train_labels, "train"), split(val_images, val_labels, "val"), test_spec, names)

    def record(self) -> dict[str, Any]:
        """The JSON written to ``splits.json``."""
        return {
            "class_names": list(self.class_names),
            "train": {"source": self.train.name, "n": len(self.train), "fingerprint": self.train.fingerprint,
                      "ids": [str(i) for i in self.train.ids]},
            "val": {"source": self.val.name, "n": len(self.val), "fingerprint": self.val.fingerprint,
                    "ids": [str(i) for i in self.val.ids]},
            "test": {"source": self.test_spec},
        }


def _class_names(dataset: Any) -> list[str]:
    if dataset.class_names:
        return [str(c) for c in dataset.class_names]
    labels = np.asarray(dataset.labels)
    if labels.dtype.kind in "iu":
        return [str(int(v)) for v in np.unique(labels)]
    return sorted({str(v) for v in labels})


def _make_split(dataset: Any, class_names: list[str], data_cfg: Any, name: str) -> ImageSplit:
    from evalsuite.data import load_images, resolve_labels

    labels = resolve_labels(dataset, class_names)
    h, w = (int(data_cfg.input_size[0]), int(data_cfg.input_size[1]))
    split = ImageSplit(
        name=name,
        ids=np.asarray(dataset.ids),
        labels=labels,
        _dataset=dataset,
        _input_size=(h, w),
        _resize=data_cfg.resize,
        _interpolation=data_cfg.interpolation,
        _workers=data_cfg.workers,
        fingerprint=dataset.fingerprint,
    )
    if len(dataset) * h * w * 3 <= CACHE_LIMIT_MB * 2**20:
        split._images = load_images(
            dataset,
            np.arange(len(dataset)),
            input_size=(h, w),
            resize=data_cfg.resize,
            interpolation=data_cfg.interpolation,
            workers=data_cfg.workers,
        )
        if len(split._images) != len(dataset):
            raise DataError(f"{name}: some images could not be decoded")
    else:
        log.info("%s: %d images decoded batch by batch (over %d MB)", name, len(dataset), CACHE_LIMIT_MB)
    return split


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep, holdout) positions: ``fraction`` of every class held out (at least one when a class has 2+).

    Per class ``rng.shuffle`` (one ``default_rng(seed)``), then the first ``round(fraction * n)``
    are held out (:func:`evalsuite.stats.stratified_split`).
    """
    from evalsuite.stats import fraction_sizes, shuffle_order, stratified_split

    hold, keep = stratified_split(labels, fraction_sizes(fraction, "half_even", both_sides=True), shuffle_order(seed))
    return keep, hold


def load_splits(data_cfg: Any, seed: int = 0) -> TrainData:
    """Open and decode the recipe's train and validation data (see the module docstring)."""
    from evalsuite.data import open_dataset
    from evalsuite.data.sampling import stratified_indices

    train_ds = open_dataset(data_cfg.train)
    if len(train_ds) == 0:
        raise DataError(f"training data {data_cfg.train} is empty")
    class_names = _class_names(train_ds)
    if len(class_names) < 2:
        raise DataError(f"training data {data_cfg.train} has {len(class_names)} class(es); need at least 2")
    if data_cfg.val:
        if data_cfg.val == data_cfg.train:
            raise DataError("data.val names the same data as data.train; use data.val=null to hold out a fraction")
        val_ds = open_dataset(data_cfg.val)
        val_name = data_cfg.val
        overlap = len(set(map(str, val_ds.ids)) & set(map(str, train_ds.ids)))
        if overlap:
            # Ids are only globally meaningful within one source (builtin splits, one manifest);
            # two image folders may share relative paths, so this is a warning, not an error.
            log.warning("%d sample id(s) appear in both data.train and data.val", overlap)
    else:
        from evalsuite.data import resolve_labels

        all_labels = resolve_labels(train_ds, class_names)
        keep, hold = stratified_holdout(all_labels, data_cfg.val_fraction, seed)
        val_ds = train_ds.subset(hold)
        train_ds = train_ds.subset(keep)
        val_name = f"{data_cfg.train} (held-out {data_cfg.val_fraction:g}, seed {seed})"
    if data_cfg.limit is not None and data_cfg.limit < len(train_ds):
        train_ds = train_ds.subset(stratified_indices(train_ds.labels, int(data_cfg.limit), seed))
    if len(val_ds) == 0 or len(train_ds) == 0:
        raise DataError(f"empty split: {len(train_ds)} training and {len(val_ds)} validation images")
    train = _make_split(train_ds, class_names, data_cfg, data_cfg.train)
    val = _make_split(val_ds, class_names, data_cfg, val_name)
    return TrainData(train=train, val=val, test_spec=data_cfg.test, class_names=class_names)


# --------------------------------------------------------------------------------------- sampling
def epoch_generator(seed: int, epoch: int, stream: int = 0) -> Any:
    """A torch CPU generator for (seed, epoch, stream): the only randomness a training epoch uses."""
    import torch

    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(epoch) * 7919 + int(stream) * 104_729) % (2**63 - 1))
    return g


def class_balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-sample weight 1 / (count of its class): every class is drawn equally often."""
    counts = np.bincount(labels)
    return 1.0 / counts[labels]


def epoch_order(labels: np.ndarray, *, seed: int, epoch: int, balanced: bool) -> np.ndarray:
    """Sample positions for one epoch (length = number of samples)."""
    import torch

    g = epoch_generator(seed, epoch, stream=1)
    n = len(labels)
    if balanced:
        w = torch.as_tensor(class_balanced_weights(np.asarray(labels)), dtype=torch.float64)
        return torch.multinomial(w, n, replacement=True, generator=g).numpy()
    return torch.randperm(n, generator=g).numpy()


def batches(order: np.ndarray, batch_size: int, drop_last: bool = True) -> Iterator[np.ndarray]:
    """Consecutive chunks of ``order``; the last partial batch is dropped when ``drop_last``
    (BatchNorm and mixup dislike batches of one) unless it is the only batch."""
    n = len(order)
    stop = n - (n % batch_size) if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def num_batches(n: int, batch_size: int, drop_last: bool = True) -> int:
    if drop_last and n >= batch_size:
        return n // batch_size
    return (n + batch_size - 1) // batch_size
