"""Digital corruptions: brightness, contrast, saturate, elastic transform, pixelate, JPEG.

Brightness belongs to ImageNet-C's weather family (``family="weather"``) but shares the HSV
closed form with saturate, so it lives here; as the first corruption of this module it lists
right after the weather module's, where ImageNet-C lists it.

Brightness and saturate are exact closed forms of the reference's skimage HSV round trip;
pixelate reproduces Pillow's BOX/NEAREST resampling in integer arithmetic; JPEG uses a real
libjpeg codec (see :func:`apply_jpeg_compression`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from evalsuite.corruptions._ops import gaussian_filter, levels_to_unit, to_levels
from evalsuite.corruptions._random import SampleRandom
from evalsuite.corruptions.registry import register_corruption

CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)
BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)
SATURATE = ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2))  # scale, offset of HSV saturation
ELASTIC = (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12)  # alpha
PIXELATE = (0.6, 0.5, 0.4, 0.3, 0.25)
JPEG_QUALITY = (25, 18, 15, 10, 7)


@register_corruption("brightness", family="weather", benchmark=True, description="brighter scene (HSV value up)")
def apply_brightness(x: torch.Tensor, severity: int, draws: dict) -> torch.Tensor:
    """``hsv2rgb(rgb2hsv(x) with V + c clipped)``: hue and saturation fixed, so RGB scales by V'/V.

    Black pixels (V = 0, saturation 0 by skimage's convention) become grey ``min(c, 1)``.
    """
    c = BRIGHTNESS[severity - 1]
    v = x.amax(dim=1, keepdim=True)
    black = v <= 0
    ratio = (v + c).clamp_(0, 1).div_(v.masked_fill(black, 1.0))
    out = x * ratio
    return out.masked_fill_(black.expand_as(out), min(c, 1.0))


@register_corruption("contrast", family="digital", benchmark=True, description="reduced contrast")
def apply_contrast(x: torch.Tensor, severity: int, draws: dict) -> torch.Tensor:
    c = CONTRAST[severity - 1]
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means).mul_(c).add_(means)


@register_corruption("saturate", family="digital", held_out=True, description="HSV saturation change")
def apply_saturate(x: torch.Tensor, severity: int, draws: dict) -> torch.Tensor:
    """skimage HSV saturation ``S' = clip(S * a + b, 0, 1)`` with H and V fixed, in closed form.

    In HSV every channel is ``V * (1 - S * w)`` with ``w = (V - channel) / (V - min)`` fixed
    by the hue, so the new channel is ``V * (1 - S' * w)``. Grey pixels (S = 0) have hue 0
    (red) in skimage: ``w = (0, 1, 1)``.
    """
    a, b = SATURATE[severity - 1]
    v = x.amax(dim=1, keepdim=True)
    mn = x.amin(dim=1, keepdim=True)
    delta = v - mn
    s = torch.where(v > 0, delta / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    s_new = (s * a + b).clamp(0, 1)
    grey = delta <= 0
    wgt = (v - x) / torch.where(grey, torch.ones_like(delta), delta)
    red_hue = torch.tensor([0.0, 1.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    wgt = torch.where(grey, red_hue.expand_as(x), wgt)
    return v * (1 - s_new * wgt)


# -- elastic transform ----------------------------------------------------------------------


def draw_elastic_transform(x: torch.Tensor, severity: int, rand: SampleRandom) -> dict:
    """Uniform displacement seeds ``U(-H/200, H/200)`` for dx and dy (the reference uses H for both)."""
    h = x.shape[-2]
    m = h * 0.005
    u = rand.uniform((2, *x.shape[-2:]))
    return {"dx": -m + (2 * m) * u[:, 0], "dy": -m + (2 * m) * u[:, 1]}


@register_corruption("elastic_transform", family="digital", benchmark=True,
                     description="smooth random elastic warp", draw=draw_elastic_transform)
def apply_elastic_transform(x: torch.Tensor, severity: int, draws: dict) -> torch.Tensor:
    """Smooth the seeds (sigma = 1% of each side, reflect, truncate 3), scale by alpha, warp bilinearly.

    ``scipy.ndimage.map_coordinates(order=1, mode='reflect')`` equals ``grid_sample`` with
    reflection padding and ``align_corners=False``: both mirror coordinates about the outer
    pixel edges.
    """
    alpha = ELASTIC[severity - 1]
    n, _, h, w = x.shape
    sig = (h * 0.01, w * 0.01)
    dx = gaussian_filter(draws["dx"].to(x).unsqueeze(1), sig, mode="reflect", truncate=3.0) * alpha
    dy = gaussian_filter(draws["dy"].to(x).unsqueeze(1), sig, mode="reflect", truncate=3.0) * alpha
    ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
    gx = (2 * (xs + dx[:, 0]) + 1) / w - 1
    gy = (2 * (ys + dy[:, 0]) + 1) / h - 1
    grid = torch.stack((gx, gy), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


# -- pixelate -------------------------------------------------------------------------------


def pil_box_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's BOX resampling taps for one axis: (indices out x T, weights out x T).

    Mirrors ``precompute_coeffs`` in Pillow's ``Resample.c`` (support 0.5 * scale, box
    filter ``-0.5 < x <= 0.5``, weights normalised per output pixel).
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    rows: list[list[tuple[int, float]]] = []
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        ss = 1.0 / filterscale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        taps = []
        for x in range(xmax):
            arg = (x + xmin - center + 0.5) * ss
            wgt = 1.0 if (-0.5 < arg <= 0.5) else 0.0
            taps.append((x + xmin, wgt))
        total = sum(t[1] for t in taps)
        rows.append([(i, wv / total if total else 0.0) for i, wv in taps])
    t = max(len(r) for r in rows)
    idx = np.zeros((out_size, t), dtype=np.int64)
    wts = np.zeros((out_size, t), dtype=np.float64)
    for o, r in enumerate(rows):
        for k, (i, wv) in enumerate(r):
            idx[o, k], wts[o, k] = i, wv
    return idx, wts


def pil_nearest_index(in_size: int, out_size: int) -> np.ndarray:
    """Source index per output pixel of Pillow's NEAREST resize.

    Pillow's ``ImagingScaleAffine`` starts at ``0.5 * scale`` and *accumulates* ``scale`` in a
    double per pixel, truncating each position; the accumulation error matters at exact
    boundaries, so it is replayed here.
    """
    scale = in_size / out_size
    pos = 0.0 + scale * 0.5
    out = np.empty(out_size, dtype=np.int64)
    for k in range(out_size):
        out[k] = -1 if pos < 0.0 else int(pos)
        pos += scale
    return np.clip(out, 0, in_size - 1)


@lru_cache(maxsize=64)
def _pixelate_tables(h: int, w: int, severity: int, device: str) -> tuple:
    """Per axis: tap indices (out x T) and 1 / window length (out,), plus the NEAREST indices.

    Pillow's BOX windows weigh every pixel they cover equally (a pixel is in window ``j`` when
    its centre lies in ``(j * scale, (j + 1) * scale]``), so a window is a sum times
    ``1 / count``; taps beyond a short window point at an extra zero column.
    """
    c = PIXELATE[severity - 1]
    sw, sh = int(w * c), int(h * c)
    out = []
    for size, small in ((w, sw), (h, sh)):
        idx, wts = pil_box_weights(size, small)
        counts = (wts > 0).sum(axis=1)
        if not np.allclose(wts[wts > 0], np.repeat(1.0 / counts, counts)):
            raise AssertionError("Pillow BOX weights are not uniform per window")
        idx = np.where(wts > 0, idx, size)  # index ``size`` = the zero padding column
        out.append((idx, 1.0 / counts))
    (ix, rx), (iy, ry) = out
    nx, ny = pil_nearest_index(sw, w), pil_nearest_index(sh, h)

    def t(a, dtype=None):
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)

    return (t(ix), t(rx, torch.float32), t(iy), t(ry, torch.float32), t(nx), t(ny))


@lru_cache(maxsize=64)
def _torch_nearest_matches(small: int, size: int) -> bool:
    """Whether ``F.interpolate(mode='nearest-exact')`` picks Pillow's NEAREST source pixels here (CPU)."""
    src = torch.arange(small, dtype=torch.float32).view(1, 1, 1, small)
    picked = F.interpolate(src, size=(1, size), mode="nearest-exact").view(-1).to(torch.int64).numpy()
    return bool(np.array_equal(picked, pil_nearest_index(small, size)))


def _box_rows(t: torch.Tensor, idx: torch.Tensor, recip: torch.Tensor) -> torch.Tensor:
    """Pillow's 8-bit BOX pass along dim -2 (rows: contiguous gathers), rounded half up."""
    zero = t.new_zeros((*t.shape[:-2], 1, t.shape[-1]))
    t = torch.cat([t, zero], dim=-2)  # row ``size`` is the zero padding row
    acc = t.index_select(-2, idx[:, 0])
    for k in range(1, idx.shape[1]):
        acc.add_(t.index_select(-2, idx[:, k]))
    return acc.mul_(recip.view(-1, 1)).add_(0.5).floor_()


@lru_cache(maxsize=1)
def _pillow_major() -> int:
    try:
        import PIL

        return int(PIL.__version__.split(".")[0])
    except Exception:  # pragma: no cover - Pillow is a dependency
        return 0


def pillow_vertical_pass_first(h: int, w: int) -> bool:
    """Whether the installed Pillow's two-pass resize starts with the vertical pass.

    Pillow 13 does for images more than twice as tall as wide; Pillow 12 and older always run
    the horizontal pass first (seen on 12.3: the order changes the 8-bit rounding between the
    passes, so 37 x 101 images differed by one level in 13% of pixels). The engine follows the
    installed Pillow, which is what the reference backend calls.
    """
    return _pillow_major() >= 13 and h > 2 * w


@register_corruption("pixelate", family="digital", benchmark=True,
                     description="box downsample, nearest upsample", on_grid=True, per_image_cpu=True)
def apply_pixelate(x: torch.Tensor, severity: int, draws: dict) -> torch.Tensor:
    """Pillow ``resize(BOX)`` to ``int(side * c)`` then ``resize(NEAREST)`` back, on 8-bit levels.

    Pillow rounds to 8 bits after each of its two passes; both roundings are reproduced. It
    runs the horizontal pass first, except where :func:`pillow_vertical_pass_first` says the
    installed Pillow does not (``test_pixelate_bit_exact_with_pillow`` checks it against the
    installed Pillow). Passes run along rows (transposing in between),
    where gathers copy contiguous memory. The result is exactly on the 8-bit grid. On the CPU
    a numba kernel runs the same float32 operations image by image (bit-identical, faster).
    """
    from evalsuite.corruptions import _numba

    n, ch, h, w = x.shape
    if _numba.use_kernels(x):  # CPU: the same float32 operations, image by image in cache
        ix, rx, iy, ry, nx, ny = (t.numpy() for t in _pixelate_tables(h, w, severity, "cpu"))
        return _numba.per_image("pixelate", x, ix, rx, iy, ry, nx, ny, pillow_vertical_pass_first(h, w))
    ix, rx, iy, ry, nx, ny = _pixelate_tables(h, w, severity, str(x.device))
    v = torch.round(x * 255.0)
    if pillow_vertical_pass_first(h, w):
        small = _box_rows(_box_rows(v, iy, ry).transpose(-1, -2).contiguous(), ix, rx).transpose(-1, -2).contiguous()
    else:
        small = _box_rows(_box_rows(v.transpose(-1, -2).contiguous(), ix, rx).transpose(-1, -2).contiguous(), iy, ry)
    sh, sw = small.shape[-2:]
    if x.device.type == "cpu" and _torch_nearest_matches(sh, h) and _torch_nearest_matches(sw, w):
        up = F.interpolate(small, size=(h, w), mode="nearest-exact")
    else:
        up = small.index_select(-2, ny).transpose(-1, -2).contiguous().index_select(-2, nx).transpose(-1, -2).contiguous()
    return levels_to_unit(up)


# -- JPEG -----------------------------------------------------------------------------------


def _jpeg_ops():
    """torchvision's libjpeg/nvJPEG operators, or None when its image extension is missing."""
    try:
        import torchvision.io.image  # noqa: F401  (registers torch.ops.image)

        ops = torch.ops.image
        ops.encode_jpeg  # noqa: B018
        return ops
    except Exception:  # pragma: no cover - depends on the torchvision build
        return None


def jpeg_roundtrip_pil(img: np.ndarray, quality: int) -> np.ndarray:
    """The reference's codec: Pillow JPEG at ``quality``, decoded again (HxWx3 uint8)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


@register_corruption("jpeg_compression", family="digital", benchmark=True,
                     description="JPEG compression artefacts", on_grid=True, per_image_cpu=True)
def apply_jpeg_compression(x: torch.Tensor, severity: int, draws: dict, codec: str | None = None) -> torch.Tensor:
    """Encode and decode with libjpeg at the reference quality (4:2:0 chroma, islow DCT).

    ``codec``: ``"kernel"`` (libjpeg's lossy steps recomputed by :mod:`evalsuite.jpeg`'s numba
    kernel on the CPU, per image on the shared thread pool: bit-identical to the reference's
    Pillow in the tests, and the fastest CPU path), ``"libjpeg"`` (libjpeg-turbo itself on the
    CPU: with numba, OpenCV's build per image on the shared thread pool with numba kernels for
    the 8-bit conversions, else torchvision's), ``"tensor"`` (the lossy steps as batched integer
    tensor operations, on any device, see :mod:`evalsuite.jpeg.tensor`), ``"pil"`` (Pillow, the
    reference's own call) or ``"nvjpeg"`` (torchvision's CUDA codec for CUDA tensors; not
    bit-identical, see docs/corruptions.md). Default: :func:`default_jpeg_codec`, a choice by
    device and image size only. The result is exactly on the 8-bit grid.
    """
    q = JPEG_QUALITY[severity - 1]
    ops = _jpeg_ops()
    codec = codec or default_jpeg_codec(x, ops is not None)
    if codec == "kernel":
        from evalsuite.jpeg import jpeg_roundtrip

        return jpeg_roundtrip(x, q)
    if codec == "tensor":
        from evalsuite.jpeg.tensor import jpeg_roundtrip_levels

        return levels_to_unit(jpeg_roundtrip_levels(to_levels(x), q).to(x.dtype))
    if codec not in ("libjpeg", "pil", "nvjpeg"):
        raise ValueError(f"unknown JPEG codec {codec!r}; valid: kernel, libjpeg, tensor, pil, nvjpeg")
    from evalsuite.corruptions import _numba

    if codec == "libjpeg" and _numba.use_kernels(x):
        return _jpeg_opencv(x, q)
    return _jpeg_codec_levels(x, q, codec, ops)


def default_jpeg_codec(x: torch.Tensor, have_torchvision_codec: bool) -> str:
    """The codec :func:`apply_jpeg_compression` uses for batch ``x`` when none is named.

    ``tensor`` for CUDA tensors; on the CPU the numba kernel for images where it beats
    libjpeg-turbo (:func:`evalsuite.jpeg.cpu.kernel_is_faster`), else libjpeg (Pillow when
    torchvision lacks its codec). Device and image size decide, never the batch size, so an
    image gets the same bytes in any batch (all CPU codecs agree bit for bit in the tests).
    """
    from evalsuite.corruptions import _numba
    from evalsuite.jpeg import cpu as jpeg_cpu

    if x.device.type != "cpu":
        return "tensor"
    if _numba.use_kernels(x) and jpeg_cpu.kernel_is_faster(x.shape[2], x.shape[3]):
        return "kernel"
    return "libjpeg" if have_torchvision_codec else "pil"


def _jpeg_opencv(x: torch.Tensor, q: int) -> torch.Tensor:
    """CPU round trip through OpenCV's libjpeg-turbo, image by image on the shared pool.

    8-bit conversion, encode, decode and conversion back per image; OpenCV's build (same
    settings, bit-identical output in the tests) releases the GIL, torchvision's does not.
    """
    import cv2

    from evalsuite.corruptions import _numba
    from evalsuite.parallel import parallel_for

    n, _, h, w = x.shape
    src = x.detach().numpy()
    out_np = np.empty(src.shape, dtype=np.float32)
    to_u8, from_u8 = _numba.kernel("to_u8_hwc"), _numba.kernel("from_u8_hwc")
    params = [cv2.IMWRITE_JPEG_QUALITY, q]

    def roundtrip(i: int) -> None:
        bgr = to_u8(src[i], np.empty((h, w, 3), dtype=np.uint8), True)
        ok, buf = cv2.imencode(".jpg", bgr, params)
        if not ok:  # pragma: no cover - libjpeg cannot fail on a valid 8-bit image
            raise RuntimeError("OpenCV failed to encode a JPEG")
        from_u8(cv2.imdecode(buf, cv2.IMREAD_COLOR), out_np[i], True)

    parallel_for(roundtrip, n)
    return torch.from_numpy(out_np)


def _jpeg_codec_levels(x: torch.Tensor, q: int, codec: str, ops: Any) -> torch.Tensor:
    """Round trip through torchvision's libjpeg (``libjpeg``), nvJPEG (``nvjpeg``) or Pillow (``pil``)."""
    from evalsuite.parallel import parallel_for

    n, _, h, w = x.shape
    # 8-bit levels in channels-last memory: every image is then a free HWC view for the codecs
    levels = torch.empty((n, h, w, 3), device=x.device, dtype=x.dtype)
    levels.copy_(x.permute(0, 2, 3, 1)).mul_(255.0).round_().clamp_(0, 255)
    hwc = levels.to(torch.uint8)
    if codec == "nvjpeg":
        enc = ops.encode_jpegs_cuda(list(hwc.permute(0, 3, 1, 2).contiguous().unbind(0)), q)
        # nvJPEG decodes from host memory: one copy of all the streams, not one per image
        sizes = [int(e.numel()) for e in enc]
        streams = list(torch.cat(enc).cpu().split(sizes))
        dec = ops.decode_jpegs_cuda(streams, 3, x.device)  # 3 = ImageReadMode.RGB
        return levels_to_unit(torch.stack(dec).to(x.dtype))
    hwc = hwc.cpu()
    if codec == "libjpeg":
        dec: list = [None] * n

        def store(i: int) -> None:
            # encode_jpeg permutes CHW -> HWC internally: an HWC-contiguous view makes that free;
            # decode_jpeg returns a CHW view of an HWC buffer, kept HWC here
            dec[i] = ops.decode_jpeg(ops.encode_jpeg(hwc[i].permute(2, 0, 1), q), 3, False).permute(1, 2, 0)

        parallel_for(store, n)
        stacked = torch.stack(dec)
    else:
        stacked = torch.from_numpy(np.stack([jpeg_roundtrip_pil(np.array(im), q) for im in hwc.numpy()]))
    out = torch.empty((n, 3, h, w), dtype=x.dtype)
    out.copy_(stacked.permute(0, 3, 1, 2))
    return levels_to_unit(out.to(x.device))
