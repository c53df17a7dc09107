"""The corruption engine: API contract, seeding, bad input, and the primitives it is built from.

Primitives are checked against the libraries the reference calls (SciPy, OpenCV, Pillow,
libjpeg); whole corruptions against imagecorruptions are in test_corruptions_parity.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evalsuite.corruptions import (
    BENCHMARK,
    HELD_OUT,
    NAMES,
    corrupt,
    corruption_names,
    get_corruption,
    list_entries,
)
from evalsuite.errors import UsageError

RANDOM = [n for n in NAMES if get_corruption(n).random]


@pytest.fixture(scope="module")
def photo64() -> np.ndarray:
    from PIL import Image
    from skimage import data

    return np.array(Image.fromarray(data.astronaut()).resize((64, 48), Image.BILINEAR))


@pytest.fixture(scope="module")
def batch(photo64, digits_data) -> torch.Tensor:
    """Three different 48 x 64 RGB images (a photograph, its mirror, an upscaled digit)."""
    from PIL import Image

    digit = np.asarray(Image.fromarray(digits_data[0][7]).resize((64, 48), Image.NEAREST))
    imgs = np.stack([photo64, photo64[:, ::-1], digit])
    return torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2).float() / 255.0


def test_names_and_listing():
    assert len(NAMES) == 19 and len(BENCHMARK) == 15 and len(HELD_OUT) == 4
    entries = list_entries()
    assert [e[0] for e in entries] == list(NAMES)
    assert all(desc for _, desc in entries)
    assert corruption_names("benchmark") == list(BENCHMARK)
    assert set(corruption_names("noise")) == {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"}
    with pytest.raises(UsageError, match="did you mean 'weather'"):
        corruption_names("wether")
    # the registry resolves every lazy entry to a spec with the right name
    assert all(get_corruption(n).name == n for n in NAMES)


# ImageNet-C's order (Hendrycks & Dietterich, imagecorruptions' get_corruption_names): the
# registry lists the built-ins in the order their decorators appear, module by module.
IMAGENET_C = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
              "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
              "jpeg_compression")
IMAGENET_C_HELD_OUT = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
IMAGENET_C_FAMILIES = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"),
    "weather": ("snow", "frost", "fog", "brightness", "spatter"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"),
}


def test_registry_order_and_membership_are_imagenet_cs():
    from evalsuite.corruptions import FAMILIES

    assert BENCHMARK == IMAGENET_C and HELD_OUT == IMAGENET_C_HELD_OUT and NAMES == IMAGENET_C + IMAGENET_C_HELD_OUT
    assert FAMILIES == IMAGENET_C_FAMILIES and list(FAMILIES) == ["noise", "blur", "weather", "digital"]
    assert [n for n in NAMES if get_corruption(n).on_grid] == ["pixelate", "jpeg_compression"]
    assert [n for n in NAMES if get_corruption(n).per_image_cpu] == ["zoom_blur", "fog", "pixelate", "jpeg_compression"]


def test_registry_order_does_not_depend_on_import_order():
    import os
    import subprocess
    import sys

    code = ("import evalsuite.corruptions.digital, evalsuite.corruptions.weather;"
            "from evalsuite.corruptions import NAMES; print(','.join(NAMES))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "EVALSUITE_DISABLE_PLUGINS": "1"})
    assert r.returncode == 0 and r.stdout.strip().split(",") == list(NAMES), r.stderr


def test_docs_table_matches_the_registry():
    """docs/corruptions.md's parameter table lists every registered corruption with its family."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "corruptions.md").read_text()
    rows = dict(re.findall(r"^\| ([a-z_]+) \| ([a-z]+(?: \(held out\))?) \| (?:yes|no) \|", text, re.M))
    want = {n: get_corruption(n).family + (" (held out)" if get_corruption(n).held_out else "") for n in NAMES}
    assert rows == want


