"""Resolution change: a device that captures or transmits fewer pixels than the model sees.

The image is resampled to ``scale`` times its size with the device's down-sampler, then back
to the model's input size with its up-sampler (the loss of detail is what the model meets;
the size is what it needs). Interpolations (pixel centres at half-integers throughout):

- ``nearest``: the nearest source pixel (``floor((i + 0.5) / scale)``, torch ``nearest-exact``);
- ``bilinear``, ``bicubic`` (Keys kernel, a = -0.75, as OpenCV and torch), without antialias:
  point sampling, so fine detail aliases as in cheap scalers;
- ``bilinear``/``bicubic`` with ``antialias: true``: the kernel is stretched by the down
  factor (Pillow's filters; bicubic then uses a = -0.5, as Pillow and torch's antialias);
- ``area``: exact fractional box averaging (OpenCV ``INTER_AREA``), what pixel binning does.

Scalers in devices work on encoded values, so ``space: srgb`` is the default; ``linear``
resamples linear light instead (physically correct averaging, as sensor binning does).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from evalsuite.devices.base import DeviceOp, InvalidParameter, Param

_CV2_FLAGS = {"nearest": None, "bilinear": "INTER_LINEAR", "bicubic": "INTER_CUBIC", "area": "INTER_AREA"}


def target_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """The intermediate size ``(round(h * scale), round(w * scale))``, at least 1 x 1."""
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


@lru_cache(maxsize=64)
def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``n_out x n_in`` weights of exact box-filter resampling (rows sum to 1).

    Output pixel ``i`` covers ``[i, i + 1) * n_in / n_out`` in input pixel units; its weight on
    input pixel ``j`` is the overlap of that footprint with ``[j, j + 1)``, over its length.
    """
    ratio = n_in / n_out
    lo = np.arange(n_out, dtype=np.float64)[:, None] * ratio
    hi = lo + ratio
    j = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1.0) - np.maximum(lo, j), 0.0, None)
    m = overlap / ratio
    m /= m.sum(axis=1, keepdims=True)
    return m.astype(np.float32)


