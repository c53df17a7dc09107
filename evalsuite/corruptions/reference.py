"""The reference backend: ``imagecorruptions`` itself, behind a small compatibility layer.

Two incompatible distributions provide the ``imagecorruptions`` module:

- ``imagecorruptions`` 1.1.2 (PyPI, 2020): imports ``pkg_resources`` (gone from setuptools >= 81),
  passes ``multichannel=`` to ``skimage.filters.gaussian`` (removed in scikit-image 0.19+),
  uses ``np.float_`` (removed in NumPy 2), shuffles glass-blur pixels in a pure-Python loop and
  draws salt-and-pepper noise from an unseedable generator on current scikit-image;
- ``imagecorruptions-imaug`` 1.1.5 (the maintained fork, what evalsuite depends on): all of
  that fixed, a numba glass blur with a ``seed`` argument (numba's generator ignores
  ``np.random.seed``), a ``seed`` argument on ``impulse_noise``, and frost textures drawn from
  all six files instead of ImageNet-C's first five.

:func:`load_reference` detects what the installed module offers by looking at functions and
signatures (not version strings) and installs only the shims it needs. :func:`corrupt_image`
then runs one corruption on one uint8 image with a per-sample seed, exactly like
``imagecorruptions.corrupt`` (``np.uint8`` of the result). The reference uses NumPy's global
generator, so calls are serialised by a lock.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import re
import sys
import threading
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_lock = threading.RLock()
_info: ReferenceInfo | None = None
_local = threading.local()


@dataclass(frozen=True)
class ReferenceInfo:
    """What the installed ``imagecorruptions`` offers and which shims were installed."""

    module: Any  # imagecorruptions.corruptions
    package: Any  # imagecorruptions
    distribution: str
    version: str
    seeded_glass_blur: bool
    seeded_impulse_noise: bool
    numba_glass_blur: bool
    frost_textures: int | None
    shims: tuple[str, ...] = field(default_factory=tuple)


def _distribution() -> tuple[str, str]:
    from importlib import metadata

    for dist in ("imagecorruptions-imaug", "imagecorruptions"):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown", "unknown"


def _pkg_resources_shim() -> types.ModuleType:
    """Just enough of ``pkg_resources`` for ``resource_filename(module_name, path)``."""
    shim = types.ModuleType("pkg_resources")

    def resource_filename(package_or_requirement: str, resource_name: str) -> str:
        spec = importlib.util.find_spec(package_or_requirement)
        if spec is None or spec.origin is None:
            raise ImportError(f"cannot locate {package_or_requirement}")
        return os.path.normpath(os.path.join(os.path.dirname(spec.origin), resource_name))

    shim.resource_filename = resource_filename  # type: ignore[attr-defined]
    return shim


def _import_package(shims: list[str]) -> types.ModuleType:
    try:
        return importlib.import_module("imagecorruptions")
    except ModuleNotFoundError as exc:
        if exc.name != "pkg_resources":
            raise
    # imagecorruptions 1.1.2 with setuptools >= 81: provide resource_filename for the import only.
    for name in [m for m in sys.modules if m == "imagecorruptions" or m.startswith("imagecorruptions.")]:
        del sys.modules[name]
    sys.modules["pkg_resources"] = _pkg_resources_shim()
    try:
        pkg = importlib.import_module("imagecorruptions")
    finally:
        sys.modules.pop("pkg_resources", None)
    shims.append("pkg_resources.resource_filename")
    return pkg


class _NumpyCompat(types.ModuleType):
    """NumPy as the module sees it, plus aliases removed in NumPy 2 (``np.float_``)."""

    def __init__(self) -> None:
        super().__init__("numpy")
        self.float_ = np.float64

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


class _SkimageCompat:
    """``skimage`` as the module sees it, with ``util.random_noise`` seeded from the current call."""

    def __init__(self, sk: Any) -> None:
        self._sk = sk
        self.util = _UtilCompat(sk.util)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sk, name)


class _UtilCompat:
    def __init__(self, util: Any) -> None:
        self._util = util
        params = inspect.signature(util.random_noise).parameters
        self._rng_name = "rng" if "rng" in params else "seed"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._util, name)

    def random_noise(self, image: Any, *args: Any, **kwargs: Any) -> Any:
        if len(args) < 2 and self._rng_name not in kwargs:
            kwargs[self._rng_name] = getattr(_local, "seed", None)
        return self._util.random_noise(image, *args, **kwargs)


def _wrap_gaussian(gaussian: Any) -> Any:
    def gaussian_compat(image: Any, *args: Any, multichannel: bool | None = None, **kwargs: Any) -> Any:
        if multichannel is not None and "channel_axis" not in kwargs:
            kwargs["channel_axis"] = -1 if multichannel else None
        return gaussian(image, *args, **kwargs)

    gaussian_compat.__wrapped__ = gaussian  # type: ignore[attr-defined]
    return gaussian_compat


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def load_reference() -> ReferenceInfo:
    """Import ``imagecorruptions`` (either distribution), patch what this stack needs, describe it."""
    global _info
    with _lock:
        if _info is not None:
            return _info
        shims: list[str] = []
        try:
            pkg = _import_package(shims)
        except ImportError as exc:
            from evalsuite.errors import EvalsuiteError

            raise EvalsuiteError(
                f"the reference corruption backend needs the imagecorruptions package ({exc}); "
                "install imagecorruptions-imaug"
            ) from exc
        mod = importlib.import_module("imagecorruptions.corruptions")
        src = _source(mod)
        import skimage.filters

        if "multichannel" not in inspect.signature(skimage.filters.gaussian).parameters and "multichannel=True" in src:
            mod.gaussian = _wrap_gaussian(mod.gaussian)
            shims.append("gaussian(multichannel=) -> channel_axis")
        if not hasattr(np, "float_") and "np.float_" in src:
            mod.np = _NumpyCompat()
            shims.append("np.float_")
        seeded_impulse = "seed" in inspect.signature(mod.impulse_noise).parameters
        if not seeded_impulse:
            mod.sk = _SkimageCompat(mod.sk)
            shims.append("seeded skimage.util.random_noise")
        seeded_glass = "seed" in inspect.signature(mod.glass_blur).parameters
        numba_glass = hasattr(mod, "_shuffle_pixels_njit_glass_blur")
        if numba_glass and not seeded_glass:
            shims.append("numba generator seeded per call")
        match = re.search(r"idx\s*=\s*np\.random\.randint\((\d+)\)", _source(mod.frost))
        dist, version = _distribution()
        _info = ReferenceInfo(
            module=mod,
            package=pkg,
            distribution=dist,
            version=version,
            seeded_glass_blur=seeded_glass,
            seeded_impulse_noise=seeded_impulse,
            numba_glass_blur=numba_glass,
            frost_textures=int(match.group(1)) if match else None,
            shims=tuple(shims),
        )
        log.debug("reference imagecorruptions: %s", _info)
        return _info


_numba_seed = None


def _seed_numba(seed: int) -> None:
    """Seed numba's own generator (``np.random.seed`` in Python does not reach it)."""
    global _numba_seed
    if _numba_seed is None:
        from numba import njit

        @njit(cache=False)
        def seed_fn(s):  # pragma: no cover - compiled
            np.random.seed(s)

        _numba_seed = seed_fn
    _numba_seed(seed)


