"""One shared thread pool for per-image CPU kernels (OpenCV, codecs, numba).

Condition generators on the CPU split a batch into per-image work items when the kernels
release the GIL (OpenCV, NumPy, Pillow, libjpeg, numba ``nogil`` functions): images then run
in parallel on ``torch.get_num_threads()`` workers, the same budget torch's own kernels use, so
``--threads``-style settings govern every path. One pool serves every module, so nested users
cannot multiply the thread count; a pool worker that asks for workers runs the work inline.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
#: ``inside`` is set while a thread runs work for the pool: nested calls then run inline, since
#: waiting on the (fully busy) pool from one of its own workers could deadlock.
_LOCAL = threading.local()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="evalsuite-cpu")
        return _POOL


@lru_cache(maxsize=1)
def numba_available() -> bool:
    """Whether numba (which compiles the GIL-free CPU kernels) can be imported."""
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover - numba is a declared dependency
        return False
    return True


def worker_count(n: int) -> int:
    """How many threads to use for ``n`` images: ``torch.get_num_threads()``, at most ``n``
    (one inside work the pool already runs)."""
    import torch

    if getattr(_LOCAL, "inside", False):
        return 1
    return max(1, min(int(n), int(torch.get_num_threads()), os.cpu_count() or 1))


def parallel_for(fn: Callable[[int], None], n: int, workers: int | None = None) -> None:
    """Run ``fn(i)`` for ``i in range(n)`` in contiguous chunks on the shared thread pool.

    Exceptions propagate. With one worker (or one item) everything runs inline, so a
    single-threaded budget pays no hand-off.
    """
    if n <= 0:
        return
    workers = worker_count(n) if workers is None else max(1, min(int(workers), n))
    if getattr(_LOCAL, "inside", False):
        workers = 1
    if workers == 1:
        for i in range(n):
            fn(i)
        return
    bounds = np.linspace(0, n, workers + 1).round().astype(int)

    def run(lo: int, hi: int) -> None:
        _LOCAL.inside = True
        try:
            for i in range(lo, hi):
                fn(i)
        finally:
            _LOCAL.inside = False

    futures = [_pool().submit(run, int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]
    for f in futures:
        f.result()


def parallel_slices(fn: Callable[[int, int], None], n: int) -> None:
    """Run ``fn(lo, hi)`` over ``worker_count(n)`` contiguous slices of ``range(n)`` in parallel,
    for kernels that take a whole slice of a batch at once."""
    if n <= 0:
        return
    parts = worker_count(n)
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    parallel_for(lambda i: fn(int(bounds[i]), int(bounds[i + 1])), parts)
