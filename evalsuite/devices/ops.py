"""The registry of device operations (``resolution``, ``jpeg``, ``sensor_noise``, ...).

Entries are lazy ``"module:attr"`` strings; the operation modules themselves import torch,
OpenCV and Pillow only inside functions, so listing and validating profiles stays fast.
"""

from __future__ import annotations

from typing import Any

from evalsuite.devices.base import DeviceOp, InvalidParameter
from evalsuite.registry import Registry

OPS = Registry("device operation")
_ENTRIES = (
    ("resolution", "evalsuite.devices.resample:ResolutionChange"),
    ("jpeg", "evalsuite.devices.codec:Jpeg"),
    ("webp", "evalsuite.devices.codec:WebP"),
    ("sensor_noise", "evalsuite.devices.sensor:SensorNoise"),
    ("exposure", "evalsuite.devices.isp:Exposure"),
    ("tone_curve", "evalsuite.devices.isp:ToneCurve"),
    ("white_balance", "evalsuite.devices.isp:WhiteBalance"),
    ("vignetting", "evalsuite.devices.optics:Vignetting"),
    ("lens_blur", "evalsuite.devices.optics:LensBlur"),
    ("chromatic_aberration", "evalsuite.devices.optics:ChromaticAberration"),
    ("bayer", "evalsuite.devices.sensor:Bayer"),
    ("bit_depth", "evalsuite.devices.sensor:BitDepth"),
    ("motion_blur", "evalsuite.devices.optics:MotionBlur"),
)
for _name, _target in _ENTRIES:
    OPS.register(_name, _target)

#: Operations of the CI-sized per-operation ladder (the suite's default ``operations``).
DEFAULT_LADDER_OPS = ("resolution", "jpeg", "sensor_noise", "lens_blur", "white_balance")


def op_names() -> list[str]:
    """Every operation name, in the registry's (alphabetical) order."""
    return OPS.names()


def op_class(name: str) -> type[DeviceOp]:
    """The class of operation ``name`` (``UsageError`` with did-you-mean when unknown)."""
    return OPS.get(name)


def make_op(name: str, severity: int | None = None, **params: Any) -> DeviceOp:
    """Build operation ``name`` from parameters, or from its ladder at ``severity`` plus overrides."""
    cls = op_class(name)
    if severity is None:
        return cls(**params)
    return cls.at_severity(severity, **params)


def describe_op(name: str) -> list[tuple[str, str, str, str]]:
    """``(parameter, type and range, default, meaning)`` rows for the docs and ``--help`` texts."""
    cls = op_class(name)
    rows = []
    for pname, spec in cls.params.items():
        rows.append((pname, spec.describe(), repr(spec.default), spec.doc))
    return rows


__all__ = ["OPS", "DEFAULT_LADDER_OPS", "InvalidParameter", "describe_op", "make_op", "op_class", "op_names"]
