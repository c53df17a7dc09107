"""The compute device, ``--device``: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``, checked against torch.

This is where models run and conditions generate their tensors. It is not a *capture* device:
the camera / ISP / codec profiles of the ``device`` suite live in :mod:`evalsuite.devices`.
"""

from __future__ import annotations

import re

from evalsuite.errors import UsageError

_CUDA_RE = re.compile(r"^cuda(?::(\d+))?$")


def resolve_device(spec: str) -> str:
    """A concrete torch device string for ``spec``.

    ``auto`` becomes ``cuda`` when torch sees a CUDA device, else ``cpu``. ``cuda`` / ``cuda:N``
    without CUDA (or with fewer devices) is a :class:`UsageError`, never a silent CPU run.
    """
    spec = str(spec).strip().lower()
    if spec == "cpu":
        return "cpu"
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    m = _CUDA_RE.match(spec)
    if not m:
        raise UsageError(f"unknown --device {spec!r}; valid: auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {spec}: CUDA is not available here (torch sees no GPU); use --device cpu")
    if m.group(1) is not None:
        n = int(m.group(1))
        count = torch.cuda.device_count()
        if n >= count:
            raise UsageError(f"--device {spec}: only {count} CUDA device(s) visible (cuda:0..cuda:{count - 1})")
    return spec


def cuda_index(device: str) -> int:
    """The CUDA ordinal of a resolved ``cuda`` / ``cuda:N`` device string (0 for plain ``cuda``)."""
    m = _CUDA_RE.match(device)
    return int(m.group(1)) if m and m.group(1) is not None else 0
