"""The ONNX gradient bridge: a differentiable torch module that computes what onnxruntime computes.

White-box attacks need gradients; an ONNX file only runs forward in onnxruntime. The bridge is
what :meth:`OnnxModel.torch_module <evalsuite.models.onnx_model.OnnxModel.torch_module>` returns,
so it lives with the model adapters; :mod:`evalsuite.attacks.bridge` re-exports it. The bridge
converts the graph to torch with onnx2torch, after two repairs that onnx2torch 1.5 needs on
files written by the current torch exporter:

1. ``onnxscript.optimizer.optimize`` folds constants and removes the ``Identity``-wrapped
   initializers and ``CastLike``/``Shape`` chains the exporter emits;
2. ``onnx.version_converter`` lowers opset 18+ graphs to opset 17, and ``Reshape`` nodes lose
   ``allowzero=1`` (onnx2torch refuses it; on non-empty tensors it cannot change the result,
   because a shape holding a 0 with ``allowzero=1`` would describe an empty output).

The converted network is wrapped in :class:`~evalsuite.models.pixel.PixelSpaceModel` with the
model's mean/std/channel order, then its logits are compared with ``model.predict``
(onnxruntime) on real inputs. The largest absolute difference is recorded on the module
(``bridge_max_abs_diff``) and the bridge is refused with a :class:`~evalsuite.errors.ModelError`
when it exceeds ``tolerance x max(1, max |logit|)`` (default tolerance 1e-3; TF32 is switched
off during the check so a GPU comparison measures the conversion, not TF32 rounding).

Bridges (and conversion failures) are cached per model file, hash and device; a later call
with new inputs re-runs only the parity check on them, and the recorded difference is the
largest over every check so far.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evalsuite.errors import ModelError

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-3
TARGET_OPSET = 17
_RANDOM_CHECK_BATCH = 8

_lock = threading.Lock()
_cache: dict[tuple[str, str, str], _Entry] = {}


@dataclass
class _Entry:
    module: Any = None
    error: str | None = None
    max_abs_diff: float = 0.0
    max_scale: float = 0.0
    n_checked: int = 0
    notes: list[str] = field(default_factory=list)


def clear_bridge_cache() -> None:
    """Forget every cached bridge (tests, or after a model file changed on disk)."""
    with _lock:
        _cache.clear()


def _cache_key(model: Any, device: str) -> tuple[str, str, str]:
    path = getattr(model, "path", None)
    path_s = os.path.realpath(str(path)) if path is not None else f"id:{id(model)}"
    sha = str(getattr(getattr(model, "info", None), "sha256", ""))
    return (path_s, sha, str(device))


def _default_opset(proto: Any) -> int:
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _drop_reshape_allowzero(proto: Any) -> int:
    """Remove ``allowzero=1`` from every Reshape node (see the module docstring); returns the count."""
    count = 0

    def visit(graph: Any) -> None:
        nonlocal count
        for node in graph.node:
            if node.op_type == "Reshape" and node.domain in ("", "ai.onnx"):
                for attr in list(node.attribute):
                    if attr.name == "allowzero" and attr.i == 1:
                        node.attribute.remove(attr)
                        count += 1
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    visit(attr.g)

    visit(proto.graph)
    return count


def prepare_graph(proto: Any) -> tuple[Any, list[str]]:
    """Optimise, lower to opset <= 17 and repair an ONNX ModelProto for onnx2torch.

    Returns the repaired proto and notes on what was done. Raises ModelError when the graph
    cannot be lowered.
    """
    from onnx import version_converter

    notes: list[str] = []
    noisy = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir")]
    levels = [lg.level for lg in noisy]
    try:
        import onnxscript.optimizer

        for lg in noisy:  # the optimiser logs every pass at INFO
            lg.setLevel(max(lg.level, logging.WARNING))
        proto = onnxscript.optimizer.optimize(proto)
        notes.append("onnxscript optimizer applied")
    except Exception as exc:  # noqa: BLE001 - the optimiser is a best-effort clean-up
        notes.append(f"onnxscript optimizer skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
    finally:
        for lg, level in zip(noisy, levels, strict=True):
            lg.setLevel(level)
    opset = _default_opset(proto)
    if opset > TARGET_OPSET:
        try:
            proto = version_converter.convert_version(proto, TARGET_OPSET)
        except Exception as exc:  # noqa: BLE001 - reported as the refusal reason
            raise ModelError(
                f"ONNX gradient bridge: cannot lower opset {opset} to {TARGET_OPSET} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
            ) from None
        notes.append(f"opset {opset} -> {TARGET_OPSET}")
    n = _drop_reshape_allowzero(proto)
    if n:
        notes.append(f"allowzero dropped on {n} Reshape node(s)")
    return proto, notes


def _first_output_module(net: Any) -> Any:
    from torch import nn

    class FirstOutput(nn.Module):
        """Keeps the first output of a multi-output graph (the logits, as onnxruntime's adapter does)."""

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x):
            out = self.inner(x)
            if isinstance(out, (tuple, list)):
                out = out[0]
            return out

    return FirstOutput(net)


