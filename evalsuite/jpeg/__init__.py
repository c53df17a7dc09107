"""JPEG round trips computed as libjpeg-turbo computes them, without calling a codec.

A baseline JPEG round trip loses information only in its colour conversion, chroma
subsampling, forward DCT and quantisation, and in the decoder's inverse DCT, upsampling and
colour conversion; the entropy coding in between is lossless. Both implementations here redo
those lossy steps with libjpeg-turbo's integer arithmetic, so their output is the decoded image
Pillow or OpenCV would return, bit for bit (checked against both in the tests):

- :mod:`evalsuite.jpeg.cpu`: a compiled (numba) kernel, image by image on the shared thread
  pool; the CPU path for small images (2.4x faster than a codec library per image at 32 x 32).
- :mod:`evalsuite.jpeg.tensor`: batched integer tensor operations on any device; the GPU path.

:func:`jpeg_roundtrip` picks between them by the batch's device.
"""

from __future__ import annotations

from typing import Any

from evalsuite.jpeg.tensor import SUBSAMPLING_FACTORS, quant_tables

__all__ = ["SUBSAMPLING_FACTORS", "jpeg_roundtrip", "quant_tables"]


def jpeg_roundtrip(x: Any, quality: int, subsampling: str = "4:2:0") -> Any:
    """Decode(encode(x)) as libjpeg-turbo would, for a float ``N x 3 x H x W`` batch in [0, 1].

    Values are rounded to 8 bits on the way in (half to even, clipped) and returned as
    ``k / 255`` in the input's dtype, on its device and in channels-last memory on the CPU.
    """
    import torch

    if subsampling not in SUBSAMPLING_FACTORS:
        raise ValueError(f"unknown chroma subsampling {subsampling!r}; valid: {', '.join(SUBSAMPLING_FACTORS)}")
    from evalsuite.jpeg import cpu

    if x.device.type == "cpu" and cpu.available():
        src = x.detach().to(torch.float32).permute(0, 2, 3, 1).numpy()
        out = cpu.jpeg_roundtrip_nhwc(src, quality, subsampling)
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(x.dtype)
    from evalsuite.jpeg.tensor import jpeg_roundtrip_levels
    from evalsuite.tensors import levels_to_unit, to_levels

    return levels_to_unit(jpeg_roundtrip_levels(to_levels(x), quality, subsampling).to(x.dtype))
