"""The sensor: Poisson-Gaussian noise by ISO and exposure, Bayer mosaicking and demosaicking, bit depth.

Noise model (linear raw space, per photosite, independent per channel). A pixel that would
reach the white level at base ISO collects ``full_well`` electrons. At ``iso`` the analog
gain is ``g = iso / base_iso``, so the white level corresponds to ``full_well / g``
electrons; ``exposure_ev`` (<= 0 for under-exposure that the ISP then brightens digitally)
scales the light by ``2 ** exposure_ev``. With ``k = full_well * 2 ** exposure_ev / g``
electrons per unit of linear signal ``x``::

    electrons ~ Poisson(k * x) + Normal(0, read_noise ** 2)       y = electrons / k

so ``E[y] = x`` and ``Var[y] = x / k + (read_noise / k) ** 2``: shot-noise variance grows
linearly with ISO (and with each stop of under-exposure), read-noise variance quadratically.
Where the expected count ``k x`` reaches ``gaussian_above`` electrons (default 20, the usual
rule of thumb) the Poisson draw is replaced by its normal approximation ``Normal(k x, k x)``,
which keeps mean and variance exact; only the Poisson skewness ``1 / sqrt(k x)`` is lost
(Kolmogorov distance to the Poisson law 0.015 at 20 electrons, about 0.01 once 2.5 electrons of
read noise are added) and it is several times cheaper than exact sampling. Below it, in the
dark, skewed, discrete regime that matters at night, sampling is exact; set ``gaussian_above``
to its maximum for exact Poisson everywhere. Samples come from per-pixel counter-based streams
keyed by the sample's seed (:mod:`evalsuite.devices._noise`: ziggurat normals, Poisson by
inversion below a mean of 10 and PTRS above), drawn on the CPU by a numba kernel, so CUDA and CPU
runs, every batch size, memory layout and thread count see identical noise.

Bayer: the linear image is sampled through a 2 x 2 colour filter array (``RGGB``, ``BGGR``,
``GRBG``, ``GBRG``: the colours of the top-left 2 x 2 cell in reading order) and
reconstructed by bilinear interpolation (OpenCV's ``COLOR_Bayer*2RGB``) or by Malvar, He and
Cutler's gradient-corrected linear filters (ICASSP 2004). ``pitch`` > 1 simulates a sensor
whose photosites are ``pitch`` image pixels wide (area down-sampling to the photosite grid,
mosaic, demosaic, bilinear up-sampling), so demosaicking artifacts appear at the scale they
would after the ISP's down-scaling. Borders reflect without repeating the edge (which keeps
the colour-filter parity), so a constant image stays exactly constant.

Bit depth: values are quantised to ``2 ** bits`` levels (banding), in encoded values by
default; ``dither: true`` adds uniform noise of one quantisation step first.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from evalsuite.devices._noise import RNG_VERSION, noise_batch, seed_keys
from evalsuite.devices.base import DeviceOp, InvalidParameter, Param
from evalsuite.devices.kernels import conv_same_np, conv_same_torch
from evalsuite.devices.resample import area_matrix, resize_np, target_size
from evalsuite.parallel import parallel_slices


class SensorNoise(DeviceOp):
    """Poisson (photon shot) plus Gaussian (read) noise in linear raw space; see module docstring."""

    name = "sensor_noise"
    summary = "Poisson-Gaussian sensor noise by ISO and exposure (shot noise from full well and gain, read noise)"
    random = True
    params = {
        "iso": Param("float", 800.0, "sensor sensitivity", 25.0, 409600.0),
        "exposure_ev": Param("float", 0.0, "light relative to a full exposure at this ISO", -8.0, 2.0, unit="stops"),
        "full_well": Param("float", 6000.0, "electrons at the white level at base ISO", 1.0, 1e6, unit="electrons"),
        "base_iso": Param("float", 100.0, "ISO at unit analog gain", 25.0, 3200.0),
        "read_noise": Param("float", 3.0, "read noise standard deviation", 0.0, 1000.0, unit="electrons"),
        "gaussian_above": Param(
            "float", 20.0, "expected count from which shot noise is drawn from its normal approximation",
            0.0, 1e9, unit="electrons",
        ),
    }
    ladder = {
        1: {"iso": 400.0},
        2: {"iso": 800.0},
        3: {"iso": 1600.0},
        4: {"iso": 3200.0},
        5: {"iso": 6400.0},
    }

    def _validate(self) -> None:
        if self.iso < self.base_iso:
            raise InvalidParameter(f"sensor_noise: iso ({self.iso:g}) must be at least base_iso ({self.base_iso:g})")

    @property
    def electrons_per_unit(self) -> float:
        """``k``: electrons collected for a linear signal of 1 (the white level)."""
        gain = self.iso / self.base_iso
        return float(self.full_well * 2.0**self.exposure_ev / gain)

    def variance(self, x: Any) -> Any:
        """Model variance of the output at linear signal ``x`` (before clipping)."""
        k = self.electrons_per_unit
        return x / k + (self.read_noise / k) ** 2

    def sample(self, seed: int | None, shape: tuple[int, int]) -> dict[str, Any]:
        if seed is None:
            raise ValueError("sensor_noise needs a per-sample seed")
        return {"seed": seed}

    def config(self) -> dict[str, Any]:
        # The random stream's version is part of the condition's identity (resume keys).
        return {**super().config(), "rng": RNG_VERSION}

    def apply_numpy(self, img: np.ndarray, p: Any) -> np.ndarray:
        out = np.empty(img.shape, dtype=np.float32)
        self.apply_numpy_into(img, p, out)
        return out

    def apply_numpy_into(self, img: np.ndarray, p: Any, out: np.ndarray) -> None:
        keys = seed_keys([p["seed"]])
        noise_batch(img[None], keys, out[None], self.electrons_per_unit, self.read_noise, self.gaussian_above, 0, 1)

    def apply_torch(self, x: Any, ps: Any) -> Any:
        # One kernel call per worker over a slice of the batch, on the CPU (CUDA batches make the
        # round trip: the draws are the same on every device). Output in the input's layout.
        import torch

        src_t = x.detach().to("cpu", torch.float32)
        out_t = torch.empty_like(src_t)
        src = src_t.permute(0, 2, 3, 1).numpy()
        out = out_t.permute(0, 2, 3, 1).numpy()
        keys = seed_keys([p["seed"] for p in ps])
        k, rn, above = self.electrons_per_unit, self.read_noise, self.gaussian_above
        parallel_slices(lambda lo, hi: noise_batch(src, keys, out, k, rn, above, lo, hi), src.shape[0])
        return out_t.to(x.device)


PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
_CH = {"R": 0, "G": 1, "B": 2}

_BILINEAR_RB = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32) / 4.0
_BILINEAR_G = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=np.float32) / 4.0
# Malvar, He, Cutler (2004), Fig. 2, divided by 8.
_MHC_G = np.array(
    [[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]], dtype=np.float32
) / 8.0
_MHC_ROW = np.array(  # R (B) at a green site whose row holds R (B)
    [[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0], [0, 0, 0.5, 0, 0]], dtype=np.float32
) / 8.0
_MHC_COL = np.ascontiguousarray(_MHC_ROW.T)  # R (B) at a green site whose column holds R (B)
_MHC_DIAG = np.array(  # R at a blue site, B at a red site
    [[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]], dtype=np.float32
) / 8.0


@lru_cache(maxsize=8)
def cfa_layout(pattern: str) -> dict[str, Any]:
    """Colour per 2 x 2 position and, per position, which MHC kernel reconstructs each colour.

    Returns ``{"colour": {(i, j): c}, "plan": {(i, j): {channel: kernel name or "raw"}}}``.
    """
    colour = {(0, 0): pattern[0], (0, 1): pattern[1], (1, 0): pattern[2], (1, 1): pattern[3]}
    plan: dict[tuple[int, int], dict[int, str]] = {}
    for (i, j), c in colour.items():
        row_other = colour[(i, 1 - j)]  # the non-green colour sharing this row (for green sites)
        col_other = colour[(1 - i, j)]
        entry: dict[int, str] = {}
        for target in "RGB":
            t = _CH[target]
            if target == c:
                entry[t] = "raw"
            elif target == "G":
                entry[t] = "g"
            elif c == "G":
                entry[t] = "row" if row_other == target else "col" if col_other == target else "?"
            else:
                entry[t] = "diag"
        plan[(i, j)] = entry
    return {"colour": colour, "plan": plan}


def mosaic_np(img: np.ndarray, pattern: str) -> np.ndarray:
    """``H x W x 3`` to the ``H x W`` single-plane Bayer mosaic."""
    m = np.empty(img.shape[:2], dtype=np.float32)
    for (i, j), c in cfa_layout(pattern)["colour"].items():
        m[i::2, j::2] = img[i::2, j::2, _CH[c]]
    return m


def demosaic_np(m: np.ndarray, pattern: str, method: str) -> np.ndarray:
    """Reconstruct ``H x W x 3`` from an ``H x W`` mosaic (bilinear or Malvar-He-Cutler)."""
    h, w = m.shape
    layout = cfa_layout(pattern)
    if method == "bilinear":
        sparse = np.zeros((h, w, 3), dtype=np.float32)
        for (i, j), col in layout["colour"].items():
            sparse[i::2, j::2, _CH[col]] = m[i::2, j::2]
        out = conv_same_np(sparse, _BILINEAR_RB)  # right for R and B; green has its own kernel
        out[..., 1] = conv_same_np(np.ascontiguousarray(sparse[..., 1]), _BILINEAR_G)
        return out
    out = np.empty((h, w, 3), dtype=np.float32)
    filtered = {
        "raw": m,
        "g": conv_same_np(m, _MHC_G),
        "row": conv_same_np(m, _MHC_ROW),
        "col": conv_same_np(m, _MHC_COL),
        "diag": conv_same_np(m, _MHC_DIAG),
    }
    for (i, j), entry in layout["plan"].items():
        for c, kname in entry.items():
            out[i::2, j::2, c] = filtered[kname][i::2, j::2]
    return out


def demosaic_torch(m: Any, pattern: str, method: str) -> Any:
    """Batched :func:`demosaic_np`: ``N x 1 x H x W`` mosaic to ``N x 3 x H x W``."""
    import torch

    n, _, h, w = m.shape
    layout = cfa_layout(pattern)
    out = torch.empty((n, 3, h, w), dtype=m.dtype, device=m.device)
    if method == "bilinear":
        for c, name in enumerate("RGB"):
            sparse = torch.zeros_like(m)
            for (i, j), col in layout["colour"].items():
                if col == name:
                    sparse[:, :, i::2, j::2] = m[:, :, i::2, j::2]
            out[:, c : c + 1] = conv_same_torch(sparse, _BILINEAR_G if name == "G" else _BILINEAR_RB)
        return out
    filtered = {
        "raw": m,
        "g": conv_same_torch(m, _MHC_G),
        "row": conv_same_torch(m, _MHC_ROW),
        "col": conv_same_torch(m, _MHC_COL),
        "diag": conv_same_torch(m, _MHC_DIAG),
    }
    for (i, j), entry in layout["plan"].items():
        for c, kname in entry.items():
            out[:, c, i::2, j::2] = filtered[kname][:, 0, i::2, j::2]
    return out


class Bayer(DeviceOp):
    """Colour-filter-array sampling and demosaicking in linear light; see module docstring."""

    name = "bayer"
    summary = "Bayer mosaic + demosaic (bilinear or Malvar-He-Cutler) at a photosite pitch"
    params = {
        "pattern": Param("choice", "RGGB", "colour filter array layout", choices=PATTERNS),
        "demosaic": Param("choice", "bilinear", "reconstruction", choices=("bilinear", "malvar")),
        "pitch": Param("float", 1.0, "photosite size in image pixels", 1.0, 8.0, unit="pixels"),
    }
    ladder = {
        1: {"demosaic": "malvar", "pitch": 1.0},
        2: {"demosaic": "bilinear", "pitch": 1.0},
        3: {"demosaic": "bilinear", "pitch": 1.5},
        4: {"demosaic": "bilinear", "pitch": 2.0},
        5: {"demosaic": "bilinear", "pitch": 3.0},
    }

    def _grid(self, h: int, w: int) -> tuple[int, int]:
        if self.pitch == 1.0:
            return h, w
        hs, ws = target_size(h, w, 1.0 / self.pitch)
        return max(2, hs), max(2, ws)

    def apply_numpy(self, img: np.ndarray, p: Any) -> np.ndarray:
        h, w = img.shape[:2]
        hs, ws = self._grid(h, w)
        small = resize_np(img, (hs, ws), "area", False) if (hs, ws) != (h, w) else img
        rgb = demosaic_np(mosaic_np(small, self.pattern), self.pattern, self.demosaic)
        if (hs, ws) != (h, w):
            rgb = resize_np(rgb, (h, w), "bilinear", False)
        np.clip(rgb, 0.0, 1.0, out=rgb)
        return rgb

    def apply_torch(self, x: Any, ps: Any) -> Any:
        import torch
        import torch.nn.functional as F

        n, _, h, w = x.shape
        hs, ws = self._grid(h, w)
        small = x
        if (hs, ws) != (h, w):
            mh = torch.from_numpy(area_matrix(h, hs)).to(x.device, x.dtype)
            mw = torch.from_numpy(area_matrix(w, ws)).to(x.device, x.dtype)
            small = torch.matmul(torch.matmul(mh, x), mw.T)
        m = torch.empty((n, 1, hs, ws), dtype=x.dtype, device=x.device)
        for (i, j), c in cfa_layout(self.pattern)["colour"].items():
            m[:, 0, i::2, j::2] = small[:, _CH[c], i::2, j::2]
        rgb = demosaic_torch(m, self.pattern, self.demosaic)
        if (hs, ws) != (h, w):
            rgb = F.interpolate(rgb, size=(h, w), mode="bilinear", align_corners=False)
        return rgb.clamp_(0.0, 1.0)


class BitDepth(DeviceOp):
    """Quantisation to ``bits`` per channel (banding), optionally dithered; see module docstring."""

    name = "bit_depth"
    summary = "bit-depth reduction (banding), optionally dithered"
    params = {
        "bits": Param("int", 6, "bits per channel", 1, 16),
        "dither": Param("bool", False, "add uniform noise of one step before rounding"),
        "space": Param("choice", "srgb", "quantise encoded values or linear light", choices=("srgb", "linear")),
    }
    ladder = {1: {"bits": 6}, 2: {"bits": 5}, 3: {"bits": 4}, 4: {"bits": 3}, 5: {"bits": 2}}

    @property
    def domain(self) -> str:  # type: ignore[override]
        return self.values["space"]

    @property
    def random(self) -> bool:  # type: ignore[override]
        return bool(self.values["dither"])

    def sample(self, seed: int | None, shape: tuple[int, int]) -> dict[str, Any]:
        if seed is None:
            return {}
        import torch

        gen = torch.Generator().manual_seed(int(seed))
        return {"dither": torch.rand((*shape, 3), generator=gen).numpy() - np.float32(0.5)}  # H x W x 3

    def apply_numpy(self, img: np.ndarray, p: Any) -> np.ndarray:
        out = np.empty_like(img, dtype=np.float32)
        self.apply_numpy_into(img, p, out)
        return out

    def apply_numpy_into(self, img: np.ndarray, p: Any, out: np.ndarray) -> None:
        levels = np.float32(2**self.bits - 1)
        v = np.multiply(img, levels, out=out)
        if "dither" in p:
            v += p["dither"]
            np.rint(v, out=v)
            np.clip(v, 0.0, levels, out=v)
        else:  # [0, 1] inputs round into [0, levels] by themselves
            np.rint(v, out=v)
        v *= np.float32(1.0) / levels

    def apply_torch(self, x: Any, ps: Any) -> Any:
        import torch

        levels = float(2**self.bits - 1)
        v = x * levels
        if ps and "dither" in ps[0]:
            noise = torch.from_numpy(np.stack([p["dither"] for p in ps])).permute(0, 3, 1, 2)
            v = v + noise.to(x.device, x.dtype)
        return (v.round_().clamp_(0.0, levels) / levels).clamp_(0.0, 1.0)
