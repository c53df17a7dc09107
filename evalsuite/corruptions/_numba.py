"""Per-image CPU kernels compiled with numba, for corruptions where torch's CPU kernels are slow.

Each kernel works on one ``3 x H x W`` float32 image (any strides), releases the GIL and is
run over a batch on the shared thread pool (:mod:`evalsuite.parallel`), so images stay in
cache and both cores work. The torch implementations beside them remain the CUDA path and the
fallback without numba; tests check each kernel against its torch twin and the reference.

The kernels themselves live in :mod:`evalsuite.corruptions._numba_kernels` as module-level
``cache=True`` functions: compiled on first use on a machine (about a second each) and loaded
from numba's disk cache by every later process.

One implementation per device (:func:`use_kernels`): every CPU batch runs the kernels when
numba is installed, a single image as much as a batch of 64, whatever ran before in the
process; CUDA tensors (and CPU tensors without numba) run the torch code. The twins agree
closely but not always bit for bit (float64 against float32 interpolation in zoom blur, SciPy's
float64 sums in the separable filters), so choosing by batch size made a corrupted image depend
on the process's history (issue #21); ``tests/test_batch_invariance_corruptions.py`` holds
every corruption and severity to the same pixels at batch sizes 1, 2, 3, 17 and 64.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from evalsuite.parallel import parallel_for

_lock = threading.Lock()
_kernels: dict[str, Any] = {}


def available() -> bool:
    """Whether numba can be imported (:func:`evalsuite.parallel.numba_available`)."""
    from evalsuite.parallel import numba_available

    return numba_available()


def use_kernels(x: torch.Tensor) -> bool:
    """Whether batch ``x`` runs the numba kernels: every CPU batch when numba is installed.

    The answer depends on the device alone, never on the batch size or on what the process ran
    before, so the same (seed, condition, sample id) always gets the same pixels.
    """
    return x.device.type == "cpu" and available()


def kernel(name: str) -> Callable[..., Any]:
    """The compiled kernel ``name`` (compiled once per process, thread-safe)."""
    with _lock:
        fn = _kernels.get(name)
        if fn is None:
            fn = _BUILDERS[name]()
            _kernels[name] = fn
        return fn


def per_image(name: str, x: torch.Tensor, *args: Any, fields: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
    """Run kernel ``name(src_chw, *field_chw, out_chw, *args)`` over every image of CPU float32
    batch ``x``; ``fields`` are further per-image inputs (random fields) of the same batch size."""
    fn = kernel(name)
    src = x.detach().numpy()
    extra = [f.detach().numpy() for f in fields]
    out = np.empty(src.shape, dtype=np.float32)

    def one(i: int) -> None:
        fn(src[i], *[e[i] for e in extra], out[i], *args)

    parallel_for(one, src.shape[0])
    return torch.from_numpy(out)


# -- zoom blur ------------------------------------------------------------------------------


def zoom_layers(h: int, w: int, factors: np.ndarray) -> np.ndarray:
    """Per zoom factor ``(top, left, crop_h, crop_w, out_h, out_w)`` of ``clipped_zoom`` (int64, L x 6)."""
    rows = []
    for z in factors:
        ch0, ch1 = int(math.ceil(h / float(z))), int(math.ceil(w / float(z)))
        rows.append(((h - ch0) // 2, (w - ch1) // 2, ch0, ch1, int(round(ch0 * z)), int(round(ch1 * z))))
    return np.asarray(rows, dtype=np.int64)


def _build_zoom_blur() -> Callable[..., Any]:
    from evalsuite.corruptions._numba_kernels import zoom_blur

    return zoom_blur

# -- separable filters ------------------------------------------------------------------------


def _build_separable() -> Callable[..., Any]:
    from evalsuite.corruptions._numba_kernels import separable

    return separable

# -- pixelate -------------------------------------------------------------------------------


def _build_pixelate() -> Callable[..., Any]:
    from evalsuite.corruptions._numba_kernels import pixelate

    return pixelate

# -- shot noise ------------------------------------------------------------------------------


def _build_poisson_table() -> Callable[..., Any]:
    from evalsuite.corruptions._numba_kernels import poisson_table

    return poisson_table

# -- fog ----------------------------------------------------------------------------------------


def _build_fog() -> Callable[..., Any]:
    from evalsuite.corruptions._numba_kernels import fog

    return fog

# -- 8-bit conversions around codecs ----------------------------------------------------------


def _build_to_u8_hwc() -> Callable[..., Any]:
    from evalsuite.corruptions._numba_kernels import to_u8_hwc

    return to_u8_hwc

def _build_from_u8_hwc() -> Callable[..., Any]:
    from evalsuite.corruptions._numba_kernels import from_u8_hwc

    return from_u8_hwc

def _build_glass_shuffle() -> Callable[..., Any]:
    from evalsuite.corruptions._numba_kernels import glass_shuffle

    return glass_shuffle


def _load_jpeg() -> Callable[..., Any]:
    """evalsuite.jpeg's CPU kernel (compiled once per machine, cached on disk by numba)."""
    from evalsuite.jpeg import cpu

    return cpu.kernel()


_BUILDERS: dict[str, Callable[[], Callable[..., Any]]] = {
    "jpeg": _load_jpeg,
    "separable": _build_separable,
    "zoom_blur": _build_zoom_blur,
    "pixelate": _build_pixelate,
    "poisson_table": _build_poisson_table,
    "fog": _build_fog,
    "to_u8_hwc": _build_to_u8_hwc,
    "from_u8_hwc": _build_from_u8_hwc,
    "glass_shuffle": _build_glass_shuffle,
}
