"""Optimiser, parameter groups, learning-rate schedule and freeze / gradual unfreezing.

- Parameter groups: head vs backbone (the backbone at ``finetune.backbone_lr_mult`` x the rate),
  each split into decayed and non-decayed parameters. With ``optim.no_decay_bias_norm`` every
  1-D parameter (biases, BatchNorm/LayerNorm scales and shifts) and whatever the network lists
  in ``no_weight_decay()`` (timm's position embeddings, class tokens) gets weight decay 0.
- Rate: ``optim.lr`` is the rate at ``optim.base_batch_size``; with ``scale_lr`` the rate used
  is ``lr * batch_size / base_batch_size`` (linear scaling rule, Goyal et al. 2017).
- Schedule (per step): linear warmup from ``warmup_start_ratio`` to 1 over ``warmup_epochs``,
  then cosine decay to ``min_lr_ratio`` (Loshchilov & Hutter 2017); with ``restart_epochs`` the
  cosine restarts (SGDR) with cycles growing by ``restart_mult``. Stateless: the factor is a
  pure function of the step, so a resumed run needs no scheduler state.
- Freezing: for ``freeze_epochs`` only the head trains; then the backbone is unfrozen in
  ``unfreeze_groups`` contiguous groups from the top (nearest the head) one every
  ``unfreeze_every`` epochs (ULMFiT-style gradual unfreezing, Howard & Ruder 2018).
"""

from __future__ import annotations

import math
from typing import Any

from training.models import split_head_backbone


def _no_decay_names(network: Any) -> set[str]:
    names: set[str] = set()
    if hasattr(network, "no_weight_decay"):
        try:
            names = set(network.no_weight_decay())
        except TypeError:
            names = set()
    return names


def param_groups(network: Any, optim_cfg: Any, finetune_cfg: Any) -> list[dict[str, Any]]:
    """Parameter groups with ``lr_mult`` and ``weight_decay`` set (see the module docstring)."""
    head, backbone = split_head_backbone(network)
    skip = _no_decay_names(network)
    groups: list[dict[str, Any]] = []
    for part, params, mult in (("head", head, 1.0), ("backbone", backbone, finetune_cfg.backbone_lr_mult)):
        decay, no_decay = [], []
        for name, p in params:
            if optim_cfg.no_decay_bias_norm and (p.ndim <= 1 or name in skip or name.endswith(".bias")):
                no_decay.append(p)
            else:
                decay.append(p)
        if decay:
            groups.append({"params": decay, "weight_decay": optim_cfg.weight_decay, "lr_mult": mult, "name": f"{part}"})
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0, "lr_mult": mult, "name": f"{part}_no_decay"})
    return groups


def build_optimizer(network: Any, optim_cfg: Any, finetune_cfg: Any) -> Any:
    """AdamW or SGD (momentum, optional Nesterov) over :func:`param_groups`."""
    import torch

    groups = param_groups(network, optim_cfg, finetune_cfg)
    lr = optim_cfg.effective_lr
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
        g["initial_lr"] = lr * g["lr_mult"]
    if optim_cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(optim_cfg.betas), weight_decay=optim_cfg.weight_decay)
    return torch.optim.SGD(
        groups, lr=lr, momentum=optim_cfg.momentum, nesterov=optim_cfg.nesterov and optim_cfg.momentum > 0,
        weight_decay=optim_cfg.weight_decay,
    )


def lr_factor(step: int, steps_per_epoch: int, schedule_cfg: Any) -> float:
    """Multiplier of the base rate at optimiser step ``step`` (0-based)."""
    total = schedule_cfg.epochs * steps_per_epoch
    warmup = int(round(schedule_cfg.warmup_epochs * steps_per_epoch))
    if step < warmup:
        start = schedule_cfg.warmup_start_ratio
        return start + (1.0 - start) * step / warmup
    if schedule_cfg.kind == "constant":
        return 1.0
    t = step - warmup
    length = max(total - warmup, 1)
    if schedule_cfg.restart_epochs:
        length = max(int(round(schedule_cfg.restart_epochs * steps_per_epoch)), 1)
        mult = schedule_cfg.restart_mult
        while t >= length:
            t -= length
            length = max(int(round(length * mult)), 1)
    lo = schedule_cfg.min_lr_ratio
    return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * min(t, length) / length))


def set_lr(optimizer: Any, base_lr: float, factor: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = base_lr * g.get("lr_mult", 1.0) * factor


class FreezeController:
    """Freeze the backbone, then unfreeze it gradually (see the module docstring)."""

    def __init__(self, network: Any, finetune_cfg: Any) -> None:
        head, backbone = split_head_backbone(network)
        self.cfg = finetune_cfg
        self.head = [p for _, p in head]
        params = [p for _, p in backbone]
        k = max(1, min(finetune_cfg.unfreeze_groups, len(params))) if params else 0
        # Contiguous groups in definition order (input -> output); unfrozen from the last one.
        bounds = [round(i * len(params) / k) for i in range(k + 1)] if k else [0]
        self.groups = [params[bounds[i] : bounds[i + 1]] for i in range(k)]

    def unfrozen_groups(self, epoch: int) -> int:
        """How many backbone groups (counted from the top) train in ``epoch``."""
        cfg = self.cfg
        if cfg.freeze_epochs <= 0:
            return len(self.groups)
        if epoch < cfg.freeze_epochs:
            return 0
        return min(len(self.groups), 1 + (epoch - cfg.freeze_epochs) // cfg.unfreeze_every)

    def apply(self, epoch: int) -> int:
        """Set ``requires_grad`` for ``epoch``; returns the number of trainable backbone groups."""
        n = self.unfrozen_groups(epoch)
        for p in self.head:
            p.requires_grad_(True)
        for i, group in enumerate(self.groups):
            trainable = i >= len(self.groups) - n
            for p in group:
                p.requires_grad_(trainable)
        return n
