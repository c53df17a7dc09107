"""Physics, reference parity, determinism and validation of the device operations.

Synthetic images only; every expected value is either hand-computed from the physical model
or comes from a reference implementation (Pillow codecs, OpenCV resampling and demosaicking).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evalsuite.devices import color
from evalsuite.devices.base import InvalidParameter, apply_chain
from evalsuite.devices.ops import make_op, op_class, op_names
from evalsuite.errors import UsageError


def scene(n: int = 3, h: int = 40, w: int = 48, seed: int = 0) -> torch.Tensor:
    """Natural-ish test images in [0.04, 0.96]: gradients, a disc edge, a texture patch, colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    out = np.empty((n, 3, h, w), dtype=np.float32)
    for i in range(n):
        base = 0.3 + 0.4 * xx * (1 - yy) + 0.1 * np.sin(8 * xx + i)
        disc = ((xx - 0.6 - 0.05 * i) ** 2 + (yy - 0.4) ** 2 < 0.04).astype(np.float64)
        tex = 0.08 * rng.standard_normal((h, w)) * ((xx < 0.3) & (yy > 0.5))
        for c in range(3):
            out[i, c] = base * (0.7 + 0.15 * c) + 0.35 * disc * (c == i % 3) + tex
    return torch.from_numpy(np.clip(out, 0.04, 0.96))


def increasing(values: list[float]) -> bool:
    return all(b > a for a, b in zip(values[:-1], values[1:], strict=True))


def ids(n: int) -> list[str]:
    return [f"img/{i:03d}" for i in range(n)]


# ----------------------------------------------------------------------------- colour science


def test_srgb_transfer_functions_match_the_standard():
    # hand-computed from IEC 61966-2-1: ((0.5 + 0.055) / 1.055) ** 2.4 and 12.92 * 0.002
    v = np.array([0.0, 0.02, 0.04045, 0.5, 1.0], dtype=np.float32)
    expected = np.array([0.0, 0.02 / 12.92, 0.04045 / 12.92, 0.214041140, 1.0])
    np.testing.assert_allclose(color.srgb_to_linear_np(v), expected, rtol=2e-6, atol=1e-8)
    np.testing.assert_allclose(color.srgb_to_linear(torch.from_numpy(v)).numpy(), expected, rtol=2e-6, atol=1e-8)
    lin = np.linspace(0, 1, 1001, dtype=np.float32)
    np.testing.assert_allclose(color.srgb_to_linear_np(color.linear_to_srgb_np(lin)), lin, atol=2e-6)
    np.testing.assert_allclose(color.linear_to_srgb_np(np.float32([0.002, 0.214041140]).reshape(1, 2)).ravel(),
                               [0.002 * 12.92, 0.5], rtol=2e-6)


def test_planckian_locus_matches_cie_values():
    # CIE illuminant A (2856 K) x, y = 0.44757, 0.40745; the fit is accurate to ~1e-3.
    x, y = color.planckian_xy(2856)
    assert abs(x - 0.44757) < 1e-3 and abs(y - 0.40745) < 1e-3
    # 6504 K on the locus lies just below D65 (0.3127, 0.3290), which sits slightly off the locus.
    x, y = color.planckian_xy(6504)
    assert abs(x - 0.3127) < 2e-3 and abs(y - 0.3290) < 7e-3
    with pytest.raises(ValueError):
        color.planckian_xy(1000)


def test_white_balance_moves_gray_world_means_in_the_intended_direction():
    x = scene(4)
    base = x.mean(dim=(0, 2, 3))
    warm = make_op("white_balance", kelvin=3000)(x).mean(dim=(0, 2, 3))
    cool = make_op("white_balance", kelvin=10000)(x).mean(dim=(0, 2, 3))
    assert warm[0] > base[0] + 0.02 and warm[2] < base[2] - 0.02
    assert cool[2] > base[2] + 0.02 and cool[0] < base[0] - 0.02
    magenta = make_op("white_balance", kelvin=6504, tint=0.3)(x).mean(dim=(0, 2, 3))
    assert magenta[1] < base[1] - 0.01
    # the ladder warms monotonically: red/blue ratio of a grey grows with severity
    grey = torch.full((1, 3, 8, 8), 0.4)
    ratios = []
    for s in range(1, 6):
        y = op_class("white_balance").at_severity(s)(grey)
        ratios.append(float(y[0, 0].mean() / y[0, 2].mean()))
    assert increasing(ratios)