def corrupt_image(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """``imagecorruptions`` on one ``H x W x 3`` uint8 image, seeded with ``seed`` (< 2**32).

    NumPy's global generator is seeded for every corruption; glass blur and impulse noise get
    ``seed`` as their own argument where the installed version takes one (else numba's
    generator or the salt-and-pepper generator are seeded through the shims).
    """
    info = load_reference()
    from PIL import Image

    fn = getattr(info.module, name)
    seed = int(seed) % (2**32)
    with _lock:
        np.random.seed(seed)
        _local.seed = seed
        kwargs: dict[str, Any] = {}
        if name == "glass_blur":
            if info.seeded_glass_blur:
                kwargs["seed"] = seed
            elif info.numba_glass_blur:
                _seed_numba(seed)
        if name == "impulse_noise" and info.seeded_impulse_noise:
            kwargs["seed"] = seed
        try:
            out = fn(Image.fromarray(np.ascontiguousarray(image)), severity, **kwargs)
        finally:
            _local.seed = None
    return np.uint8(out)


def reference_seed(seed: int, name: str, severity: int, sample_id: object) -> int:
    """The 32-bit seed the reference backend uses for one sample."""
    from evalsuite.seeding import sample_seed

    return sample_seed(seed, f"corruption/{name}/{severity}", str(sample_id)) % (2**32)


def corrupt(images: Any, name: str, severity: int, *, seed: int = 0, ids: Sequence[object] | None = None) -> Any:
    """Same contract as :func:`evalsuite.corruptions.corrupt`, computed by ``imagecorruptions``.

    Images are rounded to uint8 ``H x W x 3`` (the reference's input type), corrupted one by
    one on the CPU and returned as float in [0, 1] on the input's device and dtype.
    """
    import torch

    from evalsuite.corruptions._engine import check_images, check_severity, get_spec
    from evalsuite.errors import UsageError

    spec = get_spec(name)
    severity = check_severity(severity)
    x, single = check_images(images, spec)
    n = x.shape[0]
    ids = [str(i) for i in range(n)] if ids is None else [str(i) for i in ids]
    if len(ids) != n:
        raise UsageError(f"corrupt() got {len(ids)} ids for {n} images")
    arr = torch.round(x.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    outs = [corrupt_image(a, spec.name, severity, reference_seed(seed, spec.name, severity, i)) for a, i in zip(arr, ids, strict=True)]
    out = torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2).to(device=images.device, dtype=images.dtype) / 255.0
    return out[0] if single else out
