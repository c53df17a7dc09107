"""Tiny synthetic data and recipes for smoke runs and tests (seconds on one CPU core).

``tiny_data()`` draws three learnable classes (a dark bar at one of three heights on light,
noisy paper) at 16x16; ``tiny_recipe(**sections)`` is a two-epoch recipe for a 4-channel
``digits_cnn`` on it with evaluation off; ``make_trainer`` returns a set-up
:class:`~training.loop.Trainer` whose single steps a test can drive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def tiny_data(
    n_train: int = 36, n_val: int = 18, size: int = 16, classes: int = 3, seed: int = 0, label_noise: float = 0.0
) -> Any:
    """A :class:`~training.data.TrainData` of ``classes`` bar positions (uint8, ``size`` x ``size``).

    ``label_noise`` replaces that fraction of labels by random ones (so a model cannot be right
    on every sample, which temperature scaling needs to have an optimum).
    """
    from training.data import TrainData

    rng = np.random.default_rng(seed)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % classes
        imgs = np.full((n, size, size, 3), 230, np.uint8)
        bar = max(2, size // (classes + 1))
        for i, c in enumerate(labels):
            y0 = 1 + bar * int(c)
            imgs[i, y0 : y0 + bar, size // 5 : size - size // 5] = 30
        noisy = imgs.astype(np.int64) + rng.integers(-20, 20, imgs.shape)
        flip = rng.random(n) < label_noise
        labels = np.where(flip, rng.integers(0, classes, n), labels)
        return np.clip(noisy, 0, 255).astype(np.uint8), labels

    (ti, tl), (vi, vl) = make(n_train), make(n_val)
    return TrainData.from_arrays(ti, tl, vi, vl)


def tiny_recipe(**sections: Any) -> Any:
    """A validated two-epoch recipe for :func:`tiny_data`; keyword sections update the defaults."""
    from training.config import recipe_from_dict

    base: dict[str, Any] = {
        "name": "tiny",
        "device": "cpu",
        "data": {"input_size": [16, 16]},
        "model": {"name": "digits_cnn", "kwargs": {"width": 4}},
        "optim": {"lr": 0.01, "batch_size": 12, "base_batch_size": 12},
        "schedule": {"epochs": 2},
        "eval": {"enabled": False},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            base.setdefault(key, {}).update(value)
        else:
            base[key] = value
    return recipe_from_dict(base)


def make_trainer(out_dir: str | Path, train_data: Any = None, **sections: Any) -> Any:
    """A :class:`~training.loop.Trainer` for :func:`tiny_recipe` after set-up (nothing trained yet)."""
    from training.loop import Trainer

    data = train_data if train_data is not None else tiny_data()
    t = Trainer(tiny_recipe(**sections), Path(out_dir) / "run", data=data)
    t._setup()
    return t
