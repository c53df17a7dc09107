"""The reference backend and its compatibility layer.

The installed ``imagecorruptions`` is the maintained fork (imagecorruptions-imaug 1.1.5). The
layer must also run the broken PyPI 1.1.2, which cannot be installed beside it; a stand-in
package with 1.1.2's incompatibilities (``pkg_resources``, ``gaussian(multichannel=)``,
``np.float_``, an unseedable salt-and-pepper generator, a pure-Python glass blur, five frost
textures) is written to a temporary folder and loaded instead.
"""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch

from evalsuite.corruptions import reference

FAKE_112 = textwrap.dedent(
    '''
    """Stand-in for imagecorruptions 1.1.2: the same incompatible calls, trimmed bodies."""
    import numpy as np
    import skimage as sk
    from skimage.filters import gaussian
    import cv2
    from pkg_resources import resource_filename


    def gaussian_blur(x, severity=1):
        c = [1, 2, 3, 4, 6][severity - 1]
        x = gaussian(np.array(x) / 255., sigma=c, multichannel=True)
        return np.clip(x, 0, 1) * 255


    def impulse_noise(x, severity=1):
        c = [.03, .06, .09, 0.17, 0.27][severity - 1]
        x = sk.util.random_noise(np.array(x) / 255., mode='s&p', amount=c)
        return np.clip(x, 0, 1) * 255


    def glass_blur(x, severity=1):
        c = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)][severity - 1]
        x = np.uint8(gaussian(np.array(x) / 255., sigma=c[0], multichannel=True) * 255)
        x_shape = np.array(x).shape
        for i in range(c[2]):
            for h in range(x_shape[0] - c[1], c[1], -1):
                for w in range(x_shape[1] - c[1], c[1], -1):
                    dx, dy = np.random.randint(-c[1], c[1], size=(2,))
                    h_prime, w_prime = h + dy, w + dx
                    x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
        return np.clip(gaussian(x / 255., sigma=c[0], multichannel=True), 0, 1) * 255


    def fog(x, severity=1):
        c = [(1.5, 2), (2., 2), (2.5, 1.7), (2.5, 1.5), (3., 1.4)][severity - 1]
        x = np.array(x) / 255.
        max_val = x.max()
        layer = np.empty(x.shape[:2], dtype=np.float_)
        layer[...] = np.random.uniform(0, 1, x.shape[:2])
        x += c[0] * layer[..., np.newaxis]
        return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255


    def frost(x, severity=1):
        c = [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)][severity - 1]
        idx = np.random.randint(5)
        filename = [resource_filename(__name__, './frost/frost%d.png' % (i + 1)) for i in range(5)][idx]
        frost = cv2.imread(filename)
        x = np.array(x)
        crop = frost[:x.shape[0], :x.shape[1]][..., [2, 1, 0]]
        return np.clip(c[0] * x + c[1] * crop, 0, 255)
    '''
)


