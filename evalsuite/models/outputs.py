"""What a model's outputs are: logits (the contract) or probabilities (declared, then converted).

Every metric reads a model's outputs as logits and applies softmax. A network that ends in
softmax would then be scored on ``softmax(p)``: accuracy survives, but NLL, ECE and Brier are
wrong and a calibration gate can pass on nonsense. So:

- metadata key / flag ``outputs: logits|probabilities`` (``--outputs``) says which it is;
- a model declared ``probabilities`` is wrapped in :class:`ProbabilityOutputs`, whose
  ``predict`` (and ``torch_module``) return ``log(max(p, 1e-45))``: log-probabilities are
  logits whose softmax is ``p`` again, so every downstream metric sees the true distribution;
- an undeclared model whose clean outputs look like probabilities (every row non-negative and
  summing to 1 within 1e-4) is refused by :func:`check_output_kind` with a one-line message
  saying how to declare it; ``--outputs logits`` asserts they really are logits.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from evalsuite.errors import ModelError
from evalsuite.models.base import Model

log = logging.getLogger(__name__)

OUTPUT_KINDS = ("logits", "probabilities")
SUM_TOLERANCE = 1e-4  # undeclared outputs closer than this to a distribution are probabilities
DECLARED_TOLERANCE = 1e-3  # declared probabilities may be this far off (float16 softmax)
TINY = 1e-45  # smallest positive float32 (subnormal): log(0) becomes about -103.3, not -inf


def declared_kind(model: Any) -> str | None:
    """The ``outputs`` kind the model's metadata or flags declare, or ``None``."""
    info = getattr(model, "info", None)
    extra = getattr(info, "extra", None) or {}
    kind = extra.get("outputs")
    return kind if kind in OUTPUT_KINDS else None


def _row_sum_error(outputs: np.ndarray) -> tuple[float, float]:
    """(smallest entry, largest |row sum - 1|) of an ``N x C`` array."""
    a = np.asarray(outputs, dtype=np.float64)
    return float(a.min()), float(np.max(np.abs(a.sum(axis=1) - 1.0)))


def looks_like_probabilities(outputs: np.ndarray, tolerance: float = SUM_TOLERANCE) -> bool:
    """Whether every row is non-negative and sums to 1 within ``tolerance`` (False for no rows)."""
    a = np.asarray(outputs)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] < 2 or not np.all(np.isfinite(a)):
        return False
    low, err = _row_sum_error(a)
    return low >= 0.0 and err <= tolerance


def check_output_kind(outputs: np.ndarray, declared: str | None, source: str) -> None:
    """Refuse undeclared outputs that look like probabilities (see the module docstring).

    ``outputs`` are the raw clean-condition outputs of an undeclared model (a declared
    ``probabilities`` model checks its own raw outputs in :class:`ProbabilityOutputs`).
    """
    if declared is not None:
        return
    if looks_like_probabilities(outputs):
        n = int(np.asarray(outputs).shape[0])
        raise ModelError(
            f"{source}: the model's outputs look like probabilities (all {n} clean rows are non-negative and sum "
            f"to 1), but evalsuite scores outputs as logits; pass --outputs probabilities (or metadata "
            f"'outputs': 'probabilities') to score them correctly, or --outputs logits if they really are logits"
        )


def _check_probabilities(p: np.ndarray, source: str) -> None:
    if p.size == 0:
        return
    low, err = _row_sum_error(p)
    if not np.all(np.isfinite(p)) or low < 0.0 or err > DECLARED_TOLERANCE:
        raise ModelError(
            f"{source}: declared outputs 'probabilities' but they are not (smallest {low:.3g}, a row sums "
            f"{err:.3g} away from 1); drop --outputs probabilities, or pass --outputs logits"
        )


def _log_module(module: Any) -> Any:
    """``log(clamp_min(module(x), TINY))`` as a differentiable torch module."""
    import torch

    class LogOutputs(torch.nn.Module):
        """Probabilities in, log-probabilities out."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            out = self.inner(x)
            if isinstance(out, (tuple, list)):
                out = out[0]
            return torch.log(out.clamp_min(TINY))

    return LogOutputs(module)


class ProbabilityOutputs(Model):
    """A model declared to output probabilities, presented as one that outputs log-probabilities.

    Every other attribute (``path``, ``fixed_batch``, ``inspection``...) is the wrapped model's.
    """

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.info = inner.info
        self.device = inner.device

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (e.g. during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def predict(self, x: Any) -> np.ndarray:
        """``log(max(p, 1e-45))`` of the wrapped model's probabilities (float32 ``N x C``)."""
        p = np.asarray(self.inner.predict(x), dtype=np.float32)
        _check_probabilities(p, self.info.source)
        return np.log(np.maximum(p, np.float32(TINY))).astype(np.float32, copy=False)

    def torch_module(self) -> Any:
        """The wrapped model's differentiable module followed by the same clamped log."""
        return _log_module(self.inner.torch_module())

    def checked_torch_module(self, inputs: Any = None, *, tolerance: float, device: str | None = None) -> tuple[Any, Any]:
        """The wrapped model's module (its own, or the ONNX bridge) checked against the wrapped
        model's own outputs (probabilities against probabilities), then followed by the same
        clamped log as :meth:`predict`, so gradients and scores agree.

        Checking the bridge's raw probabilities against this wrapper's log-probabilities (as
        before) refused every bridge and sent declared-probability models to black-box attacks.
        """
        module, check = self.inner.checked_torch_module(inputs, tolerance=tolerance, device=device)
        if check is not None:
            check = {**check, "notes": [*check.get("notes", []),
                                        "outputs declared probabilities: attacked through log(max(p, 1e-45))"]}
        return _log_module(module), check


def apply_declared_kind(model: Model) -> Model:
    """``model`` itself, or wrapped in :class:`ProbabilityOutputs` when it declares probabilities."""
    if declared_kind(model) == "probabilities":
        log.info("%s: outputs declared probabilities; scoring log-probabilities", model.info.source)
        return ProbabilityOutputs(model)
    return model
