"""Bake a temperature into a model file: an ONNX graph edit, or a TorchScript wrapper.

ONNX: the node that computes the graph output (the logits) now writes ``<name>_uncalibrated``, and
a ``Div`` node right after it divides that by a scalar initializer ``T`` (in the output's element
type) into the original output name. Consumers of the file see the same interface with logits
divided by ``T``; nodes inside the graph that read the logits (a softmax output, say) read the
calibrated logits too. The evalsuite metadata
(``metadata_props["evalsuite.preprocessing"]``) gets the total ``temperature`` and an
``extra.calibration`` record (fitted ``T``, data fingerprint, split, before/after numbers).

TorchScript: the module is wrapped in ``TemperatureScaled`` (``forward(x) = inner(x) / T``),
scripted and saved with the same metadata JSON in the archive's extra files.

Both writers write to a temporary path beside the target and move it into place atomically;
:mod:`evalsuite.calibration.cli` verifies the temporary file before moving it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.atomic_io import atomic_path
from evalsuite.errors import ModelError
from evalsuite.models.export import METADATA_KEY, set_metadata_prop

_FLOAT_TYPES = {1: np.float32, 10: np.float16, 11: np.float64}  # ONNX TensorProto elem types
_BFLOAT16 = 16


def baked_value(temperature: float, elem_type: int = 1) -> float:
    """The temperature as stored in the graph (rounded to the output's element type)."""
    if elem_type in _FLOAT_TYPES:
        return float(_FLOAT_TYPES[elem_type](temperature))
    return float(temperature)


def _all_names(graph: Any, acc: set[str]) -> set[str]:
    for v in list(graph.input) + list(graph.output) + list(graph.value_info):
        acc.add(v.name)
    for t in graph.initializer:
        acc.add(t.name)
    for node in graph.node:
        acc.update(node.input)
        acc.update(node.output)
        if node.name:
            acc.add(node.name)
        for attr in node.attribute:
            for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _all_names(g, acc)
    return acc


def _unique(base: str, taken: set[str]) -> str:
    name, k = base, 1
    while name in taken:
        name = f"{base}_{k}"
        k += 1
    taken.add(name)
    return name


def scale_output(model: Any, temperature: float, output: str | None = None) -> Any:
    """A copy of ``model`` (``onnx.ModelProto``) whose output ``output`` is divided by ``temperature``.

    ``output`` defaults to the only graph output; a model with several outputs must name one.
    Raises :class:`ModelError` when the output is not a float tensor produced by a node.
    """
    import onnx
    from onnx import helper, numpy_helper

    if not (temperature > 0 and np.isfinite(temperature)):
        raise ModelError(f"temperature must be a positive finite number, got {temperature!r}")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    names = [o.name for o in g.output]
    if output is None:
        if len(names) != 1:
            raise ModelError(f"the ONNX graph has {len(names)} outputs ({', '.join(names)}); name the logits output")
        output = names[0]
    if output not in names:
        raise ModelError(f"the ONNX graph has no output {output!r}; outputs: {', '.join(names)}")
    out_vi = next(o for o in g.output if o.name == output)
    elem_type = out_vi.type.tensor_type.elem_type
    if elem_type not in _FLOAT_TYPES and elem_type != _BFLOAT16:
        raise ModelError(
            f"output {output!r} has element type {onnx.TensorProto.DataType.Name(elem_type)}; logits must be floating point"
        )
    if not any(output in node.output for node in g.node):
        raise ModelError(f"output {output!r} is not computed by a node (it is a graph input or constant)")
    taken = _all_names(g, set())
    raw = _unique(f"{output}_uncalibrated", taken)
    t_name = _unique("evalsuite_temperature", taken)
    node_name = _unique("evalsuite_temperature_scaling", taken)
    at = next(i for i, node in enumerate(g.node) if output in node.output)
    producer = g.node[at]
    for i, name in enumerate(producer.output):
        if name == output:
            producer.output[i] = raw
    if elem_type in _FLOAT_TYPES:
        t_init = numpy_helper.from_array(np.asarray(temperature, dtype=_FLOAT_TYPES[elem_type]), name=t_name)
    else:
        t_init = helper.make_tensor(t_name, elem_type, [], [float(temperature)])
    g.initializer.append(t_init)
    g.node.insert(at + 1, helper.make_node("Div", [raw, t_name], [output], name=node_name))
    onnx.checker.check_model(m)
    return m


def output_elem_type(model: Any, output: str | None = None) -> int:
    """Element type of the (only, or named) graph output."""
    outs = list(model.graph.output)
    vi = outs[0] if output is None else next(o for o in outs if o.name == output)
    return int(vi.type.tensor_type.elem_type)


def read_onnx_metadata(model: Any) -> dict[str, Any] | None:
    """evalsuite's metadata JSON from an ``onnx.ModelProto``, or None."""
    for p in model.metadata_props:
        if p.key == METADATA_KEY:
            try:
                return json.loads(p.value)
            except json.JSONDecodeError as exc:
                raise ModelError(f"evalsuite metadata in the ONNX file is not valid JSON: {exc}") from None
    return None


def bake_onnx(
    src: str | Path, dst: str | Path, temperature: float, metadata: dict[str, Any], output: str | None = None
) -> float:
    """Write ``src`` with its logits divided by ``temperature`` to ``dst`` (atomically).

    ``metadata`` is the full evalsuite metadata object to store (its ``temperature`` is set to the
    baked value times any temperature ``src`` already carried, see :func:`calibrated_metadata`).
    Returns the temperature as stored in the graph.
    """
    import onnx

    from evalsuite.models.export import save_onnx_atomic

    try:
        model = onnx.load(str(src))
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for unreadable files
        raise ModelError(f"cannot read ONNX model {src}: {exc}") from None
    stored = baked_value(temperature, output_elem_type(model, output))
    scaled = scale_output(model, stored, output)
    set_metadata_prop(scaled, metadata)
    save_onnx_atomic(scaled, dst)
    return stored


def calibrated_metadata(
    base: dict[str, Any], fitted: float, calibration: dict[str, Any]
) -> dict[str, Any]:
    """``base`` metadata with the total temperature (previous x fitted) and ``extra.calibration``."""
    meta = json.loads(json.dumps(base))
    previous = float(meta.get("temperature", 1.0) or 1.0)
    meta["temperature"] = previous * float(fitted)
    extra = dict(meta.get("extra") or {})
    record = dict(calibration)
    record["temperature_fitted"] = float(fitted)
    record["temperature_previous"] = previous
    record["temperature_total"] = meta["temperature"]
    extra["calibration"] = record
    meta["extra"] = extra
    return meta


# --------------------------------------------------------------------------------------------
# TorchScript
# --------------------------------------------------------------------------------------------


def _temperature_scaled_class() -> Any:
    import torch
    from torch import nn

    class TemperatureScaled(nn.Module):
        """``inner(x) / T``: a calibrated classifier saved with the model."""

        def __init__(self, inner: nn.Module, temperature: float) -> None:
            super().__init__()
            self.inner = inner
            self.register_buffer("temperature", torch.tensor(float(temperature), dtype=torch.float32))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.inner(x)
            return y / self.temperature.to(y.dtype)

    return TemperatureScaled


def temperature_scaled(inner: Any, temperature: float) -> Any:
    """An ``nn.Module`` computing ``inner(x) / temperature`` (``TemperatureScaled``)."""
    return _temperature_scaled_class()(inner, temperature)


def bake_torchscript(src: str | Path, dst: str | Path, temperature: float, metadata: dict[str, Any]) -> float:
    """Save ``TemperatureScaled(torch.jit.load(src), T)`` as TorchScript at ``dst`` (atomically).

    The metadata JSON goes into the archive's extra files under ``evalsuite.preprocessing``, where
    :func:`evalsuite.models.load_model` reads it. Returns the temperature as stored (float32).
    """
    import warnings

    import torch

    stored = float(np.float32(temperature))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notices
        try:
            inner = torch.jit.load(str(src), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/ValueError variants
            raise ModelError(f"cannot load TorchScript model {src}: {exc}") from None
        try:
            wrapped = torch.jit.script(temperature_scaled(inner, stored).eval())
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot script a temperature wrapper around {src}: {exc}") from None
        with atomic_path(dst) as tmp:
            torch.jit.save(wrapped, str(tmp), _extra_files={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    return stored
