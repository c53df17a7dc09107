"""Pixel tensors: uint8 images to float tensors and back onto the 8-bit grid.

A low-level module (it imports nothing from evalsuite) that the runner, the suites, the
calibration and training code, the corruption engine and the JPEG kernels share:

- :func:`to_tensor`: uint8 NHWC images -> float32 NCHW in [0, 1] on a compute device;
- :func:`to_levels`: float [0, 1] -> integer levels 0..255 (still float);
- :func:`levels_to_unit`: levels -> ``k / 255``, a true division on every device.

torch is imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def to_tensor(images: np.ndarray, device: str) -> Any:
    """uint8 NHWC -> float32 NCHW in [0, 1] on ``device`` (contiguous NCHW on the CPU)."""
    import torch

    if device == "cpu":  # NumPy's single-threaded conversion beats waking torch's pool for this
        return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0))
    t = torch.from_numpy(np.ascontiguousarray(images)).to(device, non_blocking=True)
    return t.permute(0, 3, 1, 2).float().div_(255.0)


def levels_to_unit(levels: torch.Tensor) -> torch.Tensor:
    """8-bit levels (float tensor the caller owns) to ``k / 255``, correctly rounded, in place.

    CUDA divides by a Python scalar through its reciprocal, one ulp off ``k / 255`` for some
    levels; dividing by a 0-d tensor on the same device is a true division on every device, so
    CPU and GPU give the same floats for the same levels.
    """
    import torch

    return levels.div_(torch.full((), 255.0, dtype=levels.dtype, device=levels.device))


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """Float [0, 1] image to integer levels 0..255 (round to nearest), still float."""
    import torch

    return torch.round(x.clamp(0.0, 1.0) * 255.0)
