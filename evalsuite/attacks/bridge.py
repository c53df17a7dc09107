"""The ONNX gradient bridge, as the attacks use it: re-exported from :mod:`evalsuite.models.onnx_bridge`.

The bridge turns an ONNX model into a differentiable torch module checked against onnxruntime.
It is part of the ONNX model adapter (``OnnxModel.torch_module()`` returns it), so it lives in the
models package, which never imports the attacks; this module keeps the attacks' import path.
"""

from __future__ import annotations

from evalsuite.models.onnx_bridge import (
    DEFAULT_TOLERANCE,
    TARGET_OPSET,
    bridge_for,
    clear_bridge_cache,
    convert_onnx,
    logit_difference,
    prepare_graph,
)

__all__ = [
    "DEFAULT_TOLERANCE", "TARGET_OPSET", "bridge_for", "clear_bridge_cache", "convert_onnx", "logit_difference",
    "prepare_graph",
]
