"""The ISP's global colour and tone decisions: exposure, tone curve / gamma, white balance.

- ``exposure``: linear light times ``2 ** ev`` with clipping at the white level (an auto-
  exposure error; highlights that clip are lost for good). Under-exposure *with* its noise
  is ``sensor_noise``'s ``exposure_ev``.
- ``tone_curve``: on encoded values ``v``: ``black + (white - black) * S(v ** gamma)``, where
  ``S(u) = u + contrast * (3u^2 - 2u^3 - u)`` is a smooth S-curve (``contrast`` > 0) or its
  flattening (< 0); monotone for ``contrast`` in [-1, 1]. ``black``/``white`` are the output
  levels of black and white (lifted blacks of a print or a cheap display pipeline).
- ``white_balance``: the scene is lit at ``kelvin`` while the camera balances for
  ``reference_kelvin``; linear RGB is scaled by the black-body gains of
  :func:`evalsuite.devices.color.white_balance_gains` (Planckian locus, unit luminance),
  plus an optional green-magenta ``tint`` in stops. ``kelvin`` below the reference warms the
  image (red up, blue down), above it cools it.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from evalsuite.devices.base import DeviceOp, InvalidParameter, Param
from evalsuite.devices.color import KELVIN_MAX, KELVIN_MIN, white_balance_gains


class Exposure(DeviceOp):
    """Exposure error in stops, in linear light, clipped at white."""

    name = "exposure"
    summary = "exposure error in stops (linear light, highlights clip)"
    params = {"ev": Param("float", 1.0, "exposure change", -10.0, 10.0, unit="stops")}
    ladder = {1: {"ev": 0.5}, 2: {"ev": 1.0}, 3: {"ev": 1.5}, 4: {"ev": 2.0}, 5: {"ev": 2.5}}

    def apply_numpy(self, img: np.ndarray, p: Any) -> np.ndarray:
        out = img * np.float32(2.0**self.ev)
        np.clip(out, 0.0, 1.0, out=out)
        return out

    def apply_torch(self, x: Any, ps: Any) -> Any:
        return (x * float(2.0**self.ev)).clamp_(0.0, 1.0)


def s_curve_np(u: np.ndarray, contrast: float) -> np.ndarray:
    """``u + c (3u^2 - 2u^3 - u)`` in place on a float32 array in [0, 1]."""
    c = np.float32(contrast)
    smooth = u * u * (np.float32(3.0) - np.float32(2.0) * u)
    smooth -= u
    smooth *= c
    u += smooth
    return u


class ToneCurve(DeviceOp):
    """Global tone curve on encoded values: gamma, S-curve contrast, black and white output levels."""

    name = "tone_curve"
    summary = "tone curve / gamma with contrast and black/white output levels (encoded values)"
    domain = "srgb"
    params = {
        "gamma": Param("float", 1.0, "exponent on encoded values (> 1 darkens mid-tones)", 0.2, 5.0),
        "contrast": Param("float", 0.0, "S-curve strength (< 0 flattens)", -1.0, 1.0),
        "black": Param("float", 0.0, "output level of black", 0.0, 0.5),
        "white": Param("float", 1.0, "output level of white", 0.5, 1.0),
    }
    ladder = {
        1: {"gamma": 1.1, "contrast": -0.1, "black": 0.02, "white": 0.98},
        2: {"gamma": 1.2, "contrast": -0.2, "black": 0.04, "white": 0.96},
        3: {"gamma": 1.35, "contrast": -0.3, "black": 0.07, "white": 0.93},
        4: {"gamma": 1.5, "contrast": -0.4, "black": 0.1, "white": 0.9},
        5: {"gamma": 1.7, "contrast": -0.5, "black": 0.14, "white": 0.86},
    }

    def _validate(self) -> None:
        if self.black >= self.white:
            raise InvalidParameter(f"tone_curve: black ({self.black:g}) must be below white ({self.white:g})")

    def apply_numpy(self, img: np.ndarray, p: Any) -> np.ndarray:
        import cv2

        u = np.clip(img, 0.0, 1.0)
        if self.gamma != 1.0:
            flat = u.reshape(u.shape[0], -1)
            cv2.pow(flat, float(self.gamma), dst=flat)
        if self.contrast != 0.0:
            s_curve_np(u, self.contrast)
        if self.black != 0.0 or self.white != 1.0:
            u *= np.float32(self.white - self.black)
            u += np.float32(self.black)
        np.clip(u, 0.0, 1.0, out=u)
        return u

    def apply_torch(self, x: Any, ps: Any) -> Any:
        u = x.clamp(0.0, 1.0)
        if self.gamma != 1.0:
            u = u.log().mul_(float(self.gamma)).exp_()  # u ** gamma; exp/log is faster than pow on the CPU
        if self.contrast != 0.0:
            u = u + float(self.contrast) * (u * u * (3.0 - 2.0 * u) - u)
        u = float(self.black) + float(self.white - self.black) * u
        return u.clamp_(0.0, 1.0)


class WhiteBalance(DeviceOp):
    """Colour-temperature shift along the Planckian locus (plus tint) in linear light."""

    name = "white_balance"
    summary = "white-balance error: illuminant colour temperature vs the camera's (Planckian locus), tint"
    params = {
        "kelvin": Param("float", 4000.0, "illuminant colour temperature", KELVIN_MIN, KELVIN_MAX, unit="K"),
        "reference_kelvin": Param("float", 6504.0, "temperature the camera balances for", KELVIN_MIN, KELVIN_MAX, unit="K"),
        "tint": Param("float", 0.0, "green (-) to magenta (+) shift", -1.0, 1.0, unit="stops"),
    }
    ladder = {
        1: {"kelvin": 5200.0},
        2: {"kelvin": 4300.0},
        3: {"kelvin": 3600.0},
        4: {"kelvin": 3000.0},
        5: {"kelvin": 2500.0},
    }

    @property
    def gains(self) -> np.ndarray:
        """Linear RGB gains (unit luminance)."""
        return white_balance_gains(self.kelvin, self.reference_kelvin, self.tint)

    @cached_property
    def _gains32(self) -> np.ndarray:
        return self.gains.astype(np.float32)

    def apply_numpy(self, img: np.ndarray, p: Any) -> np.ndarray:
        # rows times the gains tiled across them: NumPy broadcasts over a last axis of 3 slowly
        h, w, _ = img.shape
        out = np.multiply(img.reshape(h, 3 * w), np.tile(self._gains32, w))
        np.clip(out, 0.0, 1.0, out=out)
        return out.reshape(h, w, 3)

    def apply_torch(self, x: Any, ps: Any) -> Any:
        import torch

        g = torch.as_tensor(self.gains, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * g).clamp_(0.0, 1.0)
