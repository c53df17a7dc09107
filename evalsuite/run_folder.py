"""All-or-nothing run folders: stage every output beside ``--out``, move it into place at the end.

A run writes nothing into ``--out`` itself. Under an exclusive lock (``.<name>.lock`` beside
``--out``, an ``flock`` the kernel drops when the process dies), every file of the run --
``config.json``, ``predictions/``, ``artifacts/``, ``results.json``, ``gates.json`` and the
reports -- goes into the staging folder ``.<name>.staging`` beside ``--out``. Only when all of
them are written does :meth:`RunFolder.commit` swap the staging folder in: ``--out`` then holds
exactly one run's files, or the previous run's files, never a mix; a crash, a full disk or a
failed validation leaves ``--out`` as it was.

``--resume`` continues in the staging folder a killed run left behind (its ``predictions/``
are the resume unit); when there is none, the predictions of the finished run in ``--out`` are
carried over (hard links where the file system allows) so completed conditions are not
recomputed. Without ``--resume`` a stale staging folder is discarded.

An existing ``--out`` is replaced only when it holds nothing but what evalsuite writes
(:data:`RUN_ENTRIES`): a folder with anything else in it is refused, so a mistyped ``--out ~``
can never delete a user's files.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from types import TracebackType

from evalsuite.errors import RunEnvironmentError, UsageError

log = logging.getLogger(__name__)

RUN_ENTRIES = frozenset(
    {"results.json", "config.json", "gates.json", "junit.xml", "summary.md", "scorecard.html", "predictions", "artifacts"}
)


def describe_os_error(exc: OSError, action: str) -> str:
    """A one-line account of an environment failure (``action`` says what was being done)."""
    if exc.errno == errno.ENOSPC:
        reason = "no space left on device"
    elif exc.errno == errno.EDQUOT:
        reason = "disk quota exceeded"
    else:
        reason = exc.strerror or type(exc).__name__
    where = f" {exc.filename}" if exc.filename else ""
    return f"cannot {action}{where}: {reason}"


class RunFolder:
    """The staging folder and lock of one run into ``out`` (use as a context manager)."""

    def __init__(self, out: str | os.PathLike[str], *, resume: bool = False) -> None:
        self.out = Path(out).absolute()
        self.resume = resume
        parent, name = self.out.parent, self.out.name
        if not name or name in (".", ".."):
            raise UsageError(f"--out {out} does not name a folder")
        self.staging = parent / f".{name}.staging"
        self.lock_path = parent / f".{name}.lock"
        self._old = parent / f".{name}.replaced"
        self._lock_fd: int | None = None
        self.resumed_from: str | None = None

    # ------------------------------------------------------------------------------ checks
    def check(self) -> None:
        """Refuse an ``out`` that is a file or holds files evalsuite did not write (no side effects)."""
        if self.out.exists() and not self.out.is_dir():
            raise UsageError(f"--out {self.out} exists and is not a folder")
        if self.out.is_dir():
            foreign = sorted(e.name for e in os.scandir(self.out) if e.name not in RUN_ENTRIES)
            if foreign:
                shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
                raise UsageError(
                    f"--out {self.out} holds files evalsuite did not write ({shown}); "
                    "a run replaces its --out folder whole, so choose a new or empty folder"
                )

    # ------------------------------------------------------------------------------ life cycle
    def __enter__(self) -> RunFolder:
        self.check()
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self._acquire_lock()
            self._recover_interrupted_swap()
            self._prepare_staging()
        except OSError as exc:
            self._release_lock()
            raise UsageError(describe_os_error(exc, "write the run folder")) from None
        except BaseException:
            self._release_lock()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if exc is not None and self.staging.exists():
                from evalsuite.errors import EvalsuiteError, RunEnvironmentError

                if isinstance(exc, EvalsuiteError) and not isinstance(exc, RunEnvironmentError):
                    # A mistake found after predictions began (e.g. probability outputs): the
                    # predictions are not what a corrected run would compute, so none is kept.
                    shutil.rmtree(self.staging, ignore_errors=True)
                else:
                    log.warning("the run stopped; `--resume` continues from %s", self.staging)
        finally:
            self._release_lock()

    def commit(self) -> None:
        """Move the staging folder into place as ``out`` (the previous run folder is removed)."""
        self.check()  # nothing foreign may have appeared in --out meanwhile
        try:
            if self._old.exists():
                shutil.rmtree(self._old)
            if self.out.exists():
                os.replace(self.out, self._old)
            os.replace(self.staging, self.out)
            if self._old.exists():
                shutil.rmtree(self._old, ignore_errors=True)
            _fsync_dir(self.out.parent)
        except OSError as exc:
            raise RunEnvironmentError(describe_os_error(exc, "move the finished run into place")) from None

    # ------------------------------------------------------------------------------ internals
    def _acquire_lock(self) -> None:
        self._lock_fd = acquire_lock(
            self.lock_path,
            f"--out {self.out} is in use by another evalsuite run ({{holder}}); wait for it or choose another folder",
        )

    def _release_lock(self) -> None:
        release_lock(self._lock_fd, self.lock_path)
        self._lock_fd = None

    def _recover_interrupted_swap(self) -> None:
        """A run killed between the two renames of :meth:`commit` left ``out`` aside: put it back."""
        if self._old.exists() and not self.out.exists():
            os.replace(self._old, self.out)
            log.warning("restored %s, set aside by an interrupted run", self.out)
        elif self._old.exists():
            shutil.rmtree(self._old, ignore_errors=True)

    def _prepare_staging(self) -> None:
        if self.staging.exists() and not self.resume:
            shutil.rmtree(self.staging)
        if self.resume and self.staging.is_dir():
            self.resumed_from = "staging"
            log.info("resume: continuing the interrupted run in %s", self.staging)
            for name in list(os.listdir(self.staging)):
                if name != "predictions":  # everything else is recomputed from predictions
                    _remove(self.staging / name)
            return
        self.staging.mkdir()
        finished = self.out / "predictions"
        if self.resume and finished.is_dir():
            self.resumed_from = "out"
            _link_tree(finished, self.staging / "predictions")


def acquire_lock(path: Path, busy: str) -> int:
    """Take an exclusive ``flock`` on ``path`` (created if absent) and record the holder in it.

    The kernel drops the lock when the process dies, so a killed run never leaves a folder
    locked. ``busy`` is the one-line error when another process holds it (``{holder}`` is
    replaced by what that process recorded). Returns the descriptor for :func:`release_lock`.
    """
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise UsageError(busy.replace("{holder}", holder)) from None
        # The holder before us may have removed the file after we opened it: lock the live one.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}".encode())
    return fd


def release_lock(fd: int | None, path: Path) -> None:
    """Remove the lock file and drop the lock taken by :func:`acquire_lock` (None: nothing held)."""
    if fd is None:
        return
    try:
        os.unlink(path)
    except OSError:
        pass
    os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 200).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "holder unknown"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _link_tree(src: Path, dst: Path) -> None:
    """Copy the files of ``src`` (one level) to ``dst``, as hard links where possible."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(src):
        if not entry.is_file(follow_symlinks=False) or entry.name.startswith("."):
            continue
        target = dst / entry.name
        try:
            os.link(entry.path, target)
        except OSError:
            shutil.copy2(entry.path, target)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
