"""Torch models: TorchScript ``.pt``, ``torch.export`` ``.pt2`` and ``timm:<name>`` with ``--checkpoint``.

Every network is wrapped in :class:`~evalsuite.models.pixel.PixelSpaceModel`, so
``predict(x) = network((reorder(x) - mean) / std)`` for ``x`` in [0, 1] RGB, and
:meth:`TorchModel.torch_module` returns that same differentiable module for white-box attacks.

Preprocessing metadata: flags > sidecar ``<file>.json`` / ``<stem>.json`` > the archive's extra
file ``evalsuite.preprocessing`` (``torch.jit.save(..., _extra_files=...)`` /
``torch.export.save(..., extra_files=...)``) > what the model fixes (the static input shape of
a ``.pt2``; timm's ``pretrained_cfg`` for ``timm:`` models, where ``resize`` is
``floor(min(H, W) / crop_pct)`` like timm's eval transform for square inputs).

``timm:<name>`` never downloads: the architecture is built with ``pretrained=False`` and the
weights come from ``--checkpoint`` -- a ``.safetensors`` file, or a state dict read with
``torch.load(weights_only=True)``. Anything else (a pickled module, a dict holding non-tensors
such as ``{"state_dict": ..., "epoch": ...}``) is refused: save ``model.state_dict()`` itself.
A ``module.`` prefix on every key (DataParallel) is stripped. The number of classes comes from
``--num-classes``, the class names, or the checkpoint's classifier weight, in that order.

A ``.pt2`` exported with a static batch size ``k`` is run in chunks of ``k`` (zero-padded,
padding dropped), like a fixed-batch ONNX model.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from evalsuite.errors import ModelError, UsageError
from evalsuite.models.base import Model, ModelInfo
from evalsuite.models.formats import ModelFormat, register_model_format
from evalsuite.models.metadata import (
    METADATA_KEY,
    SHAPE_SOURCE,
    InputLayout,
    MissingMetadataError,
    Resolved,
    apply_input_layout,
    check_channel_stats,
    file_sha256,
    finish_class_names,
    input_layout,
    merge,
    missing_error,
    one_line,
    parse_metadata_json,
    read_sidecar,
)

log = logging.getLogger(__name__)

TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".torchscript")


class TorchModel(Model):
    """A torch network wrapped in :class:`PixelSpaceModel`, run under ``torch.inference_mode``."""

    def __init__(self, module: Any, info: ModelInfo, device: str, *, fixed_batch: int | None = None) -> None:
        import torch

        self.module = module
        self.info = info
        self.device = device
        self.fixed_batch = fixed_batch
        self.inspection: dict[str, Any] = {}  # what evalsuite inspect reports
        self._torch_device = torch.device(device)
        dtypes = [p.dtype for p in module.network.parameters() if p.is_floating_point()]
        self._dtype = dtypes[0] if dtypes else torch.float32

    def _forward(self, t: Any) -> Any:
        out = self.module(t)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not hasattr(out, "shape"):
            raise ModelError(f"{self.info.source}: the model returned {type(out).__name__}, expected a logits tensor")
        n = t.shape[0]
        if out.ndim < 2 or out.shape[0] != n or (out.ndim > 2 and math.prod(out.shape[2:]) != 1):
            raise ModelError(f"{self.info.source}: output has shape {list(out.shape)}; expected N x C logits")
        return out.reshape(n, -1)

    def predict(self, x: Any) -> np.ndarray:
        """float32 ``N x C`` numpy logits for float NCHW RGB in [0, 1] (numpy or torch, any device)."""
        import torch

        h, w = self.info.input_size
        t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
        if t.ndim != 4 or t.shape[1] != 3 or tuple(t.shape[2:]) != (h, w):
            raise ModelError(f"predict expects N x 3 x {h} x {w} input, got {tuple(t.shape)}")
        n = t.shape[0]
        if n == 0:
            return np.zeros((0, self.info.num_classes), dtype=np.float32)
        with torch.inference_mode():
            t = t.to(self._torch_device, dtype=self._dtype, non_blocking=True)
            k = self.fixed_batch
            if k is None or n == k:
                out = self._forward(t)
            else:
                parts = []
                for start in range(0, n, k):
                    chunk = t[start : start + k]
                    m = chunk.shape[0]
                    if m < k:
                        chunk = torch.cat([chunk, chunk.new_zeros((k - m, *chunk.shape[1:]))])
                    parts.append(self._forward(chunk)[:m])
                out = torch.cat(parts)
            return out.float().cpu().numpy()

    def torch_module(self) -> Any:
        """The :class:`PixelSpaceModel` itself ([0, 1] RGB in, logits out, differentiable)."""
        return self.module


# ----------------------------------------------------------------------------------------------
# Loading helpers
# ----------------------------------------------------------------------------------------------


def _extra_metadata(raw: Any, source: str) -> dict[str, Any]:
    if raw is None or raw == b"" or raw == "":
        return {}
    return parse_metadata_json(raw, source)


def _input_layout(shape: Any, source: str, declared: str | None) -> InputLayout:
    """Layout, channels and fixed batch/H/W of a .pt2 input (:func:`input_layout`)."""
    dims = [d if isinstance(d, int) else f"s{i}" for i, d in enumerate(shape)]
    return input_layout(dims, source, declared)


def _num_outputs(wrapper: Any, input_size: tuple[int, int], batch: int, device: Any, dtype: Any, source: str) -> int:
    import torch

    h, w = input_size
    with torch.inference_mode():
        try:
            out = wrapper(torch.zeros((batch, 3, h, w), device=device, dtype=dtype))
        except Exception as exc:
            raise ModelError(f"{source}: a dry run at {h}x{w} failed ({one_line(exc)})") from None
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not hasattr(out, "shape") or out.ndim < 2 or (out.ndim > 2 and math.prod(out.shape[2:]) != 1):
        shape = list(out.shape) if hasattr(out, "shape") else type(out).__name__
        raise ModelError(f"{source}: the model's output is {shape}; expected N x C logits")
    return int(out.shape[1])


def _build(
    network: Any,
    res: Resolved,
    *,
    fmt: str,
    source: str,
    sha256: str,
    device: str,
    exported: bool = False,
    fixed_batch: int | None = None,
    extra: dict[str, Any] | None = None,
    found: dict[str, Any] | None = None,
) -> TorchModel:
    import torch

    from evalsuite.models.pixel import PixelSpaceModel

    if res.missing():
        raise missing_error(source, res, found)
    v = res.values
    if v.get("output") is not None:
        raise UsageError(f"{source}: output {v['output']!r} (from {res.sources['output']}) names an ONNX output; "
                         f"a {fmt} model's first output is its logits")
    check_channel_stats(res, source)
    wrapper = PixelSpaceModel(network, v["mean"], v["std"], v["channel_order"], layout=v["layout"],
                              channels=int(v["channels"]), fixed_mode=exported)
    wrapper = wrapper.to(device).eval()  # an exported graph keeps the mode it was exported in (fixed_mode)
    dtypes = [p.dtype for p in network.parameters() if p.is_floating_point()]
    dtype = dtypes[0] if dtypes else torch.float32
    num_outputs = _num_outputs(wrapper, tuple(v["input_size"]), fixed_batch or 1, torch.device(device), dtype, source)
    class_names = finish_class_names(res, num_outputs, source)
    info_extra = {"metadata_fields": dict(res.sources), "fixed_batch": fixed_batch, **(extra or {})}
    if v.get("extra"):
        info_extra["metadata_extra"] = v["extra"]
    if v.get("outputs"):
        info_extra["outputs"] = v["outputs"]
    info = ModelInfo(
        input_size=tuple(v["input_size"]),
        mean=tuple(v["mean"]),
        std=tuple(v["std"]),
        class_names=class_names,
        format=fmt,
        source=source,
        sha256=sha256,
        resize=v["resize"],
        interpolation=v["interpolation"],
        channel_order=v["channel_order"],
        metadata_source=res.summary(),
        temperature=float(v["temperature"]),
        extra=info_extra,
        layout=v["layout"],
        channels=int(v["channels"]),
    )
    model = TorchModel(wrapper, info, device, fixed_batch=fixed_batch)
    model.inspection = {**(found or {}), "metadata_source": info.metadata_source}
    if not model.inspection.get("outputs"):
        model.inspection["outputs"] = [{"name": "logits", "shape": ["N", num_outputs]}]
    return model


def _layers_with_sidecar(path: Path, embedded: dict[str, Any], embedded_name: str) -> list[tuple[str, dict[str, Any]]]:
    sidecar, sidecar_path = read_sidecar(path)
    layers: list[tuple[str, dict[str, Any]]] = []
    if sidecar_path is not None:
        layers.append((f"sidecar {sidecar_path.name}", sidecar))
    if embedded:
        layers.append((embedded_name, embedded))
    return layers


def _sidecar_name(path: Path) -> str | None:
    from evalsuite.models.metadata import sidecar_candidates

    return next((str(c) for c in sidecar_candidates(path) if c.is_file() and c != path), None)


def _found(fmt: str, source: str, res: Resolved, device: str, **more: Any) -> dict[str, Any]:
    return {
        "format": fmt,
        "source": source,
        "device": device,
        "metadata": {k: list(x) if isinstance(x, tuple) else x for k, x in res.values.items()},
        "metadata_fields": dict(res.sources),
        **more,
    }


# ----------------------------------------------------------------------------------------------
# TorchScript
# ----------------------------------------------------------------------------------------------


def load_torchscript(path: str | Path, *, device: str, overrides: dict[str, Any] | None = None) -> TorchModel:
    """A TorchScript archive (``torch.jit.save``); metadata from flags, sidecar or its extra files."""
    import torch

    path = Path(path)
    extra_files = {METADATA_KEY: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            network = torch.jit.load(str(path), map_location=device, _extra_files=extra_files)
    except Exception as exc:
        raise ModelError(
            f"not a TorchScript archive: {path} ({one_line(exc, 120)}); a state dict needs timm:<name> --checkpoint"
        ) from None
    embedded = _extra_metadata(extra_files.get(METADATA_KEY), f"{path} extra file {METADATA_KEY!r}")
    res = merge(_layers_with_sidecar(path, embedded, "extra_files"), overrides)
    c = res.values["channels"]
    shape = ["N", "H", "W", c] if res.values["layout"] == "NHWC" else ["N", c, "H", "W"]  # as declared (or the contract)
    found = _found("torchscript", str(path), res, device, inputs=[{"name": "input", "shape": shape}],
                   outputs=[], sidecar=_sidecar_name(path))
    return _build(network, res, fmt="torchscript", source=str(path), sha256=file_sha256(path), device=device,
                  found=found)


# ----------------------------------------------------------------------------------------------
# torch.export
# ----------------------------------------------------------------------------------------------


def load_exported(path: str | Path, *, device: str, overrides: dict[str, Any] | None = None) -> TorchModel:
    """A ``torch.export`` program (``.pt2``); a static input shape gives input size and batch size."""
    import torch

    from evalsuite.models.pt2_archive import read_checked_pt2

    path = Path(path)
    data = read_checked_pt2(path)  # refuses pickled payloads, native code, non-operator calls
    extra_files = {METADATA_KEY: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(io.BytesIO(data), extra_files=extra_files)
    except Exception as exc:
        raise ModelError(f"not a torch.export program: {path} ({one_line(exc, 160)})") from None
    user_inputs = list(program.graph_signature.user_inputs)
    if len(user_inputs) != 1:
        raise ModelError(
            f"{path}: the program has {len(user_inputs)} inputs ({', '.join(map(str, user_inputs))}); "
            "evalsuite needs exactly one image input"
        )
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == user_inputs[0])
    val = node.meta.get("val")
    shape = list(val.shape) if val is not None else []
    embedded = _extra_metadata(extra_files.get(METADATA_KEY), f"{path} extra file {METADATA_KEY!r}")
    layers = _layers_with_sidecar(path, embedded, "extra_files")
    declared = merge(layers, overrides)
    lay = _input_layout(shape, str(path), declared.values["layout"] if declared.sources["layout"] != "default" else None)
    fixed_batch, fh, fw = lay.batch, lay.height, lay.width
    if fh and fw:
        layers.append((SHAPE_SOURCE, {"input_size": (fh, fw)}))
    res = merge(layers, overrides)
    apply_input_layout(res, lay, str(path))
    if fh and fw and "input_size" in res.values and tuple(res.values["input_size"]) != (fh, fw):
        got = res.values["input_size"]
        raise ModelError(
            f"{path}: input_size {got[0]}x{got[1]} (from {res.sources['input_size']}) but the program's input "
            f"is fixed at {fh}x{fw}"
        )
    try:
        network = program.module()
        network = network.to(device)
    except Exception as exc:
        raise ModelError(f"{path}: cannot build a module on {device} ({one_line(exc, 160)})") from None
    shape_txt = [int(d) if isinstance(d, int) else str(d) for d in shape]
    found = _found("torch.export", str(path), res, device, inputs=[{"name": user_inputs[0], "shape": shape_txt}],
                   outputs=[], sidecar=_sidecar_name(path))
    sha256 = hashlib.sha256(data).hexdigest()  # of the bytes that were checked and loaded
    return _build(network, res, fmt="torch.export", source=str(path), sha256=sha256, device=device,
                  exported=True, fixed_batch=fixed_batch, extra={"input_shape": shape_txt}, found=found)


# ----------------------------------------------------------------------------------------------
# timm
# ----------------------------------------------------------------------------------------------


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """A plain state dict (name -> tensor) from ``.safetensors`` or ``torch.load(weights_only=True)``."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no such file or directory: {path}")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as exc:
            raise ModelError(f"checkpoint {path} is not a readable safetensors file ({one_line(exc, 160)})") from None
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            first = one_line(exc, 400).split(". ")[0]
            raise ModelError(
                f"checkpoint {path} is not a plain state dict: torch.load(weights_only=True) refused it "
                f"({first[:160]}); save model.state_dict() or use .safetensors"
            ) from None
    if not isinstance(state, dict):
        raise ModelError(
            f"checkpoint {path} is not a plain state dict: it holds a {type(state).__name__}; "
            "save model.state_dict() itself"
        )
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            hint = f"checkpoint[{key!r}]" if isinstance(value, dict) else "model.state_dict()"
            raise ModelError(
                f"checkpoint {path} is not a plain state dict: entry {key!r} is not a tensor "
                f"({type(value).__name__}); save {hint} itself"
            )
    if state and all(str(k).startswith("module.") for k in state):
        state = {str(k)[len("module.") :]: v for k, v in state.items()}
    return state


