"""Wrap a network that expects normalised input into one that takes [0, 1] RGB pixels.

Model files (ONNX, TorchScript, timm) usually expect ``(x - mean) / std`` in some channel
order; evalsuite's conditions and attacks work in [0, 1] RGB pixel space. This module is the
single place where that bridge is built for torch code paths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class PixelSpaceModel(nn.Module):
    """``network((reorder(x) - mean) / std)`` for ``x`` float NCHW RGB in [0, 1]."""

    def __init__(
        self,
        network: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        channel_order: str = "RGB",
    ) -> None:
        super().__init__()
        if channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
        self.network = network
        self.channel_order = channel_order
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([float(s) for s in std]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_order == "BGR":
            x = x.flip(1)
        return self.network((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))
