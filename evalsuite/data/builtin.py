"""``builtin:digits``: scikit-learn's bundled handwritten digits as a small RGB image dataset.

The 1,797 8x8 scans (ink levels 0-16) are upsampled bilinearly to 32x32 and drawn as dark ink
on light paper in RGB. A fixed, stratified 60/20/20 train/val/test split (seed 0) makes
results comparable between runs. Real per-image attribute columns give the slice audit
something true to measure:

- ``ink_density``: tercile (low/mid/high) of the fraction of the 8x8 cells carrying ink;
- ``horizontal_position``: tercile (left/centre/right) of the ink's horizontal centre of mass.

Nothing is downloaded: the data ships inside scikit-learn.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from evalsuite.data.base import Dataset

SIZE = 32
SPLIT_SEED = 0
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)


def _terciles(values: np.ndarray, names: tuple[str, str, str]) -> np.ndarray:
    edges = np.quantile(values, [1 / 3, 2 / 3])
    bins = np.digitize(values, edges, right=True)
    return np.array(names, dtype=object)[bins]


def _stratified_split(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Per class: ``rng.shuffle`` (one generator), then ``round(0.6 n)`` train, ``round(0.2 n)`` val, the rest test."""
    from evalsuite.stats import fraction_sizes, shuffle_order, stratified_split

    parts = stratified_split(labels, fraction_sizes(SPLIT_FRACTIONS[:2], "half_even"), shuffle_order(seed))
    return dict(zip(("train", "val", "test"), parts, strict=True))


@lru_cache(maxsize=1)
def digits_arrays() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(images N x 32 x 32 x 3 uint8, labels int64, attribute columns, splits)."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    bunch = load_digits()
    raw = bunch.images.astype(np.float32) / 16.0  # N x 8 x 8, 1 = full ink
    labels = bunch.target.astype(np.int64)
    t = torch.from_numpy(raw).unsqueeze(1)
    up = F.interpolate(t, size=(SIZE, SIZE), mode="bilinear", align_corners=False).squeeze(1).numpy()
    paper = np.array([246.0, 242.0, 232.0], dtype=np.float32)  # warm white paper
    ink = np.array([28.0, 32.0, 70.0], dtype=np.float32)  # blue-black ink
    up = np.clip(up, 0.0, 1.0)[..., None]
    rgb = paper * (1.0 - up) + ink * up
    images = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)

    density = (raw > 0.25).mean(axis=(1, 2))
    cols = np.arange(8, dtype=np.float32)
    mass = raw.sum(axis=(1, 2)) + 1e-6
    centre_x = (raw.sum(axis=1) * cols).sum(axis=1) / mass
    columns = {
        "ink_density": _terciles(density, ("low", "mid", "high")),
        "horizontal_position": _terciles(centre_x, ("left", "centre", "right")),
    }
    splits = _stratified_split(labels, SPLIT_SEED)
    images.setflags(write=False)
    return images, labels, columns, splits


def load_digits_dataset(split: str | None = None) -> Dataset:
    """The builtin digits as a :class:`Dataset`; ``split`` selects train/val/test (None: all)."""
    from evalsuite.errors import DataError

    images, labels, columns, splits = digits_arrays()
    ids = np.array([f"digits/{i:04d}" for i in range(len(labels))], dtype=object)
    h = hashlib.sha256(images.tobytes())
    h.update(labels.tobytes())
    full = Dataset(
        name="builtin:digits",
        ids=ids,
        labels=labels,
        columns={k: v.copy() for k, v in columns.items()},
        fingerprint=h.hexdigest(),
        loader=lambda i: images[i],
        class_names=[str(c) for c in range(10)],
        splits=dict(splits),
    )
    if split is None:
        return full
    if split not in splits:
        raise DataError(f"builtin:digits has no split {split!r}; valid: {', '.join(sorted(splits))}")
    sub = full.subset(splits[split], name=f"builtin:digits:{split}")
    return sub