def test_white_balance_reference_is_identity_and_keeps_grey_luminance():
    x = scene(2)
    same = make_op("white_balance", kelvin=5000, reference_kelvin=5000)(x)
    torch.testing.assert_close(same, x, atol=3e-6, rtol=0)
    grey = torch.full((1, 3, 4, 4), 0.5)
    out = make_op("white_balance", kelvin=4000)(grey)
    lin_in = color.srgb_to_linear_np(grey[0, :, 0, 0].numpy().reshape(1, 3))[0]
    lin_out = color.srgb_to_linear_np(out[0, :, 0, 0].numpy().reshape(1, 3))[0]
    assert abs(color.LUMA @ lin_out - color.LUMA @ lin_in) < 1e-5


# ----------------------------------------------------------------------------- resolution


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_resize_at_factor_one_is_identity(backend):
    x = scene(2)
    for down in ("nearest", "bilinear", "bicubic", "area"):
        for up in ("nearest", "bilinear", "bicubic"):
            for aa in ((False, True) if down in ("bilinear", "bicubic") else (False,)):
                for space in ("srgb", "linear"):
                    op = make_op("resolution", scale=1.0, down=down, up=up, antialias=aa, space=space)
                    torch.testing.assert_close(op(x, backend=backend), x, atol=2e-6, rtol=0)


@pytest.mark.parametrize(("h", "w"), [(32, 32), (17, 30), (64, 48)])
def test_batched_resolution_change_matches_opencv_per_image(h, w):
    """The batched path composes down- and up-sampling into one matrix per axis; it must agree
    with OpenCV's resizers image by image (the NumPy path) for every interpolation pair (to
    float32 rounding; OpenCV computes its cubic weights in float32, a few 1e-6 off)."""
    rng = np.random.default_rng(h + w)
    x = torch.from_numpy(rng.random((3, 3, h, w), dtype=np.float32))
    for down in ("nearest", "bilinear", "bicubic", "area"):
        for up in ("nearest", "bilinear", "bicubic"):
            for aa in ((False, True) if down in ("bilinear", "bicubic") else (False,)):
                for scale in (0.15, 0.375, 0.7):
                    op = make_op("resolution", scale=scale, down=down, up=up, antialias=aa, space="linear")
                    tol = 1e-5 if "bicubic" in (down, up) else 1e-6
                    torch.testing.assert_close(op(x, backend="torch"), op(x, backend="numpy"), atol=tol, rtol=0,
                                               msg=f"{down} (antialias {aa}) -> {up} at {scale}")


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
def test_antialias_matrix_matches_pillow_and_torch(method):
    """The antialiased down-sampling weights reproduce Pillow's resize and torch's
    ``antialias=True`` on random planes, shrinking by several factors (and at factor 1, where
    torch still applies its antialias kernel to an axis that does not shrink)."""
    import torch.nn.functional as F
    from PIL import Image

    from evalsuite.devices.resample import antialias_matrix

    res = Image.Resampling.BILINEAR if method == "bilinear" else Image.Resampling.BICUBIC
    rng = np.random.default_rng(7)
    for (h, w), (oh, ow) in (((48, 40), (21, 17)), ((32, 32), (13, 32)), ((30, 7), (4, 3)), ((9, 9), (1, 2))):
        plane = rng.random((h, w), dtype=np.float32)
        got = antialias_matrix(h, oh, method) @ plane.astype(np.float64) @ antialias_matrix(w, ow, method).T
        ref = np.asarray(Image.fromarray(plane, mode="F").resize((ow, oh), resample=res))
        np.testing.assert_allclose(got, ref, atol=2e-6, err_msg=f"{(h, w)} -> {(oh, ow)}")
        t = F.interpolate(torch.from_numpy(plane)[None, None], size=(oh, ow), mode=method, align_corners=False,
                          antialias=True)[0, 0].numpy()
        np.testing.assert_allclose(got, t, atol=2e-6, err_msg=f"torch {(h, w)} -> {(oh, ow)}")


def test_area_resampling_matches_opencv_inter_area():
    import cv2

    from evalsuite.devices.resample import area_matrix

    x = scene(2, 45, 37)
    got = torch.from_numpy(area_matrix(45, 17)) @ x @ torch.from_numpy(area_matrix(37, 13)).T
    for i in range(2):
        for c in range(3):
            ref = cv2.resize(x[i, c].numpy(), (13, 17), interpolation=cv2.INTER_AREA)
            np.testing.assert_allclose(got[i, c].numpy(), ref, atol=2e-6)
    # a 2x down-sampled checkerboard averages to exactly 0.5
    board = torch.from_numpy((np.indices((16, 16)).sum(0) % 2).astype(np.float32))[None, None].repeat(1, 3, 1, 1)
    out = make_op("resolution", scale=0.5, down="area", up="nearest")(board)
    torch.testing.assert_close(out, torch.full_like(board, 0.5), atol=1e-6, rtol=0)