@lru_cache(maxsize=64)
def nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel for nearest-exact resampling."""
    idx = np.floor((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out)).astype(np.int64)
    return np.clip(idx, 0, n_in - 1)


@lru_cache(maxsize=64)
def resample_matrix(n_in: int, n_out: int, method: str) -> np.ndarray:
    """``n_out x n_in`` float64 weights of point-sampling interpolation along one axis (no
    antialias): ``nearest`` (nearest-exact), ``bilinear`` (source ``(i + 0.5) n_in / n_out - 0.5``
    clamped at 0, as torch and OpenCV), ``bicubic`` (Keys, a = -0.75, edge indices clamped) or
    ``area`` (:func:`area_matrix`)."""
    if method == "area":
        return area_matrix(n_in, n_out).astype(np.float64)
    m = np.zeros((n_out, n_in), dtype=np.float64)
    scale = n_in / n_out
    rows = np.arange(n_out)
    if method == "nearest":
        m[rows, nearest_index(n_in, n_out)] = 1.0
        return m
    src = (rows + 0.5) * scale - 0.5
    if method == "bilinear":
        src = np.maximum(src, 0.0)
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        frac = src - i0
        np.add.at(m, (rows, i0), 1.0 - frac)
        np.add.at(m, (rows, np.minimum(i0 + 1, n_in - 1)), frac)
        return m
    if method != "bicubic":
        raise ValueError(f"no resampling matrix for {method!r}")
    a = -0.75
    i0 = np.floor(src).astype(np.int64)
    t = src - i0
    for off in (-1, 0, 1, 2):
        d = np.abs(t - off)
        wgt = np.where(d <= 1.0, ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0,
                       np.where(d < 2.0, ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a, 0.0))
        np.add.at(m, (rows, np.clip(i0 + off, 0, n_in - 1)), wgt)
    return m


def _pillow_filter(method: str, x: np.ndarray) -> np.ndarray:
    """Pillow's (and torch's antialias) filter kernels: triangle, or Keys cubic with a = -0.5."""
    x = np.abs(x)
    if method == "bilinear":
        return np.where(x < 1.0, 1.0 - x, 0.0)
    a = -0.5
    return np.where(x < 1.0, ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
                    np.where(x < 2.0, (((x - 5.0) * x + 8.0) * x - 4.0) * a, 0.0))


@lru_cache(maxsize=64)
def antialias_matrix(n_in: int, n_out: int, method: str) -> np.ndarray:
    """``n_out x n_in`` float64 weights of antialiased ``bilinear``/``bicubic`` resampling along
    one axis, as Pillow's ``resize`` and torch's ``antialias=True`` compute them: the filter is
    stretched by the down factor (at least 1), each row's taps span ``center +- support`` truncated
    to the image, and the row is normalised to sum to 1."""
    if method not in ("bilinear", "bicubic"):
        raise ValueError(f"no antialiased resampling for {method!r}")
    scale = n_in / n_out
    stretch = max(scale, 1.0)
    support = (1.0 if method == "bilinear" else 2.0) * stretch
    m = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        j = np.arange(lo, hi)
        wgt = _pillow_filter(method, (j - center + 0.5) / stretch)
        total = wgt.sum()
        m[i, lo:hi] = wgt / total if total != 0.0 else wgt
    return m


@lru_cache(maxsize=64)
def round_trip_matrix(n: int, n_small: int, down: str, up: str, antialias: bool = False) -> np.ndarray:
    """``n x n`` float32 matrix of down-sampling to ``n_small`` then up-sampling back along one
    axis (composed in float64): a resolution change is two matrix products. ``antialias`` uses
    :func:`antialias_matrix` for the down-sampling (``bilinear``/``bicubic`` only)."""
    shrink = antialias_matrix(n, n_small, down) if antialias else resample_matrix(n, n_small, down)
    return (resample_matrix(n_small, n, up) @ shrink).astype(np.float32)


def resize_np(img: np.ndarray, size: tuple[int, int], method: str, antialias: bool) -> np.ndarray:
    """Resize an ``H x W`` or ``H x W x C`` float32 image to ``size = (h, w)`` (see module docstring)."""
    import cv2

    h, w = size
    if method == "nearest":
        return np.ascontiguousarray(img[nearest_index(img.shape[0], h)][:, nearest_index(img.shape[1], w)])
    if method == "area":
        if h <= img.shape[0] and w <= img.shape[1]:
            return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        rows = np.tensordot(area_matrix(img.shape[0], h), img, axes=(1, 0))
        return np.ascontiguousarray(np.moveaxis(np.tensordot(area_matrix(img.shape[1], w), rows, axes=(1, 1)), 0, 1),
                                    dtype=np.float32)
    if antialias and (h < img.shape[0] or w < img.shape[1]):
        from PIL import Image

        res = Image.Resampling.BILINEAR if method == "bilinear" else Image.Resampling.BICUBIC
        planes = img[..., None] if img.ndim == 2 else img
        out = [
            np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c]), mode="F").resize((w, h), resample=res))
            for c in range(planes.shape[-1])
        ]
        return np.stack(out, axis=-1).reshape((h, w) + img.shape[2:]).astype(np.float32, copy=False)
    return cv2.resize(img, (w, h), interpolation=getattr(cv2, _CV2_FLAGS[method]))


class ResolutionChange(DeviceOp):
    """Down-sample to ``scale`` x the input size, then up-sample back (see module docstring)."""

    name = "resolution"
    summary = "down- then up-sampling with a device's interpolation (nearest/bilinear/bicubic/area)"
    params = {
        "scale": Param("float", 0.5, "intermediate size as a factor of the input size", 0.0, 1.0, low_open=True),
        "down": Param("choice", "area", "down-sampling interpolation", choices=("nearest", "bilinear", "bicubic", "area")),
        "up": Param("choice", "bilinear", "up-sampling interpolation", choices=("nearest", "bilinear", "bicubic")),
        "antialias": Param("bool", False, "stretch the bilinear/bicubic kernel when down-sampling"),
        "space": Param("choice", "srgb", "resample encoded values or linear light", choices=("srgb", "linear")),
    }
    ladder = {
        1: {"scale": 0.75},
        2: {"scale": 0.5},
        3: {"scale": 0.375},
        4: {"scale": 0.25},
        5: {"scale": 0.15},
    }

    def _validate(self) -> None:
        if self.antialias and self.down not in ("bilinear", "bicubic"):
            raise InvalidParameter(
                f"resolution: antialias applies to bilinear/bicubic down-sampling, not {self.down!r} "
                "('area' already averages, 'nearest' never filters)"
            )

    @property
    def domain(self) -> str:  # type: ignore[override]
        return self.values["space"]

    def apply_numpy(self, img: np.ndarray, p: Any) -> np.ndarray:
        h, w = img.shape[:2]
        lo = resize_np(img, target_size(h, w, self.scale), self.down, self.antialias)
        out = resize_np(lo, (h, w), self.up, False)
        if "bicubic" in (self.down, self.up):  # only cubic kernels overshoot
            np.clip(out, 0.0, 1.0, out=out)
        return out

    def apply_numpy_into(self, img: np.ndarray, p: Any, out: np.ndarray) -> None:
        import cv2

        if self.up == "nearest":
            out[...] = self.apply_numpy(img, p)
            return
        h, w = img.shape[:2]
        lo = resize_np(img, target_size(h, w, self.scale), self.down, self.antialias)
        cv2.resize(lo, (w, h), dst=out, interpolation=getattr(cv2, _CV2_FLAGS[self.up]))
        if "bicubic" in (self.down, self.up):
            np.clip(out, 0.0, 1.0, out=out)

    def apply_torch(self, x: Any, ps: Any) -> Any:
        import torch

        h, w = x.shape[2], x.shape[3]
        small = target_size(h, w, self.scale)
        # down and up along each axis are linear maps: one composed matrix per axis. Antialias,
        # as in Pillow and torch, filters both axes once either shrinks.
        aa = bool(self.antialias and (small[0] < h or small[1] < w))
        mh = torch.from_numpy(round_trip_matrix(h, small[0], self.down, self.up, aa)).to(x.device, x.dtype)
        mw = torch.from_numpy(round_trip_matrix(w, small[1], self.down, self.up, aa)).to(x.device, x.dtype)
        return torch.matmul(mh, torch.matmul(x, mw.T)).clamp_(0.0, 1.0)
