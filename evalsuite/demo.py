"""``evalsuite demo``: the whole product on built-in data, on a CPU, in a few minutes.

Trains the small digits CNN, exports it to ONNX with its preprocessing metadata (so the run
needs no flags), then evaluates it with the chosen suite preset and the default policy on the
held-out test split, writing the run to ``reports/demo`` and the model to ``reports/demo-model``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def run_demo(
    out_dir: str | Path = "reports/demo",
    suite: str = "standard",
    device: str = "auto",
    epochs: int = 12,
    seed: int = 0,
) -> Any:
    """Train, export and evaluate; returns the :class:`evalsuite.api.RunOutcome`."""
    import torch

    from evalsuite.api import run
    from evalsuite.config import RunConfig
    from evalsuite.data.builtin import digits_arrays
    from evalsuite.demo_model import DIGITS_MEAN, DIGITS_STD, train_digits_cnn
    from evalsuite.models.export import export_onnx

    out = Path(out_dir)
    # The model is the run's input, so it lives beside the run folder, not in it: a run replaces
    # its --out folder whole (evalsuite.run_folder).
    model_dir = out.parent / f"{out.name}-model"
    images, labels, _, splits = digits_arrays()
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = train_digits_cnn(images[splits["train"]], labels[splits["train"]], epochs=epochs, seed=seed)
    log.info("trained the demo CNN in %.1f s", time.perf_counter() - t0)
    onnx_path = export_onnx(
        model.network,
        model_dir / "digits_cnn.onnx",
        input_size=(32, 32),
        mean=DIGITS_MEAN,
        std=DIGITS_STD,
        class_names=[str(i) for i in range(10)],
        extra={"trained_on": "builtin:digits:train", "epochs": epochs, "seed": seed},
    )
    config = RunConfig(
        model=str(onnx_path),
        data="builtin:digits:test",
        out_dir=str(out),
        suite=suite,
        seed=seed,
        device=device,
    )
    return run(config)
