"""Thumbnails for the scorecard: one PNG encoder for every suite's gallery and examples.

Small images (digits are 8 x 8) are enlarged by an integer factor with nearest-neighbour so
pixels stay visible; large ones are shrunk to fit ``target`` px with a smooth filter.
"""

from __future__ import annotations

import io

import numpy as np

THUMBNAIL_PX = 96


def thumbnail_png(image: np.ndarray, target: int = THUMBNAIL_PX, smooth: str = "bicubic") -> bytes:
    """PNG bytes of ``image`` (uint8 HxWx3) scaled to about ``target`` px.

    ``smooth`` names the Pillow filter used when shrinking (``bicubic``, Pillow's thumbnail
    default, or ``lanczos``, which the capture-device strip uses to keep sensor noise visible).
    """
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(image))
    h, w = image.shape[:2]
    if max(h, w) > target:
        im.thumbnail((target, target), Image.Resampling[smooth.upper()])
    elif max(h, w) < target:
        f = max(1, target // max(h, w))
        im = im.resize((w * f, h * f), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def to_uint8_hwc(chw: np.ndarray) -> np.ndarray:
    """A float CHW image in [0, 1] as uint8 HWC (rounded to nearest, clipped)."""
    return np.clip(np.rint(np.transpose(chw, (1, 2, 0)) * 255.0), 0, 255).astype(np.uint8)