def test_register_corruption_checks_its_arguments():
    from evalsuite.corruptions import register_corruption

    def apply(x, severity, draws):
        return x

    with pytest.raises(ValueError, match="must match"):
        register_corruption("Bad-Name", family="toy", description="x")
    with pytest.raises(ValueError, match="exclude each other"):
        register_corruption("toy_x", family="toy", description="x", benchmark=True, held_out=True)
    with pytest.raises(ValueError, match="subset name"):
        register_corruption("toy_x", family="benchmark", description="x")
    with pytest.raises(ValueError, match="one non-empty line"):
        register_corruption("toy_x", family="toy", description="")
    with pytest.raises(TypeError, match="draw must be callable"):
        register_corruption("toy_x", family="toy", description="x", draw=3)
    with pytest.raises(ValueError, match="already registered"):
        register_corruption("fog", family="weather", description="x")(apply)
    assert "toy_x" not in NAMES and "fog" in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_contract_every_corruption(name, batch):
    """Shape, dtype, device, range and 8-bit grid; same seed -> same output, for every corruption."""
    y = corrupt(batch, name, 3, seed=5, ids=["a", "b", "c"])
    assert y.shape == batch.shape and y.dtype == batch.dtype and y.device == batch.device
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    levels = y * 255.0
    assert torch.allclose(levels, torch.round(levels), atol=1e-3)
    assert torch.equal(y, corrupt(batch, name, 3, seed=5, ids=["a", "b", "c"]))
    assert not torch.equal(y, batch)


@pytest.mark.parametrize("name", NAMES)
def test_batch_and_shard_independence(name, batch):
    """A sample's corruption depends on (seed, name, severity, id) only: not on batch or order."""
    ids = ["x/1.png", "x/2.png", "y/3.png"]
    full = corrupt(batch, name, 4, seed=11, ids=ids)
    parts = torch.cat([corrupt(batch[:1], name, 4, seed=11, ids=ids[:1]), corrupt(batch[1:], name, 4, seed=11, ids=ids[1:])])
    assert torch.equal(full, parts)
    rev = corrupt(batch.flip(0), name, 4, seed=11, ids=ids[::-1]).flip(0)
    assert torch.equal(full, rev)
    if get_corruption(name).random:
        assert not torch.equal(full, corrupt(batch, name, 4, seed=12, ids=ids))


def test_default_ids_are_positions(batch):
    a = corrupt(batch, "gaussian_noise", 2, seed=3)
    b = corrupt(batch, "gaussian_noise", 2, seed=3, ids=["0", "1", "2"])
    assert torch.equal(a, b)


def test_single_image_and_dtypes(batch):
    one = corrupt(batch[0], "fog", 2, seed=1, ids=["q"])
    assert one.shape == batch[0].shape
    assert torch.equal(one, corrupt(batch[:1], "fog", 2, seed=1, ids=["q"])[0])
    y64 = corrupt(batch.double(), "contrast", 3)
    assert y64.dtype == torch.float64
    assert torch.allclose(y64.float(), corrupt(batch, "contrast", 3))


def test_large_batch_is_chunked_consistently(photo64):
    from evalsuite.corruptions import _engine

    x = torch.from_numpy(np.ascontiguousarray(photo64)).permute(2, 0, 1).float().div(255).repeat(7, 1, 1, 1)
    ids = [str(i) for i in range(7)]
    saved = dict(_engine._CHUNK_PIXELS)
    try:
        whole = corrupt(x, "spatter", 2, seed=2, ids=ids)
        _engine._CHUNK_PIXELS["cpu"] = 2 * 64 * 48  # chunks of 2 images
        chunked = corrupt(x, "spatter", 2, seed=2, ids=ids)
    finally:
        _engine._CHUNK_PIXELS.update(saved)
    assert torch.equal(whole, chunked)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("gausian_noise", 1), "did you mean 'gaussian_noise'"),
        (("fog", 0), "from 1 to 5"),
        (("fog", 6), "from 1 to 5"),
        (("fog", 2.5), "integer"),
        (("fog", True), "integer"),
    ],
)
def test_bad_names_and_severities(batch, args, match):
    with pytest.raises(UsageError, match=match):
        corrupt(batch, *args)


