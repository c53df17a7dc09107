"""The lens and the exposure: vignetting, defocus blur, lateral chromatic aberration, motion blur.

All four act on light, so they run in linear light. Spatial sizes are fractions of the
image's shorter side (or relative magnifications), so a profile means the same at 32 and at
224 pixels: the model sees the device's image scaled to its input size.

- ``vignetting``: natural illumination falloff ``cos^4(theta)`` of a lens whose diagonal field
  of view is ``fov`` degrees: a pixel at distance ``r`` from the centre sees the scene at
  ``theta = atan(r / f)`` with ``f = half_diagonal / tan(fov / 2)``, so
  ``cos^4(theta) = 1 / (1 + (r / f)^2)^2``. ``strength`` is the fraction of that falloff the
  ISP's lens-shading correction leaves (1 = uncorrected).
- ``lens_blur``: defocus as a uniform disk PSF (circle of confusion) of ``radius``.
- ``chromatic_aberration``: lateral CA is a wavelength-dependent magnification; the red and
  blue images are scaled about the optical centre by ``1 + red`` and ``1 + blue`` relative to
  green (bilinear, edge pixels replicate).
- ``motion_blur``: the image moves ``length`` along ``angle`` during the exposure (a line
  PSF). ``angle: null`` draws a direction per sample (uniform on a 0.25 degree grid). ``readout_ratio`` adds rolling-shutter
  distortion: rows are read out over ``readout_ratio`` times the exposure time, so row ``y``
  is displaced by ``readout_ratio * motion * (y / (H - 1) - 1/2)`` (a horizontal motion
  shears the image, a vertical one stretches or squashes it).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from evalsuite.devices.base import DeviceOp, Param
from evalsuite.devices.kernels import conv_same_np, conv_same_torch, disk_kernel, line_half, line_kernel
from evalsuite.parallel import numba_available, parallel_slices


@lru_cache(maxsize=32)
def vignetting_gain(h: int, w: int, fov_deg: float, strength: float) -> np.ndarray:
    """``H x W`` float32 gain map: ``1 - strength * (1 - cos^4(theta))`` at every pixel centre."""
    half_diag = math.hypot(w / 2.0, h / 2.0)
    f = half_diag / math.tan(math.radians(fov_deg) / 2.0)
    y = np.arange(h, dtype=np.float64) - (h - 1) / 2.0
    x = np.arange(w, dtype=np.float64) - (w - 1) / 2.0
    t2 = (y[:, None] ** 2 + x[None, :] ** 2) / (f * f)
    cos4 = 1.0 / (1.0 + t2) ** 2
    return (1.0 - strength * (1.0 - cos4)).astype(np.float32)


@lru_cache(maxsize=32)
def vignetting_gain_hwc(h: int, w: int, fov_deg: float, strength: float) -> np.ndarray:
    """:func:`vignetting_gain` repeated per channel as an ``H x 3W`` plane: multiplying an
    interleaved image's rows by it avoids NumPy's slow broadcast over a last axis of 3."""
    return np.repeat(vignetting_gain(h, w, fov_deg, strength), 3, axis=1)


class Vignetting(DeviceOp):
    """cos^4 illumination falloff of a lens with diagonal field of view ``fov``; see module docstring."""

    name = "vignetting"
    summary = "cos^4 illumination falloff by diagonal field of view, with residual after lens-shading correction"
    params = {
        "fov": Param("float", 75.0, "diagonal field of view", 0.0, 170.0, low_open=True, unit="degrees"),
        "strength": Param("float", 1.0, "fraction of the falloff left uncorrected", 0.0, 1.0),
    }
    ladder = {1: {"fov": 40.0}, 2: {"fov": 60.0}, 3: {"fov": 80.0}, 4: {"fov": 100.0}, 5: {"fov": 120.0}}

    def apply_numpy(self, img: np.ndarray, p: Any) -> np.ndarray:
        h, w, _ = img.shape
        out = np.multiply(img.reshape(h, 3 * w), vignetting_gain_hwc(h, w, self.fov, self.strength))
        np.clip(out, 0.0, 1.0, out=out)
        return out.reshape(h, w, 3)

    def apply_torch(self, x: Any, ps: Any) -> Any:
        import torch

        g = torch.from_numpy(vignetting_gain(x.shape[2], x.shape[3], self.fov, self.strength)).to(x.device, x.dtype)
        return (x * g).clamp_(0.0, 1.0)


def _radius_px(radius: float, h: int, w: int) -> float:
    return round(float(radius) * min(h, w), 6)


class LensBlur(DeviceOp):
    """Defocus: convolution with a uniform disk PSF; see module docstring."""

    name = "lens_blur"
    summary = "defocus blur with a disk PSF (radius as a fraction of the shorter side)"
    params = {
        "radius": Param("float", 0.01, "disk radius as a fraction of the shorter image side", 0.0, 0.25),
    }
    ladder = {1: {"radius": 0.005}, 2: {"radius": 0.01}, 3: {"radius": 0.02}, 4: {"radius": 0.03}, 5: {"radius": 0.045}}

    def kernel(self, h: int, w: int) -> np.ndarray:
        """The discrete PSF for an ``h x w`` image."""
        return disk_kernel(_radius_px(self.radius, h, w))

    def apply_numpy(self, img: np.ndarray, p: Any) -> np.ndarray:
        out = conv_same_np(img, self.kernel(img.shape[0], img.shape[1]))
        np.clip(out, 0.0, 1.0, out=out)
        return out

    def apply_torch(self, x: Any, ps: Any) -> Any:
        return conv_same_torch(x, self.kernel(x.shape[2], x.shape[3])).clamp_(0.0, 1.0)


@lru_cache(maxsize=64)
def _scale_index(n: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i0, i1, frac) sampling ``c + (i - c) / scale`` with ``c = (n - 1) / 2``, edges clamped."""
    c = (n - 1) / 2.0
    src = c + (np.arange(n, dtype=np.float64) - c) / scale
    i0 = np.floor(src)
    frac = (src - i0).astype(np.float32)
    i0 = i0.astype(np.int64)
    return np.clip(i0, 0, n - 1), np.clip(i0 + 1, 0, n - 1), frac


