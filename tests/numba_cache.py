"""Shared check for numba's disk cache: which kernels a fresh process left cache indexes for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cached_kernels(probe: str, module: str, cache_dir: Path) -> set[str]:
    """Run ``probe`` in a fresh process with ``NUMBA_CACHE_DIR=cache_dir``; names of ``module``'s
    kernels that left a numba index file (``<module>.<kernel>-<line>.pyXY.nbi``)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "CI": "1"}
    subprocess.run([sys.executable, "-c", probe], env=env, check=True, timeout=600)
    return {p.name.split(".")[1].split("-")[0] for p in cache_dir.rglob(f"{module}.*.nbi")}
