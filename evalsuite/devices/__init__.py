"""Device shift: camera, optics, ISP and codec simulation, and named device profiles.

- :mod:`evalsuite.devices.base`: the operation contract (validated parameters, severity
  ladders, per-sample randomness) and the chain runner :func:`apply_chain`;
- operations: :mod:`~evalsuite.devices.resample` (resolution), :mod:`~evalsuite.devices.codec`
  (jpeg, webp), :mod:`~evalsuite.devices.sensor` (sensor_noise, bayer, bit_depth),
  :mod:`~evalsuite.devices.isp` (exposure, tone_curve, white_balance),
  :mod:`~evalsuite.devices.optics` (vignetting, lens_blur, chromatic_aberration, motion_blur);
  registry in :mod:`~evalsuite.devices.ops`;
- :mod:`evalsuite.devices.profiles`: YAML profiles (built-in and user files) and validation;
- :mod:`evalsuite.devices.condition`: the :class:`DeviceCondition` the device suite runs.

Importing this package does not import torch, OpenCV or Pillow.
"""

from __future__ import annotations


def list_entries() -> list[tuple[str, str]]:
    """``(profile name, chain summary)`` of every built-in device profile (``evalsuite ls devices``)."""
    from evalsuite.devices.profiles import builtin_profiles

    return [(p.name, p.chain_summary()) for p in builtin_profiles().values()]


def list_operations() -> list[tuple[str, str]]:
    """``(operation name, one-line summary)`` of every device operation."""
    from evalsuite.devices.ops import op_class, op_names

    return [(n, op_class(n).summary) for n in op_names()]


__all__ = ["list_entries", "list_operations"]
