"""Blur corruptions: defocus, glass, motion, zoom and gaussian blur.

All kernel sizes, radii and zoom factors are imagecorruptions' (ImageNet-C's) at every image
size: a 10-pixel defocus disk is 10 pixels on a 32 x 32 image too, exactly as the reference.
``@register_corruption`` on each apply function registers it; the benchmark ones appear here in
ImageNet-C's order (defocus, glass, motion, zoom), which is the listing order.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from evalsuite.corruptions._ops import (
    bilinear_zoom_layer,
    cached,
    fft_correlate2d,
    gaussian_filter,
    levels_to_unit,
    pad,
    register_kernel,
)
from evalsuite.corruptions._random import SampleRandom
from evalsuite.corruptions.registry import register_corruption

GAUSSIAN_BLUR = (1, 2, 3, 4, 6)
GLASS_BLUR = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))  # sigma, max_delta, iterations
DEFOCUS_BLUR = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))  # radius, alias_blur
MOTION_BLUR = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))  # radius, sigma


def zoom_factors(severity: int) -> np.ndarray:
    """The reference's ``np.arange`` zoom factors (float64, same rounding)."""
    return [
        np.arange(1, 1.11, 0.01),
        np.arange(1, 1.16, 0.01),
        np.arange(1, 1.21, 0.02),
        np.arange(1, 1.26, 0.02),
        np.arange(1, 1.31, 0.03),
    ][severity - 1]


# -- gaussian blur --------------------------------------------------------------------------


@register_corruption("gaussian_blur", family="blur", held_out=True, description="Gaussian blur")
def apply_gaussian_blur(x: torch.Tensor, severity: int, draws: dict) -> torch.Tensor:
    return gaussian_filter(x, float(GAUSSIAN_BLUR[severity - 1]), mode="nearest")


# -- defocus blur ---------------------------------------------------------------------------


def _cv2_gaussian_kernel(ksize: int, sigma: float) -> np.ndarray:
    """``cv2.getGaussianKernel(ksize, sigma)`` for sigma > 0."""
    x = np.arange(ksize, dtype=np.float64) - (ksize - 1) * 0.5
    k = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return k / k.sum()


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """imagecorruptions' ``disk``: a normalised disk, then ``cv2.GaussianBlur`` (reflect-101).

    Radius <= 8 uses a 17 x 17 support and a 3 x 3 anti-alias blur, larger radii a
    ``2r+1`` support and 5 x 5. Returned as float32, as the reference's kernel.
    """
    if radius <= 8:
        L = np.arange(-8, 8 + 1)
        ksize = 3
    else:
        L = np.arange(-radius, radius + 1)
        ksize = 5
    X, Y = np.meshgrid(L, L)
    disk = np.array((X**2 + Y**2) <= radius**2, dtype=np.float32)
    disk /= np.sum(disk)
    g = _cv2_gaussian_kernel(ksize, alias_blur)
    r = ksize // 2
    n = disk.shape[0]
    from evalsuite.corruptions._ops import extend_index

    idx = extend_index(n, r, r, "mirror")
    d = disk.astype(np.float64)
    tmp = sum(g[t] * d[:, idx[t : t + n]] for t in range(ksize))
    out = sum(g[t] * tmp[idx[t : t + n], :] for t in range(ksize))
    return out.astype(np.float32)


_kernels: dict = {}


@register_corruption("defocus_blur", family="blur", benchmark=True, description="out-of-focus disk blur")
def apply_defocus_blur(x: torch.Tensor, severity: int, draws: dict) -> torch.Tensor:
    radius, alias = DEFOCUS_BLUR[severity - 1]
    k = cached(
        ("disk", severity, str(x.device)),
        lambda: register_kernel(torch.from_numpy(disk_kernel(radius, alias)).to(x.device)),
        _kernels,
    )
    r = k.shape[0] // 2
    return fft_correlate2d(x, k, (r, r), "mirror")


# -- glass blur -----------------------------------------------------------------------------


def glass_region(severity: int, height: int, width: int) -> tuple[int, int, int]:
    """(rows, cols, iterations) of the reference's shuffle loop for an image size."""
    _, delta, iters = GLASS_BLUR[severity - 1]
    return max(0, height - 2 * delta), max(0, width - 2 * delta), iters


