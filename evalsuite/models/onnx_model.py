"""ONNX models through onnxruntime.

Execution providers: with ``--device auto`` or ``cuda[:N]`` and an onnxruntime build that has
them, TensorRT (opt-in, ``EVALSUITE_ORT_TENSORRT=1``: :func:`tensorrt_options`) then CUDA then CPU; otherwise CPU. The
providers the session really uses are recorded in ``info.extra["providers"]``. An explicit
``--device cuda`` that onnxruntime cannot honour is an error, not a silent CPU run.

The model must have exactly one input of rank 4 (float32, float16 or float64) laid out
``N x C x H x W`` or ``N x H x W x C`` (tf2onnx / Keras exports) with ``C`` 3 (RGB) or 1
(grayscale); the layout is read off the shape (:func:`evalsuite.models.metadata.input_layout`)
or declared (``--layout``, metadata ``layout``) when the shape reads both ways. The output read
as ``N x C`` logits is the one ``--output NAME`` (metadata ``output``) names, else the first;
``info.output_name`` says which, and ``info.extra["ignored_outputs"]`` lists the others. A fixed
batch dimension ``k`` is handled by splitting every batch into chunks of ``k`` and zero-padding
the last chunk (the padded rows are dropped). A fixed spatial size is the model's input size and must agree with
any metadata.

:meth:`OnnxModel.predict` takes float NCHW RGB in [0, 1] (numpy, or a torch tensor on any
device), reorders channels if the model expects BGR (or takes BT.601 luma for a single-channel
model), applies ``(x - mean) / std`` in float32, permutes to NHWC for a channels-last model and
returns float32 numpy logits.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.errors import ModelError, UsageError
from evalsuite.models.base import Model, ModelInfo, luma
from evalsuite.models.formats import ModelFormat, register_model_format
from evalsuite.models.metadata import (
    METADATA_KEY,
    SHAPE_SOURCE,
    apply_input_layout,
    file_sha256,
    finish_class_names,
    input_layout,
    merge,
    missing_error,
    one_line,
    parse_metadata_json,
    read_sidecar,
)
from evalsuite.models.onnx_bridge import DEFAULT_TOLERANCE as BRIDGE_TOLERANCE
from evalsuite.models.ort_runtime import conflicting_distributions, run_bound

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
                log.info("onnxruntime has no CUDA execution provider (make setup GPU=1 installs onnxruntime-gpu)")
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
    if "TensorrtExecutionProvider" in available and os.environ.get("EVALSUITE_ORT_TENSORRT", "0") == "1":
        providers.append(("TensorrtExecutionProvider", tensorrt_options(index)))
    providers.append(("CUDAExecutionProvider", {"device_id": index}))
    providers.append("CPUExecutionProvider")
    return providers, torch_device


def tensorrt_options(device_id: int) -> dict[str, Any]:
    """TensorRT provider options (opt-in: ``EVALSUITE_ORT_TENSORRT=1``).

    Engines are cached (``EVALSUITE_TRT_CACHE``, default ``~/.cache/evalsuite/tensorrt``): building
    one takes minutes for a ResNet-50, and a cached engine is reused only for the same model, shape
    and TensorRT version (TensorRT's own check). ``EVALSUITE_ORT_FP16=1`` lets TensorRT pick FP16
    kernels, which changes logits in the third decimal: compare such a run with ``--reference``
    against an FP32 one before trusting it.
    """
    cache = os.environ.get("EVALSUITE_TRT_CACHE") or str(Path.home() / ".cache" / "evalsuite" / "tensorrt")
    return {"device_id": device_id, "trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
            "trt_fp16_enable": os.environ.get("EVALSUITE_ORT_FP16", "0") == "1"}


def fp16_graph(path: str | Path) -> bytes:
    """The model with float16 weights and arithmetic but float32 inputs and outputs (serialised),
    by onnxruntime's own converter (``onnxruntime.transformers.float16``): the CUDA provider's
    FP16 run of ``EVALSUITE_ORT_FP16=1``. Logits move in the third decimal; the converter keeps
    float32 where an op has no float16 kernel."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            half = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds; the model then runs in float32
        raise ModelError(f"{path}: cannot convert the graph to float16 ({one_line(exc)})") from None
    return half.SerializeToString()


def open_session_fp32(path: str | Path, device: str = "auto") -> tuple[Any, str]:
    """:func:`open_session` without the float16 conversion."""
    saved = os.environ.pop("EVALSUITE_ORT_FP16", None)
    try:
        return open_session(path, device)
    finally:
        if saved is not None:
            os.environ["EVALSUITE_ORT_FP16"] = saved


def session_options(threads: int) -> Any:
    """The onnxruntime session options of every session evalsuite opens, with ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    # Spinning workers steal the CPU from the decoding/perturbation thread between runs; off, a
    # 2-core machine ran the demo model 30% faster (benchmarks/bench_clean.py).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


def open_session(path: str | Path, device: str = "auto") -> tuple[Any, str]:
    """An onnxruntime session for ``path`` and the torch device its inputs should live on."""
    import onnxruntime as ort

    conflict = conflicting_distributions()
    if conflict:
        log.warning(conflict)
    providers, torch_device = _providers_for(device)
    opts = session_options(os.cpu_count() or 1)
    source: Any = str(path)
    if torch_device != "cpu" and os.environ.get("EVALSUITE_ORT_FP16", "0") == "1":
        try:
            source = fp16_graph(path)
        except ModelError as exc:
            log.warning("%s; running it in float32", exc)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            session = ort.InferenceSession(source, sess_options=opts, providers=providers)
    except Exception as exc:
        if not isinstance(source, bytes):
            raise ModelError(f"not an ONNX model onnxruntime can load: {path} ({one_line(exc)})") from None
        log.warning("%s: the float16 graph does not load (%s); running it in float32", path, one_line(exc))
        return open_session_fp32(path, device)
    session.evalsuite_precision = "float16" if isinstance(source, bytes) else "float32"
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
    """The one image input and its shape (rank and element type checked; layout: :func:`input_layout`)."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ModelError(f"{path}: the model has {len(inputs)} inputs ({names}); evalsuite needs exactly one image input")
    inp = inputs[0]
    shape = _dims(inp.shape)
    if len(shape) != 4:
        raise ModelError(
            f"{path}: input {inp.name!r} has rank {len(shape)} (shape {shape}); evalsuite needs N x C x H x W "
            f"or N x H x W x C"
        )
    if inp.type not in _ORT_DTYPES:
        raise ModelError(f"{path}: input {inp.name!r} has type {inp.type}; evalsuite feeds float, float16 or double")
    if not session.get_outputs():
        raise ModelError(f"{path}: the model has no outputs")
    return inp, shape


def _pad_batch(chunk: Any, k: int) -> Any:
    """``chunk`` (host array or torch tensor) padded with zero samples to a fixed batch of ``k``."""
    if isinstance(chunk, np.ndarray):
        return np.concatenate([chunk, np.zeros((k - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)])
    import torch

    return torch.cat([chunk, chunk.new_zeros((k - len(chunk), *chunk.shape[1:]))])


def _fixed(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def _pick_output(session: Any, res: Any, path: str) -> Any:
    """The session output read as logits: ``output`` from flags/metadata (checked), else the first.

    Records the choice in ``res`` (``output`` and its source) so ``inspect`` and the scorecard say it.
    """
    from evalsuite.registry import did_you_mean

    outputs = session.get_outputs()
    if not outputs:
        raise ModelError(f"{path}: the model has no outputs")
    names = [o.name for o in outputs]
    wanted = res.values.get("output")
    if wanted is None:
        res.values["output"] = names[0]
        res.sources["output"] = "default (first output)"
        return outputs[0]
    if wanted not in names:
        where = res.sources.get("output", "metadata")
        err = UsageError if where == "flags" else ModelError
        what = "--output" if where == "flags" else f"output (from {where})"
        raise err(f"{path}: {what} {wanted!r} is not an output of the model{did_you_mean(wanted, names)}; "
                  f"outputs: {', '.join(names)}")
    return outputs[names.index(wanted)]


class OnnxModel(Model):
    """An ONNX classifier run by onnxruntime (see the module docstring)."""

    io_binding = False  # the session runs on the GPU: device batches are bound in place
    cuda_bridge: dict[str, Any] | None = None  # CUDA-bridge mode (use_cuda_bridge), None: onnxruntime only
    _bridge: Any = None
    _check_key: str | None = None

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
        # the session runs on the GPU: bind device batches in place instead of copying them out
        self.io_binding = str(device).startswith("cuda")
        # onnxruntime without a CUDA provider on a GPU machine: predict through the gradient bridge
        # on torch CUDA instead (use_cuda_bridge), re-checked against onnxruntime per condition
        self.cuda_bridge: dict[str, Any] | None = None
        self._bridge: Any = None
        self._check_key: str | None = None
        c = int(info.channels)  # 1: one luma channel, normalised by the first mean/std value
        self._mean = np.asarray(info.mean[:c], dtype=np.float32).reshape(1, c, 1, 1)
        self._std = np.asarray(info.std[:c], dtype=np.float32).reshape(1, c, 1, 1)
        self._scale = (1.0 / self._std).astype(np.float32)
        self._bias = (-self._mean / self._std).astype(np.float32)
        self._bgr = info.channel_order == "BGR" and c == 3
        self._gray = c == 1
        self._nhwc = info.layout == "NHWC"

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

    def _normalise_tensor(self, x: Any) -> Any:
        """An accelerator tensor in [0, 1] RGB NCHW -> the model's input, on the same device."""
        import torch

        h, w = self.info.input_size
        t = x.detach()
        if t.ndim != 4 or t.shape[1] != 3 or tuple(t.shape[2:]) != (h, w):
            raise ModelError(f"predict expects N x 3 x {h} x {w} input, got {tuple(t.shape)}")
        t = t.to(torch.float32)
        if self._gray:
            t = luma(t)
        elif self._bgr:
            t = t.flip(1)
        scale, bias = self._affine(t.device)
        t = torch.addcmul(bias, t, scale)  # (x - mean) / std in one pass
        if self._nhwc:
            t = t.permute(0, 2, 3, 1)
        return t.to(getattr(torch, self.input_dtype.name)).contiguous()  # float32 / float16 / float64

    def normalise(self, x: Any) -> np.ndarray:
        """[0, 1] RGB NCHW (numpy or torch) -> the model's input array (channel order or luma,
        mean/std, layout, dtype)."""
        h, w = self.info.input_size
        if hasattr(x, "detach") and x.device.type == "cpu":
            x = x.detach().numpy()  # NumPy is the faster elementwise path on CPU (no thread pool wake-ups)
        if hasattr(x, "detach"):  # accelerator tensor: normalise where it lives, then copy to host
            arr = self._normalise_tensor(x).cpu().numpy()
        else:
            a = np.asarray(x)
            if a.ndim != 4 or a.shape[1] != 3 or tuple(a.shape[2:]) != (h, w):
                raise ModelError(f"predict expects N x 3 x {h} x {w} input, got {tuple(a.shape)}")
            a = a.astype(np.float32, copy=False)
            if self._gray:
                a = luma(a)
            elif self._bgr:
                a = a[:, ::-1]
            arr = a * self._scale + self._bias  # (a - mean) / std
            if self._nhwc:
                arr = arr.transpose(0, 2, 3, 1)  # made contiguous below
        if arr.dtype != self.input_dtype:
            arr = arr.astype(self.input_dtype)
        return np.ascontiguousarray(arr)

    def _logits(self, out: np.ndarray, n: int) -> np.ndarray:
        out = np.asarray(out)
        if out.ndim < 2 or out.shape[0] != n or (out.ndim > 2 and int(np.prod(out.shape[2:])) != 1):
            raise ModelError(f"{self.path}: output {self.output_name!r} has shape {list(out.shape)}; expected N x C logits")
        return out.reshape(n, -1).astype(np.float32, copy=False)

    def _run(self, arr: Any) -> np.ndarray:
        """Logits for one model-ready batch: a host array, or a device tensor bound in place."""
        if isinstance(arr, np.ndarray):
            out = self.session.run([self.output_name], {self.input_name: arr})[0]
        else:
            out = run_bound(self.session, self.input_name, self.output_name, arr)
        return self._logits(out, arr.shape[0])

    def predict(self, x: Any) -> np.ndarray:
        """float32 ``N x C`` logits for float NCHW RGB in [0, 1].

        A batch on the GPU that the session also runs on (CUDA / TensorRT provider) is normalised
        there and bound to the session in place (:func:`~evalsuite.models.ort_runtime.run_bound`):
        no host round trip; anything else goes through a host array. In CUDA-bridge mode
        (:meth:`use_cuda_bridge`) the converted graph runs on torch CUDA instead.
        """
        if self.cuda_bridge is not None and self.cuda_bridge["active"]:
            logits = self._predict_bridge(x)
            if logits is not None:
                return logits
        return self._predict_ort(x)

    def _predict_ort(self, x: Any) -> np.ndarray:
        """``predict`` by onnxruntime (the reference every bridge check compares against)."""
        on_device = self.io_binding and hasattr(x, "detach") and x.device.type == "cuda"
        arr = self._normalise_tensor(x) if on_device else self.normalise(x)
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
                chunk = _pad_batch(chunk, k)
            parts.append(self._run(chunk)[:m])
        return np.concatenate(parts)

    def use_cuda_bridge(self, device: str, *, tolerance: float = BRIDGE_TOLERANCE, check_samples: int = 4) -> None:
        """Predict through the ONNX gradient bridge on torch ``device`` (a GPU that this onnxruntime
        cannot use), instead of onnxruntime on the CPU.

        The bridge is built and checked against onnxruntime on the first batch; after
        :meth:`begin_condition` the first ``check_samples`` samples of the condition's first batch
        are predicted by onnxruntime too, and the logits compared (``max_abs_diff`` against
        ``tolerance x max(1, max |logit|)``, top-1 agreement). A bridge that cannot be built or
        a check that fails switches the model back to onnxruntime for the rest of the run. Every
        check lands in ``info.extra["cuda_bridge"]`` (results.json ``model.extra``).
        """
        self.cuda_bridge = {"device": str(device), "active": True, "tolerance": float(tolerance),
                            "check_samples": int(check_samples), "checks": {}, "fallback": None}
        self.info.extra["cuda_bridge"] = self.cuda_bridge
        self.device = str(device)

    def begin_condition(self, key: str) -> None:
        """The runner starts condition ``key``: check the bridge on its first batch (CUDA-bridge mode)."""
        if self.cuda_bridge is not None and self.cuda_bridge["active"]:
            self._check_key = key

    def _bridge_off(self, reason: str) -> None:
        log.warning("%s: %s; the rest of the run uses onnxruntime on the CPU", self.path, reason)
        self.cuda_bridge.update(active=False, fallback=reason)
        self.device = "cpu"

    def _predict_bridge(self, x: Any) -> np.ndarray | None:
        """Logits from the bridge on the GPU, or None when the bridge is (now) unusable."""
        import torch

        from evalsuite.models.onnx_bridge import bridge_for, full_fp32

        cfg = self.cuda_bridge
        t = torch.as_tensor(x) if not hasattr(x, "detach") else x.detach()
        if self._bridge is None:
            try:
                self._bridge = bridge_for(self._ort_view(), t[: cfg["check_samples"]].float().cpu(),
                                          tolerance=cfg["tolerance"], device=cfg["device"])
            except ModelError as exc:
                self._bridge_off(f"the gradient bridge cannot stand in for onnxruntime on {cfg['device']} ({exc})")
                return None
        with full_fp32(), torch.no_grad():  # the arithmetic onnxruntime's CPU kernels do
            logits = self._bridge(t.to(cfg["device"], torch.float32)).float().cpu().numpy()
        if self._check_key is not None and len(logits):
            key, self._check_key = self._check_key, None
            k = min(cfg["check_samples"], len(logits))
            ref = self._predict_ort(t[:k].float().cpu())
            diff = float(np.abs(logits[:k].astype(np.float64) - ref).max())
            agree = float((logits[:k].argmax(1) == ref.argmax(1)).mean())
            bound = cfg["tolerance"] * max(1.0, float(np.abs(ref).max()))
            cfg["checks"][key] = {"n": k, "max_abs_diff": diff, "top1_agreement": agree, "passed": bool(diff <= bound and agree == 1.0)}
            if not cfg["checks"][key]["passed"]:
                self._bridge_off(f"the CUDA bridge disagrees with onnxruntime on {key} (max |diff| {diff:.3g} > {bound:.3g} "
                                 f"or top-1 agreement {agree:.2f} < 1)")
                return None
        return logits

    def _ort_view(self) -> Any:
        """This model as the bridge sees it, predicting by onnxruntime (never by the bridge itself)."""
        from types import SimpleNamespace

        return SimpleNamespace(path=self.path, info=self.info, predict=self._predict_ort, device=self.device)

    def torch_module(self) -> Any:
        """A differentiable [0, 1] RGB -> logits module, built by the ONNX gradient bridge."""
        from evalsuite.models.onnx_bridge import bridge_for

        return bridge_for(self._ort_view() if getattr(self, "cuda_bridge", None) is not None else self)

    def checked_torch_module(self, inputs: Any = None, *, tolerance: float, device: str | None = None) -> tuple[Any, Any]:
        """The ONNX gradient bridge built on ``device``, checked against onnxruntime on ``inputs``.

        See :meth:`Model.checked_torch_module`; ``check["used"]`` is true (a converted graph, so
        attacks re-check agreement with ``predict``). The bridge refuses itself (ModelError)
        above ``tolerance``.
        """
        from evalsuite.models.onnx_bridge import bridge_for

        view = self._ort_view() if getattr(self, "cuda_bridge", None) is not None else self  # checked against ORT
        module = bridge_for(view, inputs, tolerance=tolerance, device=device)
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
    declared = merge(layers, overrides)  # a declared layout decides how the shape reads
    lay = input_layout(shape, str(path), declared.values["layout"] if declared.sources["layout"] != "default" else None,
                       name=inp.name)
    fixed_hw = (lay.height, lay.width)
    if all(fixed_hw):
        layers.append((SHAPE_SOURCE, {"input_size": (fixed_hw[0], fixed_hw[1])}))
    res = merge(layers, overrides)
    apply_input_layout(res, lay, str(path))
    out = _pick_output(session, res, str(path))
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
        c = int(res.values["channels"])
        dims = (h, w, c) if res.values["layout"] == "NHWC" else (c, h, w)
        probe = np.zeros((fixed_batch or 1, *dims), dtype=input_dtype)
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
        **({"precision": "float16"} if getattr(session, "evalsuite_precision", "float32") == "float16" else {}),
        "input_name": inp.name,
        "input_shape": shape,
        "output_name": out.name,
        "fixed_batch": fixed_batch,
        "metadata_fields": dict(res.sources),
    }
    if len(session.get_outputs()) > 1:  # the outputs not read (inspect and the scorecard list them)
        extra["ignored_outputs"] = [o.name for o in session.get_outputs() if o.name != out.name]
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
        layout=v["layout"],
        channels=int(v["channels"]),
        output_name=out.name,
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
    bridge_device = cuda_bridge_device(device, parts["torch_device"])
    if bridge_device is not None:
        log.warning("onnxruntime cannot use the GPU here; %s runs through the gradient bridge on %s, checked against "
                    "onnxruntime on every condition (make setup GPU=1 installs onnxruntime-gpu)", path, bridge_device)
        model.use_cuda_bridge(bridge_device)
    return model


def cuda_bridge_device(device: str, session_device: str) -> str | None:
    """The torch GPU an ONNX model should run on through the bridge, or None.

    Only under ``--device auto``, when torch sees a GPU but the onnxruntime session runs on the
    CPU (no CUDA provider, or one that failed to start); ``EVALSUITE_ONNX_CUDA_BRIDGE=0`` keeps
    onnxruntime on the CPU.
    """
    if str(device).strip().lower() != "auto" or session_device != "cpu":
        return None
    if os.environ.get("EVALSUITE_ONNX_CUDA_BRIDGE", "1") == "0":
        return None
    from evalsuite.compute import resolve_device

    target = resolve_device("auto")
    return target if target.startswith("cuda") else None


def inspect_onnx(path: str | Path, *, device: str = "auto", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What :func:`load_onnx` finds, without failing on missing preprocessing (reported in ``problems``)."""
    from evalsuite.models.metadata import MissingMetadataError

    try:
        model = load_onnx(path, device=device, overrides=overrides)
    except MissingMetadataError as exc:
        return {**exc.found, "info": None, "problems": [str(exc)]}
    from evalsuite.quantize.record import describe_quantization

    quantization = describe_quantization(path, model)  # INT8 QDQ census and record; None for a float graph
    return {**model.inspection, **({"quantization": quantization} if quantization else {}),
            "info": model.info.to_dict(), "problems": []}


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
