"""ONNX models through onnxruntime.

Execution providers: with ``--device auto`` or ``cuda[:N]`` and an onnxruntime build that has
them, TensorRT (unless ``EVALSUITE_ORT_TENSORRT=0``) then CUDA then CPU; otherwise CPU. The
providers the session really uses are recorded in ``info.extra["providers"]``. An explicit
``--device cuda`` that onnxruntime cannot honour is an error, not a silent CPU run.

The model must have exactly one input of rank 4 laid out ``N x 3 x H x W`` (float32, float16 or
float64); its first output is read as ``N x C`` logits. A fixed batch dimension ``k`` is
handled by splitting every batch into chunks of ``k`` and zero-padding the last chunk (the
padded rows are dropped). A fixed spatial size is the model's input size and must agree with
any metadata.

:meth:`OnnxModel.predict` takes float NCHW RGB in [0, 1] (numpy, or a torch tensor on any
device), reorders channels if the model expects BGR, applies ``(x - mean) / std`` in float32 and
returns float32 numpy logits.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.errors import ModelError
from evalsuite.models.base import Model, ModelInfo
from evalsuite.models.formats import ModelFormat, register_model_format
from evalsuite.models.metadata import (
    METADATA_KEY,
    file_sha256,
    finish_class_names,
    merge,
    missing_error,
    one_line,
    parse_metadata_json,
    read_sidecar,
)

log = logging.getLogger(__name__)

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def _providers_for(device: str) -> tuple[list[Any], str]:
    """(providers to request, torch-side device for inputs) for a ``--device`` spec."""
    import onnxruntime as ort

    from evalsuite.compute import cuda_index, resolve_device

    spec = str(device).strip().lower()
    available = set(ort.get_available_providers())
    if spec == "cpu":
        return ["CPUExecutionProvider"], "cpu"
    has_cuda_ep = "CUDAExecutionProvider" in available
    if spec == "auto":
        if not has_cuda_ep:
            if resolve_device("auto") != "cpu":
                log.warning("onnxruntime has no CUDA execution provider (install onnxruntime-gpu); "
                            "the ONNX model runs on the CPU, perturbations on the GPU")
            return ["CPUExecutionProvider"], "cpu"
        index = 0
        torch_device = resolve_device("auto")
        torch_device = "cuda:0" if torch_device.startswith("cuda") else "cpu"
    else:
        torch_device = resolve_device(spec)
        if not has_cuda_ep:
            raise ModelError(
                f"--device {spec}: this onnxruntime has no CUDA execution provider "
                f"(available: {', '.join(sorted(available))}); install onnxruntime-gpu or use --device cpu"
            )
        index = cuda_index(torch_device)
        torch_device = f"cuda:{index}"
    providers: list[Any] = []
    if "TensorrtExecutionProvider" in available and os.environ.get("EVALSUITE_ORT_TENSORRT", "1") != "0":
        providers.append(("TensorrtExecutionProvider", {"device_id": index}))
    providers.append(("CUDAExecutionProvider", {"device_id": index}))
    providers.append("CPUExecutionProvider")
    return providers, torch_device


def open_session(path: str | Path, device: str = "auto") -> tuple[Any, str]:
    """An onnxruntime session for ``path`` and the torch device its inputs should live on."""
    import onnxruntime as ort

    providers, torch_device = _providers_for(device)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    # Spinning workers steal the CPU from the decoding/perturbation thread between runs; off, a
    # 2-core machine ran the demo model 30% faster (benchmarks/bench_clean.py).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:
        raise ModelError(f"not an ONNX model onnxruntime can load: {path} ({one_line(exc)})") from None
    used = session.get_providers()
    if torch_device != "cpu" and "CUDAExecutionProvider" not in used and "TensorrtExecutionProvider" not in used:
        if str(device).strip().lower() == "auto":
            log.warning("onnxruntime could not start its CUDA provider; running %s on CPU", path)
            torch_device = "cpu"
        else:
            raise ModelError(f"--device {device}: onnxruntime could not start its CUDA provider for {path}")
    return session, torch_device


def _dims(shape: Any) -> list[Any]:
    return list(shape) if shape is not None else []


def describe_session(session: Any) -> dict[str, Any]:
    """Inputs and outputs of a session: name, shape (ints or symbolic names) and element type."""
    return {
        "inputs": [{"name": i.name, "shape": _dims(i.shape), "type": i.type} for i in session.get_inputs()],
        "outputs": [{"name": o.name, "shape": _dims(o.shape), "type": o.type} for o in session.get_outputs()],
    }


def _check_input(session: Any, path: str) -> tuple[Any, list[Any]]:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ModelError(f"{path}: the model has {len(inputs)} inputs ({names}); evalsuite needs exactly one image input")
    inp = inputs[0]
    shape = _dims(inp.shape)
    if len(shape) != 4:
        raise ModelError(
            f"{path}: input {inp.name!r} has rank {len(shape)} (shape {shape}); evalsuite needs N x 3 x H x W"
        )
    if isinstance(shape[1], int) and shape[1] != 3:
        hint = " (channels-last NHWC is not supported: export N x 3 x H x W)" if shape[3] == 3 else ""
        raise ModelError(f"{path}: input {inp.name!r} has shape {shape}: {shape[1]} channels, expected 3{hint}")
    if inp.type not in _ORT_DTYPES:
        raise ModelError(f"{path}: input {inp.name!r} has type {inp.type}; evalsuite feeds float, float16 or double")
    if not session.get_outputs():
        raise ModelError(f"{path}: the model has no outputs")
    return inp, shape


def _fixed(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


class OnnxModel(Model):
    """An ONNX classifier run by onnxruntime (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        session: Any,
        info: ModelInfo,
        device: str,
        *,
        input_name: str,
        output_name: str,
        input_dtype: Any,
        fixed_batch: int | None,
    ) -> None:
        self.path = path
        self.session = session
        self.info = info
        self.device = device
        self.input_name = input_name
        self.output_name = output_name
        self.input_dtype = np.dtype(input_dtype)
        self.fixed_batch = fixed_batch
        self.inspection: dict[str, Any] = {}  # what evalsuite inspect reports
        self._mean = np.asarray(info.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(info.std, dtype=np.float32).reshape(1, 3, 1, 1)
        self._scale = (1.0 / self._std).astype(np.float32)
        self._bias = (-self._mean / self._std).astype(np.float32)
        self._bgr = info.channel_order == "BGR"

    # ------------------------------------------------------------------------------------------
    def _affine(self, device: Any) -> tuple[Any, Any]:
        """(1/std, -mean/std) as torch tensors on ``device``, cached: normalisation is on the hot path."""
        import torch

        cache = self.__dict__.setdefault("_affine_cache", {})
        key = str(device)
        if key not in cache:
            scale = torch.from_numpy(self._scale).to(device)
            bias = torch.from_numpy(self._bias).to(device)
            cache[key] = (scale, bias)
        return cache[key]

    def normalise(self, x: Any) -> np.ndarray:
        """[0, 1] RGB NCHW (numpy or torch) -> the model's input array (channel order, mean/std, dtype)."""
        h, w = self.info.input_size
        if hasattr(x, "detach") and x.device.type == "cpu":
            x = x.detach().numpy()  # NumPy is the faster elementwise path on CPU (no thread pool wake-ups)
        if hasattr(x, "detach"):  # accelerator tensor: normalise where it lives, then copy to host
            import torch

            t = x.detach()
            if t.ndim != 4 or t.shape[1] != 3 or tuple(t.shape[2:]) != (h, w):
                raise ModelError(f"predict expects N x 3 x {h} x {w} input, got {tuple(t.shape)}")
            t = t.to(torch.float32)
            if self._bgr:
                t = t.flip(1)
            scale, bias = self._affine(t.device)
            arr = torch.addcmul(bias, t, scale).cpu().numpy()  # (x - mean) / std in one pass
        else:
            a = np.asarray(x)
            if a.ndim != 4 or a.shape[1] != 3 or tuple(a.shape[2:]) != (h, w):
                raise ModelError(f"predict expects N x 3 x {h} x {w} input, got {tuple(a.shape)}")
            a = a.astype(np.float32, copy=False)
            if self._bgr:
                a = a[:, ::-1]
            arr = a * self._scale + self._bias  # (a - mean) / std
        if arr.dtype != self.input_dtype:
            arr = arr.astype(self.input_dtype)
        return np.ascontiguousarray(arr)

    def _run(self, arr: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output_name], {self.input_name: arr})[0]
        out = np.asarray(out)
        n = arr.shape[0]
        if out.ndim < 2 or out.shape[0] != n or (out.ndim > 2 and int(np.prod(out.shape[2:])) != 1):
            raise ModelError(f"{self.path}: output {self.output_name!r} has shape {list(out.shape)}; expected N x C logits")
        return out.reshape(n, -1).astype(np.float32, copy=False)

    def predict(self, x: Any) -> np.ndarray:
        """float32 ``N x C`` logits for float NCHW RGB in [0, 1]."""
        arr = self.normalise(x)
        n = arr.shape[0]
        if n == 0:
            return np.zeros((0, self.info.num_classes), dtype=np.float32)
        k = self.fixed_batch
        if k is None or n == k:
            return self._run(arr)
        parts = []
        for start in range(0, n, k):
            chunk = arr[start : start + k]
            m = len(chunk)
            if m < k:
                pad = np.zeros((k - m, *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            parts.append(self._run(chunk)[:m])
        return np.concatenate(parts)

    def torch_module(self) -> Any:
        """A differentiable [0, 1] RGB -> logits module, built by the ONNX gradient bridge."""
        from evalsuite.models.onnx_bridge import bridge_for

        return bridge_for(self)

    def checked_torch_module(self, inputs: Any = None, *, tolerance: float, device: str | None = None) -> tuple[Any, Any]:
        """The ONNX gradient bridge built on ``device``, checked against onnxruntime on ``inputs``.

        See :meth:`Model.checked_torch_module`; ``check["used"]`` is true (a converted graph, so
        attacks re-check agreement with ``predict``). The bridge refuses itself (ModelError)
        above ``tolerance``.
        """
        from evalsuite.models.onnx_bridge import bridge_for

        module = bridge_for(self, inputs, tolerance=tolerance, device=device)
        check = {
            "used": True,
            "max_abs_diff": float(module.bridge_max_abs_diff),
            "n_checked": int(module.bridge_n_checked),
            "tolerance": tolerance,
            "notes": list(module.bridge_notes),
        }
        return module, check


def _load_parts(path: Path, device: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Everything about an ONNX file short of the final model; raises MissingMetadataError late."""
    session, torch_device = open_session(path, device)
    desc = describe_session(session)
    inp, shape = _check_input(session, str(path))
    out = session.get_outputs()[0]
    embedded: dict[str, Any] = {}
    meta = session.get_modelmeta().custom_metadata_map or {}
    if METADATA_KEY in meta:
        embedded = parse_metadata_json(meta[METADATA_KEY], f"{path} metadata_props[{METADATA_KEY!r}]")
    sidecar, sidecar_path = read_sidecar(path)
    layers: list[tuple[str, dict[str, Any]]] = []
    if sidecar_path is not None:
        layers.append((f"sidecar {sidecar_path.name}", sidecar))
    if embedded:
        layers.append(("metadata_props", embedded))
    fixed_hw = (_fixed(shape[2]), _fixed(shape[3]))
    if all(fixed_hw):
        layers.append(("model input shape", {"input_size": (fixed_hw[0], fixed_hw[1])}))
    res = merge(layers, overrides)
    if all(fixed_hw) and "input_size" in res.values and tuple(res.values["input_size"]) != fixed_hw:
        got = res.values["input_size"]
        raise ModelError(
            f"{path}: input_size {got[0]}x{got[1]} (from {res.sources['input_size']}) but the model's input "
            f"is fixed at {fixed_hw[0]}x{fixed_hw[1]}"
        )
    found = {
        "format": "onnx",
        "source": str(path),
        **desc,
        "providers": session.get_providers(),
        "device": torch_device,
        "metadata": {k: _jsonable(v) for k, v in res.values.items()},
        "metadata_fields": dict(res.sources),
        "metadata_props_keys": sorted(meta),
        "sidecar": None if sidecar_path is None else str(sidecar_path),
    }
    return {
        "session": session,
        "torch_device": torch_device,
        "input": inp,
        "shape": shape,
        "output": out,
        "resolved": res,
        "found": found,
    }


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def load_onnx(path: str | Path, *, device: str = "auto", overrides: dict[str, Any] | None = None) -> OnnxModel:
    """Load an ONNX classifier with its preprocessing metadata (see the module docstring)."""
    path = Path(path)
    parts = _load_parts(path, device, overrides)
    res = parts["resolved"]
    if res.missing():
        raise missing_error(str(path), res, parts["found"])
    session, inp, shape, out = parts["session"], parts["input"], parts["shape"], parts["output"]
    fixed_batch = _fixed(shape[0])
    input_dtype = _ORT_DTYPES[inp.type]
    out_shape = _dims(out.shape)
    if len(out_shape) == 2 and _fixed(out_shape[1]):
        num_outputs = int(out_shape[1])
    else:  # dynamic or odd output shape: ask the model
        h, w = res.values["input_size"]
        probe = np.zeros((fixed_batch or 1, 3, h, w), dtype=input_dtype)
        try:
            y = np.asarray(session.run([out.name], {inp.name: probe})[0])
        except Exception as exc:
            raise ModelError(f"{path}: a dry run at {h}x{w} failed ({one_line(exc)})") from None
        if y.ndim < 2 or (y.ndim > 2 and int(np.prod(y.shape[2:])) != 1):
            raise ModelError(f"{path}: output {out.name!r} has shape {list(y.shape)}; expected N x C logits")
        num_outputs = int(y.shape[1])
    class_names = finish_class_names(res, num_outputs, str(path))
    v = res.values
    extra = {
        "providers": session.get_providers(),
        "input_name": inp.name,
        "input_shape": shape,
        "output_name": out.name,
        "fixed_batch": fixed_batch,
        "metadata_fields": dict(res.sources),
    }
    if len(session.get_outputs()) > 1:
        extra["ignored_outputs"] = [o.name for o in session.get_outputs()[1:]]
    if v.get("extra"):
        extra["metadata_extra"] = v["extra"]
    if v.get("outputs"):
        extra["outputs"] = v["outputs"]
    info = ModelInfo(
        input_size=tuple(v["input_size"]),
        mean=tuple(v["mean"]),
        std=tuple(v["std"]),
        class_names=class_names,
        format="onnx",
        source=str(path),
        sha256=file_sha256(path),
        resize=v["resize"],
        interpolation=v["interpolation"],
        channel_order=v["channel_order"],
        metadata_source=res.summary(),
        temperature=float(v["temperature"]),
        extra=extra,
    )
    model = OnnxModel(
        path,
        session,
        info,
        parts["torch_device"],
        input_name=inp.name,
        output_name=out.name,
        input_dtype=input_dtype,
        fixed_batch=fixed_batch,
    )
    model.inspection = {**parts["found"], "metadata_source": info.metadata_source}
    return model


def inspect_onnx(path: str | Path, *, device: str = "auto", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What :func:`load_onnx` finds, without failing on missing preprocessing (reported in ``problems``)."""
    from evalsuite.models.metadata import MissingMetadataError

    try:
        model = load_onnx(path, device=device, overrides=overrides)
    except MissingMetadataError as exc:
        return {**exc.found, "info": None, "problems": [str(exc)]}
    return {**model.inspection, "info": model.info.to_dict(), "problems": []}


@register_model_format
class OnnxFormat(ModelFormat):
    """``*.onnx`` files through onnxruntime."""

    name = "onnx"
    label = "<file>.onnx"
    description = "onnxruntime; CUDA/TensorRT providers when present, else CPU; fixed or dynamic batch"
    expected = "a .onnx file"
    suffixes = (".onnx",)

    def load(self, spec: str, *, device: str, checkpoint: str | None, overrides: dict[str, Any] | None) -> OnnxModel:
        return load_onnx(Path(spec).expanduser(), device=device, overrides=overrides)

    def inspect(self, spec: str, *, device: str, checkpoint: str | None, overrides: dict[str, Any] | None) -> dict[str, Any]:
        return inspect_onnx(Path(spec).expanduser(), device=device, overrides=overrides)