def scale_plane_np(plane: np.ndarray, scale: float) -> np.ndarray:
    """Magnify an ``H x W`` plane (any strides) by ``scale`` about its centre (separable bilinear)."""
    h, w = plane.shape
    y0, y1, fy = _scale_index(h, scale)
    x0, x1, fx = _scale_index(w, scale)
    rows = plane[y0] * (1.0 - fy)[:, None] + plane[y1] * fy[:, None]
    return rows[:, x0] * (1.0 - fx)[None, :] + rows[:, x1] * fx[None, :]


def scale_planes_torch(x: Any, scale: float) -> Any:
    """Batched :func:`scale_plane_np` for ``N x H x W``."""
    import torch

    h, w = x.shape[-2], x.shape[-1]
    y0, y1, fy = (torch.from_numpy(a).to(x.device) for a in _scale_index(h, scale))
    x0, x1, fx = (torch.from_numpy(a).to(x.device) for a in _scale_index(w, scale))
    fy = fy.to(x.dtype)[:, None]
    fx = fx.to(x.dtype)
    rows = x.index_select(-2, y0) * (1.0 - fy) + x.index_select(-2, y1) * fy
    return rows.index_select(-1, x0) * (1.0 - fx) + rows.index_select(-1, x1) * fx


class ChromaticAberration(DeviceOp):
    """Lateral chromatic aberration: red and blue magnified relative to green; see module docstring."""

    name = "chromatic_aberration"
    summary = "lateral chromatic aberration (red and blue scaled radially about the centre)"
    params = {
        "red": Param("float", 0.003, "red magnification relative to green, minus 1", -0.05, 0.05),
        "blue": Param("float", -0.003, "blue magnification relative to green, minus 1", -0.05, 0.05),
    }
    ladder = {
        1: {"red": 0.002, "blue": -0.002},
        2: {"red": 0.004, "blue": -0.004},
        3: {"red": 0.007, "blue": -0.007},
        4: {"red": 0.01, "blue": -0.01},
        5: {"red": 0.015, "blue": -0.015},
    }

    def apply_numpy(self, img: np.ndarray, p: Any) -> np.ndarray:
        out = np.array(img, dtype=np.float32, copy=True)
        if self.red:
            out[..., 0] = scale_plane_np(img[..., 0], 1.0 + self.red)
        if self.blue:
            out[..., 2] = scale_plane_np(img[..., 2], 1.0 + self.blue)
        np.clip(out, 0.0, 1.0, out=out)
        return out

    def apply_torch(self, x: Any, ps: Any) -> Any:
        import torch

        r = scale_planes_torch(x[:, 0], 1.0 + self.red) if self.red else x[:, 0]
        b = scale_planes_torch(x[:, 2], 1.0 + self.blue) if self.blue else x[:, 2]
        return torch.stack([r, x[:, 1], b], dim=1).clamp_(0.0, 1.0)


