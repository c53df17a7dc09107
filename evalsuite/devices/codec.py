"""Lossy codecs: JPEG (libjpeg-turbo's arithmetic, or nvJPEG) and WebP (libwebp).

Images are rounded to 8 bits (as a device stores them), encoded, decoded and returned as
floats. JPEG's default ``libjpeg`` backend gives libjpeg-turbo's output by the fastest route:
for small CPU images and on a GPU it calls no codec but :mod:`evalsuite.jpeg`, which redoes
libjpeg-turbo's lossy steps with its integer arithmetic (a numba kernel on the CPU, tensor
operations on a GPU), bit for bit (checked against Pillow and OpenCV in the tests), without the
lossless entropy coding and the per-call codec set-up (2.4x faster per image at 32 x 32);
larger CPU images go through libjpeg-turbo itself (OpenCV), whose SIMD code is faster there.
The codec backends remain: ``opencv`` calls
``cv2.imencode``/``cv2.imdecode``: OpenCV and Pillow wrap the same libjpeg-turbo and libwebp and
write byte-identical files for the same quality and chroma subsampling (checked in the tests
against Pillow), but OpenCV's per-image overhead is several times lower (about 4x for 32 x 32
images); ``pillow`` goes through Pillow itself. Both release the GIL, so the CPU path codes a
batch on the thread pool. ``backend: torchvision`` (JPEG only) uses
``torchvision.io.encode_jpeg``/``decode_jpeg``, which run on the GPU (nvJPEG) for CUDA tensors;
it always subsamples chroma 4:2:0 and its output can differ slightly from libjpeg's, so it is
opt-in.

WebP's encoder ``method`` (effort) is only exposed by Pillow; OpenCV encodes with libwebp's
default (4), so other methods go through Pillow.
"""

from __future__ import annotations

import io
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from evalsuite.devices.base import DeviceOp, InvalidParameter, Param
from evalsuite.parallel import parallel_for

_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float in [0, 1] to uint8: ``saturate(round_half_even(255 x))`` in one OpenCV pass."""
    import cv2

    return cv2.convertScaleAbs(np.ascontiguousarray(img, dtype=np.float32), alpha=255.0)


def from_uint8(u8: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 to float32 ``k / 255`` (correctly rounded, as the runner and the torch path divide)."""
    return np.divide(u8, np.float32(255.0), out=out, dtype=np.float32)


def cv2_roundtrip(rgb: np.ndarray, ext: str, params: list[int]) -> np.ndarray:
    """Encode an ``H x W x 3`` uint8 RGB image with OpenCV (which expects BGR) and decode it again.

    The channel swap on the way in is ``cvtColor`` (a reversed view costs OpenCV's binding an
    element-wise copy: 0.26 ms against 0.007 ms at 224 x 224, and more per image at every size
    from 32 x 32 up, measured in a pool worker); on the way out ``IMREAD_COLOR_RGB`` (OpenCV >=
    4.10) decodes straight to RGB."""
    import cv2

    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {ext}")
    imread_rgb = _imread_rgb()
    if imread_rgb is not None:
        return cv2.imdecode(buf, imread_rgb)
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)  # pragma: no cover - old OpenCV


@lru_cache(maxsize=1)
def _imread_rgb() -> int | None:
    """OpenCV's ``IMREAD_COLOR_RGB`` flag (4.10+), looked up once, when first needed."""
    try:
        import cv2
    except ImportError:  # pragma: no cover - OpenCV is a declared dependency
        return None
    return getattr(cv2, "IMREAD_COLOR_RGB", None)



def _cv2_jpeg_sampling(subsampling: str) -> int | None:
    import cv2

    name = {"4:4:4": "IMWRITE_JPEG_SAMPLING_FACTOR_444", "4:2:2": "IMWRITE_JPEG_SAMPLING_FACTOR_422",
            "4:2:0": "IMWRITE_JPEG_SAMPLING_FACTOR_420"}[subsampling]
    return getattr(cv2, name, None) if hasattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR") else None