def draw_glass_blur(x: torch.Tensor, severity: int, rand: SampleRandom) -> dict:
    """Offsets ``(dx, dy)`` in ``[-delta, delta)`` for every visited pixel, in visiting order.

    Shape ``(N, iterations, rows, cols, 2)``: row ``j`` is image row ``H - delta - j``, column
    ``k`` is image column ``W - delta - k`` (the reference walks both downwards).
    """
    _, delta, _ = GLASS_BLUR[severity - 1]
    rows, cols, iters = glass_region(severity, *x.shape[-2:])
    shape = (iters, rows, cols, 2)
    if delta & (delta - 1) == 0:  # 2 * delta values: a power of two, take packed random bits
        return {"offsets": rand.randbits((2 * delta).bit_length() - 1, shape).sub_(delta)}
    return {"offsets": rand.randint(-delta, delta, shape, dtype=torch.int8)}


_glass_tables: dict = {}


def _glass_layout(h: int, w: int, delta: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(flat base position of each visited pixel, int32; the same as int64; visit order of every pixel, -1 if never)."""

    def build():
        rows, cols = max(0, h - 2 * delta), max(0, w - 2 * delta)
        hh = (h - delta) - np.arange(rows).reshape(rows, 1)
        ww = (w - delta) - np.arange(cols).reshape(1, cols)
        pos = (hh * w + ww).reshape(-1)
        order = np.full(h * w, -1, dtype=np.int32)
        order[pos] = np.arange(rows * cols, dtype=np.int32)
        return (
            torch.from_numpy(pos.astype(np.int32)).to(device),
            torch.from_numpy(pos.astype(np.int64)).to(device),
            torch.from_numpy(order).to(device),
        )

    return cached(("glass", h, w, delta, str(device)), build, _glass_tables)


def glass_shuffle(q: torch.Tensor, offsets: torch.Tensor, delta: int) -> torch.Tensor:
    """The reference's sequential pixel "swap" loop, computed exactly in parallel.

    The reference visits ``h = H-delta .. delta+1`` (outer) and ``w = W-delta .. delta+1``
    (inner) and executes ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on array views, which
    *copies* pixel ``(h', w')`` into ``(h, w)`` and leaves ``(h', w')`` unchanged. So after
    one pass ``new[p] = new[s(p)]`` if the source ``s(p)`` was visited before ``p`` (it is in
    the visited region and earlier in the walk), else ``old[s(p)]``. Sources visited earlier
    form chains that always move to earlier visits, so each pixel's value comes from the end
    of its chain in the old image: pointer doubling finds every chain's end in
    ``O(log length)`` gathers, bit-identical to the loop for the same offsets. With
    ``delta = 1`` offsets are in {-1, 0}: no source is ever visited earlier. The passes are
    composed as index maps and the pixels gathered once.
    """
    n, c, h, w = q.shape
    iters, rows, cols = offsets.shape[1:4]
    if rows == 0 or cols == 0:
        return q
    dev = q.device
    hw, r = h * w, rows * cols
    pos32, _, order = _glass_layout(h, w, delta, dev)
    visit = torch.arange(r, device=dev, dtype=torch.int32)
    ident = torch.arange(hw, device=dev, dtype=torch.int32).view(1, h, w)
    composed = None
    for it in range(iters):
        off = offsets[:, it].reshape(n, r, 2).to(torch.int32)
        src = off[..., 1].mul(w).add_(off[..., 0]).add_(pos32)  # (n, r) flat source in the image
        if delta > 1:
            src_order = order.index_select(0, src.view(-1)).view(n, r)
            chained = (src_order >= 0).logical_and_(src_order < visit)
            if bool(chained.any()):
                base = (torch.arange(n, device=dev, dtype=torch.int32) * r).view(n, 1)
                nxt = torch.where(chained, src_order, visit).add_(base).view(-1)
                while True:
                    jump = nxt.index_select(0, nxt)
                    if torch.equal(jump, nxt):
                        break
                    nxt = jump
                src = src.view(-1).index_select(0, nxt).view(n, r)
        index = ident.repeat(n, 1, 1)
        # visit order runs backwards over the region rows and columns
        index[:, delta + 1 : h - delta + 1, delta + 1 : w - delta + 1] = src.view(n, rows, cols).flip((1, 2))
        index = index.view(n, hw)
        composed = index if composed is None else torch.gather(composed, 1, index.to(torch.int64))
    flat_index = (composed.view(n, 1, hw) + (torch.arange(n * c, device=dev, dtype=torch.int32) * hw).view(n, c, 1))
    return q.reshape(-1).index_select(0, flat_index.view(-1)).view(n, c, h, w)


def _numba_shuffle():
    """The reference's loop compiled with numba (CPU, cached on disk), or None without numba."""
    from evalsuite.corruptions import _numba

    return _numba.kernel("glass_shuffle") if _numba.available() else None


@register_corruption("glass_blur", family="blur", benchmark=True,
                     description="frosted glass (blur, local pixel shuffle, blur)", draw=draw_glass_blur)
def apply_glass_blur(x: torch.Tensor, severity: int, draws: dict, shuffle: str | None = None) -> torch.Tensor:
    """Blur, 8-bit truncation, the reference's pixel shuffle, blur.

    ``shuffle``: ``"numba"`` (the sequential loop, compiled; the CPU default when numba is
    installed) or ``"parallel"`` (:func:`glass_shuffle`; GPUs). Both are bit-identical.
    """
    sigma, delta, _ = GLASS_BLUR[severity - 1]
    g = gaussian_filter(x, sigma, mode="nearest")
    q = levels_to_unit(g.clamp_(0, 1).mul_(255.0).add_(1e-4).floor_())  # np.uint8(gaussian(...) * 255) truncates
    offsets = draws["offsets"]
    if shuffle is None:  # one implementation per device, whatever the batch size (both agree bit for bit)
        from evalsuite.corruptions import _numba

        shuffle = "numba" if _numba.use_kernels(q) else "parallel"
    kernel = _numba_shuffle() if shuffle == "numba" else None
    if kernel is not None and offsets.shape[2] and offsets.shape[3]:
        from evalsuite.parallel import parallel_slices

        qn = q.contiguous().numpy()
        offs = np.ascontiguousarray(offsets.cpu().numpy())
        # images are independent: slices of the batch run in parallel (the kernel releases the GIL)
        parallel_slices(lambda lo, hi: kernel(qn[lo:hi], offs[lo:hi], delta), qn.shape[0])
        q = torch.from_numpy(qn)
    else:
        q = glass_shuffle(q, offsets.to(x.device), delta)
    return gaussian_filter(q.contiguous(), sigma, mode="nearest")


# -- motion blur ----------------------------------------------------------------------------


def motion_taps(radius: int, sigma: float, angle: float, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights, dy, dx) of imagecorruptions' ``_motion_blur`` for one angle (degrees).

    The reference shifts the image by ``(dx, dy)`` for ``i = 0 .. 2*radius`` with weights of a
    one-sided Gaussian, and stops at the first shift as large as the image (no
    renormalisation), which this reproduces.
    """
    kw = radius * 2 + 1
    k = np.exp(-(np.arange(kw) ** 2) / (2 * (sigma**2))) / (np.sqrt(2 * np.pi) * sigma)
    k = k / np.sum(k)
    point = (kw * np.sin(np.deg2rad(angle)), kw * np.cos(np.deg2rad(angle)))
    hyp = math.hypot(point[0], point[1])
    ws, dys, dxs = [], [], []
    for i in range(kw):
        dy = -math.ceil(((i * point[0]) / hyp) - 0.5)
        dx = -math.ceil(((i * point[1]) / hyp) - 0.5)
        if abs(dy) >= height or abs(dx) >= width:
            break
        ws.append(k[i])
        dys.append(dy)
        dxs.append(dx)
    return np.array(ws), np.array(dys, dtype=np.int64), np.array(dxs, dtype=np.int64)


def motion_extent(radius: int, sigma: float, angle_range: tuple[float, float], height: int, width: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) reach of the motion taps over a whole angle range.

    Tap offsets are monotone in sin and cos of the angle, so their extremes over the range are
    reached at its ends or at a multiple of 90 degrees inside it. A fixed reach per severity
    and image size keeps every image's FFT size independent of the rest of its batch.
    """
    lo, hi = angle_range
    angles = [lo, hi] + [a for a in (-180.0, -90.0, 0.0, 90.0, 180.0) if lo < a < hi]
    ys, xs = [0], [0]
    for a in angles:
        _, dy, dx = motion_taps(radius, sigma, a, height, width)
        ys.extend((-dy).tolist())
        xs.extend((-dx).tolist())
    return max(0, -min(ys)), max(0, max(ys)), max(0, -min(xs)), max(0, max(xs))


def motion_blur_batch(
    x: torch.Tensor,
    radius: int,
    sigma: float,
    angles: np.ndarray,
    angle_range: tuple[float, float],
    method: str | None = None,
) -> torch.Tensor:
    """``sum_i w_i * shift(x, dx_i, dy_i)`` (edge-replicating shifts), one angle per image.

    ``shift(x, dx, dy)[y, x] = x[clamp(y - dy), clamp(x - dx)]``. On the CPU every image sums
    shifted views of its padded copy in the reference's tap order; on GPUs all images go
    through one batched FFT correlation (kernels with taps at ``(-dy_i, -dx_i)``). The padding
    reach is fixed per severity and size, so no image depends on the rest of its batch.
    ``method`` (``"direct"`` or ``"fft"``) overrides the device's choice.
    """
    n, _, h, w = x.shape
    top, bottom, left, right = motion_extent(radius, sigma, angle_range, h, w)
    taps = [motion_taps(radius, sigma, float(a), h, w) for a in angles]
    if (method or ("direct" if x.device.type == "cpu" else "fft")) == "direct":
        out = torch.empty_like(x)
        for i, (wts, dy, dx) in enumerate(taps):
            xp = pad(x[i : i + 1], top, bottom, left, right, "nearest")
            acc = None
            for wt, oy, ox in zip(wts.tolist(), (top - dy).tolist(), (left - dx).tolist(), strict=True):
                view = xp[..., oy : oy + h, ox : ox + w]
                acc = view * wt if acc is None else acc.add_(view, alpha=wt)
            out[i : i + 1] = acc
        return out
    kernels = np.zeros((n, top + bottom + 1, left + right + 1), dtype=np.float64)
    for i, (wts, dy, dx) in enumerate(taps):
        np.add.at(kernels[i], (top - dy, left - dx), wts)
    k = torch.from_numpy(kernels).to(device=x.device, dtype=x.dtype)
    return fft_correlate2d(x, k, (top, left), "nearest")


MOTION_ANGLES = (-45.0, 45.0)


def draw_motion_blur(x: torch.Tensor, severity: int, rand: SampleRandom) -> dict:
    return {"angle": rand.host_uniform(*MOTION_ANGLES)}


@register_corruption("motion_blur", family="blur", benchmark=True,
                     description="linear motion blur at a random angle", draw=draw_motion_blur)
def apply_motion_blur(x: torch.Tensor, severity: int, draws: dict) -> torch.Tensor:
    radius, sigma = MOTION_BLUR[severity - 1]
    return motion_blur_batch(x, radius, sigma, np.asarray(draws["angle"], dtype=np.float64), MOTION_ANGLES)


# -- zoom blur ------------------------------------------------------------------------------


@register_corruption("zoom_blur", family="blur", benchmark=True,
                     description="radial blur from zooming towards the centre", per_image_cpu=True)
def apply_zoom_blur(x: torch.Tensor, severity: int, draws: dict) -> torch.Tensor:
    """Mean of the image and its centre zooms (``clipped_zoom``) by the reference factors.

    On the CPU a numba kernel does it image by image (several times faster than torch's
    resize; float64 interpolation like SciPy's); elsewhere the layers are torch bilinear
    resizes in channels-last layout.
    """
    from evalsuite.corruptions import _numba

    h, w = x.shape[-2:]
    factors = zoom_factors(severity)
    if _numba.use_kernels(x):  # CPU: one pass per layer in cache, float64 like SciPy
        return _numba.per_image("zoom_blur", x, _numba.zoom_layers(h, w, factors))
    xc = x.contiguous(memory_format=torch.channels_last)
    out = torch.zeros_like(xc)
    for z in factors:
        out += bilinear_zoom_layer(xc, float(z))[..., :h, :w]
    return ((xc + out) / (len(factors) + 1)).contiguous()
