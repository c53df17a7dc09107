"""The sensor-noise kernel (evalsuite.devices._noise_kernels) is kept in numba's disk cache, so
only the first process on a machine compiles it."""

from __future__ import annotations

import pytest

from tests.numba_cache import cached_kernels

CACHE_PROBE = r"""
import numpy as np
from evalsuite.devices import _noise
img = np.full((1, 4, 5, 3), 1e-3, dtype=np.float32)
out = np.empty_like(img)
_noise.noise_batch(img, _noise.seed_keys([3]), out, 2000.0, 1.0, 1e9, 0, 1)
"""


def test_noise_kernel_is_cached_on_disk_for_later_processes(tmp_path):
    """cache=True kernels leave numba index files, so the next process loads instead of compiling."""
    pytest.importorskip("numba")
    indexed = cached_kernels(CACHE_PROBE, "_noise_kernels", tmp_path / "numba-cache")
    for kernel in ("noise", "normal_slow"):
        assert kernel in indexed, f"{kernel} left no numba cache index (compiled with cache=False?): {sorted(indexed)}"
