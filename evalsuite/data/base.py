"""The dataset contract every reader returns.

A :class:`Dataset` is a table of samples (stable string ids, raw labels, slice columns) plus a
way to decode one image as ``H x W x 3`` uint8 RGB. Readers never resize; geometric
preprocessing for a model happens in :mod:`evalsuite.data.loader`, so every condition sees the
images at the model's input resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Dataset:
    """Samples to evaluate.

    Attributes:
        name: what the user passed to ``--data`` (for provenance and reports).
        ids: stable, unique string id per sample (relative path, NPZ index, ...); seeds depend on it.
        labels: raw labels as given by the source (ints, or strings such as folder names).
        columns: slice columns, each an array of length ``len(ids)`` (object/str or numeric).
        fingerprint: sha256 over ids, labels and image bytes/paths, so results can cite the data.
        loader: ``loader(i) -> HxWx3 uint8 RGB`` for sample position ``i``.
        class_names: label vocabulary when the source defines one (folder names, builtin data).
        splits: named index arrays (e.g. builtin:digits ``train``/``val``/``test``), if any.
    """

    name: str
    ids: np.ndarray
    labels: np.ndarray
    columns: dict[str, np.ndarray]
    fingerprint: str
    loader: Callable[[int], np.ndarray]
    class_names: list[str] | None = None
    splits: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def read_image(self, i: int) -> np.ndarray:
        """Decode sample ``i`` as ``H x W x 3`` uint8 RGB (raises DataError on failure)."""
        return self.loader(int(i))

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> Dataset:
        """A view on some samples; ids stay the same so seeds and results line up."""
        idx = np.asarray(indices, dtype=np.int64)
        parent = self.loader
        return Dataset(
            name=name or self.name,
            ids=self.ids[idx],
            labels=self.labels[idx],
            columns={k: np.asarray(v)[idx] for k, v in self.columns.items()},
            fingerprint=self.fingerprint if len(idx) == len(self.ids) and np.all(idx == np.arange(len(self.ids)))
            else _subset_fingerprint(self.fingerprint, idx),
            loader=lambda i: parent(int(idx[i])),
            class_names=self.class_names,
            splits={},
        )


def _subset_fingerprint(parent: str, idx: np.ndarray) -> str:
    import hashlib

    h = hashlib.sha256(parent.encode())
    h.update(np.ascontiguousarray(idx).tobytes())
    return h.hexdigest()


@dataclass
class Batch:
    """A batch ready for conditions: images at the model's input size.

    ``images`` is ``N x H x W x 3`` uint8 RGB; ``index`` are positions in the dataset; ``ids``
    the sample ids; ``labels`` the model's class indices when resolved labels were passed to
    the loader, else the raw labels. ``bad`` lists dataset positions that failed to decode and
    were skipped; a batch made only of unreadable images has zero rows and a non-empty ``bad``.
    """

    index: np.ndarray
    ids: np.ndarray
    labels: np.ndarray
    images: np.ndarray
    bad: list[int] = field(default_factory=list)