def pil_roundtrip(u8: np.ndarray, fmt: str, **save_kwargs: Any) -> np.ndarray:
    """Encode an ``H x W x 3`` uint8 image with Pillow and decode it again."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(u8, mode="RGB").save(buf, format=fmt, **save_kwargs)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def codec_batch(op: DeviceOp, x: Any) -> Any:
    """``apply_torch`` of the CPU codecs: 8-bit conversion of the whole batch in torch, then
    per-image encode/decode on the thread pool (``op.code_uint8``), then back to float."""
    import torch

    u8 = (x.detach().clamp(0.0, 1.0) * 255.0).round_().to(torch.uint8)
    hwc = u8.permute(0, 2, 3, 1).cpu().contiguous().numpy()
    out = np.empty_like(hwc)

    def one(i: int) -> None:
        out[i] = op.code_uint8(hwc[i])

    parallel_for(one, hwc.shape[0])
    return torch.from_numpy(out).to(x.device).permute(0, 3, 1, 2).to(x.dtype).div_(255.0)


class Jpeg(DeviceOp):
    """JPEG compression at ``quality`` with chroma ``subsampling``, as libjpeg-turbo codes it."""

    name = "jpeg"
    summary = "JPEG compression, bit-identical to libjpeg-turbo (or through OpenCV, Pillow, torchvision/nvJPEG)"
    domain = "srgb"
    params = {
        "quality": Param("int", 75, "JPEG quality (IJG scale)", 1, 100),
        "subsampling": Param("choice", "4:2:0", "chroma subsampling", choices=tuple(_SUBSAMPLING)),
        "backend": Param(
            "choice", "libjpeg",
            "libjpeg: libjpeg-turbo's lossy steps computed directly (same output as the codec); "
            "or a codec library",
            choices=("libjpeg", "opencv", "pillow", "torchvision"),
        ),
    }
    ladder = {
        1: {"quality": 85},
        2: {"quality": 65},
        3: {"quality": 45},
        4: {"quality": 25},
        5: {"quality": 10},
    }

    def _validate(self) -> None:
        if self.backend == "torchvision" and self.subsampling != "4:2:0":
            raise InvalidParameter("jpeg: backend 'torchvision' always subsamples chroma 4:2:0; use backend 'pillow'")

    @cached_property
    def _cv2_params(self) -> list[int] | None:
        """OpenCV's encoder parameters for this quality and subsampling (None: OpenCV cannot)."""
        sampling = _cv2_jpeg_sampling(self.subsampling)
        if sampling is None:
            return None
        import cv2

        return [cv2.IMWRITE_JPEG_QUALITY, int(self.quality), cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]

    def code_uint8(self, rgb: np.ndarray) -> np.ndarray:
        """Encode and decode one ``H x W x 3`` uint8 RGB image."""
        if self.backend in ("opencv", "libjpeg"):  # libjpeg without numba: the codec gives the same
            params = self._cv2_params
            if params is not None:
                return cv2_roundtrip(rgb, ".jpg", params)
        if self.backend == "torchvision":
            import torch

            dec = self._torchvision([torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()], "cpu")[0]
            return dec.permute(1, 2, 0).numpy()
        return pil_roundtrip(np.ascontiguousarray(rgb), "JPEG", quality=int(self.quality),
                             subsampling=_SUBSAMPLING[self.subsampling])

    def _direct(self, h: int, w: int) -> bool:
        """Whether ``h x w`` CPU images run :mod:`evalsuite.jpeg`'s kernel instead of the codec
        (``libjpeg`` backend: the kernel for small images, libjpeg-turbo through OpenCV for large
        ones, whichever is faster; the output is the same)."""
        from evalsuite.jpeg import cpu

        return self.backend == "libjpeg" and cpu.kernel_is_faster(h, w)

    def apply_numpy(self, img: np.ndarray, p: Any) -> np.ndarray:
        out = np.empty(img.shape, dtype=np.float32)
        self.apply_numpy_into(img, p, out)
        return out

    def apply_numpy_into(self, img: np.ndarray, p: Any, out: np.ndarray) -> None:
        if self._direct(img.shape[0], img.shape[1]):
            from evalsuite.jpeg.cpu import jpeg_roundtrip_image

            jpeg_roundtrip_image(img, self.quality, self.subsampling, out=out)
            return
        from_uint8(self.code_uint8(to_uint8(img)), out=out)

    def _torchvision(self, images: list, device: Any) -> list:
        import warnings

        from torchvision.io import decode_jpeg, encode_jpeg

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision >= 0.29 marks its codecs deprecated
            encoded = encode_jpeg(images, quality=int(self.quality))
            return decode_jpeg([e.cpu() for e in encoded], device=device)

    def apply_torch(self, x: Any, ps: Any) -> Any:
        import torch

        if self.backend == "torchvision":
            u8 = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
            decoded = self._torchvision(list(u8), x.device)
            return torch.stack(decoded).to(x.dtype) / 255.0
        if self.backend == "libjpeg" and (x.device.type != "cpu" or self._direct(x.shape[2], x.shape[3])):
            from evalsuite.jpeg import jpeg_roundtrip

            return jpeg_roundtrip(x, self.quality, self.subsampling)
        return codec_batch(self, x)


class WebP(DeviceOp):
    """Lossy WebP compression at ``quality`` (libwebp; chroma is always 4:2:0)."""

    name = "webp"
    summary = "lossy WebP compression through libwebp (OpenCV or Pillow)"
    domain = "srgb"
    params = {
        "quality": Param("int", 75, "WebP quality", 1, 100),
        "method": Param("int", 4, "encoder effort (0 fast - 6 slow)", 0, 6),
        "backend": Param("choice", "opencv", "codec library", choices=("opencv", "pillow")),
    }
    ladder = {
        1: {"quality": 80},
        2: {"quality": 60},
        3: {"quality": 40},
        4: {"quality": 20},
        5: {"quality": 5},
    }

    def code_uint8(self, rgb: np.ndarray) -> np.ndarray:
        """Encode and decode one ``H x W x 3`` uint8 RGB image."""
        if self.backend == "opencv" and self.method == 4:  # OpenCV encodes with libwebp's default effort
            import cv2

            return cv2_roundtrip(rgb, ".webp", [cv2.IMWRITE_WEBP_QUALITY, int(self.quality)])
        return pil_roundtrip(np.ascontiguousarray(rgb), "WEBP", quality=int(self.quality), method=int(self.method))

    def apply_numpy(self, img: np.ndarray, p: Any) -> np.ndarray:
        return from_uint8(self.code_uint8(to_uint8(img)))

    def apply_numpy_into(self, img: np.ndarray, p: Any, out: np.ndarray) -> None:
        from_uint8(self.code_uint8(to_uint8(img)), out=out)

    def apply_torch(self, x: Any, ps: Any) -> Any:
        return codec_batch(self, x)