def _chunked_module(net: Any, chunk: int) -> Any:
    from torch import nn

    class Chunked(nn.Module):
        """Runs a graph exported with a fixed batch size on chunks of that size, zero-padding the
        last one as the ONNX adapter does (gradients flow to the real rows only)."""

        def __init__(self, inner: nn.Module, size: int) -> None:
            super().__init__()
            self.inner = inner
            self.size = size

        def forward(self, x):
            import torch

            outs = []
            for i in range(0, x.shape[0], self.size):
                chunk = x[i : i + self.size]
                m = chunk.shape[0]
                if m < self.size:
                    chunk = torch.cat([chunk, chunk.new_zeros((self.size - m, *chunk.shape[1:]))])
                outs.append(self.inner(chunk)[:m])
            return torch.cat(outs)

    return Chunked(net, chunk)


def _cast_module(net: Any, dtype: Any) -> Any:
    from torch import nn

    class Cast(nn.Module):
        """Feeds the graph its declared input dtype and returns float32 logits."""

        def __init__(self, inner: nn.Module, dt: Any) -> None:
            super().__init__()
            self.inner = inner
            self.dt = dt

        def forward(self, x):
            import torch

            return self.inner(x.to(self.dt)).to(torch.float32)

    return Cast(net, dtype)


def convert_onnx(proto: Any, info: Any) -> tuple[Any, list[str]]:
    """Repaired graph -> torch module in [0, 1] pixel space (PixelSpaceModel), CPU, eval, no param grads."""
    import onnx
    import torch
    from onnx2torch import convert

    from evalsuite.models.pixel import PixelSpaceModel

    proto, notes = prepare_graph(proto)
    inputs = [i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    if len(inputs) != 1:
        raise ModelError(f"ONNX gradient bridge: the graph has {len(inputs)} inputs; evalsuite models take one image input")
    ttype = inputs[0].type.tensor_type
    try:
        net = convert(proto)
    except Exception as exc:  # noqa: BLE001 - onnx2torch raises many types; all mean "cannot convert"
        msg = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ModelError(f"ONNX gradient bridge: onnx2torch cannot convert this graph ({type(exc).__name__}: {msg})") from None
    net = _first_output_module(net)
    dims = list(ttype.shape.dim)
    if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 1:
        net = _chunked_module(net, int(dims[0].dim_value))
        notes.append(f"fixed batch size {dims[0].dim_value}: run in chunks")
    elem = ttype.elem_type
    if elem not in (0, onnx.TensorProto.FLOAT):
        dtypes = {onnx.TensorProto.FLOAT16: torch.float16, onnx.TensorProto.DOUBLE: torch.float64,
                  onnx.TensorProto.BFLOAT16: torch.bfloat16}
        if elem not in dtypes:
            raise ModelError(f"ONNX gradient bridge: unsupported input element type {onnx.TensorProto.DataType.Name(elem)}")
        net = _cast_module(net, dtypes[elem])
        notes.append(f"input cast to {dtypes[elem]}")
    module = PixelSpaceModel(net, info.mean, info.std, getattr(info, "channel_order", "RGB")).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module, notes


def _random_inputs(info: Any) -> Any:
    import torch

    h, w = (int(s) for s in info.input_size)
    gen = torch.Generator().manual_seed(0)
    return torch.rand(_RANDOM_CHECK_BATCH, 3, h, w, generator=gen)


def logit_difference(module: Any, model: Any, inputs: Any) -> tuple[float, float]:
    """(max |bridge - model.predict|, max |model.predict|) on ``inputs`` (float NCHW in [0, 1])."""
    import torch

    dev = next((b.device for b in module.buffers()), torch.device("cpu"))
    x = inputs.detach().to(dev, torch.float32)
    prev = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        with torch.no_grad():
            ours = module(x).detach().float().cpu().numpy()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev
    ref = np.asarray(model.predict(inputs), dtype=np.float64)
    if ours.shape != ref.shape:
        raise ModelError(f"ONNX gradient bridge: logits shape {ours.shape} differs from onnxruntime's {ref.shape}")
    diff = np.abs(ours.astype(np.float64) - ref)
    if not np.all(np.isfinite(diff)):
        return float("inf"), float(np.nanmax(np.abs(ref))) if ref.size else 0.0
    return (float(diff.max()) if diff.size else 0.0), (float(np.abs(ref).max()) if ref.size else 0.0)


def bridge_for(model: Any, inputs: Any = None, *, tolerance: float = DEFAULT_TOLERANCE, device: str | None = None) -> Any:
    """A differentiable torch module for an ONNX ``model`` (attributes ``path``, ``info``, ``predict``).

    ``inputs``: a float NCHW batch in [0, 1] to check parity on (real images from the run);
    random inputs of the model's size when None. Raises ModelError with the reason when the
    graph cannot be converted or its logits differ from onnxruntime's by more than
    ``tolerance x max(1, max |logit|)``. The module carries ``bridge_max_abs_diff`` (largest
    difference over every check so far), ``bridge_n_checked``, ``bridge_tolerance`` and
    ``bridge_notes``.
    """
    import onnx

    dev = str(device or getattr(model, "device", "cpu") or "cpu")
    key = _cache_key(model, dev)
    with _lock:
        entry = _cache.get(key)
        if entry is None:
            entry = _Entry()
            _cache[key] = entry
            try:
                path = getattr(model, "path", None)
                if path is None:
                    raise ModelError("ONNX gradient bridge: the model has no file path to convert")
                proto = onnx.load(str(path))
                module, notes = convert_onnx(proto, model.info)
                entry.module = module.to(dev)
                entry.notes = notes
                log.info("ONNX gradient bridge built for %s (%s)", path, "; ".join(notes) or "no repairs")
            except ModelError as exc:
                entry.error = str(exc)
        if entry.error is not None:
            raise ModelError(entry.error)
        if inputs is None:
            inputs = _random_inputs(model.info)
        try:
            diff, scale = logit_difference(entry.module, model, inputs)
        except ModelError as exc:
            entry.error = str(exc)
            raise
        except RuntimeError as exc:
            entry.error = f"ONNX gradient bridge: the converted graph fails on a batch ({str(exc).splitlines()[0][:160]})"
            raise ModelError(entry.error) from None
        entry.max_abs_diff = max(entry.max_abs_diff, diff)
        entry.max_scale = max(entry.max_scale, scale)
        entry.n_checked += int(inputs.shape[0])
        module = entry.module
        module.bridge_max_abs_diff = entry.max_abs_diff
        module.bridge_n_checked = entry.n_checked
        module.bridge_tolerance = float(tolerance)
        module.bridge_notes = list(entry.notes)
        limit = tolerance * max(1.0, entry.max_scale)
        if not entry.max_abs_diff <= limit:
            raise ModelError(
                f"ONNX gradient bridge refused: its logits differ from onnxruntime's by up to "
                f"{entry.max_abs_diff:.3g} (tolerance {limit:.3g}) on {entry.n_checked} checked input(s)"
            )
        log.debug("bridge parity on %d input(s): max abs diff %.3g", int(inputs.shape[0]), diff)
        return module
