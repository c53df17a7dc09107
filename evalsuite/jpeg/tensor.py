"""libjpeg's lossy JPEG steps as batched integer tensor arithmetic (any device).

A baseline JPEG round trip loses information only in its colour conversion, chroma
subsampling, forward DCT and quantisation, and in the decoder's inverse DCT, upsampling and
colour conversion; the entropy coding in between is lossless. This module reproduces those
steps as libjpeg-turbo performs them for Pillow's and OpenCV's defaults (the "islow" integer
DCT, the standard quantisation tables scaled by ``quality`` and clamped to baseline, "fancy"
triangular upsampling), with 4:2:0 (the default), 4:2:2 or 4:4:4 chroma subsampling, the same
integer rounding at every step and the same edge padding. The result is the decoded image libjpeg would give, bit for bit (checked against
Pillow in the tests), computed in a few large tensor operations: on a GPU much faster than a
codec that works image by image, and identical to the CPU reference.

Each DCT pass is an exact integer linear map followed by libjpeg's ``DESCALE`` (add half,
arithmetic shift). The maps are derived here from libjpeg's butterfly (``jfdctint.c``,
``jidctint.c``) and applied as float64 matrix products: every product and sum is an integer
below 2**53, so they are exact.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

__all__ = ["SUBSAMPLING_FACTORS", "jpeg_roundtrip_levels", "quant_tables"]

CONST_BITS = 13
PASS1_BITS = 2
SCALEBITS = 16
#: Chroma subsampling to libjpeg's (horizontal, vertical) luma sampling factors (chroma: 1, 1).
SUBSAMPLING_FACTORS = {"4:4:4": (1, 1), "4:2:2": (2, 1), "4:2:0": (2, 2)}

# jpeg_std_*_quant_tbl (ITU-T T.81 Annex K), natural (row-major) order.
_STD_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_STD_CHROMA = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32),
)  # fmt: skip


def _fix(x: float, bits: int) -> int:
    return int(x * (1 << bits) + 0.5)


# jfdctint.c / jidctint.c constants (CONST_BITS = 13)
F_0_298 = _fix(0.298631336, CONST_BITS)
F_0_390 = _fix(0.390180644, CONST_BITS)
F_0_541 = _fix(0.541196100, CONST_BITS)
F_0_765 = _fix(0.765366865, CONST_BITS)
F_0_899 = _fix(0.899976223, CONST_BITS)
F_1_175 = _fix(1.175875602, CONST_BITS)
F_1_501 = _fix(1.501321110, CONST_BITS)
F_1_847 = _fix(1.847759065, CONST_BITS)
F_1_961 = _fix(1.961570560, CONST_BITS)
F_2_053 = _fix(2.053119869, CONST_BITS)
F_2_562 = _fix(2.562915447, CONST_BITS)
F_3_072 = _fix(3.072711026, CONST_BITS)


def quant_tables(quality: int) -> tuple[list[int], list[int]]:
    """(luminance, chrominance) tables of ``jpeg_set_quality(quality, force_baseline=TRUE)``."""
    q = min(max(int(quality), 1), 100)
    scale = 5000 // q if q < 50 else 200 - 2 * q

    def scaled(table: tuple[int, ...]) -> list[int]:
        return [min(max((v * scale + 50) // 100, 1), 255) for v in table]

    return scaled(_STD_LUMA), scaled(_STD_CHROMA)


# -- the DCT butterflies, on Python ints, before their final DESCALE ---------------------------


def _fdct_odd(d: list[int]) -> tuple[int, int, int, int]:
    tmp4, tmp5, tmp6, tmp7 = d[3] - d[4], d[2] - d[5], d[1] - d[6], d[0] - d[7]
    z1, z2, z3, z4 = tmp4 + tmp7, tmp5 + tmp6, tmp4 + tmp6, tmp5 + tmp7
    z5 = (z3 + z4) * F_1_175
    tmp4, tmp5, tmp6, tmp7 = tmp4 * F_0_298, tmp5 * F_2_053, tmp6 * F_3_072, tmp7 * F_1_501
    z1, z2, z3, z4 = z1 * -F_0_899, z2 * -F_2_562, z3 * -F_1_961, z4 * -F_0_390
    z3 += z5
    z4 += z5
    return tmp7 + z1 + z4, tmp6 + z2 + z3, tmp5 + z2 + z4, tmp4 + z1 + z3  # outputs 1, 3, 5, 7


def _fdct_pre(d: list[int], first_pass: bool) -> list[int]:
    """``jpeg_fdct_islow`` on one row (pass 1) or column (pass 2): values before DESCALE."""
    tmp0, tmp1, tmp2, tmp3 = d[0] + d[7], d[1] + d[6], d[2] + d[5], d[3] + d[4]
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    # pass 1 shifts outputs 0 and 4 left by PASS1_BITS (exact), pass 2 descales them by PASS1_BITS
    dc_scale = 1 << PASS1_BITS if first_pass else 1
    z1 = (tmp12 + tmp13) * F_0_541
    o1, o3, o5, o7 = _fdct_odd(d)
    return [
        (tmp10 + tmp11) * dc_scale, o1, z1 + tmp13 * F_0_765, o3,
        (tmp10 - tmp11) * dc_scale, o5, z1 - tmp12 * F_1_847, o7,
    ]  # fmt: skip


def _idct_pre(d: list[int]) -> list[int]:
    """``jpeg_idct_islow`` on one column (pass 1) or row (pass 2): values before DESCALE."""
    z2, z3 = d[2], d[6]
    z1 = (z2 + z3) * F_0_541
    tmp2, tmp3 = z1 - z3 * F_1_847, z1 + z2 * F_0_765
    tmp0, tmp1 = (d[0] + d[4]) << CONST_BITS, (d[0] - d[4]) << CONST_BITS
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    tmp0, tmp1, tmp2, tmp3 = d[7], d[5], d[3], d[1]
    z1, z2, z3, z4 = tmp0 + tmp3, tmp1 + tmp2, tmp0 + tmp2, tmp1 + tmp3
    z5 = (z3 + z4) * F_1_175
    tmp0, tmp1, tmp2, tmp3 = tmp0 * F_0_298, tmp1 * F_2_053, tmp2 * F_3_072, tmp3 * F_1_501
    z1, z2, z3, z4 = z1 * -F_0_899, z2 * -F_2_562, z3 * -F_1_961, z4 * -F_0_390
    z3 += z5
    z4 += z5
    tmp0 += z1 + z3
    tmp1 += z2 + z4
    tmp2 += z2 + z3
    tmp3 += z1 + z4
    return [tmp10 + tmp3, tmp11 + tmp2, tmp12 + tmp1, tmp13 + tmp0, tmp13 - tmp0, tmp12 - tmp1, tmp11 - tmp2, tmp10 - tmp3]


def _matrix(fn) -> list[list[int]]:
    """The integer matrix M with fn(v) == M @ v (fn is linear: sums and integer products)."""
    cols = [fn([1 if i == j else 0 for i in range(8)]) for j in range(8)]
    return [[cols[j][k] for j in range(8)] for k in range(8)]


@lru_cache(maxsize=8)
def _dct_maps(device: str) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per pass: (float64 matrix transposed for ``x @ m``, DESCALE rounding and shifts per output)."""
    half = CONST_BITS - PASS1_BITS
    specs = {
        "fdct1": (_matrix(lambda v: _fdct_pre(v, True)), [0, half, half, half, 0, half, half, half]),
        "fdct2": (_matrix(lambda v: _fdct_pre(v, False)), [PASS1_BITS] + [CONST_BITS + PASS1_BITS] * 3
                  + [PASS1_BITS] + [CONST_BITS + PASS1_BITS] * 3),
        "idct1": (_matrix(_idct_pre), [half] * 8),
        "idct2": (_matrix(_idct_pre), [CONST_BITS + PASS1_BITS + 3] * 8),
    }
    out = {}
    for name, (m, shifts) in specs.items():
        mt = torch.tensor(m, dtype=torch.float64, device=device).t().contiguous()
        rounding = [1 << (k - 1) if k > 0 else 0 for k in shifts]
        out[name] = (mt, torch.tensor(rounding, dtype=torch.int64, device=device),
                     torch.tensor(shifts, dtype=torch.int64, device=device))
    return out