def test_bad_images(batch):
    with pytest.raises(UsageError, match=r"glass_blur needs images of at least 32 x 32 pixels.*got 16 x 40"):
        corrupt(torch.rand(2, 3, 16, 40), "glass_blur", 1)
    with pytest.raises(UsageError, match="grayscale"):
        corrupt(torch.rand(2, 1, 40, 40), "fog", 1)
    with pytest.raises(UsageError, match="RGBA"):
        corrupt(torch.rand(2, 4, 40, 40), "fog", 1)
    with pytest.raises(UsageError, match="float images"):
        corrupt((batch * 255).to(torch.uint8), "fog", 1)
    with pytest.raises(UsageError, match="divide 0-255 data by 255"):
        corrupt(batch * 255, "fog", 1)
    with pytest.raises(UsageError, match="torch tensor"):
        corrupt(batch.numpy(), "fog", 1)
    with pytest.raises(UsageError, match="2 ids for 3 images"):
        corrupt(batch, "fog", 1, ids=["a", "b"])


# -- primitives ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "np_mode"), [("nearest", "edge"), ("reflect", "symmetric"), ("mirror", "reflect"), ("wrap", "wrap")])
@pytest.mark.parametrize("n", [2, 3, 7])
def test_extend_index_matches_numpy_pad(mode, np_mode, n):
    from evalsuite.corruptions._ops import extend_index

    a = np.arange(n)
    assert np.array_equal(a[extend_index(n, 9, 11, mode)], np.pad(a, (9, 11), mode=np_mode))
    assert np.array_equal(extend_index(1, 3, 2, mode), np.zeros(6, dtype=np.int64))  # one sample: repeated


@pytest.mark.parametrize("mode", ["nearest", "reflect", "mirror"])
@pytest.mark.parametrize("sigma", [0.7, 1.5, 3.0, (1.1, 2.6)])
def test_gaussian_filter_matches_scipy(mode, sigma):
    from scipy.ndimage import gaussian_filter as sp_gaussian

    from evalsuite.corruptions import _ops

    rng = np.random.default_rng(0)
    img = rng.random((2, 3, 13, 40))
    sig = sigma if isinstance(sigma, tuple) else (sigma, sigma)
    ref = sp_gaussian(img, sigma=(0, 0, *sig), mode=mode, truncate=4.0)
    for taps in (10**6, 1):  # the sliced and the banded-matrix paths
        old = _ops._MATMUL_MIN_TAPS
        _ops._MATMUL_MIN_TAPS = taps
        try:
            ours = _ops.gaussian_filter(torch.from_numpy(img), sigma if isinstance(sigma, float) else sig, mode=mode)
        finally:
            _ops._MATMUL_MIN_TAPS = old
        np.testing.assert_allclose(ours.numpy(), ref, atol=1e-10)


def test_fft_correlate_matches_scipy():
    from scipy.ndimage import correlate

    from evalsuite.corruptions._ops import fft_correlate2d

    rng = np.random.default_rng(1)
    img = rng.random((2, 3, 20, 33))
    k = rng.random((5, 7))
    ref = correlate(img, k[None, None], mode="mirror", origin=(0, 0, 0, 0))
    ours = fft_correlate2d(torch.from_numpy(img), torch.from_numpy(k), (2, 3), "mirror")
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-10)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_disk_kernel_matches_reference(severity):
    from imagecorruptions.corruptions import disk

    from evalsuite.corruptions.blur import DEFOCUS_BLUR, disk_kernel

    r, a = DEFOCUS_BLUR[severity - 1]
    np.testing.assert_allclose(disk_kernel(r, a), disk(radius=r, alias_blur=a), atol=2e-8)


def test_motion_taps_match_reference_shifts():
    """Our taps reproduce imagecorruptions' _motion_blur (shift-and-add) exactly, incl. the early stop."""
    from imagecorruptions.corruptions import _motion_blur

    from evalsuite.corruptions.blur import motion_blur_batch

    rng = np.random.default_rng(2)
    for h, w, radius, sigma, angle in [(40, 50, 10, 3, 17.0), (33, 36, 20, 15, -44.0), (20, 60, 12, 8, -100.0)]:
        img = rng.random((h, w))
        ref = _motion_blur(img, radius=radius, sigma=sigma, angle=angle)
        ours = motion_blur_batch(torch.from_numpy(img)[None, None], radius, sigma, np.array([angle]), (-180.0, 180.0))[0, 0]
        np.testing.assert_allclose(ours.numpy(), ref, atol=1e-10)