def _rolling_shutter_maps(h: int, w: int, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    """Source row per output row and source column per output pixel (``h``, ``h x w``)."""
    t = np.arange(h, dtype=np.float64) / max(h - 1, 1) - 0.5
    src_rows = np.arange(h, dtype=np.float64) - dy * t
    src_cols = np.arange(w, dtype=np.float64)[None, :] - (dx * t)[:, None]
    return src_rows, src_cols


def _lerp_index(src: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i0 = np.floor(src)
    frac = (src - i0).astype(np.float32)
    i0 = i0.astype(np.int64)
    return np.clip(i0, 0, n - 1), np.clip(i0 + 1, 0, n - 1), frac


def _shear_warp_np(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The rolling-shutter warp in NumPy (the reference of the compiled ``shear_warp``)."""
    h, w = img.shape[:2]
    src_rows, src_cols = _rolling_shutter_maps(h, w, dx, dy)
    r0, r1, fr = _lerp_index(src_rows, h)
    c0, c1, fc = _lerp_index(src_cols, w)
    rows = img[r0] * (1.0 - fr)[:, None, None] + img[r1] * fr[:, None, None]
    out = np.take_along_axis(rows, c0[:, :, None], axis=1) * (1.0 - fc)[:, :, None]
    out += np.take_along_axis(rows, c1[:, :, None], axis=1) * fc[:, :, None]
    return np.ascontiguousarray(out, dtype=np.float32)


def _shear_warp_batch(x: Any, shear: Any) -> Any:
    """The compiled warp over slices of a CPU batch (``shear``: ``N x 2`` float64 (dx, dy))."""
    import torch

    from evalsuite.devices._kernels import shear_warp_batch

    src = x.detach().to(torch.float32)
    warped = torch.empty_like(src)
    src_v, dst_v, sh = src.permute(0, 2, 3, 1).numpy(), warped.permute(0, 2, 3, 1).numpy(), shear.numpy()
    parallel_slices(lambda lo, hi: shear_warp_batch(src_v, dst_v, sh, lo, hi), x.shape[0])
    return warped.to(x.dtype)


def _shear_warp_torch(x: Any, shear: Any) -> Any:
    """The warp on any device: the maps of :func:`_rolling_shutter_maps` for the whole batch,
    then separable bilinear gathers (bit-identical to the compiled warp on the CPU)."""
    import torch

    n, c, h, w = x.shape
    t = torch.arange(h, dtype=torch.float64) / max(h - 1, 1) - 0.5
    src_rows = torch.arange(h, dtype=torch.float64)[None, :] - shear[:, 1:2] * t[None, :]
    src_cols = torch.arange(w, dtype=torch.float64)[None, None, :] - (shear[:, 0:1] * t[None, :])[:, :, None]

    def lerp(src: Any, size: int) -> tuple[Any, Any, Any]:
        i0 = torch.floor(src)
        frac = (src - i0).to(x.dtype).to(x.device)
        i0 = i0.to(torch.int64)
        return i0.clamp(0, size - 1).to(x.device), (i0 + 1).clamp(0, size - 1).to(x.device), frac

    r0, r1, fr = lerp(src_rows, h)
    c0, c1, fc = lerp(src_cols, w)
    rows = x.gather(2, r0[:, None, :, None].expand(n, c, h, w)) * (1.0 - fr)[:, None, :, None]
    rows = rows + x.gather(2, r1[:, None, :, None].expand(n, c, h, w)) * fr[:, None, :, None]
    out = rows.gather(3, c0[:, None].expand(n, c, h, w)) * (1.0 - fc)[:, None]
    return out + rows.gather(3, c1[:, None].expand(n, c, h, w)) * fc[:, None]


@lru_cache(maxsize=4096)
def _cached_line_kernel(length_px: float, angle: float) -> np.ndarray:
    k = line_kernel(length_px, angle, line_half(length_px))
    k.setflags(write=False)
    return k


class MotionBlur(DeviceOp):
    """Linear motion blur with optional rolling-shutter distortion; see module docstring."""

    name = "motion_blur"
    summary = "camera/subject motion blur (line PSF) with rolling-shutter distortion"
    params = {
        "length": Param("float", 0.02, "motion during the exposure as a fraction of the shorter side", 0.0, 0.2),
        "angle": Param("float", None, "direction, counter-clockwise from +x; null draws one per sample", 0.0, 360.0,
                       high_open=True, nullable=True, unit="degrees"),
        "readout_ratio": Param("float", 0.0, "sensor readout time / exposure time (0 = global shutter)", 0.0, 10.0),
    }
    ladder = {
        1: {"length": 0.01},
        2: {"length": 0.02},
        3: {"length": 0.035},
        4: {"length": 0.05},
        5: {"length": 0.07},
    }

    @property
    def random(self) -> bool:  # type: ignore[override]
        return self.values["angle"] is None

    def sample(self, seed: int | None, shape: tuple[int, int]) -> dict[str, Any]:
        # A random direction is uniform on a 0.25 degree grid (the seed is a uniform 63-bit hash),
        # so the kernels can be cached.
        angle = (seed % 1440) / 4.0 if seed is not None else float(self.angle)
        h, w = shape
        length_px = round(float(self.length) * min(h, w), 6)
        rad = math.radians(angle)
        shift = float(self.readout_ratio) * length_px
        return {
            "kernel": _cached_line_kernel(length_px, angle),
            "shear": (shift * math.cos(rad), -shift * math.sin(rad)),
        }

    def apply_numpy(self, img: np.ndarray, p: Any) -> np.ndarray:
        h, w = img.shape[:2]
        dx, dy = p["shear"]
        if dx or dy:
            if numba_available():
                from evalsuite.devices._kernels import shear_warp

                warped = np.empty((1, h, w, 3), dtype=np.float32)
                shear_warp(img[None], 0, warped, 0, float(dx), float(dy))
                img = warped[0]
            else:  # pragma: no cover - numba is a declared dependency
                img = _shear_warp_np(img, dx, dy)
        out = conv_same_np(img, p["kernel"])
        np.clip(out, 0.0, 1.0, out=out)
        return out

    def apply_torch(self, x: Any, ps: Any) -> Any:
        import torch

        shear = torch.tensor([p["shear"] for p in ps], dtype=torch.float64)
        if bool((shear != 0).any()):
            x = _shear_warp_batch(x, shear) if x.device.type == "cpu" and numba_available() else _shear_warp_torch(x, shear)
        kernels = torch.from_numpy(np.stack([p["kernel"] for p in ps]))
        return conv_same_torch(x, kernels).clamp_(0.0, 1.0)
