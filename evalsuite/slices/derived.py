"""Derived slices: image properties computed from the pixels, for data without metadata.

Every property is computed on the *original* image as the dataset decodes it
(``Dataset.read_image(i)``, native size, before the model's resize), streamed one image at a
time through a small thread pool, so memory stays flat and resolution/aspect describe the
real files. Luma is Rec. 601 (``0.299 R + 0.587 G + 0.114 B``, as Pillow's ``"L"`` mode), in
0-255 units.

=================  ===============================================================================
``brightness``     mean luma / 255 (0 black .. 1 white)
``contrast``       RMS contrast: standard deviation of luma / 255
``colourfulness``  Hasler & Süsstrunk (2003): ``sqrt(sd(rg)^2 + sd(yb)^2) + 0.3 sqrt(mean(rg)^2 +
                   mean(yb)^2)`` with ``rg = R - G``, ``yb = (R + G) / 2 - B`` (0-255 units; 0 is grey)
``sharpness``      variance of the Laplacian of luma (3x3 kernel ``[[0,1,0],[1,-4,1],[0,1,0]]``,
                   reflected border; equal to ``cv2.Laplacian(luma, cv2.CV_64F).var()``)
``resolution``     bucket of the shorter side in pixels: ``<=64``, ``65-128``, ``129-256``,
                   ``257-512``, ``513-1024``, ``>1024``
``aspect``         width / height: ``portrait`` (< 0.9), ``square`` (0.9-1.1), ``landscape``
                   (> 1.1 - 1.5), ``wide`` (> 1.5)
=================  ===============================================================================

The four continuous properties become quantile-binned slice columns (``numeric_bins``, edges
recorded); resolution and aspect use the fixed buckets above so they mean the same in every
run. An image that fails to decode gets no value (group ``"(missing)"``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from evalsuite.errors import DataError, EvalsuiteError, UsageError
from evalsuite.slices.columns import MISSING, SliceColumn, prepare_column

log = logging.getLogger(__name__)

DERIVED: dict[str, str] = {
    "brightness": "mean luma of the original image (0 black .. 1 white), quantile bins",
    "contrast": "RMS contrast: standard deviation of luma / 255, quantile bins",
    "colourfulness": "Hasler-Süsstrunk colourfulness (0 = grey), quantile bins",
    "sharpness": "variance of the Laplacian of luma (low = blurry), quantile bins",
    "resolution": "shorter side of the original image in pixels, fixed buckets",
    "aspect": "width / height of the original image: portrait, square, landscape, wide",
}
CONTINUOUS = ("brightness", "contrast", "colourfulness", "sharpness")
RESOLUTION_EDGES = (64, 128, 256, 512, 1024)
RESOLUTION_LABELS = ("<=64 px", "65-128 px", "129-256 px", "257-512 px", "513-1024 px", ">1024 px")
ASPECT_EDGES = (0.9, 1.1, 1.5)
ASPECT_LABELS = ("portrait", "square", "landscape", "wide")
CHUNK = 64


def luma(image: np.ndarray) -> np.ndarray:
    """Rec. 601 luma (float64, 0-255) of an ``H x W x 3`` RGB (or ``H x W`` grey) image."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        return img[..., 0]
    if img.ndim != 3 or img.shape[2] < 3:
        raise DataError(f"expected an H x W x 3 image, got shape {img.shape}")
    return 0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian with a reflect-101 border (OpenCV's default)."""
    g = np.asarray(gray, dtype=np.float64)
    if g.shape[0] < 2 or g.shape[1] < 2:
        return 0.0
    p = np.pad(g, 1, mode="reflect")
    lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4.0 * g
    return float(lap.var())


def colourfulness(image: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003) colourfulness of an RGB image (0-255 units)."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 3 or img.shape[2] < 3:
        return 0.0
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.sqrt(rg.var() + yb.var()) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


def image_properties(image: np.ndarray) -> dict[str, float]:
    """All derived properties of one image (plus its ``height`` and ``width``)."""
    img = np.asarray(image)
    y = luma(img)
    return {
        "brightness": float(y.mean() / 255.0),
        "contrast": float(y.std() / 255.0),
        "colourfulness": colourfulness(img),
        "sharpness": laplacian_variance(y),
        "height": float(img.shape[0]),
        "width": float(img.shape[1]),
    }


def compute_properties(
    read: Callable[[int], np.ndarray], n: int, workers: int | None = None, desc: str = "image properties"
) -> dict[str, np.ndarray]:
    """Properties of images ``0 .. n-1`` read one at a time with ``read(i)``; ``NaN`` for images
    that fail to decode (a :class:`~evalsuite.errors.EvalsuiteError` from ``read``)."""
    from evalsuite.progress import progress

    keys = (*CONTINUOUS, "height", "width")
    out = {k: np.full(n, np.nan) for k in keys}
    failed: list[int] = []

    def work(chunk: range) -> list[tuple[int, dict[str, float] | None]]:
        res = []
        for i in chunk:
            try:
                res.append((i, image_properties(read(i))))
            except EvalsuiteError:
                res.append((i, None))
        return res

    chunks = [range(s, min(n, s + CHUNK)) for s in range(0, n, CHUNK)]
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for res in progress(pool.map(work, chunks), total=len(chunks), desc=desc, unit="chunk"):
            for i, props in res:
                if props is None:
                    failed.append(i)
                    continue
                for k in keys:
                    out[k][i] = props[k]
    if failed:
        log.warning("derived slices: %d image(s) could not be decoded; they form the %r group", len(failed), MISSING)
    return out


def resolution_bucket(height: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Bucket label of the shorter side (object array; ``None`` where unknown)."""
    short = np.minimum(height, width)
    idx = np.searchsorted(np.asarray(RESOLUTION_EDGES, dtype=np.float64), short, side="left")
    labels = np.array(RESOLUTION_LABELS, dtype=object)[np.minimum(idx, len(RESOLUTION_LABELS) - 1)]
    return np.where(np.isfinite(short), labels, None)


def aspect_bucket(height: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Aspect label (portrait < 0.9 <= square <= 1.1 < landscape <= 1.5 < wide); ``None`` where unknown."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = width / height
    idx = np.where(ratio < ASPECT_EDGES[0], 0, np.where(ratio <= ASPECT_EDGES[1], 1, np.where(ratio <= ASPECT_EDGES[2], 2, 3)))
    labels = np.array(ASPECT_LABELS, dtype=object)[idx]
    return np.where(np.isfinite(ratio), labels, None)


def check_names(names: Sequence[str]) -> list[str]:
    """Validate derived property names (UsageError with did-you-mean)."""
    from evalsuite.registry import did_you_mean

    out = []
    for name in names:
        if name not in DERIVED:
            raise UsageError(f"unknown derived slice {name!r}{did_you_mean(str(name), list(DERIVED))}; valid: {', '.join(DERIVED)}")
        out.append(name)
    return out


def derived_columns(props: dict[str, np.ndarray], names: Sequence[str], numeric_bins: int) -> list[SliceColumn]:
    """Slice columns (``source="derived"``) from computed properties."""
    cols = []
    for name in check_names(names):
        if name in CONTINUOUS:
            col = prepare_column(name, props[name], numeric_bins=numeric_bins, source="derived", description=DERIVED[name])
        else:
            values = (resolution_bucket if name == "resolution" else aspect_bucket)(props["height"], props["width"])
            col = prepare_column(name, values, numeric_bins=numeric_bins, source="derived", description=DERIVED[name])
            order = RESOLUTION_LABELS if name == "resolution" else ASPECT_LABELS
            col = _reorder(col, order)
        cols.append(col)
    return cols


def _reorder(col: SliceColumn, order: Sequence[str]) -> SliceColumn:
    """Groups in the bucket order (smallest first) instead of alphabetical."""
    rank = {g: i for i, g in enumerate(order)}
    new = sorted(range(col.n_groups), key=lambda k: rank.get(col.groups[k], len(order)))
    remap = np.empty(col.n_groups, dtype=np.int64)
    remap[new] = np.arange(col.n_groups)
    col.codes = remap[col.codes]
    col.groups = [col.groups[k] for k in new]
    return col
