"""The compiled kernel of :mod:`evalsuite.jpeg.cpu` (imported on first use: importing it imports numba).

Module-level constants are frozen into the machine code; ``cache=True`` keeps the compiled
kernel in numba's on-disk cache, so only the first process on a machine pays the compilation
(several seconds).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from evalsuite.jpeg.tensor import (
    CONST_BITS,
    F_0_298,
    F_0_390,
    F_0_541,
    F_0_765,
    F_0_899,
    F_1_175,
    F_1_501,
    F_1_847,
    F_1_961,
    F_2_053,
    F_2_562,
    F_3_072,
    IDCT_RANGE_LIMIT,
    PASS1_BITS,
    SCALEBITS,
    _fix,
)

half = CONST_BITS - PASS1_BITS  # 11
fdct2_shift = CONST_BITS + PASS1_BITS  # 15
idct2_shift = CONST_BITS + PASS1_BITS + 3  # 18
r_half, r_fd2, r_pass1, r_id2 = 1 << (half - 1), 1 << (fdct2_shift - 1), 1 << (PASS1_BITS - 1), 1 << (idct2_shift - 1)
one_half = 1 << (SCALEBITS - 1)
cbcr_offset = 128 << SCALEBITS
fy = [_fix(v, SCALEBITS) for v in (0.29900, 0.58700, 0.11400, 0.16874, 0.33126, 0.5, 0.41869, 0.08131)]
fx = [_fix(v, SCALEBITS) for v in (1.40200, 1.77200, 0.71414, 0.34414)]
y_r, y_g, y_b, cb_r, cb_g, c_half, cr_g, cr_b = fy
r_cr, b_cb, g_cr, g_cb = fx
limit = IDCT_RANGE_LIMIT
unit = np.arange(256, dtype=np.float32) / np.float32(255.0)  # k / 255, correctly rounded
scale = np.float32(255.0)

@njit(cache=True)
def fdct_1d(ws, a, b, c, d, e, f, g, h, first):  # pragma: no cover - compiled
    # jfdctint.c on the values at flat indices a..h of ws (a row or a column of a block)
    d0, d1, d2, d3, d4, d5, d6, d7 = ws[a], ws[b], ws[c], ws[d], ws[e], ws[f], ws[g], ws[h]
    tmp0, tmp7 = d0 + d7, d0 - d7
    tmp1, tmp6 = d1 + d6, d1 - d6
    tmp2, tmp5 = d2 + d5, d2 - d5
    tmp3, tmp4 = d3 + d4, d3 - d4
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    if first:
        ws[a] = (tmp10 + tmp11) << PASS1_BITS
        ws[e] = (tmp10 - tmp11) << PASS1_BITS
        sh, rd = half, r_half
    else:
        ws[a] = (tmp10 + tmp11 + r_pass1) >> PASS1_BITS
        ws[e] = (tmp10 - tmp11 + r_pass1) >> PASS1_BITS
        sh, rd = fdct2_shift, r_fd2
    z1 = (tmp12 + tmp13) * F_0_541
    ws[c] = (z1 + tmp13 * F_0_765 + rd) >> sh
    ws[g] = (z1 - tmp12 * F_1_847 + rd) >> sh
    z1, z2, z3, z4 = tmp4 + tmp7, tmp5 + tmp6, tmp4 + tmp6, tmp5 + tmp7
    z5 = (z3 + z4) * F_1_175
    tmp4, tmp5, tmp6, tmp7 = tmp4 * F_0_298, tmp5 * F_2_053, tmp6 * F_3_072, tmp7 * F_1_501
    z1, z2 = z1 * -F_0_899, z2 * -F_2_562
    z3, z4 = z3 * -F_1_961 + z5, z4 * -F_0_390 + z5
    ws[h] = (tmp4 + z1 + z3 + rd) >> sh
    ws[f] = (tmp5 + z2 + z4 + rd) >> sh
    ws[d] = (tmp6 + z2 + z3 + rd) >> sh
    ws[b] = (tmp7 + z1 + z4 + rd) >> sh

@njit(cache=True)
def idct_1d(ws, a, b, c, d, e, f, g, h):  # pragma: no cover - compiled
    # jidctint.c's butterfly on flat indices a..h of ws; returns the 8 values before DESCALE
    z2, z3 = ws[c], ws[g]
    z1 = (z2 + z3) * F_0_541
    tmp2, tmp3 = z1 - z3 * F_1_847, z1 + z2 * F_0_765
    tmp0, tmp1 = (ws[a] + ws[e]) << CONST_BITS, (ws[a] - ws[e]) << CONST_BITS
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    tmp0, tmp1, tmp2, tmp3 = ws[h], ws[f], ws[d], ws[b]
    z1, z2, z3, z4 = tmp0 + tmp3, tmp1 + tmp2, tmp0 + tmp2, tmp1 + tmp3
    z5 = (z3 + z4) * F_1_175
    tmp0, tmp1, tmp2, tmp3 = tmp0 * F_0_298, tmp1 * F_2_053, tmp2 * F_3_072, tmp3 * F_1_501
    z1, z2 = z1 * -F_0_899, z2 * -F_2_562
    z3, z4 = z3 * -F_1_961 + z5, z4 * -F_0_390 + z5
    tmp0 += z1 + z3
    tmp1 += z2 + z4
    tmp2 += z2 + z3
    tmp3 += z1 + z4
    return (tmp10 + tmp3, tmp11 + tmp2, tmp12 + tmp1, tmp13 + tmp0,
            tmp13 - tmp0, tmp12 - tmp1, tmp11 - tmp2, tmp10 - tmp3)

@njit(nogil=True, cache=True)
def code_plane(p, q, ws):  # pragma: no cover - compiled
    # p: int32 plane whose sides are multiples of 8, coded in place block by block;
    # q: the 64 quantisation steps in natural order
    ph, pw = p.shape
    half_div = np.empty(64, dtype=np.int64)
    recip_div = np.empty(64, dtype=np.float64)
    for k in range(64):
        half_div[k] = q[k] * 4
        recip_div[k] = 1.0 / (q[k] * 8)
    for by in range(0, ph, 8):
        for bx in range(0, pw, 8):
            for r in range(8):
                for c in range(8):
                    ws[r * 8 + c] = p[by + r, bx + c] - 128
            for r in range(8):  # forward DCT, rows
                o = r * 8
                fdct_1d(ws, o, o + 1, o + 2, o + 3, o + 4, o + 5, o + 6, o + 7, True)
            for c in range(8):  # forward DCT, columns
                fdct_1d(ws, c, c + 8, c + 16, c + 24, c + 32, c + 40, c + 48, c + 56, False)
            for k in range(64):
                # jcdctmgr.c quantize(): |v| / (8 q) rounded half away from zero, then
                # dequantised. floor((a + 1/2) / d) is exact in float64 through the
                # reciprocal: (a + 1/2) / d is at least 1 / (2 d) from an integer, far more
                # than the product's rounding error (|a| < 2^20, d <= 2040).
                v = ws[k]
                a = (-v if v < 0 else v) + half_div[k]
                m = np.int64((a + 0.5) * recip_div[k])
                ws[k] = (-m if v < 0 else m) * q[k]
            for c in range(8):  # inverse DCT, columns
                t = idct_1d(ws, c, c + 8, c + 16, c + 24, c + 32, c + 40, c + 48, c + 56)
                for r in range(8):
                    ws[64 + r * 8 + c] = (t[r] + r_half) >> half
            for r in range(8):  # inverse DCT, rows, range-limited to samples
                o = 64 + r * 8
                t = idct_1d(ws, o, o + 1, o + 2, o + 3, o + 4, o + 5, o + 6, o + 7)
                for c in range(8):
                    p[by + r, bx + c] = limit[((t[c] + r_id2) >> idct2_shift) & 1023]

@njit(cache=True)
def fancy_h2v1(d, y, u, ch_w, w):  # pragma: no cover - compiled
    # jdsample.c h2v1_fancy_upsample of row y of d (ch_w > 2 samples) into u[0:w]
    u[0] = d[y, 0]
    for j in range(ch_w):
        c3 = 3 * d[y, j]
        if j > 0:
            u[2 * j] = (c3 + d[y, j - 1] + 1) >> 2
        if 2 * j + 1 < w:
            u[2 * j + 1] = d[y, j] if j == ch_w - 1 else (c3 + d[y, j + 1] + 2) >> 2

@njit(cache=True)
def fancy_h2v2(col, u, ch_w, w):  # pragma: no cover - compiled
    # jdsample.c h2v2_fancy_upsample's horizontal pass over column sums col[0:ch_w]
    u[0] = (4 * col[0] + 8) >> 4
    for j in range(ch_w):
        c3 = 3 * col[j]
        if j > 0:
            u[2 * j] = (c3 + col[j - 1] + 8) >> 4
        if 2 * j + 1 < w:
            u[2 * j + 1] = (4 * col[j] + 7) >> 4 if j == ch_w - 1 else (c3 + col[j + 1] + 7) >> 4

@njit(cache=True, inline="always")
def level8(v):  # pragma: no cover - compiled
    # a float sample in [0, 1] (clipped) to its 8-bit level, round half to even (np.rint)
    return np.int64(np.rint(min(max(v, np.float32(0.0)), np.float32(1.0)) * scale))

@njit(cache=True, inline="always")
def rgb_to_ycc_group(src, n, y, vs, yp, cbrow, crrow):  # pragma: no cover - compiled
    # row group y (vs full-resolution rows) of image n: 8-bit levels and jccolor.c
    # rgb_ycc_convert, luma into yp, chroma into cbrow / crrow (one row per t < vs); rows past
    # the image repeat its last row, columns are edge-replicated to whole blocks (luma) and
    # whole chroma blocks (chroma)
    h, w, wb, cw = src.shape[1], src.shape[2], yp.shape[1], cbrow.shape[1]
    for t in range(vs):
        row = y * vs + t
        if row >= h:
            for x in range(cw):
                cbrow[t, x] = cbrow[t - 1, x]
                crrow[t, x] = crrow[t - 1, x]
            continue
        for x in range(w):
            r, g, b = level8(src[n, row, x, 0]), level8(src[n, row, x, 1]), level8(src[n, row, x, 2])
            yp[row, x] = (y_r * r + y_g * g + y_b * b + one_half) >> SCALEBITS
            cbrow[t, x] = (-cb_r * r - cb_g * g + c_half * b + cbcr_offset + one_half - 1) >> SCALEBITS
            crrow[t, x] = (c_half * r - cr_g * g - cr_b * b + cbcr_offset + one_half - 1) >> SCALEBITS
        for x in range(w, wb):
            yp[row, x] = yp[row, w - 1]
        for x in range(w, cw):
            cbrow[t, x] = cbrow[t, w - 1]
            crrow[t, x] = crrow[t, w - 1]

@njit(cache=True, inline="always")
def downsample_group(cbrow, crrow, cbd, crd, y, hs, vs):  # pragma: no cover - compiled
    # jcsample.c: chroma row y of cbd / crd from one row group, with libjpeg's alternating bias
    cwb = cbd.shape[1]
    if hs == 1:
        for x in range(cwb):
            cbd[y, x] = cbrow[0, x]
            crd[y, x] = crrow[0, x]
    elif vs == 1:
        for x in range(cwb):
            bias = x & 1
            cbd[y, x] = (cbrow[0, 2 * x] + cbrow[0, 2 * x + 1] + bias) >> 1
            crd[y, x] = (crrow[0, 2 * x] + crrow[0, 2 * x + 1] + bias) >> 1
    else:
        for x in range(cwb):
            bias = 1 + (x & 1)
            cbd[y, x] = (cbrow[0, 2 * x] + cbrow[0, 2 * x + 1] + cbrow[1, 2 * x] + cbrow[1, 2 * x + 1] + bias) >> 2
            crd[y, x] = (crrow[0, 2 * x] + crrow[0, 2 * x + 1] + crrow[1, 2 * x] + crrow[1, 2 * x + 1] + bias) >> 2

@njit(cache=True, inline="always")
def pad_rows(p, used):  # pragma: no cover - compiled
    # jcprepct.c: rows used.. of plane p repeat row used - 1 (edge rows to whole blocks)
    for y in range(used, p.shape[0]):
        for x in range(p.shape[1]):
            p[y, x] = p[used - 1, x]

@njit(cache=True, inline="always")
def encode_planes(src, n, hs, vs, ch_h, yp, cbd, crd, cbrow, crrow):  # pragma: no cover - compiled
    # image n of src to the padded Y plane and the downsampled, padded Cb / Cr planes
    for y in range(ch_h):
        rgb_to_ycc_group(src, n, y, vs, yp, cbrow, crrow)
        downsample_group(cbrow, crrow, cbd, crd, y, hs, vs)
    pad_rows(yp, src.shape[1])
    pad_rows(cbd, ch_h)
    pad_rows(crd, ch_h)

@njit(cache=True, inline="always")
def ycc_to_rgb_row(yp, ucb, ucr, out, n, y):  # pragma: no cover - compiled
    # jdcolor.c ycc_rgb_convert of output row y of image n, written as k / 255
    for x in range(out.shape[2]):
        yy = yp[y, x]
        cbv = ucb[x] - 128
        crv = ucr[x] - 128
        r = yy + ((r_cr * crv + one_half) >> SCALEBITS)
        g = yy + ((-g_cb * cbv + one_half - g_cr * crv) >> SCALEBITS)
        b = yy + ((b_cb * cbv + one_half) >> SCALEBITS)
        out[n, y, x, 0] = unit[min(max(r, 0), 255)]
        out[n, y, x, 1] = unit[min(max(g, 0), 255)]
        out[n, y, x, 2] = unit[min(max(b, 0), 255)]

@njit(cache=True, inline="always")
def decode_planes(yp, cbd, crd, out, n, h, w, hs, vs, ch_h, ch_w, ucb, ucr, colb, colr):  # pragma: no cover - compiled
    # the coded planes back to image n of out, row by row: jdsample.c upsampling of the
    # chroma into ucb / ucr ("fancy" triangular filters, colb / colr holding h2v2's column
    # sums; plain replication below 3 subsampled columns), then ycc_to_rgb_row. Measured
    # (single thread, 17-64 px): the upsampling branches stay in this row loop (a per-row
    # upsampling helper cost 3-20%) and h, w come from the caller's src.shape (taking them
    # from out.shape here cost 2-11%); as written it runs as fast as the unsplit kernel
    for y in range(h):
        if hs == 1:
            for x in range(w):
                ucb[x] = cbd[y, x]
                ucr[x] = crd[y, x]
        elif ch_w <= 2:
            for x in range(w):
                ucb[x] = cbd[y // vs, x >> 1]
                ucr[x] = crd[y // vs, x >> 1]
        elif vs == 1:
            fancy_h2v1(cbd, y, ucb, ch_w, w)
            fancy_h2v1(crd, y, ucr, ch_w, w)
        else:
            i = y >> 1
            i2 = max(i - 1, 0) if y & 1 == 0 else min(i + 1, ch_h - 1)
            for j in range(ch_w):
                colb[j] = 3 * cbd[i, j] + cbd[i2, j]
                colr[j] = 3 * crd[i, j] + crd[i2, j]
            fancy_h2v2(colb, ucb, ch_w, w)
            fancy_h2v2(colr, ucr, ch_w, w)
        ycc_to_rgb_row(yp, ucb, ucr, out, n, y)

# one explicit signature (any strides): a single compilation serves every memory layout
@njit("void(float32[:, :, :, :], float32[:, :, :, :], int64[:], int64[:], int64, int64, int64, int64)",
      nogil=True, cache=True)
def roundtrip(src, out, ql, qc, hs, vs, lo, hi):  # pragma: no cover - compiled
    # images lo..hi of src through libjpeg's lossy steps into out: encode_planes, code_plane
    # (DCT, quantisation, inverse DCT) per plane, decode_planes; the working buffers are
    # allocated once per call and reused for every image
    _, h, w, _ = src.shape
    hb, wb = (h + 7) // 8 * 8, (w + 7) // 8 * 8
    ch_h, ch_w = (h + vs - 1) // vs, (w + hs - 1) // hs  # libjpeg's downsampled size
    cwb = (w + 8 * hs - 1) // (8 * hs) * 8  # chroma columns in whole blocks
    chb = (ch_h + 7) // 8 * 8
    # int32 planes keep an image's working set in cache (values stay within 0..255)
    yp = np.empty((hb, wb), dtype=np.int32)
    cbd = np.empty((chb, cwb), dtype=np.int32)
    crd = np.empty((chb, cwb), dtype=np.int32)
    cbrow = np.empty((vs, cwb * hs), dtype=np.int64)
    crrow = np.empty((vs, cwb * hs), dtype=np.int64)
    ucb = np.empty(w + 1, dtype=np.int64)
    ucr = np.empty(w + 1, dtype=np.int64)
    colb = np.empty(ch_w, dtype=np.int64)
    colr = np.empty(ch_w, dtype=np.int64)
    ws = np.empty(128, dtype=np.int64)
    for n in range(lo, hi):
        encode_planes(src, n, hs, vs, ch_h, yp, cbd, crd, cbrow, crrow)
        code_plane(yp, ql, ws)
        code_plane(cbd, qc, ws)
        code_plane(crd, qc, ws)
        decode_planes(yp, cbd, crd, out, n, h, w, hs, vs, ch_h, ch_w, ucb, ucr, colb, colr)
