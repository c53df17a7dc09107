"""Shared helpers for the attack tests: small model adapters and a mini run through the real runner.

The adapters follow the Model contract (``predict`` on float NCHW in [0, 1], ``info``,
``torch_module``); ``OrtModel`` mirrors the ONNX adapter's interface (``path``, ``session``,
``info``, ``predict``) with an onnxruntime session made here, so these tests do not depend on
the models package's loaders.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evalsuite.demo_model import DIGITS_MEAN, DIGITS_STD
from evalsuite.models.base import Model, ModelInfo

CLASSES = tuple(str(i) for i in range(10))


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """torch on one thread: these batches are tiny, and on a shared machine idle OpenMP workers spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Autouse in every attack test module that imports it."""
    with single_thread():
        yield


def digits_info(fmt: str, source: str = "test", mean=DIGITS_MEAN, std=DIGITS_STD) -> ModelInfo:
    return ModelInfo(input_size=(32, 32), mean=tuple(mean), std=tuple(std), class_names=CLASSES, format=fmt,
                     source=source, sha256=f"sha-{source}")


class TorchModel(Model):
    """A torch module in [0, 1] pixel space as an evalsuite Model."""

    def __init__(self, module: Any, info: ModelInfo | None = None) -> None:
        self.module = module.eval()
        self.device = "cpu"
        self.info = info or digits_info("torch", source=f"torch-{id(module)}")

    def predict(self, x: Any) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.module(torch.as_tensor(x, dtype=torch.float32)).float().numpy()

    def torch_module(self) -> Any:
        return self.module


class OrtModel(Model):
    """onnxruntime on a file whose network expects normalised input (mean/std from ``predict_mean``/``predict_std``)."""

    def __init__(self, path: str | Path, info: ModelInfo | None = None, predict_mean=DIGITS_MEAN,
                 predict_std=DIGITS_STD) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.device = "cpu"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.info = info or digits_info("onnx", source=str(path))
        self._mean = np.asarray(predict_mean, np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(predict_std, np.float32).reshape(1, 3, 1, 1)
        self._input = self.session.get_inputs()[0].name

    def predict(self, x: Any) -> np.ndarray:
        a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        a = ((a.astype(np.float32) - self._mean) / self._std).astype(np.float32)
        return self.session.run(None, {self._input: a})[0]

    def torch_module(self) -> Any:
        from evalsuite.attacks.bridge import bridge_for

        return bridge_for(self)

    def checked_torch_module(self, inputs: Any = None, *, tolerance: float, device: str | None = None) -> Any:
        """As the ONNX adapter: the gradient bridge, checked against onnxruntime on ``inputs``."""
        from evalsuite.models.onnx_model import OnnxModel

        return OnnxModel.checked_torch_module(self, inputs, tolerance=tolerance, device=device)


def digits_test_dataset(n: int | None = None):
    from evalsuite.data.builtin import load_digits_dataset

    ds = load_digits_dataset("test")
    return ds if n is None else ds.subset(np.arange(n))


def mini_run(model: Model, options: dict[str, Any], out_dir: Path, *, dataset: Any = None, batch_size: int = 32,
             seed: int = 0):
    """conditions -> the real runner's run_condition per condition -> summarize. Returns (suite, conds, preds, output)."""
    from evalsuite.runner import ImageSource, run_condition
    from evalsuite.suites.adversarial import AdversarialSuite
    from evalsuite.suites.base import PredictionSet, RunContext

    ds = dataset if dataset is not None else digits_test_dataset()
    labels = np.asarray(ds.labels, dtype=np.int64)
    src = ImageSource(ds, model.info, batch_size=batch_size, workers=0, skip_bad=False, cache_limit_mb=64)
    ctx = RunContext(model=model, dataset=ds, labels=labels, out_dir=Path(out_dir), seed=seed, batch_size=batch_size,
                     image_source=src.get)
    suite = AdversarialSuite(options)
    conds = suite.conditions(ctx)
    src.scan()
    preds = {}
    for c in conds:
        c.prepare(ctx)
        preds[c.key] = run_condition(c, source=src, model=model, labels=labels, ids=ds.ids, seed=seed, device="cpu",
                                     batch_size=batch_size)
    return suite, conds, preds, suite.summarize(ctx, PredictionSet(preds)), ctx
