"""Weather corruptions: snow, frost, fog, and the held-out spatter.

Constants are imagecorruptions' at every image size. Frost textures are read from the
installed ``imagecorruptions`` package (decoded with OpenCV exactly as the reference does),
resized once per image size and cached per device.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from evalsuite.corruptions._ops import (
    bilinear_zoom_layer,
    cached,
    gaussian_filter,
    pad,
    rgb_to_gray_cv2,
)
from evalsuite.corruptions._random import SampleRandom
from evalsuite.corruptions.blur import motion_blur_batch
from evalsuite.corruptions.registry import register_corruption

SNOW = (
    (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
    (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
    (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
    (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
    (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
)  # loc, scale, zoom, threshold, blur radius, blur sigma, blend
FROST = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))  # image weight, frost weight
SNOW_ANGLES = (-135.0, -45.0)
FOG = ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))  # strength, wibble decay
SPATTER = (
    (0.65, 0.3, 4, 0.69, 0.6, 0),
    (0.65, 0.3, 3, 0.68, 0.6, 0),
    (0.65, 0.3, 2, 0.68, 0.5, 0),
    (0.65, 0.3, 1, 0.65, 1.5, 1),
    (0.67, 0.4, 1, 0.65, 1.5, 1),
)  # loc, scale, sigma, threshold, intensity, mud (1) or water (0)

FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
# ImageNet-C (and imagecorruptions <= 1.1.2) draw ``np.random.randint(5)``: only the first five
# textures are ever used. The imagecorruptions-imaug fork draws from all six; the engine keeps
# the benchmark's definition.
FROST_TEXTURES = 5


# -- snow -----------------------------------------------------------------------------------


def draw_snow(x: torch.Tensor, severity: int, rand: SampleRandom) -> dict:
    loc, scale = SNOW[severity - 1][:2]
    return {
        "field": rand.normal(x.shape[-2:], loc, scale),
        "angle": rand.host_uniform(*SNOW_ANGLES),
    }


@register_corruption("snow", family="weather", benchmark=True,
                     description="falling snow over a whitened scene", draw=draw_snow)
def apply_snow(x: torch.Tensor, severity: int, draws: dict) -> torch.Tensor:
    _, _, zoom, thr, radius, sigma, blend = SNOW[severity - 1]
    h, w = x.shape[-2:]
    layer = bilinear_zoom_layer(draws["field"].to(x).unsqueeze(1), float(zoom))
    layer = torch.where(layer < thr, torch.zeros((), device=x.device, dtype=x.dtype), layer).clamp(0, 1)
    layer = motion_blur_batch(layer, radius, sigma, np.asarray(draws["angle"], dtype=np.float64), SNOW_ANGLES)
    layer = torch.round(layer * 255.0).clamp(0, 255) / 255.0  # np.round(...).astype(np.uint8) / 255
    layer = layer[..., :h, :w]
    gray = rgb_to_gray_cv2(x)
    x = blend * x + (1 - blend) * torch.maximum(x, gray * 1.5 + 0.5)
    return x + layer + torch.flip(layer, dims=(-2, -1))


# -- frost ----------------------------------------------------------------------------------

_textures: dict = {}


def frost_texture_path(index: int):
    """A context manager yielding the file path of frost texture ``index`` (0-based)."""
    import importlib.resources

    ref = importlib.resources.files("imagecorruptions") / "frost" / FROST_FILES[index]
    return importlib.resources.as_file(ref)


def _load_texture(index: int) -> np.ndarray:
    import cv2

    with frost_texture_path(index) as path:
        img = cv2.imread(str(path))
    if img is None:
        from evalsuite.errors import EvalsuiteError

        raise EvalsuiteError(f"cannot read frost texture {FROST_FILES[index]} from the imagecorruptions package")
    return img  # BGR uint8


def frost_texture(index: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """Texture ``index`` rescaled as the reference does for an image of this size (RGB uint8, 3 x h x w)."""

    def build() -> torch.Tensor:
        import cv2

        frost = cached(("frost-raw", index), lambda: _load_texture(index), _textures)
        fh, fw = frost.shape[:2]
        if fh >= height and fw >= width:
            s = 1.0
        elif fh < height and fw >= width:
            s = height / fh
        elif fh >= height and fw < width:
            s = width / fw
        else:
            s = max(height / fh, width / fw)
        s *= 1.1
        size = (int(np.ceil(fw * s)), int(np.ceil(fh * s)))
        rescaled = cv2.resize(frost, dsize=size, interpolation=cv2.INTER_CUBIC)
        rgb = np.ascontiguousarray(rescaled[..., ::-1].transpose(2, 0, 1))
        return torch.from_numpy(rgb).to(device)

    return cached(("frost", index, height, width, str(device)), build, _textures)


def draw_frost(x: torch.Tensor, severity: int, rand: SampleRandom) -> dict:
    h, w = x.shape[-2:]
    idx = rand.host_randint(0, FROST_TEXTURES)
    shapes = [frost_texture(int(i), h, w, torch.device("cpu")).shape for i in idx]
    top = rand.host_randint(0, [s[1] - h for s in shapes])
    left = rand.host_randint(0, [s[2] - w for s in shapes])
    return {"texture": idx, "top": top, "left": left}


@register_corruption("frost", family="weather", benchmark=True, description="frost texture on the lens",
                     draw=draw_frost)
def apply_frost(x: torch.Tensor, severity: int, draws: dict) -> torch.Tensor:
    a, b = FROST[severity - 1]
    h, w = x.shape[-2:]
    crops = [
        frost_texture(int(i), h, w, x.device)[:, int(t) : int(t) + h, int(lf) : int(lf) + w]
        for i, t, lf in zip(draws["texture"], draws["top"], draws["left"], strict=True)
    ]
    frost = torch.stack(crops).to(x.dtype)
    return a * x + (b / 255.0) * frost


# -- fog ------------------------------------------------------------------------------------


def fog_map_size(height: int, width: int) -> int:
    """``next_power_of_2(max(H, W, 3))`` (the reference takes the max over the HWC shape)."""
    m = max(height, width, 3)
    return 1 if m == 0 else 2 ** (m - 1).bit_length()


def plasma_draw_count(mapsize: int) -> int:
    """Uniform draws the diamond-square fractal consumes (three grids per level)."""
    total, step = 0, mapsize
    while step >= 2:
        total += 3 * (mapsize // step) ** 2
        step //= 2
    return total


def plasma_fractal(u: torch.Tensor, mapsize: int, wibbledecay: float) -> torch.Tensor:
    """imagecorruptions' diamond-square ``plasma_fractal`` for a batch, from uniforms ``u``.

    ``u`` is ``(N, plasma_draw_count(mapsize))`` in [0, 1): each ``np.random.uniform(-w, w,
    shape)`` of the reference is ``-w + 2w * u`` over the next ``prod(shape)`` values, in the
    reference's order (squares, then the two diamond grids, level by level).
    """
    n = u.shape[0]
    m = torch.empty((n, mapsize, mapsize), device=u.device, dtype=torch.float32)
    m[:, 0, 0] = 0
    step = mapsize
    wibble = 100.0
    offset = 0

    def wibbled(array: torch.Tensor) -> torch.Tensor:
        nonlocal offset
        k = array.shape[1] * array.shape[2]
        draw = u[:, offset : offset + k].reshape(array.shape).to(torch.float64)
        offset += k
        return (array / 4).to(torch.float64) + wibble * (-wibble + (2 * wibble) * draw)

    while step >= 2:
        half = step // 2
        corner = m[:, 0:mapsize:step, 0:mapsize:step]
        sq = corner + torch.roll(corner, shifts=-1, dims=1)
        sq = sq + torch.roll(sq, shifts=-1, dims=2)
        m[:, half:mapsize:step, half:mapsize:step] = wibbled(sq).to(torch.float32)
        dr = m[:, half:mapsize:step, half:mapsize:step]
        ul = m[:, 0:mapsize:step, 0:mapsize:step]
        lt = (dr + torch.roll(dr, shifts=1, dims=1)) + (ul + torch.roll(ul, shifts=-1, dims=2))
        m[:, 0:mapsize:step, half:mapsize:step] = wibbled(lt).to(torch.float32)
        tt = (dr + torch.roll(dr, shifts=1, dims=2)) + (ul + torch.roll(ul, shifts=-1, dims=1))
        m[:, half:mapsize:step, 0:mapsize:step] = wibbled(tt).to(torch.float32)
        step //= 2
        wibble /= wibbledecay
    m = m - m.amin(dim=(1, 2), keepdim=True)
    return m / m.amax(dim=(1, 2), keepdim=True)


def draw_fog(x: torch.Tensor, severity: int, rand: SampleRandom) -> dict:
    size = fog_map_size(*x.shape[-2:])
    return {"uniform": rand.uniform((plasma_draw_count(size),))}


@register_corruption("fog", family="weather", benchmark=True, description="diamond-square fog", draw=draw_fog,
                     per_image_cpu=True)
def apply_fog(x: torch.Tensor, severity: int, draws: dict) -> torch.Tensor:
    """Add a plasma fractal (diamond-square, per image), rescale to keep the image's maximum.

    On the CPU a numba kernel builds each image's fractal and blends it in one pass, with the
    torch code's float32/float64 operations in the same order (bit-identical in the tests).
    """
    from evalsuite.corruptions import _numba

    strength, decay = FOG[severity - 1]
    h, w = x.shape[-2:]
    size = fog_map_size(h, w)
    if x.dtype == torch.float32 and _numba.use_kernels(x):
        return _numba.per_image("fog", x, size, float(decay), float(strength), fields=(draws["uniform"],))
    fractal = plasma_fractal(draws["uniform"].to(x.device), size, decay)[:, None, :h, :w].to(x.dtype)
    max_val = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * fractal) * max_val / (max_val + strength)


# -- spatter --------------------------------------------------------------------------------


def draw_spatter(x: torch.Tensor, severity: int, rand: SampleRandom) -> dict:
    loc, scale = SPATTER[severity - 1][:2]
    return {"liquid": rand.normal(x.shape[-2:], loc, scale)}


_WATER = (175 / 255.0, 238 / 255.0, 238 / 255.0)
_MUD = (63 / 255.0, 42 / 255.0, 20 / 255.0)


@register_corruption("spatter", family="weather", held_out=True, description="water or mud spatter",
                     draw=draw_spatter)
def apply_spatter(x: torch.Tensor, severity: int, draws: dict, water_backend: str | None = None) -> torch.Tensor:
    """Water (severities 1-3: liquid edges through OpenCV's chain, a pale turquoise tint) or mud.

    The liquid layer is blurred, thresholded and truncated to 8 bits in float64, as the
    reference does: a float32 blur put a pixel on the other side of the threshold often enough
    to matter (one 8-bit liquid level of 175 against 0 moves Canny's edges; 32 levels off in one
    output pixel at severity 1 on a 224 px photograph, issue #21). The water map is the 8-bit
    liquid times the distance map in float32, the reference's ``liquid_layer * dist``.
    """
    _, _, sigma, thr, intensity, mud = SPATTER[severity - 1]
    liquid = gaussian_filter(draws["liquid"].to(device=x.device, dtype=torch.float64).unsqueeze(1), float(sigma), mode="nearest")
    liquid = torch.where(liquid < thr, torch.zeros((), device=x.device, dtype=liquid.dtype), liquid)
    if mud == 0:
        levels = torch.floor(liquid * 255.0).clamp_(0, 255).to(x.dtype)  # (liquid * 255).astype(np.uint8)
        backend = water_backend or ("cv2" if x.device.type == "cpu" else "torch")
        dist = water_distance_cv2(levels) if backend == "cv2" else water_distance_torch(levels)
        m = levels * dist.to(x)
        peak = m.amax(dim=(1, 2, 3), keepdim=True)
        # The reference divides by the peak unguarded: with no liquid at all it yields NaN and a
        # black image. No liquid means no spatter here.
        m = torch.where(peak > 0, m / torch.where(peak > 0, peak, torch.ones_like(peak)), torch.zeros_like(m))
        m = m * intensity
        color = torch.tensor(_WATER, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return x + m * color
    m = (liquid > thr).to(x.dtype)
    m = gaussian_filter(m, float(intensity), mode="nearest")
    m = torch.where(m < 0.8, torch.zeros((), device=x.device, dtype=x.dtype), m)
    color = torch.tensor(_MUD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return x * (1 - m) + color * m


def water_distance_cv2(levels: torch.Tensor) -> torch.Tensor:
    """The reference's OpenCV chain on each image's 8-bit liquid layer (CPU, exact)."""
    import cv2

    ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    arr = levels[:, 0].to(torch.uint8).cpu().numpy()
    out = np.empty(arr.shape, dtype=np.float32)
    for i, ll in enumerate(arr):
        dist = 255 - cv2.Canny(np.ascontiguousarray(ll), 50, 150)
        dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
        dist = cv2.equalizeHist(dist)
        dist = cv2.filter2D(dist, cv2.CV_8U, ker)
        out[i] = cv2.blur(dist, (3, 3)).astype(np.float32)
    return torch.from_numpy(out).unsqueeze(1).to(levels.device)


# -- the same chain in torch (used on GPUs; checked against OpenCV in the tests) -------------

_TG22 = int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)


def canny_l1(img: torch.Tensor, low: int = 50, high: int = 150) -> torch.Tensor:
    """``cv2.Canny(img, low, high)`` (aperture 3, L1 gradient) for (N, 1, H, W) 0..255 floats -> bool edges."""
    p = pad(img, 1, 1, 1, 1, "nearest")
    dx = (p[..., :-2, 2:] + 2 * p[..., 1:-1, 2:] + p[..., 2:, 2:]) - (p[..., :-2, :-2] + 2 * p[..., 1:-1, :-2] + p[..., 2:, :-2])
    dy = (p[..., 2:, :-2] + 2 * p[..., 2:, 1:-1] + p[..., 2:, 2:]) - (p[..., :-2, :-2] + 2 * p[..., :-2, 1:-1] + p[..., :-2, 2:])
    dx, dy = dx.to(torch.int64), dy.to(torch.int64)
    mag = dx.abs() + dy.abs()
    mp = F.pad(mag, (1, 1, 1, 1))  # zero magnitude outside the image

    def at(oy: int, ox: int) -> torch.Tensor:
        h, w = mag.shape[-2:]
        return mp[..., 1 + oy : 1 + oy + h, 1 + ox : 1 + ox + w]

    ax, ay = dx.abs(), dy.abs() << 15
    tg22x = ax * _TG22
    tg67x = tg22x + (ax << 16)
    horiz = ay < tg22x
    vert = (~horiz) & (ay > tg67x)
    diag = (~horiz) & (~vert)
    s_neg = (dx ^ dy) < 0
    keep_h = (mag > at(0, -1)) & (mag >= at(0, 1))
    keep_v = (mag > at(-1, 0)) & (mag >= at(1, 0))
    # s = -1 when the signs differ: compare (y-1, x+1) and (y+1, x-1); else (y-1, x-1) and (y+1, x+1)
    keep_d = torch.where(s_neg, (mag > at(-1, 1)) & (mag > at(1, -1)), (mag > at(-1, -1)) & (mag > at(1, 1)))
    cand = (mag > low) & ((horiz & keep_h) | (vert & keep_v) | (diag & keep_d))
    edges = cand & (mag > high)
    while True:
        grown = cand & (F.max_pool2d(edges.to(torch.float32), 3, stride=1, padding=1) > 0)
        grown |= edges
        if torch.equal(grown, edges):
            return edges
        edges = grown


# OpenCV's 5 x 5 chamfer weights for DIST_L2 (float32): axial, diagonal, knight's move.
_HV, _DIAG, _LONG = (float(np.float32(v)) for v in (1.0, 1.4, 2.1969))
_CHAMFER = [((0, 1), _HV), ((0, -1), _HV), ((1, 0), _HV), ((-1, 0), _HV)]
_CHAMFER += [((a, b), _DIAG) for a in (-1, 1) for b in (-1, 1)]
_CHAMFER += [((a, b), _LONG) for a, b in ((1, 2), (2, 1), (-1, 2), (-2, 1), (1, -2), (2, -1), (-1, -2), (-2, -1))]


def chamfer_distance(zero: torch.Tensor, cap: float = 20.0) -> torch.Tensor:
    """``cv2.distanceTransform(src, DIST_L2, 5)`` truncated at ``cap``: distance to the nearest ``zero`` pixel.

    OpenCV's 5 x 5 chamfer metric (moves of 1, 1.4 and 2.1969; outside the image counts as
    far) is the shortest-path length over those moves; relaxing every move ``cap + 1`` times
    gives every distance up to ``cap``. Float32 sums in a different order than OpenCV's two
    raster passes can differ in the last bit.
    """
    big = float(4 * cap + 16)
    d = torch.where(zero, torch.zeros((), device=zero.device), torch.full((), big, device=zero.device))
    h, w = d.shape[-2:]
    for _ in range(int(math.ceil(cap)) + 1):
        p = F.pad(d, (2, 2, 2, 2), value=big)
        nd = d
        for (oy, ox), cost in _CHAMFER:
            nd = torch.minimum(nd, p[..., 2 + oy : 2 + oy + h, 2 + ox : 2 + ox + w] + cost)
        if torch.equal(nd, d):
            break
        d = nd
    return torch.clamp(d, max=cap)


def _box3(x: torch.Tensor) -> torch.Tensor:
    """``cv2.blur(x, (3, 3))`` (reflect-101 border) in float64, before the dtype conversion."""
    p = pad(x.to(torch.float64), 1, 1, 1, 1, "mirror")
    h, w = x.shape[-2:]
    s = sum(p[..., i : i + h, j : j + w] for i in range(3) for j in range(3))
    return s * (1.0 / 9.0)


def equalize_hist(v: torch.Tensor) -> torch.Tensor:
    """``cv2.equalizeHist`` per image for (N, 1, H, W) integer-valued floats 0..255."""
    n = v.shape[0]
    vi = v.to(torch.int64).reshape(n, -1)
    total = vi.shape[1]
    hist = torch.zeros((n, 256), dtype=torch.int64, device=v.device)
    hist.scatter_add_(1, vi, torch.ones_like(vi))
    first = (hist > 0).to(torch.int64).argmax(dim=1, keepdim=True)
    first_count = hist.gather(1, first)
    scale = (255.0 / (total - first_count).clamp(min=1).to(torch.float32)).to(torch.float32)
    csum = hist.cumsum(dim=1) - hist.gather(1, first).expand(-1, 256)  # sum over (first, i]
    lut = torch.round(csum.to(torch.float32) * scale).clamp(0, 255)
    lut = torch.where(torch.arange(256, device=v.device).view(1, 256) <= first, torch.zeros_like(lut), lut)
    out = lut.gather(1, vi).reshape(v.shape)
    single = (first_count == total).view(n, 1, 1, 1)
    return torch.where(single, first.view(n, 1, 1, 1).to(out.dtype).expand_as(out), out)


def water_distance_torch(levels: torch.Tensor) -> torch.Tensor:
    """The OpenCV chain of :func:`water_distance_cv2` as batched tensor operations."""
    edges = canny_l1(levels)
    dist = chamfer_distance(edges, 20.0)  # distance to the nearest edge pixel
    dist = torch.floor(_box3(dist).to(torch.float32))  # blur, then astype(uint8)
    dist = equalize_hist(dist)
    p = pad(dist, 1, 1, 1, 1, "mirror")
    h, w = dist.shape[-2:]
    ker = ((-2, -1, 0), (-1, 1, 1), (0, 1, 2))
    acc = sum(ker[i][j] * p[..., i : i + h, j : j + w] for i in range(3) for j in range(3) if ker[i][j])
    dist = acc.clamp(0, 255)
    return torch.round(_box3(dist)).to(torch.float32)
