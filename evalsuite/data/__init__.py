"""Datasets behind one ``--data`` argument, label resolution, sampling and the batch loader.

- :func:`open_dataset` -- folder / CSV or Parquet manifest / ``.npz`` / ``builtin:digits``;
- :func:`resolve_labels` -- raw labels -> the model's class indices (unknown labels are an error);
- :func:`select` -- ``--limit`` / ``--sample`` (seeded, stratified);
- :func:`iter_batches` / :func:`load_images` -- threaded decoding + resize/crop -> uint8 NHWC.
- :mod:`evalsuite.data.guards` -- pixel and byte limits, and the data-root rule for symbolic links.

Heavy imports (Pillow, pandas, scikit-learn) happen inside the functions that need them.
"""

from __future__ import annotations

from evalsuite.data.base import Batch, Dataset
from evalsuite.data.labels import resolve_labels
from evalsuite.data.loader import iter_batches, load_images, preprocess_image
from evalsuite.data.readers import IMAGE_EXTENSIONS, SUPPORTED_FORMS, decode_image, open_dataset
from evalsuite.data.sampling import select

__all__ = [
    "Batch",
    "Dataset",
    "IMAGE_EXTENSIONS",
    "SUPPORTED_FORMS",
    "decode_image",
    "iter_batches",
    "load_images",
    "open_dataset",
    "preprocess_image",
    "resolve_labels",
    "select",
]


def list_entries() -> list[tuple[str, str]]:
    """Data forms ``--data`` accepts, for ``evalsuite ls data``."""
    return [
        ("<folder>", "one sub-folder per class; labels are folder names"),
        ("<manifest>.csv|.parquet", "columns path,label plus slice columns; paths relative to the manifest"),
        ("<file>.npz", "images (N x H x W x 3 uint8), labels, optional per-sample slice arrays"),
        ("builtin:digits[:train|val|test|all]", "scikit-learn's bundled digits at 32x32 RGB (default: test)"),
    ]
