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

Each form is a :class:`~evalsuite.models.formats.ModelFormat` registered in
:data:`MODEL_FORMATS` where it is defined (``@register_model_format``); plug-ins add formats
through the ``evalsuite.model_formats`` entry-point group.
"""

from __future__ import annotations

from typing import Any

from evalsuite.models.base import Model, ModelInfo
from evalsuite.models.formats import (
    MODEL_FORMATS,
    ModelFormat,
    check_checkpoint,
    find_format,
    formats,
    register_model_format,
)

__all__ = [
    "MODEL_FORMATS",
    "Model",
    "ModelFormat",
    "ModelInfo",
    "inspect_model",
    "list_entries",
    "load_model",
    "register_model_format",
    "resolve_device",
]


def __getattr__(name: str) -> Any:
    """``TORCHSCRIPT_SUFFIXES`` and ``SUPPORTED_MODELS``, from the format registry on access."""
    if name == "TORCHSCRIPT_SUFFIXES":
        return MODEL_FORMATS.get("torchscript").suffixes
    if name == "SUPPORTED_MODELS":
        from evalsuite.models.formats import supported_models

        return supported_models()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_device(spec: str) -> str:
    """See :func:`evalsuite.compute.resolve_device`."""
    from evalsuite.compute import resolve_device as _resolve

    return _resolve(spec)


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
    fmt = find_format(spec)
    check_checkpoint(fmt, spec, checkpoint)
    return fmt.load(spec, device=device, checkpoint=checkpoint, overrides=overrides)


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
    fmt = find_format(spec)
    check_checkpoint(fmt, spec, checkpoint)
    return fmt.inspect(spec, device=device, checkpoint=checkpoint, overrides=overrides)


def list_entries() -> list[tuple[str, str]]:
    """Model forms evalsuite loads, for ``evalsuite ls models`` (built-ins, then plug-in formats)."""
    return [(f.label, f.description) for f in formats()]
