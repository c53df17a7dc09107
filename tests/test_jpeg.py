"""evalsuite.jpeg: libjpeg-turbo's lossy steps, recomputed, against the real codec.

Both implementations (the numba CPU kernel and the tensor version) must return exactly the
image that Pillow and OpenCV decode after encoding at the same quality and chroma
subsampling: every size class (whole MCUs, odd sizes with edge padding, subsampled widths of
1-2 that libjpeg upsamples by replication), every subsampling, and qualities whose tables
clamp at 1 and at 255.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from evalsuite.jpeg import SUBSAMPLING_FACTORS, jpeg_roundtrip, quant_tables
from evalsuite.jpeg.cpu import jpeg_roundtrip_image, jpeg_roundtrip_nhwc
from evalsuite.jpeg.tensor import jpeg_roundtrip_levels

_PIL_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def _cases():
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(5)
    yield "photo 224", np.asarray(Image.fromarray(data.astronaut()).resize((224, 224)))
    for h, w in [(37, 101), (101, 37), (33, 35), (17, 9), (16, 6), (8, 8), (5, 3), (2, 7), (3, 2), (1, 1)]:
        yield f"noise {h}x{w}", rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        yield f"photo {h}x{w}", np.asarray(Image.fromarray(data.coffee()).resize((w, h)))


CASES = list(_cases())


def pillow_roundtrip(img: np.ndarray, quality: int, subsampling: str) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality, subsampling=_PIL_SUBSAMPLING[subsampling])
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def opencv_roundtrip(img: np.ndarray, quality: int, subsampling: str) -> np.ndarray:
    import cv2

    factor = {"4:4:4": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444, "4:2:2": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
              "4:2:0": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420}[subsampling]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


@pytest.mark.parametrize("subsampling", list(SUBSAMPLING_FACTORS))
@pytest.mark.parametrize("quality", [1, 7, 18, 50, 80, 95, 100])
def test_both_implementations_are_bit_identical_to_pillow(quality, subsampling):
    for name, img in CASES:
        ref = pillow_roundtrip(img, quality, subsampling)
        unit = (img.astype(np.float32) / np.float32(255.0))[None]
        kernel = jpeg_roundtrip_nhwc(unit, quality, subsampling)[0]
        assert np.array_equal(kernel, ref.astype(np.float32) / np.float32(255.0)), f"numba, {name}"
        levels = torch.from_numpy(img.copy()).permute(2, 0, 1)[None]
        tensor = jpeg_roundtrip_levels(levels, quality, subsampling)[0].permute(1, 2, 0).numpy()
        assert np.array_equal(tensor, ref), f"tensor, {name}"


@pytest.mark.parametrize("subsampling", list(SUBSAMPLING_FACTORS))
def test_opencv_writes_what_pillow_writes(subsampling):
    """The device suite's ``opencv`` backend and the reference agree, so all four match."""
    for name, img in CASES[::3]:
        for quality in (10, 75):
            assert np.array_equal(opencv_roundtrip(img, quality, subsampling), pillow_roundtrip(img, quality, subsampling)), name


def test_kernel_takes_any_memory_layout_and_rounds_like_the_codec_paths():
    """A channels-first batch's NHWC view, a channels-last batch and one image at a time give
    the same result; input off the 8-bit grid and outside [0, 1] is rounded half to even and
    clipped first, as the 8-bit conversion in front of a codec does."""
    rng = np.random.default_rng(1)
    nchw = torch.from_numpy(rng.uniform(-0.1, 1.1, (4, 3, 19, 26)).astype(np.float32))
    strided = jpeg_roundtrip_nhwc(nchw.permute(0, 2, 3, 1).numpy(), 60, "4:2:2")
    dense = jpeg_roundtrip_nhwc(np.ascontiguousarray(nchw.permute(0, 2, 3, 1).numpy()), 60, "4:2:2")
    assert np.array_equal(strided, dense)
    for i in range(4):
        one = np.ascontiguousarray(nchw[i].permute(1, 2, 0).numpy())
        assert np.array_equal(jpeg_roundtrip_image(one, 60, "4:2:2"), dense[i])
    levels = torch.round(nchw.clamp(0, 1) * 255)
    ref = jpeg_roundtrip_levels(levels, 60, "4:2:2").permute(0, 2, 3, 1).numpy().astype(np.float32) / np.float32(255)
    assert np.array_equal(dense, ref)


def test_dispatcher_keeps_dtype_and_device_and_matches_both():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.integers(0, 256, (3, 3, 24, 40)).astype(np.float32) / 255)
    y = jpeg_roundtrip(x, 30, "4:4:4")
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    ref = jpeg_roundtrip_levels(torch.round(x * 255), 30, "4:4:4").float() / 255
    assert torch.equal(y, ref)
    assert jpeg_roundtrip(x.double(), 30).dtype == torch.float64
    with pytest.raises(ValueError, match="unknown chroma subsampling '4:1:1'; valid: 4:4:4, 4:2:2, 4:2:0"):
        jpeg_roundtrip(x, 30, "4:1:1")
    if torch.cuda.is_available():
        assert torch.equal(jpeg_roundtrip(x.cuda(), 30, "4:4:4").cpu(), y)


def test_quant_tables_follow_jpeg_set_quality():
    luma, chroma = quant_tables(50)  # scale 100: the standard tables themselves
    assert luma[:8] == [16, 11, 10, 16, 24, 40, 51, 61] and chroma[:4] == [17, 18, 24, 47]
    luma, chroma = quant_tables(7)  # scale 714: clamped to 255 for baseline
    assert luma[0] == (16 * 714 + 50) // 100 and chroma[0] == (17 * 714 + 50) // 100 and max(luma) == max(chroma) == 255
    assert set(quant_tables(100)[0]) == {1}
