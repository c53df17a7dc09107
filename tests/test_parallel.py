"""The shared thread pool: nested users."""

from __future__ import annotations

import threading

import pytest
import torch

from evalsuite import parallel


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _finishes(fn, timeout: float = 30.0) -> bool:
    """Whether ``fn`` returns within ``timeout`` seconds (run on a daemon thread, so a
    deadlock fails the test instead of hanging the suite)."""
    done = threading.Event()

    def target() -> None:
        fn()
        done.set()

    threading.Thread(target=target, daemon=True).start()
    return done.wait(timeout)


def test_nested_parallel_for_runs_inline_instead_of_deadlocking(two_threads):
    # every pool worker busy with an outer item that itself asks the pool for workers
    workers = max(2, parallel._pool()._max_workers)
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def outer(i: int) -> None:
        def inner(j: int) -> None:
            with lock:
                seen.append((i, j))

        parallel.parallel_for(inner, 4, workers=workers)

    assert _finishes(lambda: parallel.parallel_for(outer, workers, workers=workers))
    assert sorted(seen) == [(i, j) for i in range(workers) for j in range(4)]
