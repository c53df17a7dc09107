"""Wrap a network that expects normalised input into one that takes [0, 1] RGB pixels.

Model files (ONNX, TorchScript, timm) usually expect ``(x - mean) / std`` in some channel
order; evalsuite's conditions and attacks work in [0, 1] RGB pixel space. This module is the
single place where that bridge is built for torch code paths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from evalsuite.models.base import luma


class PixelSpaceModel(nn.Module):
    """``network(layout((channels(reorder(x)) - mean) / std))`` for ``x`` float NCHW RGB in [0, 1].

    ``channels=1``: a grayscale network, fed BT.601 luma (:func:`evalsuite.models.base.luma`)
    normalised by the first mean/std value. ``layout="NHWC"``: the normalised batch is permuted to
    ``N x H x W x C`` (tf2onnx / Keras exports). Defaults keep the plain NCHW RGB network. A
    network returning several outputs yields the first (the logits ``predict`` reads).
    ``fixed_mode=True``: the network's train/eval mode was fixed when it was made (a
    ``torch.export`` program, whose module refuses ``.train()`` / ``.eval()``), so switching the
    wrapper's mode (callers and torchattacks do) leaves the network alone.
    """

    def __init__(
        self,
        network: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        channel_order: str = "RGB",
        *,
        layout: str = "NCHW",
        channels: int = 3,
        fixed_mode: bool = False,
    ) -> None:
        super().__init__()
        if channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
        if layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        self.network = network
        self.fixed_mode = fixed_mode
        self.channel_order = channel_order
        self.layout = layout
        self.channels = channels
        stats = [[float(m) for m in mean][:channels], [float(s) for s in std][:channels]]
        self.register_buffer("mean", torch.tensor(stats[0]).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(stats[1]).view(1, channels, 1, 1))

    def train(self, mode: bool = True) -> PixelSpaceModel:
        if not self.fixed_mode:
            return super().train(mode)
        self.training = bool(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels == 1:
            x = luma(x)  # channel order does not matter for luma: the weights are per colour
        elif self.channel_order == "BGR":
            x = x.flip(1)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        if self.layout == "NHWC":
            x = x.permute(0, 2, 3, 1)
        out = self.network(x)
        return out[0] if isinstance(out, (tuple, list)) else out  # the logits, as predict() reads them
