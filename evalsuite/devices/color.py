"""Colour science for the device operations: exact sRGB transfer functions and illuminant gains.

sRGB (IEC 61966-2-1) encodes linear light ``L`` in [0, 1] as ``V = 12.92 L`` for
``L <= 0.0031308`` and ``V = 1.055 L^(1/2.4) - 0.055`` above; decoding inverts it with the
threshold ``V <= 0.04045``. Every operation whose physics is linear in light (noise, blur,
vignetting, white balance, mosaicking) decodes to linear light first and encodes afterwards.

Colour temperature follows the Planckian locus: the chromaticity ``(x, y)`` of a black body
at ``T`` kelvin from the cubic-spline fit of Kim et al. (2002, US patent 7,024,034; accurate
to about 1e-3 in ``x`` and ``y`` between 1,667 K and 25,000 K), converted to linear sRGB with
the IEC 61966-2-1 XYZ-to-RGB matrix. A camera whose white balance assumes ``T_ref`` but sees
an illuminant at ``T`` renders white as ``rgb(T) / rgb(T_ref)`` (a von Kries scaling in the
camera's RGB, which is how an ISP applies white-balance gains).

Numpy versions work on float32 arrays in place where they can and use OpenCV's vectorised
``pow`` (same result as ``numpy.power`` to about 2e-7), because per-image work on the CPU
is cache-bound; torch versions serve the batched GPU path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# IEC 61966-2-1 constants.
_ENC_THRESHOLD = 0.0031308
_DEC_THRESHOLD = 0.04045
_SLOPE = 12.92
_A = 0.055
_GAMMA = 2.4

#: XYZ (D65) to linear sRGB, from the sRGB primaries and D65 white (IEC 61966-2-1).
XYZ_TO_SRGB = np.array(
    [
        [3.2404542, -1.5371385, -0.4985314],
        [-0.9692660, 1.8760108, 0.0415560],
        [0.0556434, -0.2040259, 1.0572252],
    ],
    dtype=np.float64,
)

#: Rec. 709 / sRGB luminance weights of linear RGB.
LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float64)

KELVIN_MIN = 2000.0  # below this the locus leaves the sRGB gamut (blue would go negative)
KELVIN_MAX = 25000.0


# ----------------------------------------------------------------------------- numpy (CPU path)


def srgb_to_linear_np(v: np.ndarray) -> np.ndarray:
    """Decode sRGB-encoded float32 values in [0, 1] to linear light (new array)."""
    import cv2

    v = np.ascontiguousarray(v, dtype=np.float32)
    flat = v.reshape(v.shape[0], -1) if v.ndim > 1 else v.reshape(1, -1)
    # (v + a) / (1 + a) written as 1 + (v - 1) / (1 + a), so that v = 1 maps to exactly 1.
    hi = (flat - np.float32(1.0)) * np.float32(1.0 / (1.0 + _A))
    hi += np.float32(1.0)
    cv2.pow(hi, _GAMMA, dst=hi)
    low = flat <= np.float32(_DEC_THRESHOLD)
    np.copyto(hi, flat * np.float32(1.0 / _SLOPE), where=low)
    return hi.reshape(v.shape)


def linear_to_srgb_np(lin: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Encode linear float32 values in [0, 1] to sRGB (into ``out`` when given, else a new array)."""
    import cv2

    lin = np.ascontiguousarray(lin, dtype=np.float32)
    flat = lin.reshape(lin.shape[0], -1) if lin.ndim > 1 else lin.reshape(1, -1)
    if out is None:
        out = np.empty_like(lin)
    hi = out.reshape(flat.shape)
    np.maximum(flat, np.float32(_ENC_THRESHOLD), out=hi)  # keep pow's argument positive
    cv2.pow(hi, 1.0 / _GAMMA, dst=hi)
    hi -= np.float32(1.0)  # (1 + a) p - a written as 1 + (1 + a)(p - 1): exact at p = 1
    hi *= np.float32(1.0 + _A)
    hi += np.float32(1.0)
    low = flat <= np.float32(_ENC_THRESHOLD)
    np.copyto(hi, flat * np.float32(_SLOPE), where=low)
    return out


# ----------------------------------------------------------------------------- torch (batched path)


def srgb_to_linear(v: Any) -> Any:
    """Decode an sRGB-encoded tensor in [0, 1] to linear light."""
    import torch

    # exp(2.4 log u) in place: several times faster than pow on the CPU, same float32 result to 1e-7
    hi = ((v - 1.0) * (1.0 / (1.0 + _A)) + 1.0).log_().mul_(_GAMMA).exp_()
    return torch.where(v <= _DEC_THRESHOLD, v / _SLOPE, hi)


def linear_to_srgb(lin: Any) -> Any:
    """Encode a linear-light tensor in [0, 1] to sRGB."""
    import torch

    hi = lin.clamp_min(_ENC_THRESHOLD).log_().mul_(1.0 / _GAMMA).exp_().sub_(1.0).mul_(1.0 + _A).add_(1.0)
    return torch.where(lin <= _ENC_THRESHOLD, lin * _SLOPE, hi)


# ----------------------------------------------------------------------------- illuminants


def planckian_xy(kelvin: float) -> tuple[float, float]:
    """CIE 1931 chromaticity of a black body at ``kelvin`` (Kim et al. 2002 cubic spline)."""
    t = float(kelvin)
    if not 1667.0 <= t <= 25000.0:
        raise ValueError(f"the Planckian-locus fit covers 1667-25000 K, got {t}")
    if t <= 4000.0:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t <= 2222.0:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t <= 4000.0:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    return float(x), float(y)


def kelvin_to_linear_rgb(kelvin: float) -> np.ndarray:
    """Linear sRGB of a black-body white at ``kelvin`` with luminance Y = 1."""
    x, y = planckian_xy(kelvin)
    xyz = np.array([x / y, 1.0, (1.0 - x - y) / y])
    return XYZ_TO_SRGB @ xyz


def white_balance_gains(kelvin: float, reference_kelvin: float = 6504.0, tint: float = 0.0) -> np.ndarray:
    """Per-channel linear gains that render a ``reference_kelvin``-balanced camera under ``kelvin``.

    ``gains = rgb(kelvin) / rgb(reference_kelvin)``; ``tint`` (stops) then scales green by
    ``2 ** -tint`` (positive: magenta, negative: green). Gains are normalised to unit
    luminance so a neutral grey keeps its brightness and only its colour moves.
    """
    gains = kelvin_to_linear_rgb(kelvin) / kelvin_to_linear_rgb(reference_kelvin)
    gains[1] *= 2.0 ** (-float(tint))
    gains /= float(LUMA @ gains)
    return gains
