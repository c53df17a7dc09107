"""The ONNX gradient bridge: a differentiable torch module that computes what onnxruntime computes.

White-box attacks need gradients; an ONNX file only runs forward in onnxruntime. The bridge is
what :meth:`OnnxModel.torch_module <evalsuite.models.onnx_model.OnnxModel.torch_module>` returns,
so it lives with the model adapters; :mod:`evalsuite.attacks.bridge` re-exports it. The bridge
converts the graph to torch with onnx2torch, after the repairs that onnx2torch 1.5 needs on
files written by the current torch exporters:

1. ``onnxscript.optimizer.optimize`` folds constants and removes the ``Identity``-wrapped
   initializers and ``CastLike``/``Shape`` chains the exporter emits;
2. ``onnx.version_converter`` lowers opset 18+ graphs to opset 17 (opset-18 ``Split`` nodes,
   which it has no adapter for, are first rewritten as the equivalent ``Slice`` nodes where the
   split sizes are static), and ``Reshape`` nodes lose ``allowzero=1`` (onnx2torch refuses it;
   on non-empty tensors it cannot change the result, because a shape holding a 0 with
   ``allowzero=1`` would describe an empty output);
3. shape inference fills in every static shape (onnx2torch sizes ``LayerNormalization`` from
   them; without, ConvNeXt-style channels-last norms in EdgeNeXt fail).

Only the graph output the adapter reads (``info.output_name``, ``--output``) is kept. The
converted network is wrapped in :class:`~evalsuite.models.pixel.PixelSpaceModel` with the
model's mean/std/channel order, layout and channel count (an NHWC graph gets the NCHW batch
permuted, a single-channel graph BT.601 luma, as ``predict`` feeds onnxruntime), then its
logits are compared with ``model.predict`` (onnxruntime) on real inputs. The largest absolute difference is recorded on the module
(``bridge_max_abs_diff``) and the bridge is refused with a :class:`~evalsuite.errors.ModelError`
when it exceeds ``tolerance x max(1, max |logit|)`` (default tolerance 1e-3; TF32 is switched
off during the check so a GPU comparison measures the conversion, not TF32 rounding).

Bridges (and conversion failures) are cached per model file, hash, device and the preprocessing
the wrapper bakes in; a later call
with new inputs re-runs only the parity check on them, and the recorded difference is the
largest over every check so far.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evalsuite.errors import ModelError

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-3
TARGET_OPSET = 17
_RANDOM_CHECK_BATCH = 8

_lock = threading.Lock()
_cache: dict[tuple[Any, ...], _Entry] = {}


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


def _cache_key(model: Any, device: str) -> tuple[Any, ...]:
    """File, hash and device, and what the wrapper bakes in from the model's info (mean/std,
    channel order, layout, channels, the output kept): flags can change those for one file."""
    path = getattr(model, "path", None)
    path_s = os.path.realpath(str(path)) if path is not None else f"id:{id(model)}"
    info = getattr(model, "info", None)
    sha = str(getattr(info, "sha256", ""))
    baked = tuple(str(getattr(info, k, None)) for k in ("mean", "std", "channel_order", "layout", "channels", "output_name"))
    return (path_s, sha, str(device), *baked)


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


def _splits_to_slices(proto: Any) -> int:
    """Rewrite the top graph's ``Split`` nodes as ``Slice`` nodes where the split sizes are static.

    onnx's version converter has no opset 18 -> 17 adapter for ``Split`` (opset 18 added
    ``num_outputs``), and the dynamo exporter writes one for every ``torch.split`` / ``chunk``
    (MobileViT, EfficientViT, LeViT). A ``Split`` of a dimension whose length shape inference
    knows, into ``num_outputs`` parts (the last one smaller when uneven, as the operator defines)
    or by a constant ``split`` input, is exactly one ``Slice`` per output. Others are left as they
    are (the converter then refuses them, as before). Returns the number of nodes rewritten.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True).graph
    except Exception:  # noqa: BLE001 - without shapes nothing is rewritten
        return 0
    shapes: dict[str, list[int | None]] = {}
    for vi in [*inferred.value_info, *inferred.input, *inferred.output]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    new_nodes, count = [], 0
    for node in graph.node:
        if node.op_type != "Split" or node.domain not in ("", "ai.onnx"):
            new_nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        shape = shapes.get(node.input[0])
        axis = int(attrs.get("axis", 0))
        sizes: list[int] | None = None
        if shape is not None:
            axis = axis + len(shape) if axis < 0 else axis
            length = shape[axis] if 0 <= axis < len(shape) else None
            if len(node.input) > 1 and node.input[1]:
                if node.input[1] in consts:
                    sizes = [int(v) for v in consts[node.input[1]].reshape(-1)]
            elif length is not None:
                k = int(attrs.get("num_outputs", len(node.output)))
                step = -(-length // k)
                sizes = [step] * (k - 1) + [length - step * (k - 1)]
        if sizes is None or len(sizes) != len(node.output) or min(sizes) < 0:
            new_nodes.append(node)
            continue
        start = 0
        for i, (out, size) in enumerate(zip(node.output, sizes, strict=True)):
            base = f"{node.name or 'split'}__slice{count}_{i}"
            for suffix, value in (("starts", start), ("ends", start + size), ("axes", axis)):
                graph.initializer.append(numpy_helper.from_array(np.array([value], dtype=np.int64), f"{base}_{suffix}"))
            new_nodes.append(helper.make_node("Slice", [node.input[0], f"{base}_starts", f"{base}_ends", f"{base}_axes"],
                                              [out], name=base))
            start += size
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(new_nodes)
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
        n = _splits_to_slices(proto) if opset >= 18 else 0
        if n:
            notes.append(f"{n} opset-18 Split node(s) rewritten as Slice")
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
    try:  # onnx2torch sizes LayerNormalization from value_info: make every static shape known to it
        import onnx

        proto = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - best effort; the parity check judges the result
        notes.append(f"shape inference skipped ({type(exc).__name__})")
    return proto, notes


def _keep_output(proto: Any, name: str | None) -> list[str]:
    """Keep only graph output ``name`` (the one the ONNX adapter reads; ``--output``), in place.

    The optimiser then drops the nodes only the other outputs needed, and the converted module
    returns the logits the adapter scores. ``None`` or an unknown name leaves the graph as it is
    (the first output is then kept by :func:`_first_output_module`).
    """
    names = [o.name for o in proto.graph.output]
    if name is None or name not in names or len(names) == 1:
        return []
    kept = [o for o in proto.graph.output if o.name == name]
    del proto.graph.output[:]
    proto.graph.output.extend(kept)
    return [f"output {name!r} kept of {', '.join(names)}"]


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

    notes = _keep_output(proto, getattr(info, "output_name", None))
    proto, more = prepare_graph(proto)
    notes += more
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
    layout, channels = getattr(info, "layout", "NCHW"), int(getattr(info, "channels", 3))
    module = PixelSpaceModel(net, info.mean, info.std, getattr(info, "channel_order", "RGB"),
                             layout=layout, channels=channels).eval()
    if layout == "NHWC":
        notes.append("NCHW input permuted to the graph's NHWC")
    if channels == 1:
        notes.append("RGB input reduced to BT.601 luma for the graph's single channel")
    for p in module.parameters():
        p.requires_grad_(False)
    return module, notes


def _random_inputs(info: Any) -> Any:
    import torch

    h, w = (int(s) for s in info.input_size)
    gen = torch.Generator().manual_seed(0)
    return torch.rand(_RANDOM_CHECK_BATCH, 3, h, w, generator=gen)


@contextmanager
def full_fp32() -> Iterator[None]:
    """TF32 off for CUDA matmuls and convolutions inside the block (full float32, as onnxruntime's
    CPU kernels compute), restored after."""
    import torch

    prev = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev


def logit_difference(module: Any, model: Any, inputs: Any) -> tuple[float, float]:
    """(max |bridge - model.predict|, max |model.predict|) on ``inputs`` (float NCHW in [0, 1])."""
    import torch

    dev = next((b.device for b in module.buffers()), torch.device("cpu"))
    x = inputs.detach().to(dev, torch.float32)
    with full_fp32(), torch.no_grad():
        ours = module(x).detach().float().cpu().numpy()
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
