"""Shared checks for the hostile-input battery (tests/test_trust_*.py).

Every bad-input case asserts the same four things: exit code 2 (or the code the case names),
a one-line message on stderr that names the problem, no traceback, and the state of ``--out``
afterwards (untouched, or absent when it did not exist).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from evalsuite.cli import main


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI in-process; (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_cli_subprocess(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 600,
                       cwd: str | os.PathLike[str] | None = None) -> tuple[int, str, str]:
    """Run ``python -m evalsuite ARGS`` in a fresh process (for limits, signals and audit hooks)."""
    full_env = {**os.environ, "CI": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "evalsuite", *[str(a) for a in args]],
        capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd,
    )
    return proc.returncode, proc.stdout, proc.stderr


def error_lines(stderr: str) -> list[str]:
    """The ``evalsuite: error:`` lines of stderr (warnings from logging are other lines)."""
    return [line for line in stderr.splitlines() if line.startswith("evalsuite: error:")]


def assert_input_error(code: int, stderr: str, *needles: str, expected_code: int = 2) -> str:
    """Exit ``expected_code``, exactly one error line naming every needle (case-insensitive), no traceback."""
    assert code == expected_code, f"exit {code}, expected {expected_code}; stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    assert "internal error" not in stderr, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, f"expected one error line, got:\n{stderr}"
    low = lines[0].lower()
    for needle in needles:
        assert needle.lower() in low, f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def tree_digest(folder: str | os.PathLike[str]) -> dict[str, str]:
    """{relative path: sha256} of every file below ``folder`` ({} when it does not exist)."""
    root = Path(folder)
    if not root.exists():
        return {}
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_out_untouched(out: str | os.PathLike[str], before: dict[str, str], *, staging_ok: bool = False) -> None:
    """``out`` holds exactly the files it held before (absent if it was absent), and no staging
    sibling (``staging_ok``: a failure of the machine keeps the staging folder for ``--resume``)."""
    out = Path(out)
    after = tree_digest(out)
    assert after == before, f"--out changed: before {sorted(before)}, after {sorted(after)}"
    if not before:
        assert not out.exists() or not any(out.iterdir()), f"{out} was created with content"
    leftovers = [p.name for p in out.parent.glob(f".{out.name}.*")] if out.parent.exists() else []
    if staging_ok:
        leftovers = [n for n in leftovers if n != f".{out.name}.staging"]
    assert not leftovers, f"staging left behind: {leftovers}"
