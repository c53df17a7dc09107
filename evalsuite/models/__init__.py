"""Model adapters behind one ``MODEL`` argument: ONNX, TorchScript, torch.export and timm.

- ``*.onnx``            onnxruntime (:mod:`evalsuite.models.onnx_model`)
- ``*.pt`` / ``*.ts``   TorchScript (:func:`evalsuite.models.torch_models.load_torchscript`)
- ``*.pt2``             ``torch.export`` (:func:`evalsuite.models.torch_models.load_exported`)
- ``timm:<name>``       timm architecture + ``--checkpoint`` weights, never downloaded

:func:`load_model` returns a :class:`~evalsuite.models.base.Model`; :func:`inspect_model`
returns what was found (for ``evalsuite inspect``). ``overrides`` carries command-line flags
(``input_size``, ``resize``, ``interpolation``, ``mean``, ``std``, ``class_names``,
``channel_order``, ``num_classes``, ``outputs``); ``None`` values mean "not given". Flags win over a sidecar
JSON, which wins over metadata inside the file (see :mod:`evalsuite.models.metadata`).
Heavy libraries are imported only when a model of their kind is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalsuite.errors import ModelError
from evalsuite.models.base import Model, ModelInfo

__all__ = ["Model", "ModelInfo", "inspect_model", "list_entries", "load_model", "resolve_device"]

TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".torchscript")
SUPPORTED_MODELS = "a .onnx file, a TorchScript .pt, a torch.export .pt2 or timm:<name> --checkpoint FILE"


def resolve_device(spec: str) -> str:
    """See :func:`evalsuite.models.device.resolve_device`."""
    from evalsuite.models.device import resolve_device as _resolve

    return _resolve(spec)


def _kind(spec: str) -> str:
    if spec.startswith("timm:"):
        if not spec[len("timm:") :]:
            raise ModelError("timm: needs a model name, e.g. timm:resnet18")
        return "timm"
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelError(f"no such file or directory: {spec}")
    if path.is_dir():
        raise ModelError(f"{spec} is a directory; expected {SUPPORTED_MODELS}")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in TORCHSCRIPT_SUFFIXES:
        return "torchscript"
    if suffix == ".pt2":
        return "torch.export"
    hint = " (a state dict needs timm:<name> --checkpoint FILE)" if suffix in (".pth", ".bin", ".safetensors", ".ckpt") else ""
    raise ModelError(f"unsupported model {spec!r} (suffix {suffix or 'none'!r}){hint}; expected {SUPPORTED_MODELS}")


def load_model(
    spec: str,
    *,
    device: str = "auto",
    checkpoint: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> Model:
    """Load ``spec`` (see the module docstring) on ``device`` (``auto`` | ``cpu`` | ``cuda[:N]``).

    Raises :class:`~evalsuite.errors.ModelError` (one line) for a missing or unreadable file, a
    model evalsuite cannot drive (several inputs, wrong rank or channels), missing preprocessing
    metadata, or a checkpoint that is not a plain state dict; :class:`UsageError` for bad flags.
    A model declaring ``outputs: probabilities`` comes wrapped so that ``predict`` returns
    log-probabilities (:mod:`evalsuite.models.outputs`).
    """
    from evalsuite.models.outputs import apply_declared_kind

    return apply_declared_kind(_load(str(spec), device=device, checkpoint=checkpoint, overrides=overrides))


def _load(spec: str, *, device: str, checkpoint: str | None, overrides: dict[str, Any] | None) -> Model:
    kind = _kind(spec)
    from evalsuite.models.torch_models import check_checkpoint_use

    check_checkpoint_use(spec, checkpoint)
    if kind == "onnx":
        from evalsuite.models.onnx_model import load_onnx

        return load_onnx(Path(spec).expanduser(), device=device, overrides=overrides)
    from evalsuite.models import torch_models

    torch_device = resolve_device(device)
    if kind == "torchscript":
        return torch_models.load_torchscript(Path(spec).expanduser(), device=torch_device, overrides=overrides)
    if kind == "torch.export":
        return torch_models.load_exported(Path(spec).expanduser(), device=torch_device, overrides=overrides)
    return torch_models.load_timm(
        spec[len("timm:") :], device=torch_device, checkpoint=checkpoint, overrides=overrides
    )


def inspect_model(
    spec: str,
    *,
    device: str = "auto",
    checkpoint: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What evalsuite finds in ``spec``: format, inputs/outputs, providers, metadata and its sources.

    Keys: ``format``, ``source``, ``device``, ``inputs``/``outputs`` (name, shape[, type]),
    ``providers`` (ONNX), ``metadata`` / ``metadata_fields`` (value and source per field),
    ``metadata_source``, ``info`` (:meth:`ModelInfo.to_dict`, or ``None`` when preprocessing
    is missing) and ``problems`` (one-line messages, e.g. how to supply missing metadata).
    Errors that make the model unusable at all (not ONNX, several inputs...) still raise.
    """
    spec = str(spec)
    kind = _kind(spec)
    from evalsuite.models import torch_models

    torch_models.check_checkpoint_use(spec, checkpoint)
    if kind == "onnx":
        from evalsuite.models.onnx_model import inspect_onnx

        return inspect_onnx(Path(spec).expanduser(), device=device, overrides=overrides)
    torch_device = resolve_device(device)
    if kind == "torchscript":
        return torch_models.inspect_torch(
            torch_models.load_torchscript, Path(spec).expanduser(), device=torch_device, overrides=overrides
        )
    if kind == "torch.export":
        return torch_models.inspect_torch(
            torch_models.load_exported, Path(spec).expanduser(), device=torch_device, overrides=overrides
        )
    return torch_models.inspect_torch(
        torch_models.load_timm, spec[len("timm:") :], device=torch_device, checkpoint=checkpoint, overrides=overrides
    )


def list_entries() -> list[tuple[str, str]]:
    """Model forms evalsuite loads, for ``evalsuite ls models``."""
    return [
        ("<file>.onnx", "onnxruntime; CUDA/TensorRT providers when present, else CPU; fixed or dynamic batch"),
        ("<file>.pt", "TorchScript archive (torch.jit.save)"),
        ("<file>.pt2", "torch.export program (torch.export.save)"),
        ("timm:<name>", "timm architecture with --checkpoint weights (.safetensors or a state dict); no downloads"),
    ]