def test_resolution_ladder_loses_more_detail_with_severity():
    x = scene(3, 48, 48)
    errs = [float((op_class("resolution").at_severity(s)(x) - x).pow(2).mean()) for s in range(1, 6)]
    assert increasing(errs), errs


# ----------------------------------------------------------------------------- codecs


def _pil_reference(x: torch.Tensor, fmt: str, **kw) -> torch.Tensor:
    import io

    from PIL import Image

    outs = []
    for img in x:
        u8 = np.rint(img.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(u8).save(buf, format=fmt, **kw)
        outs.append(np.asarray(Image.open(buf).convert("RGB")))
    return torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2).float() / 255


@pytest.mark.parametrize("fmt,name", [("JPEG", "jpeg"), ("WEBP", "webp")])
def test_codec_ladder_error_grows_as_quality_drops_and_matches_pillow(fmt, name):
    x = scene(3, 64, 64)
    cls = op_class(name)
    errs = []
    for s in range(1, 6):
        op = cls.at_severity(s)
        y = op(x)
        kw = {"quality": op.quality}
        if name == "jpeg":
            kw["subsampling"] = 2
        torch.testing.assert_close(y, _pil_reference(x, fmt, **kw), atol=1e-6, rtol=0)
        errs.append(float((y - x).pow(2).mean()))
    assert increasing(errs), errs


def test_codec_backends_write_the_same_files():
    x = scene(2, 40, 48)
    ref = make_op("jpeg", quality=40)(x)  # libjpeg's arithmetic without a codec
    for backend in ("opencv", "pillow", "torchvision"):
        assert torch.equal(make_op("jpeg", quality=40, backend=backend)(x), ref), backend
    assert torch.equal(make_op("jpeg", quality=40, backend="pillow")(x, backend="numpy"), ref)
    # both CPU paths of the default backend against the codec, below (kernel) and above (codec)
    # the size from which libjpeg-turbo itself is faster
    for img in (x, scene(2, 72, 90)):
        for sub in ("4:4:4", "4:2:2", "4:2:0"):
            codec = make_op("jpeg", quality=40, subsampling=sub, backend="opencv")(img)
            assert torch.equal(make_op("jpeg", quality=40, subsampling=sub)(img, backend="numpy"), codec), sub
            assert torch.equal(make_op("jpeg", quality=40, subsampling=sub)(img, backend="torch"), codec), sub
    webp = make_op("webp", quality=40)(x)
    assert torch.equal(make_op("webp", quality=40, backend="pillow")(x), webp)
    other_effort = make_op("webp", quality=40, method=1)(x)  # only Pillow exposes the effort
    assert not torch.equal(other_effort, webp)
    torch.testing.assert_close(other_effort, _pil_reference(x, "WEBP", quality=40, method=1), atol=1e-6, rtol=0)


def test_jpeg_chroma_subsampling_costs_colour_detail():
    x = scene(3, 64, 64)
    full = make_op("jpeg", quality=90, subsampling="4:4:4")(x)
    sub = make_op("jpeg", quality=90, subsampling="4:2:0")(x)
    assert float((sub - x).abs().mean()) > float((full - x).abs().mean())


# ----------------------------------------------------------------------------- sensor noise


@pytest.mark.parametrize("gaussian_above", [20.0, 1e9])
def test_noise_variance_follows_the_poisson_gaussian_model(gaussian_above):
    level = 0.2  # linear signal, far from clipping
    img = np.full((96, 96, 3), level, dtype=np.float32)  # H x W x 3, as the NumPy path holds images
    variances = []
    for iso in (400, 800, 1600, 3200, 6400):
        op = make_op("sensor_noise", iso=iso, full_well=6000, read_noise=3.0, gaussian_above=gaussian_above)
        out = op.apply_numpy(img, op.sample(iso, img.shape[:2]))
        k = 6000 / (iso / 100)  # electrons per unit signal
        expected = level / k + (3.0 / k) ** 2  # hand-computed model variance
        assert op.variance(level) == pytest.approx(expected)
        assert out.var() == pytest.approx(expected, rel=0.05)
        assert out.mean() == pytest.approx(level, abs=4 * math.sqrt(expected / out.size) + 1e-4)
        variances.append(out.var())
    assert increasing(variances)
    # one stop less light doubles the shot-noise variance at the same ISO (no read noise)
    a = make_op("sensor_noise", iso=800, read_noise=0.0, gaussian_above=gaussian_above)
    b = make_op("sensor_noise", iso=800, read_noise=0.0, exposure_ev=-1.0, gaussian_above=gaussian_above)
    va = a.apply_numpy(img, a.sample(1, img.shape[:2])).var()
    vb = b.apply_numpy(img, b.sample(2, img.shape[:2])).var()
    assert vb / va == pytest.approx(2.0, rel=0.06)


