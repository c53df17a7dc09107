"""Parity of the engine with imagecorruptions on real photographs and on digits.

Three checks, as docs/corruptions.md explains:

- pixels: with the reference's own random numbers replayed (``parity.replay_draws``) every
  corruption, random or not, must match the reference image: mean absolute difference in
  0-255 units at most 1 (the requirement is 2), no pixel more than 2 levels apart;
- distribution: the engine's own sampler against the reference's: per-channel mean and std
  of the perturbation (corrupted - clean) within 5% of the reference perturbation's std;
- model accuracy: a trained digits CNN's accuracy under the engine and under the reference
  within 2 percentage points.

Default tests use small images and a subset of severities; the full grids (224 px photographs,
19 corruptions x 5 severities) are marked slow.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evalsuite.corruptions import NAMES, corrupt, get_corruption
from evalsuite.corruptions.parity import benchmark_seed, distribution_parity, matched_batch, matched_parity

RANDOM = [n for n in NAMES if get_corruption(n).random]
NOISY_DRAWS = ("snow", "frost", "fog", "spatter")  # one draw changes the whole image: need many draws
# The reference (imagecorruptions-imaug) draws frost from six textures, ImageNet-C and the engine from
# the first five: sampler comparisons condition the reference on those (parity.benchmark_seed).


def photographs(size: int) -> np.ndarray:
    """scikit-image's astronaut, coffee and chelsea, resized to ``size`` x ``size``."""
    from PIL import Image
    from skimage import data

    return np.stack(
        [np.asarray(Image.fromarray(f()).convert("RGB").resize((size, size), Image.BILINEAR)) for f in (data.astronaut, data.coffee, data.chelsea)]
    )


@pytest.fixture(scope="module")
def photos64() -> np.ndarray:
    return photographs(64)


@pytest.mark.parametrize("name", NAMES)
def test_pixel_parity_small_images(name, photos64, digits_data):
    """Every corruption at severities 1, 3, 5 on a 64 px photograph and a 32 px digit."""
    images = [photos64[NAMES.index(name) % 3], digits_data[0][NAMES.index(name)]]
    for sev in (1, 3, 5):
        for k, img in enumerate(images):
            r = matched_parity(img, name, sev, seed=1000 * sev + k)
            assert r.mad <= 1.0 and r.max_abs <= 2, (name, sev, k, r)


def test_spatter_liquid_threshold_in_float64():
    """Issue #21: one liquid pixel at 0.690000008 of flower.jpg (224 px, severity 1, seed 1009) fell
    under the 0.69 threshold in float32; its moved Canny edges put a value 32 levels off. The
    liquid layer is now blurred and thresholded in float64 as the reference does: exact here."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    img = np.asarray(Image.fromarray(load_sample_image("flower.jpg")).resize((224, 224), Image.BILINEAR))
    for sev in (1, 2, 3):  # the water severities (OpenCV's chain)
        r = matched_parity(img, "spatter", sev, seed=1009)
        assert r.max_abs == 0, (sev, r)


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "motion_blur", "elastic_transform"])
def test_distribution_parity_small(name, photos64):
    """The engine's own random draws match the reference's in distribution (per-channel mean and std)."""
    for sev in (1, 5):
        r = distribution_parity(photos64[:, :48, :48], name, sev, list(range(10)))
        assert r["mean_rel"] <= 0.05 and r["std_rel"] <= 0.05, (name, sev, r)


def _accuracy(model, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        return (model(x).argmax(1).numpy() == labels).astype(np.float64)


def _reference_batch(images: np.ndarray, name: str, sev: int, seeds: list[int]) -> np.ndarray:
    from evalsuite.corruptions.reference import corrupt_image

    return np.stack([corrupt_image(im, name, sev, s) for im, s in zip(images, seeds, strict=True)])


def _engine_batch(images: np.ndarray, name: str, sev: int, seed: int) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    y = corrupt(x, name, sev, seed=seed)
    return torch.round(y * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("name", ["glass_blur", "zoom_blur", "frost"])
def test_accuracy_parity_digits(name, digits_model, digits_data):
    """Accuracy of the digits CNN under engine and reference within 2 points (test split).

    Same random realisations (replayed draws): the comparison isolates the engine's image
    arithmetic. Own samplers are compared at scale in the slow test.
    """
    images, labels, _, splits = digits_data
    te = splits["test"]
    imgs, labs = images[te], labels[te]
    seeds = [int(i) * 31 + 7 for i in range(len(te))]
    for sev in (1, 5):
        ref = _accuracy(digits_model, _reference_batch(imgs, name, sev, seeds), labs).mean()
        ours = _accuracy(digits_model, matched_batch(imgs, name, sev, seeds), labs).mean()
        assert abs(ours - ref) <= 0.02, (name, sev, ours, ref)


# -- the full grids (make test-slow) ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_pixel_parity_full_grid_224(name):
    """All 19 corruptions x 5 severities on three 224 x 224 photographs."""
    photos = photographs(224)
    for sev in range(1, 6):
        for k, img in enumerate(photos):
            r = matched_parity(img, name, sev, seed=77 + 10 * sev + k)
            assert r.mad <= 1.0 and r.max_abs <= 2, (name, sev, k, r)


@pytest.mark.slow
@pytest.mark.parametrize("name", RANDOM)
def test_distribution_parity_full(name):
    """Every random corruption x severity: perturbation mean and std per channel within 5%."""
    photos = photographs(96)
    seeds = list(range({"frost": 600}.get(name, 120 if name in NOISY_DRAWS else 24)))
    for sev in range(1, 6):
        r = distribution_parity(photos, name, sev, seeds)
        assert r["mean_rel"] <= 0.05 and r["std_rel"] <= 0.05, (name, sev, r)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_accuracy_parity_full(name, digits_model, digits_data):
    """Every corruption x severity on the digits test split: accuracy within 2 points.

    Replayed draws: within 2 points. Own samplers (10 seeds, 3600 paired samples): within
    2 points, or within 3 standard errors of the paired difference where sampling noise alone
    is larger than that (recorded in docs/corruptions.md).
    """
    images, labels, _, splits = digits_data
    te = splits["test"]
    imgs, labs = images[te], labels[te]
    for sev in range(1, 6):
        seeds = [int(i) * 31 + sev for i in range(len(te))]
        ref = _accuracy(digits_model, _reference_batch(imgs, name, sev, seeds), labs)
        matched = _accuracy(digits_model, matched_batch(imgs, name, sev, seeds), labs)
        assert abs(matched.mean() - ref.mean()) <= 0.02, (name, sev, matched.mean(), ref.mean())
        if not get_corruption(name).random:
            continue
        r_all, o_all = [], []
        for rep in range(10):
            rs = [benchmark_seed(name, int(i) * 131 + 17 * rep + sev) for i in range(len(te))]
            r_all.append(_accuracy(digits_model, _reference_batch(imgs, name, sev, rs), labs))
            o_all.append(_accuracy(digits_model, _engine_batch(imgs, name, sev, 1000 + rep), labs))
        r_all, o_all = np.concatenate(r_all), np.concatenate(o_all)
        diff = o_all - r_all
        se = diff.std(ddof=1) / np.sqrt(len(diff))
        assert abs(diff.mean()) <= max(0.02, 3 * se), (name, sev, o_all.mean(), r_all.mean(), se)
