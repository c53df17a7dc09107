"""The numba CPU kernels of the corruption engine against their torch twins and the reference.

On the CPU, every batch (a single image too) runs zoom blur, pixelate, fog, JPEG's 8-bit
conversions, shot noise's Poisson lookups, the short separable filters and glass blur's shuffle
through numba kernels; CUDA tensors, and CPU tensors without numba, run the torch code. Every test here runs both and compares them (bit for bit
where the kernels repeat the same float32 operations), and checks the kernel path against the
reference library directly.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch

from evalsuite.corruptions import _numba

pytestmark = pytest.mark.skipif(not _numba.available(), reason="numba not installed")


def torch_path():
    """Context: every corruption runs its torch code (the numba kernels are declined)."""
    return mock.patch.object(_numba, "use_kernels", return_value=False)


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Four 48 x 64 photographs (two of them mirrored), NCHW float on the 8-bit grid."""
    from PIL import Image
    from skimage import data

    srcs = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    imgs = [np.asarray(Image.fromarray(s).resize((64, 48), Image.BILINEAR)) for s in srcs]
    imgs[1], imgs[3] = imgs[1][:, ::-1], imgs[3][::-1]
    return torch.from_numpy(np.ascontiguousarray(np.stack(imgs))).permute(0, 3, 1, 2).float() / 255