def _few(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys)} total)" if len(keys) > n else "")


def _classifier_width(name: str, state: dict[str, Any]) -> int | None:
    import timm.models

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:
        cfg = None
    classifier = getattr(cfg, "classifier", None) if cfg is not None else None
    if isinstance(classifier, (tuple, list)):
        classifier = classifier[0] if classifier else None
    if not classifier:
        return None
    weight = state.get(f"{classifier}.weight")
    if weight is None or weight.ndim < 1:
        return None
    return int(weight.shape[0])


def check_state_dtypes(state: dict[str, Any], expected: dict[str, Any], what: str) -> None:
    """Refuse integer/bool tensors for floating-point parameters or buffers.

    ``load_state_dict`` copies with a cast, so quantised or corrupted integer weights would load
    silently as whole numbers. Buffers that the module itself keeps as integers (BatchNorm's
    ``num_batches_tracked``) are compared with the module's own dtype and still load.
    """
    for key, want in expected.items():
        got = state[key]
        if want.is_floating_point() and not got.is_floating_point():
            raise ModelError(
                f"{what}: tensor {key!r} is {str(got.dtype).replace('torch.', '')} but the model expects "
                f"{str(want.dtype).replace('torch.', '')}; refusing to cast non-float weights silently"
            )


def load_timm(
    name: str,
    *,
    device: str,
    checkpoint: str | None,
    overrides: dict[str, Any] | None = None,
) -> TorchModel:
    """``timm:<name>`` built without downloading, with weights from ``checkpoint`` (see module docstring)."""
    import timm
    from timm.data import resolve_data_config

    from evalsuite.registry import did_you_mean

    spec = f"timm:{name}"
    if not timm.is_model(name):
        raise ModelError(f"unknown timm model {name!r}{did_you_mean(name, timm.list_models())}")
    if checkpoint is None:
        raise ModelError(f"{spec} needs --checkpoint (weights file): evalsuite never downloads weights")
    ckpt = Path(checkpoint)
    state = load_state_dict(ckpt)
    sidecar, sidecar_path = read_sidecar(ckpt)
    layers: list[tuple[str, dict[str, Any]]] = []
    if sidecar_path is not None:
        layers.append((f"sidecar {sidecar_path.name}", sidecar))
    res = merge(layers, overrides)
    num_classes = res.num_classes
    if num_classes is None and "class_names" in res.values:
        num_classes = len(res.values["class_names"])
    if num_classes is None:
        num_classes = _classifier_width(name, state)
    kwargs = {"pretrained": False}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        network = timm.create_model(name, **kwargs)
    except Exception as exc:
        raise ModelError(f"{spec}: timm could not build the model ({one_line(exc, 160)})") from None
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_few(unexpected)}")
        raise ModelError(f"checkpoint {ckpt} does not fit {spec}: {'; '.join(parts)}")
    mismatched = [
        f"{k} {list(state[k].shape)} vs {list(expected[k].shape)}" for k in expected if state[k].shape != expected[k].shape
    ]
    if mismatched:
        raise ModelError(f"checkpoint {ckpt} does not fit {spec}: shape mismatch {_few(mismatched, 3)}")
    check_state_dtypes(state, expected, f"checkpoint {ckpt}")
    network.load_state_dict(state, strict=True)
    cfg = resolve_data_config({}, model=network)
    h, w = int(cfg["input_size"][1]), int(cfg["input_size"][2])
    crop_pct = float(cfg.get("crop_pct") or 1.0)
    timm_layer: dict[str, Any] = {
        "input_size": (h, w),
        "mean": tuple(float(m) for m in cfg["mean"]),
        "std": tuple(float(s) for s in cfg["std"]),
    }
    from evalsuite.data.loader import INTERPOLATIONS

    if str(cfg.get("interpolation", "bilinear")) in INTERPOLATIONS:
        timm_layer["interpolation"] = str(cfg["interpolation"])
    res = merge([*layers, ("timm pretrained_cfg", timm_layer)], overrides)
    if res.sources.get("resize") == "default":
        size = res.values["input_size"]
        res.values["resize"] = int(math.floor(min(size) / crop_pct))
        res.sources["resize"] = "timm pretrained_cfg"
    extra = {"checkpoint": str(ckpt), "timm_crop_pct": crop_pct, "timm_crop_mode": cfg.get("crop_mode")}
    found = _found("timm", spec, res, device, inputs=[{"name": "input", "shape": ["N", 3, "H", "W"]}],
                   outputs=[], sidecar=_sidecar_name(ckpt), checkpoint=str(ckpt))
    return _build(network, res, fmt="timm", source=spec, sha256=file_sha256(ckpt), device=device, extra=extra,
                  found=found)


