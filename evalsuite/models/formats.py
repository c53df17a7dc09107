"""The model-format registry: one loader class per form of ``MODEL``, registered where defined.

Each format is a :class:`ModelFormat` subclass decorated with :func:`register_model_format`
beside the code that loads it (``OnnxFormat`` in :mod:`evalsuite.models.onnx_model`, the torch
formats in :mod:`evalsuite.models.torch_models`). A format either names files by suffix
(``suffixes``) or names things by a prefix (``prefix``, e.g. ``timm:``); :func:`find_format`
resolves ``MODEL`` to one, and ``evalsuite ls models`` and the "expected ..." messages list them.

Third-party formats come in through the ``evalsuite.model_formats`` entry-point group: the entry
point names the module (or class) whose import runs ``@register_model_format``. Built-in formats
are matched first, so a plug-in cannot take over ``.onnx`` or ``timm:``. A format's ``load``
receives only what the user typed (``MODEL``, ``--checkpoint``, flags); like the built-ins it
must never run code from the model file (no pickle) or open paths named in its metadata.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from evalsuite.errors import ModelError, UsageError
from evalsuite.registry import Registry

ENTRY_POINT_GROUP = "evalsuite.model_formats"
BUILTIN_MODULES = ("evalsuite.models.onnx_model", "evalsuite.models.torch_models")
# Weights without an architecture: the hint points at the format that takes them.
_STATE_DICT_SUFFIXES = (".pth", ".bin", ".safetensors", ".ckpt")

MODEL_FORMATS = Registry("model format", modules=BUILTIN_MODULES, group=ENTRY_POINT_GROUP)


class ModelFormat(ABC):
    """One form of ``MODEL``: how to recognise it, load it and inspect it.

    Class attributes:
        name: the format's name, also ``ModelInfo.format`` (``onnx``, ``torchscript``, ...).
        label: first column of ``evalsuite ls models`` (``<file>.onnx``, ``timm:<name>``).
        description: second column of ``evalsuite ls models``.
        expected: how "expected ..." messages name it (``a .onnx file``).
        suffixes: lower-case file suffixes for file formats (``(".onnx",)``) ...
        prefix: ... or the prefix of a named (not file) format (``"timm:"``); exactly one of the two.
        takes_checkpoint: whether ``--checkpoint`` means something for it.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]
    expected: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]] = ()
    prefix: ClassVar[str | None] = None
    takes_checkpoint: ClassVar[bool] = False

    @property
    def is_file(self) -> bool:
        return self.prefix is None

    def matches(self, spec: str) -> bool:
        """Whether ``spec`` is of this format (by prefix, or by file suffix; the file is not opened)."""
        if self.prefix is not None:
            return spec.startswith(self.prefix)
        return Path(spec).suffix.lower() in self.suffixes

    def check_spec(self, spec: str) -> None:  # noqa: B027 - optional hook: most formats accept any spec
        """Refuse a malformed ``spec`` of this format (ModelError), before anything is loaded."""

    @abstractmethod
    def load(self, spec: str, *, device: str, checkpoint: str | None, overrides: dict[str, Any] | None) -> Any:
        """A :class:`~evalsuite.models.base.Model` for ``spec`` on ``device`` (``auto`` | ``cpu`` | ``cuda[:N]``)."""

    @abstractmethod
    def inspect(self, spec: str, *, device: str, checkpoint: str | None, overrides: dict[str, Any] | None) -> dict[str, Any]:
        """What ``evalsuite inspect`` prints (see :func:`evalsuite.models.inspect_model`)."""


def register_model_format(cls: type[ModelFormat]) -> type[ModelFormat]:
    """Class decorator: register an instance of ``cls`` under ``cls.name``; returns ``cls``."""
    if not (isinstance(cls, type) and issubclass(cls, ModelFormat)):
        raise TypeError(f"@register_model_format decorates a ModelFormat subclass, got {cls!r}")
    for attr in ("name", "label", "description", "expected"):
        value = getattr(cls, attr, None)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"model format {cls.__name__}: class attribute {attr!r} must be a non-empty string")
    if (cls.prefix is None) == (not cls.suffixes):
        raise ValueError(f"model format {cls.name!r}: set exactly one of 'suffixes' (files) or 'prefix' (names)")
    if any(not s.startswith(".") or s != s.lower() for s in cls.suffixes):
        raise ValueError(f"model format {cls.name!r}: suffixes must be lower-case and start with '.', got {cls.suffixes!r}")
    MODEL_FORMATS.register(cls.name, cls(), cls.description, origin=cls.__module__)
    return cls


def formats() -> list[ModelFormat]:
    """Every registered format: built-ins first (ONNX, TorchScript, torch.export, timm), then plug-ins."""
    return [MODEL_FORMATS.get(n) for n in MODEL_FORMATS.ordered()]


def _either(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " or " + phrases[-1]


def supported_models() -> str:
    """``a .onnx file, a TorchScript .pt, a torch.export .pt2 or timm:<name> --checkpoint FILE``."""
    return _either([f.expected for f in formats()])


def find_format(spec: str) -> ModelFormat:
    """The format of ``spec``; ModelError (one line) for a missing path, a folder or an unknown form.

    Named formats (a prefix) are tried first; anything else must be an existing file, matched
    by suffix, built-in formats before plug-ins.
    """
    every = formats()
    for fmt in every:
        if not fmt.is_file and fmt.matches(spec):
            fmt.check_spec(spec)
            return fmt
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelError(f"no such file or directory: {spec}")
    if path.is_dir():
        raise ModelError(f"{spec} is a directory; expected {supported_models()}")
    for fmt in every:
        if fmt.is_file and fmt.matches(spec):
            return fmt
    suffix = path.suffix.lower()
    takers = [f.label for f in every if f.takes_checkpoint]
    hint = f" (a state dict needs {_either(takers)} --checkpoint FILE)" if suffix in _STATE_DICT_SUFFIXES and takers else ""
    raise ModelError(f"unsupported model {spec!r} (suffix {suffix or 'none'!r}){hint}; expected {supported_models()}")


def check_checkpoint(fmt: ModelFormat, spec: str, checkpoint: str | None) -> None:
    """``--checkpoint`` only means something for formats that take one (``timm:<name>``)."""
    if checkpoint is not None and not fmt.takes_checkpoint:
        takers = [f.label for f in formats() if f.takes_checkpoint] or ["no"]
        raise UsageError(f"--checkpoint applies to {_either(takers)} models only, not {spec}")
