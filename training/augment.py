"""Batch augmentation on float NCHW tensors in [0, 1]: geometric/photometric jitter, mixup and
cutmix with area-proportional labels, AugMix with its Jensen-Shannon consistency loss, and the
image size schedule of progressive resizing.

All randomness comes from the ``torch.Generator`` passed in (seeded per epoch by the loop), so
training is reproducible and a resumed run repeats exactly what an uninterrupted one does.

Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) follow timm's batch mode: one
``lambda ~ Beta(alpha, alpha)`` per batch, partners from a random permutation. For CutMix the
box is clipped at the image border and ``lambda`` is then *recomputed from the pasted area*
(``1 - box_area / image_area``), so the label weights equal the pixel fractions exactly.

AugMix (Hendrycks et al. 2020) is implemented here, vectorised over the batch with an
independent chain of ops per image (torchvision's ``AugMix`` shares one op sequence across a
batch tensor and costs ~20 ms per 32x32 image when called per image). Ops and magnitudes follow
the reference implementation (google-research/augmix ``augmentations.py``): autocontrast,
equalize, posterize, rotate, solarize, shear_x/y, translate_x/y, levels ``U(0.1, severity)``;
the ops that overlap ImageNet-C (colour, contrast, brightness, sharpness) are excluded, as in the
paper. Geometric ops use bilinear sampling about the image centre with black fill.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

AUGMIX_OPS = (
    "autocontrast", "equalize", "posterize", "rotate", "solarize", "shear_x", "shear_y", "translate_x", "translate_y",
)


def _np_rng(g: Any) -> np.random.Generator:
    """A NumPy generator derived from the torch generator (for Beta/Dirichlet scalar draws)."""
    import torch

    seed = int(torch.randint(0, 2**62, (1,), generator=g, device=g.device).item())
    return np.random.default_rng(seed)


def _uniform(shape: tuple[int, ...], g: Any, device: Any) -> Any:
    import torch

    return torch.rand(shape, generator=g, device=g.device).to(device)


# --------------------------------------------------------------------------------------- basics
def random_shift(x: Any, max_shift: int, g: Any) -> Any:
    """Translate each image by an integer offset in [-max_shift, max_shift] (replicate padding)."""
    import torch
    import torch.nn.functional as F

    if max_shift <= 0:
        return x
    n, c, h, w = x.shape
    s = int(max_shift)
    xp = F.pad(x, (s, s, s, s), mode="replicate")
    off = torch.randint(0, 2 * s + 1, (n, 2), generator=g, device=g.device).to(x.device)
    rows = (off[:, 0:1] + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * s)
    xp = torch.gather(xp, 2, rows)
    cols = (off[:, 1:2] + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
    return torch.gather(xp, 3, cols)


def basic_augment(x: Any, cfg: Any, g: Any) -> Any:
    """Shift, horizontal flip, brightness/contrast jitter and Gaussian noise, per image."""
    import torch

    n = x.shape[0]
    x = random_shift(x, cfg.random_shift, g)
    if cfg.hflip:
        flip = (_uniform((n,), g, x.device) < 0.5).view(n, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)
    if cfg.contrast > 0:
        scale = 1.0 + cfg.contrast * (2 * _uniform((n, 1, 1, 1), g, x.device) - 1)
        x = (x - 0.5) * scale + 0.5
    if cfg.brightness > 0:
        x = x + cfg.brightness * (2 * _uniform((n, 1, 1, 1), g, x.device) - 1)
    if cfg.noise_std > 0:
        x = x + cfg.noise_std * torch.randn(x.shape, generator=g, device=g.device).to(x.device)
    if cfg.contrast > 0 or cfg.brightness > 0 or cfg.noise_std > 0:
        x = x.clamp(0.0, 1.0)
    return x


# --------------------------------------------------------------------------------- mixup / cutmix
def one_hot(labels: Any, num_classes: int, smoothing: float = 0.0) -> Any:
    """Label-smoothed one-hot targets: ``1 - s + s/K`` on the label, ``s/K`` elsewhere."""
    import torch

    off = smoothing / num_classes
    t = torch.full((labels.shape[0], num_classes), off, device=labels.device, dtype=torch.float32)
    t.scatter_(1, labels.view(-1, 1), 1.0 - smoothing + off)
    return t


def cutmix_box(h: int, w: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(y1, y2, x1, x2) of a box covering about ``1 - lam`` of the image, clipped at the border."""
    ratio = math.sqrt(1.0 - lam)
    ch, cw = int(h * ratio), int(w * ratio)
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    y1, y2 = int(np.clip(cy - ch // 2, 0, h)), int(np.clip(cy + ch // 2, 0, h))
    x1, x2 = int(np.clip(cx - cw // 2, 0, w)), int(np.clip(cx + cw // 2, 0, w))
    return y1, y2, x1, x2


def mix_batch(
    x: Any, labels: Any, num_classes: int, cfg: Any, g: Any, smoothing: float = 0.0
) -> tuple[Any, Any, dict[str, Any]]:
    """Mixup or CutMix of a batch -> (images, soft targets, info).

    ``info`` holds ``mode`` (``none``/``mixup``/``cutmix``), ``lam`` (the weight of the
    original label; for CutMix the exact unpasted area fraction) and ``perm``.
    """
    import torch

    targets = one_hot(labels, num_classes, smoothing)
    if cfg.mixup_alpha <= 0 and cfg.cutmix_alpha <= 0:
        return x, targets, {"mode": "none", "lam": 1.0, "perm": None}
    rng = _np_rng(g)
    if rng.random() >= cfg.mix_prob:
        return x, targets, {"mode": "none", "lam": 1.0, "perm": None}
    if cfg.mixup_alpha > 0 and cfg.cutmix_alpha > 0:
        mode = "cutmix" if rng.random() < cfg.switch_prob else "mixup"
    else:
        mode = "cutmix" if cfg.cutmix_alpha > 0 else "mixup"
    alpha = cfg.cutmix_alpha if mode == "cutmix" else cfg.mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=g, device=g.device).to(x.device)
    if mode == "mixup":
        x = lam * x + (1.0 - lam) * x[perm]
    else:
        h, w = x.shape[-2:]
        y1, y2, x1, x2 = cutmix_box(h, w, lam, rng)
        x = x.clone()
        x[:, :, y1:y2, x1:x2] = x[perm][:, :, y1:y2, x1:x2]
        lam = 1.0 - (y2 - y1) * (x2 - x1) / float(h * w)
    targets = lam * targets + (1.0 - lam) * targets[perm]
    return x, targets, {"mode": mode, "lam": lam, "perm": perm}


# ------------------------------------------------------------------------------------------ AugMix
def _to_u8(x: Any) -> Any:
    import torch

    return (x * 255.0).round().clamp(0, 255).to(torch.uint8)


def autocontrast(x: Any) -> Any:
    """Per image and channel, stretch [min, max] to [0, 1] (PIL ``ImageOps.autocontrast``, cutoff 0)."""
    import torch

    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    scale = torch.where(hi > lo, 1.0 / (hi - lo).clamp_min(1e-12), torch.ones_like(hi))
    lo = torch.where(hi > lo, lo, torch.zeros_like(lo))
    return ((x - lo) * scale).clamp(0.0, 1.0)


def equalize(x: Any) -> Any:
    """Per image and channel histogram equalisation (torchvision's, on the uint8 image)."""
    from torchvision.transforms.v2 import functional as TF

    return TF.equalize(_to_u8(x)).float() / 255.0


def posterize(x: Any, bits: Any) -> Any:
    """Keep the top ``bits`` (per image) bits of each uint8 value."""
    u = _to_u8(x).long()
    q = (2 ** (8 - bits.long())).view(-1, 1, 1, 1)
    return ((u // q) * q).float() / 255.0


def solarize(x: Any, threshold: Any) -> Any:
    """Invert uint8 values >= ``threshold`` (per image, on the 0-255 scale)."""
    import torch

    u = _to_u8(x).float()
    t = threshold.view(-1, 1, 1, 1).float()
    return torch.where(u >= t, 255.0 - u, u) / 255.0


def affine(x: Any, theta: Any) -> Any:
    """Resample each image with its own 2x3 matrix (normalised coords, output -> input), black fill."""
    import torch.nn.functional as F

    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _affine_thetas(op: Any, level: Any, sign: Any, h: int, w: int, severity_scale: dict[str, float]) -> Any:
    """Per-image affine matrices for the geometric AugMix ops (identity where op is not geometric)."""
    import torch

    n = op.shape[0]
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    lv = level.double() * sign.double()
    names = {name: i for i, name in enumerate(AUGMIX_OPS)}
    # rotate: angle = level * 30 / 10 degrees, counter-clockwise; output->input is rotation by -angle.
    m = op == names["rotate"]
    if m.any():
        # int_parameter(level, 30) = floor(level * 30 / 10) whole degrees.
        a = torch.deg2rad(torch.floor(level[m].double() * severity_scale["rotate"]) * sign[m].double())
        cos, sin = torch.cos(a), torch.sin(a)
        theta[m, 0, 0] = cos
        theta[m, 0, 1] = -sin * h / w
        theta[m, 1, 0] = sin * w / h
        theta[m, 1, 1] = cos
    for name, row, col, scale in (("shear_x", 0, 1, h / w), ("shear_y", 1, 0, w / h)):
        m = op == names[name]
        if m.any():
            theta[m, row, col] = lv[m] * severity_scale["shear"] * scale
    for name, row, size in (("translate_x", 0, w), ("translate_y", 1, h)):
        m = op == names[name]
        if m.any():
            # int_parameter(level, size / 3) pixels; 2 / size normalised units per pixel.
            pixels = torch.floor(level[m].double() * (size / 3.0) / 10.0) * sign[m].double()
            theta[m, row, 2] = pixels * 2.0 / size
    return theta


def _apply_ops(x: Any, op: Any, level: Any, sign: Any) -> Any:
    """Apply op ``op[i]`` (index into AUGMIX_OPS, -1 = identity) with level ``level[i]`` to image i."""
    import torch

    h, w = x.shape[-2:]
    out = x.clone()
    names = {name: i for i, name in enumerate(AUGMIX_OPS)}
    geometric = torch.zeros_like(op, dtype=torch.bool)
    for name in ("rotate", "shear_x", "shear_y", "translate_x", "translate_y"):
        geometric |= op == names[name]
    if geometric.any():
        idx = geometric.nonzero().flatten()
        theta = _affine_thetas(op[idx], level[idx], sign[idx], h, w, {"rotate": 3.0, "shear": 0.03})
        out[idx.to(x.device)] = affine(x[idx.to(x.device)], theta.to(x.device))
    for name in ("autocontrast", "equalize", "posterize", "solarize"):
        m = op == names[name]
        if not m.any():
            continue
        idx = m.nonzero().flatten()
        xi = x[idx.to(x.device)]
        if name == "autocontrast":
            yi = autocontrast(xi)
        elif name == "equalize":
            yi = equalize(xi)
        elif name == "posterize":
            # bits = 4 - int_parameter(level, 4)
            bits = 4 - torch.floor(level[idx] * 4.0 / 10.0)
            yi = posterize(xi, bits.to(x.device))
        else:
            # threshold = 256 - int_parameter(level, 256)
            thr = 256 - torch.floor(level[idx] * 256.0 / 10.0)
            yi = solarize(xi, thr.to(x.device))
        out[idx.to(x.device)] = yi
    return out


def augmix(x: Any, cfg: Any, g: Any, ops: tuple[str, ...] | None = None, return_params: bool = False) -> Any:
    """AugMix of a float batch in [0, 1]: ``(1 - m) x + m * sum_i w_i chain_i(x)`` per image.

    ``w ~ Dirichlet(alpha)`` over ``cfg.width`` chains, ``m ~ Beta(alpha, alpha)``, each chain
    ``cfg.depth`` ops (random 1-3 when -1), op levels ``U(0.1, severity)``. ``ops`` restricts
    the op set (tests). With ``return_params`` also returns ``{"m": ..., "w": ...}``.
    """
    import torch

    allowed = [AUGMIX_OPS.index(o) for o in (ops or AUGMIX_OPS)]
    n = x.shape[0]
    rng = _np_rng(g)
    w = torch.as_tensor(rng.dirichlet([cfg.alpha] * cfg.width, size=n), dtype=x.dtype, device=x.device)
    m = torch.as_tensor(rng.beta(cfg.alpha, cfg.alpha, size=n), dtype=x.dtype, device=x.device)
    mix = torch.zeros_like(x)
    allowed_t = torch.as_tensor(allowed)
    for i in range(cfg.width):
        depth = (
            torch.full((n,), cfg.depth, dtype=torch.long)
            if cfg.depth > 0
            else torch.as_tensor(rng.integers(1, 4, size=n), dtype=torch.long)
        )
        xi = x
        for d in range(int(depth.max())):
            choice = allowed_t[torch.as_tensor(rng.integers(0, len(allowed), size=n))]
            op = torch.where(depth > d, choice, torch.full_like(choice, -1))
            level = torch.as_tensor(rng.uniform(0.1, cfg.severity, size=n), dtype=torch.float64)
            sign = torch.as_tensor(np.where(rng.random(n) < 0.5, -1.0, 1.0))
            xi = _apply_ops(xi, op, level, sign)
        mix = mix + w[:, i].view(n, 1, 1, 1) * xi
    out = (1.0 - m).view(n, 1, 1, 1) * x + m.view(n, 1, 1, 1) * mix
    if return_params:
        return out, {"m": m, "w": w}
    return out


def jsd_consistency(logits_clean: Any, logits_aug1: Any, logits_aug2: Any) -> Any:
    """AugMix's Jensen-Shannon consistency: mean over the three views of KL(p_view || mixture)."""
    import torch
    import torch.nn.functional as F

    p0, p1, p2 = (F.softmax(z.float(), dim=1) for z in (logits_clean, logits_aug1, logits_aug2))
    log_m = torch.clamp((p0 + p1 + p2) / 3.0, 1e-7, 1.0).log()
    return (
        F.kl_div(log_m, p0, reduction="batchmean")
        + F.kl_div(log_m, p1, reduction="batchmean")
        + F.kl_div(log_m, p2, reduction="batchmean")
    ) / 3.0


# ------------------------------------------------------------------------------ progressive resize
def progressive_size(epoch: int, input_size: tuple[int, int], cfg: Any) -> tuple[int, int]:
    """Training image size for ``epoch``: ``start_size`` growing linearly to full size at ``end_epoch``.

    Sizes are rounded down to multiples of ``step`` (never below ``start_size``) and scale the
    height and width together when the input is not square.
    """
    h, w = int(input_size[0]), int(input_size[1])
    if not cfg.enabled or epoch >= cfg.end_epoch:
        return h, w
    full = max(h, w)
    start = min(cfg.start_size, full)
    side = start + (full - start) * epoch / cfg.end_epoch
    side = max(start, int(side // cfg.step) * cfg.step)
    side = min(side, full)
    return max(8, int(round(h * side / full))), max(8, int(round(w * side / full)))


def resize_batch(x: Any, size: tuple[int, int]) -> Any:
    """Antialiased bilinear resize of a float batch (no-op at the current size)."""
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
