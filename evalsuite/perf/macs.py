"""Parameters and multiply-accumulates (MACs) of one image, for torch and ONNX models.

torch: ``torch.utils.flop_counter.FlopCounterMode`` over one forward pass of the model's own
module at batch 1 (it counts matrix products, convolutions and attention; elementwise work,
normalisation and pooling are not counted), MACs = FLOPs / 2. Attention runs on the math
kernel while counting (the fused CPU kernel counts as zero: timm's ``test_vit`` at 64 x 64 read
5,028,352 MACs instead of 5,250,304, the ONNX graph's count). Parameters: the number of
elements of ``module.parameters()`` (buffers such as BatchNorm statistics are not parameters).

ONNX: the graph's input fixed to ``1 x 3 x H x W``, ``onnx.shape_inference.infer_shapes``, then
the same rules as torch's counter over the nodes that carry them:

- ``Conv``: ``N * prod(W.shape) * prod(output spatial)``, weight ``Cout x Cin/g x k...``;
- ``ConvTranspose``: ``N * prod(W.shape) * prod(input spatial)``;
- ``Gemm``: ``M * N * K`` (``transA``/``transB`` honoured); ``MatMul``: ``batch * M * N * K``
  with NumPy broadcasting of the batch dimensions (1-D operands promoted as NumPy does).

Bias additions are not counted (neither does torch's counter), so a conv/linear network
exported from torch gets exactly torch's count. A node whose shapes inference cannot resolve
(a data-dependent dimension) makes the total unknown (``None`` with the reason) rather than
silently low. Parameters of an ONNX graph: the elements of its floating-point initializers
(exported BatchNorm statistics are initializers too, so this may exceed torch's count).
The file is read with ``load_external_data=False``: nothing a model file names is opened.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COUNTED_ONNX_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


class UncountableError(Exception):
    """The MACs of this graph cannot be counted (the message says why)."""


# ---------------------------------------------------------------------------------------- torch
def torch_parameters(module: Any) -> int:
    """Number of parameter elements of a torch module."""
    return int(sum(p.numel() for p in module.parameters()))


def _math_attention() -> Any:
    """Scaled dot-product attention on its reference (math) kernel while counting: the fused CPU
    kernel has no FLOP formula in ``FlopCounterMode`` and would count as zero, the math kernel's
    two batched products are counted (and equal the ONNX graph's MatMuls exactly)."""
    import contextlib

    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # older torch: nothing to switch
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


def torch_macs(module: Any, input_shape: tuple[int, ...], *, device: str = "cpu", dtype: Any = None) -> int:
    """MACs of one forward pass of ``module`` on zeros of ``input_shape`` (FLOPs / 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(input_shape, device=device, dtype=dtype or torch.float32)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), _math_attention(), counter:
        module(x)
    return int(counter.get_total_flops()) // 2


# ----------------------------------------------------------------------------------------- ONNX
def _dims(type_proto: Any) -> list[int | None] | None:
    t = type_proto.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


def _fixed(shape: list[int | None] | None, what: str) -> list[int]:
    if shape is None or any(d is None or d < 0 for d in shape):
        raise UncountableError(f"shape of {what} is not known after shape inference ({shape})")
    return [int(d) for d in shape]


def _conv_macs(node: Any, shapes: dict[str, Any]) -> int:
    w = _fixed(shapes.get(node.input[1]), f"{node.op_type} weight {node.input[1]!r}")
    if node.op_type == "Conv":
        y = _fixed(shapes.get(node.output[0]), f"Conv output {node.output[0]!r}")
        return y[0] * math.prod(w) * math.prod(y[2:])
    x = _fixed(shapes.get(node.input[0]), f"ConvTranspose input {node.input[0]!r}")
    return x[0] * math.prod(w) * math.prod(x[2:])


def _attr(node: Any, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def _gemm_macs(node: Any, shapes: dict[str, Any]) -> int:
    a = _fixed(shapes.get(node.input[0]), f"Gemm input {node.input[0]!r}")
    b = _fixed(shapes.get(node.input[1]), f"Gemm input {node.input[1]!r}")
    m, k = (a[1], a[0]) if _attr(node, "transA", 0) else (a[0], a[1])
    n = b[0] if _attr(node, "transB", 0) else b[1]
    return m * n * k


def _matmul_macs(node: Any, shapes: dict[str, Any]) -> int:
    a = _fixed(shapes.get(node.input[0]), f"MatMul input {node.input[0]!r}")
    b = _fixed(shapes.get(node.input[1]), f"MatMul input {node.input[1]!r}")
    if len(a) == 1:
        a = [1, a[0]]
    if len(b) == 1:
        b = [b[0], 1]
    m, k, n = a[-2], a[-1], b[-1]
    batch = [max(x, y) for x, y in zip([1] * (len(b) - len(a)) + a[:-2], [1] * (len(a) - len(b)) + b[:-2], strict=True)]
    return math.prod(batch) * m * n * k


def _value_shapes(model: Any) -> dict[str, Any]:
    g = model.graph
    shapes: dict[str, Any] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        shapes[vi.name] = _dims(vi.type)
    for init in g.initializer:
        shapes[init.name] = [int(d) for d in init.dims]
    return shapes


def _with_input_shape(model: Any, input_shape: tuple[int, ...]) -> Any:
    import onnx

    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise UncountableError(f"the graph has {len(inputs)} inputs; MACs are counted for one image input")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        raise UncountableError(f"the input has rank {len(dims)}, expected {len(input_shape)}")
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for inp in fixed.graph.input:
        if inp.name == inputs[0].name:
            for d, v in zip(inp.type.tensor_type.shape.dim, input_shape, strict=True):
                d.Clear()
                d.dim_value = int(v)
    del fixed.graph.value_info[:]
    return fixed


def load_onnx_graph(path: str | Path) -> Any:
    """The ``ModelProto`` of ``path`` without external data (nothing the file names is opened)."""
    import onnx

    return onnx.load(str(path), load_external_data=False)


def onnx_macs(path_or_model: str | Path | Any, input_shape: tuple[int, ...]) -> tuple[int, dict[str, int]]:
    """(total MACs, MACs per counted op type) of one forward pass at ``input_shape``.

    Raises :class:`UncountableError` when a counted node's shapes stay unknown, or when the
    graph holds subgraphs (``If``/``Loop``/``Scan``) whose nodes would be missed.
    """
    import onnx

    model = load_onnx_graph(path_or_model) if isinstance(path_or_model, (str, Path)) else path_or_model
    for node in model.graph.node:
        if node.op_type in ("If", "Loop", "Scan"):
            raise UncountableError(f"the graph has a {node.op_type} node (control flow is not counted)")
    try:
        inferred = onnx.shape_inference.infer_shapes(_with_input_shape(model, input_shape), data_prop=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises several kinds; any means "cannot count"
        raise UncountableError(f"ONNX shape inference failed ({type(exc).__name__}: {str(exc)[:160]})") from None
    shapes = _value_shapes(inferred)
    by_op: dict[str, int] = {}
    for node in inferred.graph.node:
        if node.op_type not in COUNTED_ONNX_OPS or node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in ("Conv", "ConvTranspose"):
            macs = _conv_macs(node, shapes)
        elif node.op_type == "Gemm":
            macs = _gemm_macs(node, shapes)
        else:
            macs = _matmul_macs(node, shapes)
        by_op[node.op_type] = by_op.get(node.op_type, 0) + macs
    return sum(by_op.values()), by_op


def onnx_parameters(path_or_model: str | Path | Any) -> int:
    """Elements of the stored weights: floating-point initializers, and in a quantized (QDQ) graph
    the integer initializers that a ``DequantizeLinear`` turns back into weights; the scales and
    zero points of ``QuantizeLinear`` / ``DequantizeLinear`` are quantization parameters, not
    weights, so an INT8 copy counts what its FP32 source counts."""
    from onnx import TensorProto

    model = load_onnx_graph(path_or_model) if isinstance(path_or_model, (str, Path)) else path_or_model
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
    q_params: set[str] = set()
    dequantized: set[str] = set()
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            q_params.update(node.input[1:])
            if node.op_type == "DequantizeLinear" and node.input:
                dequantized.add(node.input[0])
    return int(sum(math.prod(init.dims) for init in model.graph.initializer
                   if init.name not in q_params and (init.data_type in floats or init.name in dequantized)))
