"""The small CNN the demo (and the tests) train on ``builtin:digits``.

:func:`build_digits_cnn` returns a :class:`~evalsuite.models.pixel.PixelSpaceModel`: it takes
float NCHW RGB in [0, 1] at 32 x 32; its ``.network`` expects normalised input
(``DIGITS_MEAN``/``DIGITS_STD``) and is what gets exported to ONNX with that metadata.
"""

from __future__ import annotations

import numpy as np

DIGITS_MEAN = (0.5, 0.5, 0.5)
DIGITS_STD = (0.5, 0.5, 0.5)


def build_digits_cnn(num_classes: int = 10, width: int = 16):
    """A ~25k-parameter CNN with BatchNorm, residual addition, pooling and flatten."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(c)

        def forward(self, x):
            return torch.relu(x + self.bn(self.conv(x)))

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                Block(width),
                nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
                nn.BatchNorm2d(2 * width),
                nn.ReLU(),
                Block(2 * width),
                nn.MaxPool2d(2),
                nn.AdaptiveAvgPool2d(2),
                nn.Flatten(),
            )
            self.head = nn.Linear(2 * width * 4, num_classes)

        def forward(self, x):
            return self.head(self.features(x))

    from evalsuite.models.pixel import PixelSpaceModel

    return PixelSpaceModel(DigitsCNN(), DIGITS_MEAN, DIGITS_STD)


def train_digits_cnn(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    augment: bool = True,
):
    """Train :func:`build_digits_cnn` on uint8 NHWC images; returns the model in eval mode.

    Light augmentation (random shifts, brightness/contrast jitter, noise) keeps the demo
    model from being trivially brittle so the robustness suites have something to measure.
    """
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_digits_cnn(num_classes=int(labels.max()) + 1)
    x_all = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255.0)
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(y_all) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y_all), generator=gen)
        for start in range(0, len(perm), batch_size):
            idx = perm[start : start + batch_size]
            x, y = x_all[idx], y_all[idx]
            if augment:
                shift = torch.randint(-2, 3, (2,), generator=gen)
                x = torch.roll(x, shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
                scale = 0.7 + 0.6 * torch.rand(len(x), 1, 1, 1, generator=gen)
                x = ((x - 0.5) * scale + 0.5 + 0.1 * (torch.rand(len(x), 1, 1, 1, generator=gen) - 0.5))
                x = (x + 0.03 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()
