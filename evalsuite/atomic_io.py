"""Atomic file output: a reader sees the old file or the whole new one, never a half-written one.

Every file evalsuite writes (results.json, scorecards, predictions, exported and calibrated
models, corrupted images) goes through :func:`atomic_path`: the content is written to a
temporary file beside the target (same filesystem, so the final rename is atomic), synced, given
the mode a plain ``open()`` would have given (``mkstemp`` creates 0600, but results are meant to
be shared) and renamed over the target; on any error the temporary file is removed and the
target is untouched.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def default_file_mode() -> int:
    """The mode a plain ``open()`` would give a new file (0666 minus the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path to write the new ``path`` to (by any library); on a clean exit the
    file is synced and renamed over ``path``. ``suffix`` matters to writers that pick the format
    from the file name (``torch.onnx.export`` wants ``.onnx``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        _fsync(tmp)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class Candidate:
    """A file written beside its destination that replaces it only when :meth:`commit` is called
    (see :func:`atomic_candidate`)."""

    def __init__(self, tmp: Path, dest: Path) -> None:
        self.path, self.dest, self.committed = tmp, dest, False

    def commit(self) -> None:
        """Sync the candidate and rename it over the destination."""
        _fsync(self.path)
        os.chmod(self.path, default_file_mode())
        os.replace(self.path, self.dest)
        self.committed = True


@contextmanager
def atomic_candidate(path: str | Path, suffix: str = ".tmp") -> Iterator[Candidate]:
    """Like :func:`atomic_path`, for outputs that must be checked before they may replace
    ``path`` (a calibrated model is loaded and verified first): the candidate moves into place
    only when the caller commits it, and is removed on every other exit."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=suffix)
    os.close(fd)
    candidate = Candidate(Path(tmp), path)
    try:
        yield candidate
    finally:
        if not candidate.committed and os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))
