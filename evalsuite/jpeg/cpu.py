"""libjpeg-turbo's lossy JPEG steps as one compiled CPU kernel (numba), image by image.

The same computation as :mod:`evalsuite.jpeg.tensor` (see there and the package docstring for
what is reproduced and why it is exact), written as libjpeg's own loops: per image, fixed-point
RGB->YCbCr, edge padding, chroma downsampling, the "islow" forward DCT, quantisation and
dequantisation, the "islow" inverse DCT with its range limit, "fancy" upsampling and fixed-point
YCbCr->RGB, with libjpeg's integer arithmetic. Only the entropy coding in between, which is
lossless, is left out. For small images, where a codec call's set-up costs more than the pixels
it codes, this is faster than a real encode and decode (2.4x per image at 32 x 32); from about
64 x 64 up libjpeg-turbo's SIMD codec is faster (:data:`KERNEL_MAX_PIXELS`).

The kernel takes and returns float images in [0, 1] (``N x H x W x 3``, any strides), so the
8-bit rounding on the way in (``round_half_even(255 x)``, clipped) and the exact ``k / 255`` on
the way out are fused into it. It releases the GIL and codes a slice of the batch per call, so
a batch runs on the shared thread pool (:func:`evalsuite.parallel.parallel_slices`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from evalsuite.jpeg.tensor import SUBSAMPLING_FACTORS, quant_tables
from evalsuite.parallel import numba_available, parallel_slices

#: Above this many pixels per image libjpeg-turbo's SIMD codec (through OpenCV) codes an image in
#: less CPU time than the kernel (measured, one thread, qualities 15-92, per image: the kernel is
#: 2.3-2.4x faster at 32 x 32, 1.35-1.65x at 48 x 48, 0.8-1.4x at 64-80 px, 0.55-1.4x at 96-128
#: px). Both give the same output, so callers switch by size.
KERNEL_MAX_PIXELS = 64 * 64


def kernel_is_faster(h: int, w: int) -> bool:
    """Whether the kernel beats a real codec for ``h x w`` images (and numba is available)."""
    return h * w <= KERNEL_MAX_PIXELS and available()


def available() -> bool:
    """Whether the kernel can run (numba can be imported)."""
    return numba_available()


def kernel() -> Any:
    """The compiled batch kernel (imported on first use: numba loads it from its disk cache, or
    compiles it once; Python's import lock makes that thread-safe)."""
    from evalsuite.jpeg._kernel import roundtrip

    return roundtrip


def jpeg_roundtrip_nhwc(src: np.ndarray, quality: int, subsampling: str = "4:2:0", out: np.ndarray | None = None) -> np.ndarray:
    """Decode(encode(images)) as libjpeg-turbo would, for float32 ``N x H x W x 3`` images in [0, 1].

    ``src`` may have any strides (a channels-first batch's ``permute(0, 2, 3, 1)`` view works);
    the result (``out`` when given, same shape) holds ``k / 255`` for the decoded 8-bit levels.
    """
    if src.ndim != 4 or src.shape[3] != 3:
        raise ValueError(f"expected an N x H x W x 3 array, got shape {src.shape}")
    if src.dtype != np.float32:
        raise ValueError(f"expected float32 images, got {src.dtype}")
    args = _kernel_args(int(quality), subsampling)
    if out is None:
        out = np.empty(src.shape, dtype=np.float32)
    fn = kernel()
    parallel_slices(lambda lo, hi: fn(src, out, *args, lo, hi), src.shape[0])
    return out


def jpeg_roundtrip_image(img: np.ndarray, quality: int, subsampling: str = "4:2:0", out: np.ndarray | None = None) -> np.ndarray:
    """:func:`jpeg_roundtrip_nhwc` of one float32 ``H x W x 3`` image, in the calling thread (for
    callers that already run per image on the thread pool)."""
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.float32:
        raise ValueError(f"expected a float32 H x W x 3 image, got {img.dtype} {img.shape}")
    if out is None:
        out = np.empty(img.shape, dtype=np.float32)
    kernel()(img[None], out[None], *_kernel_args(int(quality), subsampling), 0, 1)
    return out


@lru_cache(maxsize=256)
def _kernel_args(quality: int, subsampling: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The kernel's (luma table, chroma table, hs, vs): quantisation tables of ``quality`` as
    int64 arrays in natural order, and the luma sampling factors of ``subsampling``."""
    luma, chroma = quant_tables(quality)
    hs, vs = SUBSAMPLING_FACTORS[subsampling]
    return np.asarray(luma, dtype=np.int64), np.asarray(chroma, dtype=np.int64), hs, vs