@pytest.fixture()
def fake_112(tmp_path, monkeypatch):
    """Load the 1.1.2 stand-in through the compatibility layer; restore the real package afterwards."""
    import cv2

    pkg = tmp_path / "imagecorruptions"
    (pkg / "frost").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .corruptions import *\n")
    (pkg / "corruptions.py").write_text(FAKE_112)
    rng = np.random.default_rng(0)
    for i in range(5):
        cv2.imwrite(str(pkg / "frost" / f"frost{i + 1}.png"), rng.integers(0, 256, (80, 90, 3), dtype=np.uint8))
    for name in [m for m in sys.modules if m == "imagecorruptions" or m.startswith("imagecorruptions.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "pkg_resources", None)  # as with setuptools >= 81: not importable
    monkeypatch.setattr(reference, "_info", None)
    try:
        yield reference.load_reference()
    finally:
        for name in [m for m in sys.modules if m == "imagecorruptions" or m.startswith("imagecorruptions.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.coffee()).resize((48, 40), Image.BILINEAR))


def test_detects_the_installed_fork():
    info = reference.load_reference()
    assert info.seeded_glass_blur and info.seeded_impulse_noise and info.numba_glass_blur
    assert info.frost_textures == 6  # the fork draws all six textures
    assert info.shims == ()
    assert info.distribution in ("imagecorruptions-imaug", "imagecorruptions")


def test_compat_layer_runs_112_style_package(fake_112, photo):
    info = fake_112
    assert "pkg_resources.resource_filename" in info.shims
    assert "gaussian(multichannel=) -> channel_axis" in info.shims
    assert "np.float_" in info.shims
    assert "seeded skimage.util.random_noise" in info.shims
    assert not info.seeded_glass_blur and not info.numba_glass_blur and not info.seeded_impulse_noise
    assert info.frost_textures == 5
    assert "pkg_resources" not in sys.modules or sys.modules["pkg_resources"] is None  # the shim is not left behind
    from skimage.filters import gaussian

    blurred = reference.corrupt_image(photo, "gaussian_blur", 2, seed=1)
    expected = np.uint8(np.clip(gaussian(photo / 255.0, sigma=2, channel_axis=-1), 0, 1) * 255)
    assert np.array_equal(blurred, expected)
    for name in ("impulse_noise", "glass_blur", "fog", "frost"):
        a = reference.corrupt_image(photo, name, 3, seed=5)
        assert np.array_equal(a, reference.corrupt_image(photo, name, 3, seed=5)), name
        assert not np.array_equal(a, reference.corrupt_image(photo, name, 3, seed=6)), name
    # the seeded salt-and-pepper stream is skimage's generator seeded with the sample seed
    rng = np.random.default_rng(5)
    flip = rng.random(photo.shape) <= 0.09
    salt = rng.random(photo.shape) <= 0.5
    exp = np.where(flip & salt, 255, np.where(flip, 0, photo)).astype(np.uint8)
    assert np.array_equal(reference.corrupt_image(photo, "impulse_noise", 3, seed=5), exp)


def test_reference_matches_imagecorruptions_corrupt(photo):
    """corrupt_image is imagecorruptions.corrupt with NumPy seeded (and seed= where taken)."""
    import imagecorruptions

    for name in ("contrast", "gaussian_noise", "motion_blur", "pixelate"):
        np.random.seed(123)
        expected = imagecorruptions.corrupt(photo, corruption_name=name, severity=2)
        assert np.array_equal(reference.corrupt_image(photo, name, 2, seed=123), expected), name
    expected = imagecorruptions.corrupt(photo, corruption_name="impulse_noise", severity=2, seed=9)
    assert np.array_equal(reference.corrupt_image(photo, "impulse_noise", 2, seed=9), expected)


def test_glass_blur_seeded_through_numba(photo):
    a = reference.corrupt_image(photo, "glass_blur", 1, seed=3)
    assert np.array_equal(a, reference.corrupt_image(photo, "glass_blur", 1, seed=3))
    assert not np.array_equal(a, reference.corrupt_image(photo, "glass_blur", 1, seed=4))


def test_tensor_api_round_trip_and_seeding(photo):
    x = torch.from_numpy(np.stack([photo, photo[::-1]]).copy()).permute(0, 3, 1, 2).float() / 255
    y = reference.corrupt(x, "shot_noise", 2, seed=0, ids=["a", "b"])
    assert y.shape == x.shape and y.dtype == x.dtype
    single = reference.corrupt(x[1], "shot_noise", 2, seed=0, ids=["b"])
    assert torch.equal(y[1], single)
    seed = reference.reference_seed(0, "shot_noise", 2, "a")
    expected = reference.corrupt_image(photo, "shot_noise", 2, seed)
    assert np.array_equal(torch.round(y[0] * 255).to(torch.uint8).permute(1, 2, 0).numpy(), expected)
    from evalsuite.errors import UsageError

    with pytest.raises(UsageError, match="did you mean"):
        reference.corrupt(x, "shotnoise", 2)