def test_low_counts_are_exact_poisson_electrons():
    op = make_op("sensor_noise", iso=6400, full_well=640, read_noise=0.0)  # k = 10 electrons per unit
    img = np.full((64, 64, 3), 0.3, dtype=np.float32)  # 3 electrons expected
    out = op.apply_numpy(img, op.sample(0, (64, 64)))
    electrons = out * 10.0
    np.testing.assert_allclose(electrons, np.round(electrons), atol=1e-4)  # integer counts
    counts = np.bincount(np.round(electrons).astype(int).ravel())
    from scipy.stats import poisson

    freq = counts[:8] / electrons.size
    np.testing.assert_allclose(freq, poisson.pmf(np.arange(8), 3.0), atol=0.01)


def test_noise_in_srgb_output_grows_with_iso():
    x = torch.full((2, 3, 48, 48), 0.45)
    stds = [float(op_class("sensor_noise").at_severity(s)(x, ids=ids(2)).std()) for s in range(1, 6)]
    assert increasing(stds), stds


# ----------------------------------------------------------------------------- exposure, tone


def test_exposure_scales_linear_light_and_clips():
    x = torch.full((1, 3, 4, 4), 0.3)
    y = make_op("exposure", ev=1.0)(x)
    lin_in = color.srgb_to_linear(x)
    torch.testing.assert_close(color.srgb_to_linear(y), (2 * lin_in).clamp(max=1), atol=2e-6, rtol=0)
    assert float(make_op("exposure", ev=5.0)(x).min()) == 1.0
    torch.testing.assert_close(make_op("exposure", ev=0.0)(scene(1)), scene(1), atol=2e-6, rtol=0)


def test_tone_curve_is_monotone_with_the_requested_levels():
    ramp = torch.linspace(0, 1, 256).view(1, 1, 1, 256).repeat(1, 3, 1, 1)
    torch.testing.assert_close(make_op("tone_curve")(ramp), ramp, atol=1e-6, rtol=0)
    torch.testing.assert_close(make_op("tone_curve", gamma=2.0)(ramp), ramp**2, atol=2e-6, rtol=0)
    for s in range(1, 6):
        op = op_class("tone_curve").at_severity(s)
        y = op(ramp)[0, 0, 0]
        assert torch.all(y[1:] >= y[:-1])
        assert float(y[0]) == pytest.approx(op.black, abs=1e-6) and float(y[-1]) == pytest.approx(op.white, abs=1e-6)
    s_curve = make_op("tone_curve", contrast=0.5)(ramp)[0, 0, 0]
    assert float(s_curve[40]) < float(ramp[0, 0, 0, 40]) and float(s_curve[215]) > float(ramp[0, 0, 0, 215])


# ----------------------------------------------------------------------------- optics


