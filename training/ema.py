"""Exponential moving average of a network's weights (Polyak averaging as used by timm's ModelEmaV3).

After every optimiser step, each floating-point parameter *and buffer* (BatchNorm running
statistics) is updated as ``ema = d * ema + (1 - d) * current``; integer buffers
(``num_batches_tracked``) are copied. With ``warmup`` the decay is
``min(decay, (1 + step) / (10 + step))`` so the average is not dominated by the random
initialisation early on. Without warmup one update equals ``torch.optim.swa_utils``'
``get_ema_multi_avg_fn(decay)`` (checked in the tests).
"""

from __future__ import annotations

import copy
from typing import Any


class ModelEma:
    """A frozen copy of ``network`` tracking its exponential moving average."""

    def __init__(self, network: Any, decay: float = 0.999, warmup: bool = True) -> None:
        self.module = copy.deepcopy(network).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.updates = 0

    def current_decay(self) -> float:
        if self.warmup:
            return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        return self.decay

    def update(self, network: Any) -> None:
        """Fold the current weights of ``network`` into the average."""
        import torch

        d = self.current_decay()
        with torch.no_grad():
            ema_state = self.module.state_dict()
            averaged, current = [], []
            for name, value in network.state_dict().items():
                target = ema_state[name]
                if target.dtype.is_floating_point:
                    averaged.append(target)
                    current.append(value.detach().to(target.dtype))
                else:
                    target.copy_(value)
            if averaged:  # one fused multi-tensor update instead of a Python loop of kernels
                torch._foreach_mul_(averaged, d)
                torch._foreach_add_(averaged, current, alpha=1.0 - d)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