def _pass(x: torch.Tensor, maps: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """One 1-D DCT pass along the last axis of int64 ``x``: exact product, then DESCALE."""
    mt, rounding, shifts = maps
    pre = torch.matmul(x.to(torch.float64), mt).to(torch.int64)
    return (pre + rounding) >> shifts


def _range_limit_table() -> np.ndarray:
    """``sample_range_limit + CENTERJSAMPLE`` indexed by ``x & 1023`` (jdmaster.c), int64."""
    i = np.arange(1024, dtype=np.int64)
    return np.where(i < 128, i + 128, np.where(i < 512, 255, np.where(i < 896, 0, i - 896))).astype(np.int64)


#: The inverse DCT's output range limit (shared with the CPU kernel).
IDCT_RANGE_LIMIT = _range_limit_table()


@lru_cache(maxsize=8)
def _idct_limit(device: str) -> torch.Tensor:
    """:data:`IDCT_RANGE_LIMIT` on ``device``."""
    return torch.from_numpy(IDCT_RANGE_LIMIT).to(device)


def _blocks(plane: torch.Tensor) -> torch.Tensor:
    """(N, H, W) with H, W multiples of 8 -> (N, H/8, W/8, 8, 8)."""
    n, h, w = plane.shape
    return plane.view(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)


def _unblocks(blocks: torch.Tensor) -> torch.Tensor:
    n, bh, bw, _, _ = blocks.shape
    return blocks.permute(0, 1, 3, 2, 4).reshape(n, bh * 8, bw * 8)


def _pad_edge(plane: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Replicate the last row / column of (N, h0, w0) up to (N, h, w), as libjpeg pads."""
    n, h0, w0 = plane.shape
    if w > w0:
        plane = torch.cat([plane, plane[:, :, -1:].expand(n, h0, w - w0)], dim=2)
    if h > h0:
        plane = torch.cat([plane, plane[:, -1:, :].expand(n, h - h0, plane.shape[2])], dim=1)
    return plane


def _code(plane: torch.Tensor, table: list[int], maps: dict) -> torch.Tensor:
    """Level shift, forward DCT, quantise, dequantise, inverse DCT: the lossy core, per 8x8 block."""
    dev = plane.device
    q = torch.tensor(table, dtype=torch.int64, device=dev).view(8, 8)
    b = _blocks(plane - 128)
    b = _pass(b, maps["fdct1"])  # rows
    b = _pass(b.transpose(-1, -2), maps["fdct2"]).transpose(-1, -2)  # columns
    # jcdctmgr.c quantize(): round half away from zero, divisor = quantval * 8 for islow
    d = q * 8
    mag = (b.abs() + (d >> 1)) // d
    coef = torch.where(b < 0, -mag, mag)
    b = coef * q  # dequantise
    b = _pass(b.transpose(-1, -2), maps["idct1"]).transpose(-1, -2)  # columns
    b = _pass(b, maps["idct2"])  # rows
    b = _idct_limit(str(dev))[b & 1023]
    return _unblocks(b)


def _downsample(c: torch.Tensor, hs: int, vs: int) -> torch.Tensor:
    """jcsample.c on a plane padded to whole sampling groups: h2v2 sums 2x2 with bias 1, 2, 1, 2...
    by output column, h2v1 sums pairs with bias 0, 1, 0, 1..., h1v1 copies."""
    if hs == 1:
        return c
    col_bias = torch.arange(c.shape[2] // 2, device=c.device) & 1
    if vs == 1:
        return (c[:, :, 0::2] + c[:, :, 1::2] + col_bias) >> 1
    s = c[:, 0::2, 0::2] + c[:, 0::2, 1::2] + c[:, 1::2, 0::2] + c[:, 1::2, 1::2]
    return (s + 1 + col_bias) >> 2


def _upsample_h2v1_fancy(c: torch.Tensor, out_w: int) -> torch.Tensor:
    """jdsample.c h2v1_fancy_upsample: 3/4-1/4 between neighbours, the two edge outputs copied."""
    n, h, w = c.shape
    last = torch.cat([c[:, :, :1], c[:, :, :-1]], dim=2)
    nxt = torch.cat([c[:, :, 1:], c[:, :, -1:]], dim=2)
    left = (3 * c + last + 1) >> 2
    right = (3 * c + nxt + 2) >> 2
    left[:, :, 0] = c[:, :, 0]
    right[:, :, -1] = c[:, :, -1]
    return torch.stack([left, right], dim=3).reshape(n, h, 2 * w)[:, :, :out_w]


def _upsample_h2v2_fancy(c: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """jdsample.c h2v2_fancy_upsample: triangular 3/4-1/4 filter, edge rows replicated."""
    n, h, w = c.shape
    above = torch.cat([c[:, :1], c[:, :-1]], dim=1)
    below = torch.cat([c[:, 1:], c[:, -1:]], dim=1)
    col = torch.stack([3 * c + above, 3 * c + below], dim=2).reshape(n, 2 * h, w)  # column sums per output row
    if w > 1:
        last = torch.cat([col[:, :, :1], col[:, :, :-1]], dim=2)
        nxt = torch.cat([col[:, :, 1:], col[:, :, -1:]], dim=2)
        left = (3 * col + last + 8) >> 4
        right = (3 * col + nxt + 7) >> 4
        left[:, :, 0] = (4 * col[:, :, 0] + 8) >> 4
        right[:, :, -1] = (4 * col[:, :, -1] + 7) >> 4
    else:
        left, right = (4 * col + 8) >> 4, (4 * col + 7) >> 4
    out = torch.stack([left, right], dim=3).reshape(n, 2 * h, 2 * w)
    return out[:, :out_h, :out_w]


def jpeg_roundtrip_levels(levels: torch.Tensor, quality: int, subsampling: str = "4:2:0") -> torch.Tensor:
    """Decode(encode(image)) as libjpeg-turbo with Pillow's defaults, on 8-bit RGB levels.

    ``levels``: integer or float tensor ``N x 3 x H x W`` holding values 0..255; ``subsampling``
    one of :data:`SUBSAMPLING_FACTORS`. Returns an int64 tensor of the same shape, on the same
    device.
    """
    hs, vs = SUBSAMPLING_FACTORS[subsampling]
    n, _, h, w = levels.shape
    dev = levels.device
    maps = _dct_maps(str(dev))
    r, g, b = (levels[:, i].to(torch.int64) for i in range(3))
    one_half, offset = 1 << (SCALEBITS - 1), 128 << SCALEBITS
    fy = [_fix(v, SCALEBITS) for v in (0.29900, 0.58700, 0.11400, 0.16874, 0.33126, 0.5, 0.41869, 0.08131)]
    # jccolor.c rgb_ycc_convert
    y = (fy[0] * r + fy[1] * g + fy[2] * b + one_half) >> SCALEBITS
    cb = (-fy[3] * r - fy[4] * g + fy[5] * b + offset + one_half - 1) >> SCALEBITS
    cr = (fy[5] * r - fy[6] * g - fy[7] * b + offset + one_half - 1) >> SCALEBITS
    luma_q, chroma_q = quant_tables(quality)

    # Luma: edge-padded to whole blocks.
    hb, wb = -(-h // 8) * 8, -(-w // 8) * 8
    y_dec = _code(_pad_edge(y, hb, wb), luma_q, maps)[:, :h, :w]

    # Chroma: full-resolution rows padded to the vertical factor and columns to whole chroma
    # blocks, downsampled, then the subsampled rows padded to whole blocks (jcprepct.c order).
    ch_h, ch_w = -(-h // vs), -(-w // hs)
    planes = []
    for c in (cb, cr):
        small = _downsample(_pad_edge(c, vs * ch_h, -(-w // (8 * hs)) * 8 * hs), hs, vs)
        coded = _code(_pad_edge(small, -(-ch_h // 8) * 8, small.shape[2]), chroma_q, maps)[:, :ch_h, :ch_w]
        if hs == 1:
            planes.append(coded)
        elif ch_w <= 2:  # libjpeg upsamples by plain replication when the subsampled width is 1 or 2
            planes.append(coded.repeat_interleave(vs, dim=1).repeat_interleave(2, dim=2)[:, :h, :w])
        elif vs == 1:
            planes.append(_upsample_h2v1_fancy(coded, w))
        else:
            planes.append(_upsample_h2v2_fancy(coded, h, w))
    cb_dec, cr_dec = (p - 128 for p in planes)
    # jdcolor.c ycc_rgb_convert with build_ycc_rgb_table's tables
    fx = [_fix(v, SCALEBITS) for v in (1.40200, 1.77200, 0.71414, 0.34414)]
    r_out = y_dec + ((fx[0] * cr_dec + one_half) >> SCALEBITS)
    g_out = y_dec + ((-fx[3] * cb_dec + one_half - fx[2] * cr_dec) >> SCALEBITS)
    b_out = y_dec + ((fx[1] * cb_dec + one_half) >> SCALEBITS)
    return torch.stack([r_out, g_out, b_out], dim=1).clamp_(0, 255)