def inspect_torch(loader: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run a torch loader for ``evalsuite inspect``; missing preprocessing goes into ``problems``."""
    try:
        model = loader(*args, **kwargs)
    except MissingMetadataError as exc:
        return {**exc.found, "info": None, "problems": [str(exc)]}
    return {**model.inspection, "info": model.info.to_dict(), "problems": []}


# ----------------------------------------------------------------------------------------------
# Formats (the MODEL_FORMATS registry: evalsuite.models.formats)
# ----------------------------------------------------------------------------------------------


def _torch_device(device: str) -> str:
    from evalsuite.models import resolve_device

    return resolve_device(device)


class _TorchFileFormat(ModelFormat):
    """A torch file format: ``loader(path, device=, overrides=)`` loads it, and inspection loads it too."""

    loader: ClassVar[Callable[..., TorchModel]]

    def load(self, spec: str, *, device: str, checkpoint: str | None, overrides: dict[str, Any] | None) -> TorchModel:
        return type(self).loader(Path(spec).expanduser(), device=_torch_device(device), overrides=overrides)

    def inspect(self, spec: str, *, device: str, checkpoint: str | None, overrides: dict[str, Any] | None) -> dict[str, Any]:
        return inspect_torch(type(self).loader, Path(spec).expanduser(), device=_torch_device(device), overrides=overrides)


@register_model_format
class TorchScriptFormat(_TorchFileFormat):
    """TorchScript archives (``torch.jit.save``)."""

    name = "torchscript"
    label = "<file>.pt"
    description = "TorchScript archive (torch.jit.save)"
    expected = "a TorchScript .pt"
    suffixes = TORCHSCRIPT_SUFFIXES
    loader = staticmethod(load_torchscript)


@register_model_format
class TorchExportFormat(_TorchFileFormat):
    """``torch.export`` programs (``torch.export.save``)."""

    name = "torch.export"
    label = "<file>.pt2"
    description = "torch.export program (torch.export.save)"
    expected = "a torch.export .pt2"
    suffixes = (".pt2",)
    loader = staticmethod(load_exported)


@register_model_format
class TimmFormat(ModelFormat):
    """``timm:<name>``: a timm architecture with ``--checkpoint`` weights, never downloaded."""

    name = "timm"
    label = "timm:<name>"
    description = "timm architecture with --checkpoint weights (.safetensors or a state dict); no downloads"
    expected = "timm:<name> --checkpoint FILE"
    prefix = "timm:"
    takes_checkpoint = True

    def check_spec(self, spec: str) -> None:
        if not spec[len(self.prefix) :]:
            raise ModelError("timm: needs a model name, e.g. timm:resnet18")

    def load(self, spec: str, *, device: str, checkpoint: str | None, overrides: dict[str, Any] | None) -> TorchModel:
        return load_timm(spec[len(self.prefix) :], device=_torch_device(device), checkpoint=checkpoint, overrides=overrides)

    def inspect(self, spec: str, *, device: str, checkpoint: str | None, overrides: dict[str, Any] | None) -> dict[str, Any]:
        return inspect_torch(load_timm, spec[len(self.prefix) :], device=_torch_device(device), checkpoint=checkpoint,
                             overrides=overrides)