def test_vignetting_follows_cos4_of_the_field_angle():
    from evalsuite.devices.optics import vignetting_gain

    h, w, fov = 30, 40, 90.0
    g = vignetting_gain(h, w, fov, 1.0)
    f = math.hypot(w / 2, h / 2) / math.tan(math.radians(fov / 2))
    r_corner = math.hypot((w - 1) / 2, (h - 1) / 2)
    assert g[0, 0] == pytest.approx(math.cos(math.atan(r_corner / f)) ** 4, rel=1e-5)
    # pixel (15, 20) of an even-sized image sits half a pixel from the optical centre on each axis
    assert g[h // 2, w // 2] == pytest.approx(math.cos(math.atan(math.hypot(0.5, 0.5) / f)) ** 4, rel=1e-6)
    assert np.all(np.diff(g[h // 2, w // 2 :]) < 0)  # falls off towards the edge
    assert vignetting_gain(h, w, fov, 0.25)[0, 0] == pytest.approx(1 - 0.25 * (1 - g[0, 0]), rel=1e-6)
    # applied to linear light
    x = torch.full((1, 3, h, w), 0.6)
    y = make_op("vignetting", fov=fov)(x)
    torch.testing.assert_close(color.srgb_to_linear(y)[0, 0], color.srgb_to_linear(x)[0, 0] * torch.from_numpy(g),
                               atol=3e-6, rtol=0)


def test_disk_psf_is_normalised_with_the_disk_second_moment():
    from evalsuite.devices.kernels import disk_kernel

    assert disk_kernel(0.0).shape == (1, 1)
    for r in (0.3, 0.8, 2.5, 4.0):
        k = disk_kernel(r).astype(np.float64)
        assert k.sum() == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-7)
        half = k.shape[0] // 2
        d = np.arange(-half, half + 1)
        second = float((k.sum(axis=0) * d**2).sum())
        # A point at offset u splats onto floor(u) and floor(u) + 1, adding frac(u)(1 - frac(u)) to
        # u^2. For r < 1 that makes the second moment E|u_x| = 4 r / (3 pi) over a uniform disk;
        # for larger r, frac(u) is close to uniform: E[u_x^2] + 1/6 = r^2 / 4 + 1/6.
        expected = 4 * r / (3 * math.pi) if r < 1 else r * r / 4 + 1 / 6
        assert second == pytest.approx(expected, rel=0.01 if r < 1 else 0.02)


def test_convolution_paths_agree(monkeypatch):
    import evalsuite.devices.kernels as kernels
    from evalsuite.devices.kernels import conv_same_np, conv_same_torch, disk_kernel, line_kernel

    x = scene(3, 30, 26)
    single = disk_kernel(2.2)  # 7 x 7: shifted sums on the CPU
    per_sample = torch.from_numpy(np.stack([line_kernel(4.0, a, 3) for a in (0.0, 33.0, 101.25)]))
    shifted_1, shifted_n = conv_same_torch(x, single), conv_same_torch(x, per_sample)
    monkeypatch.setattr(kernels, "SHIFTED_SUM_MAX", 0)  # force conv2d, the CUDA path
    torch.testing.assert_close(conv_same_torch(x, single), shifted_1, atol=1e-6, rtol=0)
    torch.testing.assert_close(conv_same_torch(x, per_sample), shifted_n, atol=1e-6, rtol=0)
    for i in range(3):
        hwc = np.ascontiguousarray(x[i].permute(1, 2, 0).numpy())
        np.testing.assert_allclose(conv_same_np(hwc, single), shifted_1[i].permute(1, 2, 0).numpy(), atol=1e-6)
        np.testing.assert_allclose(conv_same_np(hwc, per_sample[i].numpy()), shifted_n[i].permute(1, 2, 0).numpy(),
                                   atol=1e-6)


def test_lens_blur_keeps_flat_images_and_blurs_edges_more_with_severity():
    flat = torch.full((1, 3, 32, 32), 0.37)
    for s in range(1, 6):
        torch.testing.assert_close(op_class("lens_blur").at_severity(s)(flat), flat, atol=2e-6, rtol=0)
    torch.testing.assert_close(make_op("lens_blur", radius=0.0)(scene(1)), scene(1), atol=2e-6, rtol=0)
    x = scene(2, 64, 64)
    errs = [float((op_class("lens_blur").at_severity(s)(x) - x).abs().mean()) for s in range(1, 6)]
    assert increasing(errs), errs


def test_chromatic_aberration_scales_red_and_blue_radially():
    h = w = 81
    yy, xx = np.mgrid[0:h, 0:w] - 40.0
    r = np.hypot(yy, xx)
    ring = np.exp(-((r - 30.0) ** 2) / 4.0).astype(np.float32)
    x = torch.from_numpy(np.stack([ring] * 3))[None] * 0.8 + 0.1
    y = make_op("chromatic_aberration", red=0.03, blue=-0.03)(x, backend="numpy")
    lin = color.srgb_to_linear(y)[0].numpy() - color.srgb_to_linear(torch.tensor(0.1)).item()

    def ring_radius(plane):
        wgt = np.clip(plane, 0, None)
        return float((wgt * r).sum() / wgt.sum())

    g = ring_radius(lin[1])
    assert g == pytest.approx(30.0, abs=0.3)
    assert ring_radius(lin[0]) / g == pytest.approx(1.03, abs=0.005)
    assert ring_radius(lin[2]) / g == pytest.approx(0.97, abs=0.005)
    torch.testing.assert_close(y[:, 1], x[:, 1], atol=3e-6, rtol=0)  # green untouched


def test_motion_blur_spreads_along_the_motion_and_rolling_shutter_shears():
    from evalsuite.devices.kernels import line_kernel

    k = line_kernel(6.0, 0.0, 4)
    assert k.sum() == pytest.approx(1.0, abs=1e-6)
    assert np.all(k[:4] == 0) and np.all(k[5:] == 0)  # horizontal motion stays in the centre row
    assert float((k[4] * np.arange(-4, 5) ** 2).sum()) == pytest.approx(36 / 12 + 1 / 6, rel=0.02)
    x = scene(2)
    torch.testing.assert_close(make_op("motion_blur", length=0.0, angle=0.0)(x), x, atol=2e-6, rtol=0)
    # a vertical bright line sheared by the rolling shutter: bottom rows move right of top rows
    h, w = 41, 60
    img = np.full((3, h, w), 0.1, dtype=np.float32)
    img[:, :, 30] = 0.9
    t = torch.from_numpy(img)[None]
    y = make_op("motion_blur", length=0.1, angle=0.0, readout_ratio=2.0)(t)
    lin = color.srgb_to_linear(y)[0, 1].numpy() - color.srgb_to_linear(torch.tensor(0.1)).item()
    cols = np.arange(w)
    centre = (lin * cols).sum(axis=1) / lin.sum(axis=1)
    shift = 2.0 * 0.1 * h  # readout_ratio * length in pixels over the full readout
    assert centre[-1] - centre[0] == pytest.approx(shift, rel=0.03)
    assert centre[h // 2] == pytest.approx(30.0, abs=0.05)


@pytest.mark.parametrize(("h", "w"), [(41, 60), (64, 64), (1, 9), (7, 1)])
def test_compiled_rolling_shutter_warp_is_bit_identical_to_numpy(h, w):
    from evalsuite.devices._kernels import shear_warp
    from evalsuite.devices.optics import _shear_warp_np

    rng = np.random.default_rng(h * w)
    img = rng.random((h, w, 3), dtype=np.float32)
    for dx, dy in [(3.7, -1.2), (-0.4, 8.9), (0.0, 2.5), (25.0, -30.0)]:
        out = np.empty((1, h, w, 3), dtype=np.float32)
        shear_warp(img[None], 0, out, 0, dx, dy)
        assert np.array_equal(out[0], _shear_warp_np(img, dx, dy)), (dx, dy)
    # any strides: a channels-first batch's channels-last view
    nchw = np.ascontiguousarray(img.transpose(2, 0, 1))[None]
    out = np.empty((1, h, w, 3), dtype=np.float32)
    shear_warp(nchw.transpose(0, 2, 3, 1), 0, out, 0, 1.5, -2.5)
    assert np.array_equal(out[0], _shear_warp_np(img, 1.5, -2.5))


def test_batched_motion_blur_warp_is_bit_identical_to_torch_gathers():
    from unittest import mock

    from evalsuite.devices import optics
    from evalsuite.devices.base import sample_chain_params

    x = scene(5, 17, 30)
    for length, readout in ((0.02, 0.25), (0.1, 2.0), (0.05, 0.0)):
        op = make_op("motion_blur", length=length, readout_ratio=readout)
        ps = sample_chain_params([op], ids(5), 0, "k", (17, 30))[0]
        compiled = op.apply_torch(x, ps)
        with mock.patch.object(optics, "numba_available", lambda: False):
            assert torch.equal(compiled, op.apply_torch(x, ps)), (length, readout)


# ----------------------------------------------------------------------------- sensor: Bayer, bits


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
@pytest.mark.parametrize("method", ["bilinear", "malvar"])
def test_demosaic_of_a_constant_image_is_constant(pattern, method):
    x = torch.tensor([0.8, 0.35, 0.2]).view(1, 3, 1, 1).repeat(2, 1, 21, 18)
    for backend in ("numpy", "torch"):
        y = make_op("bayer", pattern=pattern, demosaic=method)(x, backend=backend)
        torch.testing.assert_close(y, x, atol=3e-6, rtol=0)


@pytest.mark.parametrize("method", ["bilinear", "malvar"])
def test_demosaic_reproduces_linear_ramps(method):
    from evalsuite.devices.sensor import demosaic_np, mosaic_np

    yy, xx = np.mgrid[0:20, 0:24].astype(np.float32)
    img = np.stack([0.01 * xx + 0.1, 0.02 * yy + 0.05, 0.01 * (xx + yy) + 0.02], axis=-1).astype(np.float32)
    out = demosaic_np(mosaic_np(img, "GRBG"), "GRBG", method)
    np.testing.assert_allclose(out[3:-3, 3:-3], img[3:-3, 3:-3], atol=1e-5)


def test_bilinear_demosaic_matches_opencv():
    import cv2

    from evalsuite.devices.sensor import demosaic_np, mosaic_np

    rng = np.random.default_rng(0)
    img = rng.random((30, 26, 3)).astype(np.float32)
    m = mosaic_np(img, "RGGB")
    np.testing.assert_array_equal(m[0::2, 0::2], img[0::2, 0::2, 0])  # R site
    np.testing.assert_array_equal(m[1::2, 1::2], img[1::2, 1::2, 2])  # B site
    u16 = np.round(m * 65535).astype(np.uint16)
    ours = demosaic_np(u16.astype(np.float32) / 65535, "RGGB", "bilinear")
    # OpenCV names Bayer patterns by the second row's 2nd and 3rd pixels: RGGB is "BayerBG"
    ref = cv2.cvtColor(u16, cv2.COLOR_BayerBG2RGB).astype(np.float32) / 65535
    np.testing.assert_allclose(ours[2:-2, 2:-2], ref[2:-2, 2:-2], atol=2.5 / 65535)


def test_bit_depth_quantises_to_the_grid():
    ramp = torch.linspace(0, 1, 500).view(1, 1, 1, 500).repeat(1, 3, 4, 1)
    for bits in (1, 3, 5):
        y = make_op("bit_depth", bits=bits)(ramp)
        levels = 2**bits - 1
        assert len(torch.unique(y)) == levels + 1
        torch.testing.assert_close(y * levels, (y * levels).round(), atol=1e-5, rtol=0)
    dithered = make_op("bit_depth", bits=2, dither=True)(torch.full((2, 3, 64, 64), 0.4), ids=ids(2))
    assert float(dithered.mean()) == pytest.approx(0.4, abs=0.01)  # dithering is unbiased
    assert len(torch.unique(dithered)) == 2


# ----------------------------------------------------------------------------- cross-cutting


@pytest.mark.parametrize("name", op_names())
def test_numpy_and_torch_backends_agree(name):
    x = scene(3)
    for s in (1, 3, 5):
        op = op_class(name).at_severity(s)
        a = op(x, ids=ids(3), seed=5, backend="numpy")
        b = op(x, ids=ids(3), seed=5, backend="torch")
        assert a.shape == x.shape and a.dtype == x.dtype
        assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
        diff = (a - b).abs()
        if name == "sensor_noise":  # Poisson draws may flip where linearisation differs by 1 ulp
            assert float((diff > 1e-4).float().mean()) < 1e-3
        else:
            assert float(diff.max()) < 2e-5, (name, s, float(diff.max()))


@pytest.mark.parametrize("name", ["sensor_noise", "motion_blur", "bit_depth"])
def test_randomness_is_per_sample_and_independent_of_batching(name):
    op = make_op(name, **({"dither": True} if name == "bit_depth" else {}))
    x = scene(5)
    sid = ids(5)
    full = op(x, ids=sid, seed=11, key="device/k")
    again = op(x, ids=sid, seed=11, key="device/k")
    assert torch.equal(full, again)
    parts = torch.cat([op(x[:2], ids=sid[:2], seed=11, key="device/k"), op(x[2:], ids=sid[2:], seed=11, key="device/k")])
    assert torch.equal(full, parts)
    perm = [3, 0, 4, 1, 2]
    shuffled = op(x[perm], ids=[sid[i] for i in perm], seed=11, key="device/k")
    assert torch.equal(full[perm], shuffled)
    for backend in ("torch",):
        split = torch.cat([op(x[:1], ids=sid[:1], seed=11, key="device/k", backend=backend),
                           op(x[1:], ids=sid[1:], seed=11, key="device/k", backend=backend)])
        whole = op(x, ids=sid, seed=11, key="device/k", backend=backend)
        assert torch.equal(whole, split)
    assert not torch.equal(full, op(x, ids=sid, seed=12, key="device/k"))
    assert not torch.equal(full, op(x, ids=sid, seed=11, key="device/other"))
    # same image, different ids: different draws
    same = x[:1].repeat(2, 1, 1, 1)
    y = op(same, ids=["a", "b"], seed=11, key="device/k")
    assert not torch.equal(y[0], y[1])


def test_chain_steps_draw_independent_noise_and_leave_the_input_alone():
    noise = make_op("sensor_noise", iso=3200)
    x = scene(2)
    before = x.clone()
    y = apply_chain([noise, noise], x, ids=ids(2), seed=0, key="device/p")
    assert torch.equal(x, before)
    one = apply_chain([noise], x, ids=ids(2), seed=0, key="device/p")
    assert float((y - x).std()) > float((one - x).std())  # the second step adds fresh noise
    assert apply_chain([], x).data_ptr() != x.data_ptr()


def test_float64_input_and_empty_batch():
    x = scene(2).double()
    y = make_op("lens_blur")(x)
    assert y.dtype == torch.float64
    empty = torch.zeros(0, 3, 8, 8)
    assert make_op("jpeg")(empty).shape == (0, 3, 8, 8)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", op_names())
def test_cpu_and_cuda_agree(name):
    x = scene(3)
    for s in (1, 3, 5):
        op = op_class(name).at_severity(s)
        cpu = op(x, ids=ids(3), seed=2)
        gpu = op(x.cuda(), ids=ids(3), seed=2).cpu()
        diff = (cpu - gpu).abs()
        if name in ("sensor_noise", "jpeg", "webp", "bit_depth"):  # rounding may flip a few 8-bit levels
            assert float((diff > 2e-3).float().mean()) < 2e-3
            assert float(diff.mean()) < 1e-4
        else:
            assert float(diff.max()) < 1e-4, (name, s)


# ----------------------------------------------------------------------------- validation


def test_constructor_validation_is_precise():
    with pytest.raises(InvalidParameter, match=r"jpeg: unknown parameter 'qualty' \(did you mean 'quality'\?\); valid: quality, subsampling, backend"):
        make_op("jpeg", qualty=50)
    with pytest.raises(InvalidParameter, match=r"jpeg: quality must be an integer in \[1, 100\], got 120"):
        make_op("jpeg", quality=120)
    with pytest.raises(InvalidParameter, match=r"quality must be an integer in \[1, 100\], got 50.5"):
        make_op("jpeg", quality=50.5)
    assert make_op("jpeg", quality=50.0).quality == 50
    with pytest.raises(InvalidParameter, match=r"resolution: scale must be a number in \(0, 1\], got 0"):
        make_op("resolution", scale=0)
    with pytest.raises(InvalidParameter, match=r"got 'fast'"):
        make_op("resolution", scale="fast")
    with pytest.raises(InvalidParameter, match=r"down must be one of .* got 'bilinar' \(did you mean 'bilinear'\?\)"):
        make_op("resolution", down="bilinar")
    with pytest.raises(InvalidParameter, match=r"antialias applies to bilinear/bicubic"):
        make_op("resolution", down="area", antialias=True)
    with pytest.raises(InvalidParameter, match=r"antialias must be true or false, got 1"):
        make_op("resolution", antialias=1)
    with pytest.raises(InvalidParameter, match=r"iso \(50\) must be at least base_iso \(100\)"):
        make_op("sensor_noise", iso=50)
    with pytest.raises(InvalidParameter, match=r"black \(0.5\) must be below white \(0.5\)"):
        make_op("tone_curve", black=0.5, white=0.5)
    with pytest.raises(InvalidParameter, match=r"kelvin must be a number in \[2000, 25000\] \(K\), got 1500"):
        make_op("white_balance", kelvin=1500)
    with pytest.raises(InvalidParameter, match=r"jpeg: backend 'torchvision' always subsamples chroma 4:2:0"):
        make_op("jpeg", backend="torchvision", subsampling="4:4:4")
    with pytest.raises(InvalidParameter, match=r"severity must be an integer in 1-5, got 6"):
        op_class("jpeg").at_severity(6)
    with pytest.raises(InvalidParameter, match=r"angle must be a number in \[0, 360\) \(degrees\) or null, got 360"):
        make_op("motion_blur", angle=360)
    with pytest.raises(InvalidParameter, match=r"nan"):
        make_op("exposure", ev=float("nan"))
    with pytest.raises(UsageError, match=r"unknown device operation 'jepg' \(did you mean 'jpeg'.*; valid: bayer, .*white_balance"):
        make_op("jepg")
    assert issubclass(InvalidParameter, UsageError) and issubclass(InvalidParameter, ValueError)


def test_batch_validation():
    op = make_op("exposure")
    with pytest.raises(ValueError, match=r"N x 3 x H x W"):
        op(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match=r"float images"):
        op(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError):
        op(np.zeros((1, 3, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match=r"got 1 sample ids for a batch of 2"):
        op(torch.zeros(2, 3, 8, 8), ids=["a"])
    with pytest.raises(InvalidParameter, match=r"backend must be one of auto, numpy, torch"):
        op(torch.zeros(1, 3, 8, 8), backend="cuda")


def test_every_ladder_is_valid_and_describes_itself():
    for name in op_names():
        cls = op_class(name)
        assert sorted(cls.ladder) == [1, 2, 3, 4, 5]
        for s in range(1, 6):
            op = cls.at_severity(s)
            assert op.describe().startswith(f"{name}(")
            assert op.config()["op"] == name
