"""Point-spread-function kernels and 'same' convolution for the optics operations.

A continuous PSF is discretised for an image whose pixels are box-integrated: the discrete
kernel is the PSF convolved with a tent of width 2 (box * box), sampled at integer offsets.
It is built by dense quadrature of the PSF, each quadrature point splatted bilinearly onto
its four neighbouring integer offsets. A zero-size PSF is then exactly the identity, and the
kernel varies continuously with sub-pixel radii and lengths (which matters for small images).

Borders reflect without repeating the edge (OpenCV ``BORDER_REFLECT_101``, torch
``reflect``); when a kernel is as large as the image, they replicate instead.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np


def splat_kernel(points: np.ndarray, half: int) -> np.ndarray:
    """``(2 half + 1)^2`` kernel from equally weighted ``(dx, dy)`` points (bilinear splat, sums to 1)."""
    size = 2 * half + 1
    x = points[:, 0] + half
    y = points[:, 1] + half
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = x - x0
    fy = y - y0
    flat = []
    weights = []
    for oy, wy in ((0, 1.0 - fy), (1, fy)):
        for ox, wx in ((0, 1.0 - fx), (1, fx)):
            flat.append(np.clip(y0 + oy, 0, size - 1) * size + np.clip(x0 + ox, 0, size - 1))
            weights.append(wy * wx)
    k = np.bincount(np.concatenate(flat), weights=np.concatenate(weights), minlength=size * size).reshape(size, size)
    k /= k.sum()
    return k


def _trim(k: np.ndarray) -> np.ndarray:
    while k.shape[0] > 1 and not k[0].any() and not k[-1].any() and not k[:, 0].any() and not k[:, -1].any():
        k = k[1:-1, 1:-1]
    return k


@lru_cache(maxsize=64)
def disk_kernel(radius_px: float) -> np.ndarray:
    """Discrete kernel of a uniform disk PSF of ``radius_px`` pixels (defocus blur)."""
    r = float(radius_px)
    if r <= 0.0:
        return np.ones((1, 1), dtype=np.float32)
    step = min(1.0 / 32.0, r / 24.0)
    n = int(math.ceil(r / step))
    g = np.arange(-n, n + 1, dtype=np.float64) * step
    xx, yy = np.meshgrid(g, g)
    inside = xx**2 + yy**2 <= r * r
    pts = np.stack([xx[inside], yy[inside]], axis=1)
    k = splat_kernel(pts, int(math.ceil(r)) + 1)
    return np.ascontiguousarray(_trim(k), dtype=np.float32)


def line_kernel(length_px: float, angle_deg: float, half: int) -> np.ndarray:
    """Discrete kernel of a uniform line PSF (linear motion) centred on the origin.

    ``angle_deg`` is counter-clockwise on screen from the +x axis (image y points down).
    """
    length = float(length_px)
    if length <= 0.0:
        pts = np.zeros((1, 2))
    else:
        m = max(2, int(math.ceil(length * 16.0)) + 1)
        t = (np.arange(m, dtype=np.float64) + 0.5) / m * length - length / 2.0
        a = math.radians(angle_deg)
        pts = np.stack([t * math.cos(a), -t * math.sin(a)], axis=1)
    return splat_kernel(pts, half).astype(np.float32)


def line_half(length_px: float) -> int:
    """Kernel half-width that holds a line of ``length_px`` at any angle."""
    return int(math.ceil(max(float(length_px), 0.0) / 2.0)) + 1


def conv_same_np(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate an ``H x W`` or ``H x W x C`` float32 image with a centred kernel (OpenCV
    ``filter2D``, every channel alike)."""
    import cv2

    if kernel.shape == (1, 1):
        return img * np.float32(kernel[0, 0])
    half = kernel.shape[0] // 2
    border = cv2.BORDER_REFLECT_101 if half < min(img.shape[:2]) else cv2.BORDER_REPLICATE
    return cv2.filter2D(img, -1, kernel, borderType=border)


#: On the CPU, kernels up to this size are applied as a sum of shifted copies of the padded
#: batch (one fused multiply-add per non-zero tap), which is several times faster than
#: ``conv2d`` for one-channel planes; larger kernels and CUDA tensors use ``conv2d``.
SHIFTED_SUM_MAX = 9


def conv_same_torch(x: Any, kernel: Any) -> Any:
    """Correlate every plane of ``N x C x H x W`` with one kernel (``k x k`` numpy or tensor),
    or with one kernel per sample (``N x k x k``)."""
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    k = torch.as_tensor(np.asarray(kernel) if not isinstance(kernel, torch.Tensor) else kernel)
    k = k.to("cpu", x.dtype)
    size = k.shape[-1]
    half = size // 2
    if half == 0:
        return x * k.reshape(-1)[0] if k.ndim == 2 else x * k.to(x.device).reshape(n, 1, 1, 1)
    mode = "reflect" if half < min(h, w) else "replicate"
    if x.device.type == "cpu" and size <= SHIFTED_SUM_MAX:
        xp = F.pad(x, (half, half, half, half), mode=mode)
        out = torch.zeros_like(x)
        # weights and the tap mask as NumPy: indexing a tensor per tap costs more than the tap
        weights = k.numpy()
        taps = (weights != 0).reshape(-1, size, size).any(axis=0)
        for dy, dx in np.argwhere(taps).tolist():
            window = xp[:, :, dy : dy + h, dx : dx + w]
            if k.ndim == 2:
                out.add_(window, alpha=float(weights[dy, dx]))
            else:
                out.addcmul_(window, k[:, dy, dx].view(n, 1, 1, 1))
        return out
    k = k.to(x.device)
    if k.ndim == 2:
        y = F.pad(x.reshape(n * c, 1, h, w), (half, half, half, half), mode=mode)
        return F.conv2d(y, k[None, None]).reshape(n, c, h, w)
    y = F.pad(x.reshape(1, n * c, h, w), (half, half, half, half), mode=mode)
    weight = k.repeat_interleave(c, dim=0)[:, None]
    return F.conv2d(y, weight, groups=n * c).reshape(n, c, h, w)