def _layouts(x: torch.Tensor) -> list[torch.Tensor]:
    """The batch as contiguous NCHW and as a channels-last view (what the runner hands over)."""
    return [x.contiguous(), x.contiguous(memory_format=torch.channels_last)]


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_zoom_blur_kernel_matches_torch_and_reference(photos, severity):
    from evalsuite.corruptions import corrupt
    from evalsuite.corruptions.blur import apply_zoom_blur
    from evalsuite.corruptions.reference import corrupt_image

    for x in _layouts(photos):
        fast = apply_zoom_blur(x, severity, {})
        with torch_path():
            slow = apply_zoom_blur(x, severity, {})
        assert fast.shape == x.shape and fast.dtype == torch.float32
        assert torch.allclose(fast, slow, atol=5e-6)
    ours = torch.round(corrupt(photos, "zoom_blur", severity) * 255).permute(0, 2, 3, 1).numpy()
    imgs = torch.round(photos * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    ref = np.stack([corrupt_image(np.ascontiguousarray(im), "zoom_blur", severity, 0) for im in imgs]).astype(np.float64)
    diff = np.abs(ours - ref)
    assert diff.max() <= 1.0  # float32 vs float64 rounding at the 8-bit truncation only
    assert (diff > 0).mean() < 0.01


@pytest.mark.parametrize(("h", "w"), [(48, 64), (101, 37), (32, 32)])
def test_pixelate_kernel_bit_identical_to_torch_and_pillow(h, w):
    from PIL import Image

    from evalsuite.corruptions.digital import PIXELATE, apply_pixelate

    rng = np.random.default_rng(h * w)
    imgs = rng.integers(0, 256, (4, h, w, 3), dtype=np.uint8)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    for sev in range(1, 6):
        c = PIXELATE[sev - 1]
        ref = np.stack([
            np.asarray(Image.fromarray(im).resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.NEAREST))
            for im in imgs
        ])
        for xx in _layouts(x):
            fast = apply_pixelate(xx, sev, {})
            with torch_path():
                slow = apply_pixelate(xx, sev, {})
            assert torch.equal(fast, slow)
            ours = torch.round(fast * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
            assert np.array_equal(ours, ref)


def test_jpeg_kernel_path_bit_identical_to_pillow(photos):
    from evalsuite.corruptions.digital import JPEG_QUALITY, apply_jpeg_compression

    for sev in range(1, 6):
        ref = apply_jpeg_compression(photos, sev, {}, codec="pil")
        for xx in _layouts(photos):
            fast = apply_jpeg_compression(xx, sev, {})
            assert fast.shape == xx.shape
            assert torch.equal(fast, ref), f"quality {JPEG_QUALITY[sev - 1]}"


def test_8bit_conversions_round_half_to_even_and_clamp():
    to_u8, from_u8 = _numba.kernel("to_u8_hwc"), _numba.kernel("from_u8_hwc")
    vals = np.array([0.0, 0.5 / 255, 1.5 / 255, 2.5 / 255, 0.49999, 1.0, 127.5 / 255], dtype=np.float32)
    src = np.zeros((3, 1, vals.size), dtype=np.float32)
    src[0, 0], src[1, 0], src[2, 0] = vals, vals[::-1], vals
    out = to_u8(src, np.empty((1, vals.size, 3), dtype=np.uint8), False)
    expect = np.clip(np.rint(src * np.float32(255.0)), 0, 255).astype(np.uint8)
    assert np.array_equal(out, np.moveaxis(expect, 0, -1))
    bgr = to_u8(src, np.empty((1, vals.size, 3), dtype=np.uint8), True)
    assert np.array_equal(bgr, out[..., ::-1])
    levels = np.arange(256, dtype=np.uint8).reshape(1, 256, 1).repeat(3, axis=2)
    back = from_u8(levels, np.empty((3, 1, 256), dtype=np.float32), False)
    assert np.array_equal(back[1, 0], np.arange(256, dtype=np.float32) / np.float32(255))


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_shot_noise_kernel_bit_identical_to_torch(photos, severity):
    from evalsuite.corruptions._random import SampleRandom
    from evalsuite.corruptions.noise import draw_shot_noise

    for xx in _layouts(photos):
        fast = draw_shot_noise(xx, severity, SampleRandom([5, 6, 7, 8]))["counts"]
        with torch_path():
            slow = draw_shot_noise(xx, severity, SampleRandom([5, 6, 7, 8]))["counts"]
        assert torch.equal(fast, slow)


def test_parallel_fields_equal_sequential_draws():
    """Filling per-sample fields on the thread pool gives each sample its own stream's values."""
    from evalsuite.corruptions._random import SampleRandom, _mix

    seeds = [11, 12, 13, 14, 15]
    r = SampleRandom(seeds)
    got = {"uniform": r.uniform((3, 20, 30)), "normal": r.normal((2, 5), 0.0, 2.0), "randint": r.randint(-3, 4, (40,))}
    gens = [torch.Generator().manual_seed(_mix(s)) for s in seeds]
    assert torch.equal(got["uniform"], torch.stack([torch.empty(3, 20, 30).uniform_(0, 1, generator=g) for g in gens]))
    assert torch.equal(got["normal"], torch.stack([torch.empty(2, 5).normal_(0.0, 2.0, generator=g) for g in gens]))
    assert torch.equal(got["randint"], torch.stack([torch.empty(40, dtype=torch.int64).random_(-3, 4, generator=g) for g in gens]))


def test_every_cpu_batch_uses_the_kernels_whatever_ran_before():
    """One implementation per device: a single image runs the kernels as a batch of 64 does,
    before any kernel is loaded in the process and after (issue #21: the choice used to depend
    on the batch size and on whether a larger batch had compiled the kernel already)."""
    x = torch.zeros(1, 3, 32, 32)
    with mock.patch.dict(_numba._kernels, clear=True):
        assert _numba.use_kernels(x)
        assert _numba.use_kernels(torch.zeros(64, 3, 32, 32))
    with mock.patch("evalsuite.parallel.numba_available", return_value=False):
        assert not _numba.use_kernels(x)
    if torch.cuda.is_available():
        assert not _numba.use_kernels(x.cuda())


# -- JPEG as tensor arithmetic (against the codec itself: tests/test_jpeg.py) -------------------


def test_tensor_jpeg_codec_in_the_corruption_matches_libjpeg(photos):
    from evalsuite.corruptions.digital import apply_jpeg_compression

    for sev in (1, 5):
        assert torch.equal(apply_jpeg_compression(photos, sev, {}, codec="tensor"),
                           apply_jpeg_compression(photos, sev, {}, codec="pil"))
    with pytest.raises(ValueError, match="unknown JPEG codec"):
        apply_jpeg_compression(photos, 1, {}, codec="mozjpeg")


@pytest.mark.parametrize(("h", "w"), [(48, 64), (37, 101)])
def test_fog_kernel_bit_identical_to_torch(h, w):
    from evalsuite.corruptions import corrupt

    rng = np.random.default_rng(h + w)
    x = torch.from_numpy(rng.integers(0, 256, (5, 3, h, w)).astype(np.float32) / 255)
    ids = [f"s{i}" for i in range(5)]
    for sev in range(1, 6):
        fast = corrupt(x, "fog", sev, seed=3, ids=ids)
        with torch_path():
            slow = corrupt(x, "fog", sev, seed=3, ids=ids)
        assert torch.equal(fast, slow), f"severity {sev}"
    for xx in _layouts(x):
        assert torch.equal(corrupt(xx, "fog", 2, seed=3, ids=ids), corrupt(x, "fog", 2, seed=3, ids=ids))


CACHE_PROBE = r"""
import torch
from evalsuite.corruptions import corrupt
x = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
ids = [str(i) for i in range(8)]
for name in ("zoom_blur", "fog", "pixelate", "shot_noise", "glass_blur", "gaussian_blur"):
    corrupt(x, name, 3, seed=0, ids=ids)
"""


def test_numba_kernels_are_cached_on_disk_for_later_processes(tmp_path):
    """cache=True kernels leave numba index files, so the next process loads instead of compiling."""
    from tests.numba_cache import cached_kernels

    pytest.importorskip("numba")
    indexed = cached_kernels(CACHE_PROBE, "_numba_kernels", tmp_path / "numba-cache")
    for kernel in ("zoom_blur", "fog", "pixelate", "poisson_table", "separable"):
        assert kernel in indexed, f"{kernel} left no numba cache index (compiled with cache=False?): {sorted(indexed)}"