@pytest.mark.parametrize(("w", "h"), [(224, 224), (64, 48), (37, 101), (32, 32)])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_pixelate_bit_exact_with_pillow(w, h, severity):
    from PIL import Image

    from evalsuite.corruptions.digital import PIXELATE, apply_pixelate

    rng = np.random.default_rng(severity + w)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    c = PIXELATE[severity - 1]
    ref = Image.fromarray(img).resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.NEAREST)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    ours = torch.round(apply_pixelate(x, severity, {}) * 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(ours, np.asarray(ref))


def test_libjpeg_codec_bit_identical_to_pillow(photo64, digits_data):
    from evalsuite.corruptions.digital import JPEG_QUALITY, _jpeg_ops, apply_jpeg_compression

    if _jpeg_ops() is None:
        pytest.skip("torchvision built without its image extension")
    imgs = np.stack([photo64[:32, :32], digits_data[0][3]])
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    for sev in range(1, 6):
        b = apply_jpeg_compression(x, sev, {}, codec="pil")
        for codec in ("libjpeg", "kernel", None):
            a = apply_jpeg_compression(x, sev, {}, codec=codec)
            assert torch.equal(a, b), f"{codec} at quality {JPEG_QUALITY[sev - 1]}"


def _sequential_glass(q: np.ndarray, offsets: np.ndarray, delta: int) -> np.ndarray:
    """The reference's loop verbatim (array views: the "swap" duplicates a pixel)."""
    x = q.copy()
    h, w = x.shape[:2]
    for it in range(offsets.shape[0]):
        for hh in range(h - delta, delta, -1):
            for ww in range(w - delta, delta, -1):
                dx, dy = offsets[it, (h - delta) - hh, (w - delta) - ww]
                hp, wp = hh + dy, ww + dx
                x[hh, ww], x[hp, wp] = x[hp, wp], x[hh, ww]
    return x


@pytest.mark.parametrize("delta", [1, 2, 3, 4])
def test_glass_shuffle_equals_sequential_loop(delta):
    """The parallel pointer-doubling shuffle is bit-identical to the order-dependent loop."""
    from evalsuite.corruptions.blur import glass_shuffle

    rng = np.random.default_rng(delta)
    h, w, iters = 23, 31, 2
    q = rng.random((2, h, w, 3))
    offsets = rng.integers(-delta, delta, size=(2, iters, h - 2 * delta, w - 2 * delta, 2))
    ours = glass_shuffle(torch.from_numpy(q).permute(0, 3, 1, 2), torch.from_numpy(offsets), delta)
    for i in range(2):
        ref = _sequential_glass(q[i], offsets[i], delta)
        assert np.array_equal(ours[i].permute(1, 2, 0).numpy(), ref)
    # the CPU numba loop and the parallel shuffle agree on whole corruptions
    from evalsuite.corruptions.blur import GLASS_BLUR, apply_glass_blur

    sev = [s for s, c in enumerate(GLASS_BLUR, start=1) if c[1] == delta][0]
    iters = GLASS_BLUR[sev - 1][2]
    x = torch.from_numpy(q[:, :, :, :]).permute(0, 3, 1, 2).float()
    offs = torch.from_numpy(rng.integers(-delta, delta, size=(2, iters, h - 2 * delta, w - 2 * delta, 2)).astype(np.int8))
    a = apply_glass_blur(x, sev, {"offsets": offs}, shuffle="numba")
    b = apply_glass_blur(x, sev, {"offsets": offs}, shuffle="parallel")
    assert torch.equal(a, b)


def test_poisson_sampler_distribution():
    """Inverse-CDF counts have the Poisson mean and variance at every rate (8-bit levels)."""
    from evalsuite.corruptions._random import SampleRandom
    from evalsuite.corruptions.noise import SHOT_NOISE, draw_shot_noise

    levels = torch.tensor([0, 1, 30, 128, 200, 255], dtype=torch.float32)
    x = (levels / 255).view(1, 6, 1, 1).expand(1, 6, 200, 200).reshape(1, 6, 200, 200)
    x = torch.cat([x[:, :3], x[:, 3:]])  # two "images" of 3 channels
    rand = SampleRandom([1, 2])
    for sev in (1, 5):
        c = SHOT_NOISE[sev - 1]
        counts = draw_shot_noise(x, sev, rand)["counts"]
        lam = x * c
        for i in range(2):
            for ch in range(3):
                m, v = counts[i, ch].mean().item(), counts[i, ch].var().item()
                lt = lam[i, ch, 0, 0].item()
                assert abs(m - lt) <= 4 * np.sqrt(max(lt, 1e-9) / 40000) + 1e-9
                assert abs(v - lt) <= 0.05 * lt + 1e-3
    off_grid = torch.full((1, 3, 40, 40), 0.1234)  # rates use the 8-bit level, round(0.1234 * 255) = 31
    counts = draw_shot_noise(off_grid, 3, SampleRandom([3]))["counts"]
    assert abs(counts.mean().item() - 31 / 255 * SHOT_NOISE[2]) < 0.15


def test_random_parameter_ranges(batch):
    from evalsuite.corruptions._random import SampleRandom
    from evalsuite.corruptions.blur import draw_motion_blur
    from evalsuite.corruptions.noise import IMPULSE_NOISE, draw_impulse_noise
    from evalsuite.corruptions.weather import FROST_TEXTURES, draw_frost, frost_texture

    rand = SampleRandom(list(range(300)))
    x = batch[:1].expand(300, -1, -1, -1)
    angles = draw_motion_blur(x, 3, rand)["angle"]
    assert angles.min() >= -45 and angles.max() < 45 and angles.std() > 20
    d = draw_frost(x, 2, SampleRandom(list(range(300))))
    assert set(d["texture"].tolist()) == set(range(FROST_TEXTURES))  # ImageNet-C: only the first five
    for i, t, lf in zip(d["texture"], d["top"], d["left"], strict=True):
        shape = frost_texture(int(i), 48, 64, torch.device("cpu")).shape
        assert 0 <= t < shape[1] - 48 and 0 <= lf < shape[2] - 64
    imp = draw_impulse_noise(batch, 5, SampleRandom([4, 5, 6]))
    p = IMPULSE_NOISE[4]
    assert abs(imp["flip"].float().mean().item() - p) < 0.01
    assert abs(imp["salt"].float().mean().item() - p / 2) < 0.01


def test_spatter_torch_chain_matches_opencv():
    """The GPU path of spatter (Canny, chamfer distance, equalizeHist, filters) equals OpenCV's."""
    import cv2

    from evalsuite.corruptions._ops import gaussian_filter
    from evalsuite.corruptions.weather import (
        canny_l1,
        chamfer_distance,
        equalize_hist,
        water_distance_cv2,
        water_distance_torch,
    )

    rng = np.random.default_rng(7)
    field = torch.from_numpy(rng.normal(0.65, 0.3, (3, 1, 70, 90)))
    liquid = gaussian_filter(field, 2.0)
    liquid = torch.where(liquid < 0.68, torch.zeros(()), liquid)
    levels = torch.floor(liquid * 255).clamp(0, 255).float()
    for i in range(3):
        ll = levels[i, 0].to(torch.uint8).numpy()
        edges = canny_l1(levels[i : i + 1]).numpy()[0, 0]
        assert np.array_equal(edges, cv2.Canny(ll, 50, 150) > 0)
        zero = torch.from_numpy(cv2.Canny(ll, 50, 150) > 0)[None, None]
        ref = cv2.distanceTransform(255 - cv2.Canny(ll, 50, 150), cv2.DIST_L2, 5)
        np.testing.assert_allclose(chamfer_distance(zero, 20.0).numpy()[0, 0], np.minimum(ref, 20), atol=1e-6)
        noisy = rng.integers(3, 21, (70, 90)).astype(np.uint8)
        np.testing.assert_array_equal(
            equalize_hist(torch.from_numpy(noisy).float()[None, None]).numpy()[0, 0], cv2.equalizeHist(noisy)
        )
    assert torch.equal(water_distance_torch(levels), water_distance_cv2(levels))
    # tiny images with no liquid: no NaN (the reference divides by zero there)
    from evalsuite.corruptions.weather import apply_spatter

    out = apply_spatter(torch.full((1, 3, 32, 32), 0.5), 1, {"liquid": torch.zeros(1, 32, 32)})
    assert torch.isfinite(out).all() and torch.allclose(out, torch.full_like(out, 0.5))


@pytest.mark.parametrize("mode", ["nearest", "reflect", "mirror", "wrap"])
def test_pad_fast_paths_match_index_tables(mode):
    from evalsuite.corruptions._ops import extend_index, pad

    x = torch.rand(2, 3, 5, 7)
    for t, b, left, r in [(0, 0, 3, 3), (2, 1, 0, 0), (4, 4, 6, 6), (5, 5, 7, 7), (9, 3, 11, 2), (1, 0, 0, 1)]:
        expected = x[..., extend_index(5, t, b, mode), :][..., extend_index(7, left, r, mode)]
        assert torch.equal(pad(x, t, b, left, r, mode), expected)


def test_gpu_code_paths_agree_with_cpu_paths_on_cpu(photo64):
    """The paths GPUs take (FFT motion blur, gather-based NEAREST) give the CPU paths' results."""
    from unittest import mock

    from evalsuite.corruptions import digital
    from evalsuite.corruptions.blur import MOTION_BLUR, motion_blur_batch

    x = torch.from_numpy(np.ascontiguousarray(photo64)).permute(2, 0, 1)[None].float().repeat(3, 1, 1, 1) / 255
    angles = np.array([-44.0, 3.0, 37.5])
    for radius, sigma in MOTION_BLUR:
        a = motion_blur_batch(x, radius, sigma, angles, (-45.0, 45.0), method="direct")
        b = motion_blur_batch(x, radius, sigma, angles, (-45.0, 45.0), method="fft")
        assert torch.allclose(a, b, atol=2e-6)
    for sev in range(1, 6):
        fast = digital.apply_pixelate(x, sev, {})
        with mock.patch.object(digital, "_torch_nearest_matches", return_value=False):
            slow = digital.apply_pixelate(x, sev, {})
        assert torch.equal(fast, slow)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_jpeg_is_bit_identical_to_the_cpu_codec(batch):
    for sev in range(1, 6):
        assert torch.equal(corrupt(batch.cuda(), "jpeg_compression", sev).cpu(), corrupt(batch, "jpeg_compression", sev))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", [n for n in NAMES if not get_corruption(n).random and n != "jpeg_compression"])
def test_cuda_matches_cpu_for_deterministic_corruptions(name, batch):
    cpu = corrupt(batch, name, 3)
    gpu = corrupt(batch.cuda(), name, 3).cpu()
    assert (cpu - gpu).abs().mean().item() * 255 <= 0.05
    assert (cpu - gpu).abs().max().item() * 255 <= 1.0 + 1e-4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", RANDOM + ["jpeg_compression"])
def test_cuda_runs_every_corruption_reproducibly(name, batch):
    ids = ["a", "b", "c"]
    y = corrupt(batch.cuda(), name, 4, seed=1, ids=ids)
    assert y.device.type == "cuda" and y.shape == batch.shape
    assert torch.equal(y, torch.cat([corrupt(batch[:2].cuda(), name, 4, seed=1, ids=ids[:2]),
                                     corrupt(batch[2:].cuda(), name, 4, seed=1, ids=ids[2:])]))


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_packed_random_bits_are_uniform(bits):
    from evalsuite.corruptions._random import SampleRandom

    vals = SampleRandom([1, 2]).randbits(bits, (3001, 7))
    assert vals.shape == (2, 3001, 7) and int(vals.min()) == 0 and int(vals.max()) == 2**bits - 1
    counts = torch.bincount(vals.reshape(-1), minlength=2**bits).double()
    expected = vals.numel() / 2**bits
    assert ((counts - expected) ** 2 / expected).sum().item() < 30  # chi-square, <= 7 dof
    # consecutive values are not correlated
    flat = vals.reshape(2, -1).double()
    assert abs(np.corrcoef(flat[0, :-1].numpy(), flat[0, 1:].numpy())[0, 1]) < 4 / np.sqrt(flat.shape[1])
