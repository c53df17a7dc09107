"""Where a model's preprocessing facts come from, field by field.

Precedence (highest first): command-line flags (``overrides``) > a sidecar JSON file >
metadata stored in the model file (ONNX ``metadata_props`` key ``evalsuite.preprocessing``,
or the same key among a TorchScript / ``torch.export`` archive's extra files) > facts the
model itself fixes (a static input shape, timm's ``pretrained_cfg``). Each field is taken from
the highest source that has it, and :class:`Resolved` remembers which source that was.

The sidecar of ``model.onnx`` is ``model.onnx.json`` or, failing that, ``model.json``; it holds
the JSON object :func:`evalsuite.models.export.preprocessing_dict` builds. Nothing is guessed:
missing mean/std or input size is a :class:`MissingMetadataError` saying how to supply them.
Missing class names default to ``"0" .. "C-1"`` (C from the model's output) and are reported so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsuite.errors import ModelError, UsageError

METADATA_KEY = "evalsuite.preprocessing"
FIELDS = (
    "input_size", "resize", "interpolation", "mean", "std", "channel_order", "class_names", "temperature", "outputs",
    "layout", "channels", "output", "extra",
)
OVERRIDE_KEYS = (
    "input_size", "resize", "interpolation", "mean", "std", "class_names", "channel_order", "num_classes", "outputs",
    "layout", "output",
)
REQUIRED = ("input_size", "mean", "std")
DEFAULTS: dict[str, Any] = {"resize": None, "interpolation": "bilinear", "channel_order": "RGB", "temperature": 1.0,
                            "layout": "NCHW", "channels": 3}
LAYOUTS = ("NCHW", "NHWC")
CHANNELS = (1, 3)
#: The source name of facts read off a model's input shape (input size, layout, channels).
SHAPE_SOURCE = "model input shape"
# Layout and channels read off the input shape are facts of the network, not preprocessing the
# user supplied: they are listed per field but leave ``metadata_source`` as it was.
_SHAPE_FACTS = ("layout", "channels")
HOW_TO_SUPPLY = "--input-size/--mean/--std (and --resize/--interpolation/--class-names)"


class MissingMetadataError(ModelError):
    """Preprocessing facts are missing; ``found`` holds what could be read (for ``evalsuite inspect``)."""

    def __init__(self, message: str, found: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.found = found or {}


def _bad(source: str, key: str, value: Any, expected: str) -> ModelError | UsageError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    if source == "flags":
        return UsageError(f"--{key.replace('_', '-')} {shown} is invalid; expected {expected}")
    return ModelError(f"{source}: {key} = {shown} is invalid; expected {expected}")


def _floats(source: str, key: str, value: Any, n: int) -> tuple[float, ...]:
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split() if v]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * n
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise _bad(source, key, value, f"{n} numbers") from None
    if len(out) == 1:
        out = out * n
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise _bad(source, key, value, f"{n} finite numbers")
    return out


def _positive_int(source: str, key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise _bad(source, key, value, "a positive integer")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise _bad(source, key, value, "a positive integer") from None
    if not math.isfinite(f) or f != int(f) or f < 1:
        raise _bad(source, key, value, "a positive integer")
    return int(f)


def _input_size(source: str, value: Any) -> tuple[int, int]:
    if isinstance(value, str):
        parts = [p for p in value.lower().replace("x", " ").replace(",", " ").split() if p]
        value = parts
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value, value]
    if not isinstance(value, (list, tuple)) or len(value) not in (1, 2):
        raise _bad(source, "input_size", value, "HEIGHT,WIDTH (or one number for a square)")
    if len(value) == 1:
        value = [value[0], value[0]]
    h, w = (_positive_int(source, "input_size", v) for v in value)
    return h, w


def _class_names(source: str, value: Any) -> tuple[str, ...]:
    """Names from a list, a JSON-list string or a comma-separated string -- never from a file.

    Metadata and sidecars are data: a string that looks like a path (``/etc/passwd``) is one
    class name, not a file to open. Reading names from a file is the command line's
    ``--class-names @FILE`` (:func:`read_class_names_file`), which the user asks for.
    """
    if isinstance(value, str):
        text = value.strip()
        loaded: Any = None
        if text.startswith("["):
            try:
                loaded = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                raise _bad(source, "class_names", value, "a JSON list of names or a comma-separated string") from None
        value = loaded if loaded is not None else [v.strip() for v in value.split(",")]
    if not isinstance(value, (list, tuple)) or not value:
        raise _bad(source, "class_names", value, "a non-empty list of names (or a comma-separated string)")
    names = tuple(str(v) for v in value)
    if any(n == "" for n in names):
        raise _bad(source, "class_names", value, "non-empty names")
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise _bad(source, "class_names", n, "unique names (listed twice)")
        seen.add(n)
    return names


MAX_CLASS_NAMES_FILE = 16 * 1024 * 1024


def read_class_names_file(path: str | Path) -> list[str]:
    """Class names from a user-named text file (``--class-names @FILE``): one per line, blanks ignored.

    Only the command line reaches this: a file is read because the user named it, never
    because a model's metadata did. Raises :class:`UsageError` (one line) when the file is
    missing, unreadable, not UTF-8 text, larger than 16 MiB or holds no names.
    """
    p = Path(path)
    if not p.exists():
        raise UsageError(f"--class-names @{path}: no such file")
    if p.is_dir():
        raise UsageError(f"--class-names @{path}: is a directory, expected a text file with one name per line")
    try:
        with open(p, "rb") as fh:
            raw = fh.read(MAX_CLASS_NAMES_FILE + 1)
    except OSError as exc:
        raise UsageError(f"--class-names @{path}: cannot read it ({exc.strerror or exc})") from None
    if len(raw) > MAX_CLASS_NAMES_FILE:
        raise UsageError(f"--class-names @{path}: larger than {MAX_CLASS_NAMES_FILE // 2**20} MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"--class-names @{path}: not UTF-8 text") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise UsageError(f"--class-names @{path}: holds no class names (expected one per line)")
    return names


def normalise(values: Mapping[str, Any], source: str, *, allowed: Sequence[str] = FIELDS) -> dict[str, Any]:
    """Validate and normalise metadata values from ``source``; ``None`` values are dropped.

    Unknown keys are an error naming them (with did-you-mean): a misspelt ``stdev`` must not
    silently fall back to another source.
    """
    from evalsuite.data.loader import INTERPOLATIONS
    from evalsuite.registry import did_you_mean

    unknown = sorted(set(values) - set(allowed))
    if unknown:
        err = UsageError if source == "flags" else ModelError
        raise err(
            f"{source}: unknown key(s) {', '.join(map(repr, unknown))}{did_you_mean(unknown[0], list(allowed))}; "
            f"valid: {', '.join(allowed)}"
        )
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None and key != "resize":
            continue
        if key == "input_size":
            out[key] = _input_size(source, value)
        elif key == "resize":
            if isinstance(value, str) and value.strip().lower() == "none":
                out[key] = None  # explicit "no shorter-side resize", e.g. --resize none
                continue
            if value is None:
                if source != "flags":  # an explicit null in a file means "no shorter-side resize"
                    out[key] = None
                continue
            out[key] = _positive_int(source, key, value)
        elif key == "interpolation":
            v = str(value).lower()
            if v not in INTERPOLATIONS:
                raise _bad(source, key, value, "one of " + ", ".join(INTERPOLATIONS))
            out[key] = v
        elif key in ("mean", "std"):
            vals = _floats(source, key, value, 3)
            if key == "std" and any(v <= 0 for v in vals):
                raise _bad(source, key, value, "3 positive numbers")
            out[key] = vals
        elif key == "channel_order":
            v = str(value).upper()
            if v not in ("RGB", "BGR"):
                raise _bad(source, key, value, "RGB or BGR")
            out[key] = v
        elif key == "class_names":
            out[key] = _class_names(source, value)
        elif key == "temperature":
            try:
                t = float(value)
            except (TypeError, ValueError):
                raise _bad(source, key, value, "a positive number") from None
            if not math.isfinite(t) or t <= 0:
                raise _bad(source, key, value, "a positive number")
            out[key] = t
        elif key == "num_classes":
            out[key] = _positive_int(source, key, value)
        elif key == "outputs":  # logits (the contract) or probabilities (see evalsuite.models.outputs)
            v = str(value).strip().lower()
            if v not in ("logits", "probabilities"):
                raise _bad(source, key, value, "logits or probabilities")
            out[key] = v
        elif key == "layout":  # NCHW (the contract) or NHWC (tf2onnx / Keras exports)
            v = str(value).strip().upper()
            if v not in LAYOUTS:
                raise _bad(source, key, value, "nchw or nhwc")
            out[key] = v
        elif key == "channels":  # 1: the network takes one luma channel (grayscale); 3: RGB
            n = _positive_int(source, key, value)
            if n not in CHANNELS:
                raise _bad(source, key, value, "1 (grayscale) or 3 (RGB)")
            out[key] = n
        elif key == "output":  # which named model output holds the logits (ONNX)
            if not isinstance(value, str) or not value.strip():
                raise _bad(source, key, value, "the name of one of the model's outputs")
            out[key] = value.strip()
        elif key == "extra":
            if not isinstance(value, dict):
                raise _bad(source, key, value, "a JSON object")
            out[key] = dict(value)
    return out


def parse_metadata_json(text: str | bytes, source: str) -> dict[str, Any]:
    """Parse and validate the ``evalsuite.preprocessing`` JSON object from ``source``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{source}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{source}: expected a JSON object, got {type(data).__name__}")
    return normalise(data, source)


def sidecar_candidates(path: str | Path) -> list[Path]:
    """``<model>.json`` then ``<model stem>.json`` next to ``path``."""
    p = Path(path)
    first = p.with_name(p.name + ".json")
    second = p.with_suffix(".json")
    return [first] if first == second else [first, second]


def read_sidecar(path: str | Path) -> tuple[dict[str, Any], Path | None]:
    """The first sidecar of ``path`` that exists, parsed; ``({}, None)`` when there is none."""
    for cand in sidecar_candidates(path):
        if cand.is_file() and cand != Path(path):
            try:
                text = cand.read_text(encoding="utf-8")
            except OSError as exc:
                raise ModelError(f"cannot read sidecar {cand}: {exc.strerror or exc}") from None
            return parse_metadata_json(text, f"sidecar {cand}"), cand
    return {}, None


@dataclass
class Resolved:
    """Merged metadata values and, per field, the source it came from."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    num_classes: int | None = None
    priority: list[str] = field(default_factory=list)

    def missing(self) -> list[str]:
        return [k for k in REQUIRED if k not in self.values]

    def summary(self) -> str:
        """``metadata_source`` text: the sources used, highest first, and any defaulted class names."""
        used = {src for key, src in self.sources.items() if not (key in _SHAPE_FACTS and src == SHAPE_SOURCE)}
        order = [src for src in self.priority if src in used]
        text = "+".join(order) if order else "defaults"
        if self.sources.get("class_names", "").startswith("default"):
            text += "; class_names: default indices 0..C-1 (none in metadata)"
        return text


def merge(layers: Sequence[tuple[str, Mapping[str, Any]]], overrides: Mapping[str, Any] | None) -> Resolved:
    """Merge ``overrides`` (flags) over ``layers`` (``(source name, values)``, highest first)."""
    flags = normalise(dict(overrides or {}), "flags", allowed=OVERRIDE_KEYS)
    res = Resolved()
    res.num_classes = flags.pop("num_classes", None)
    res.priority = ["flags", *(name for name, _ in layers)]
    for source, values in [("flags", flags), *layers]:
        for key, value in values.items():
            if key not in res.values:
                res.values[key] = value
                res.sources[key] = source
    for key, value in DEFAULTS.items():
        if key not in res.values:
            res.values[key] = value
            res.sources[key] = "default"
    names = res.values.get("class_names")
    if names is not None and res.num_classes is not None and len(names) != res.num_classes:
        raise UsageError(
            f"--num-classes {res.num_classes} disagrees with {len(names)} class names from {res.sources['class_names']}"
        )
    return res


def missing_error(model: str, res: Resolved, found: dict[str, Any] | None = None) -> MissingMetadataError:
    """The one-line error for missing preprocessing, naming where to put it."""
    missing = res.missing()
    sidecar = sidecar_candidates(model)[0] if not model.startswith("timm:") else "<checkpoint>.json"
    return MissingMetadataError(
        f"{model}: no {', '.join(missing)} in the model's metadata; supply a sidecar {sidecar} "
        f"(the JSON object evalsuite.models.export.preprocessing_dict writes) or the flags {HOW_TO_SUPPLY}",
        found,
    )


def finish_class_names(res: Resolved, num_outputs: int, model: str) -> tuple[str, ...]:
    """Class names checked against the model's output width, or the default ``"0".."C-1"``."""
    if res.num_classes is not None and res.num_classes != num_outputs:
        raise ModelError(f"{model}: --num-classes {res.num_classes} but the model outputs {num_outputs} logits")
    names = res.values.get("class_names")
    if names is None:
        names = tuple(str(i) for i in range(num_outputs))
        res.values["class_names"] = names
        res.sources["class_names"] = "default indices"
        return names
    if len(names) != num_outputs:
        raise ModelError(
            f"{model}: {len(names)} class names (from {res.sources['class_names']}) but the model outputs "
            f"{num_outputs} logits"
        )
    return tuple(names)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's contents, streamed."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def one_line(exc: BaseException, limit: int = 240) -> str:
    """An exception's message squeezed onto one line (for wrapping library errors)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class InputLayout:
    """How a network's rank-4 image input is laid out: ``layout`` (``NCHW`` | ``NHWC``),
    ``channels`` (1 or 3; ``None`` when the shape leaves it open) and the fixed batch, height and
    width (``None`` where symbolic)."""

    layout: str
    channels: int | None
    batch: int | None
    height: int | None
    width: int | None


def _fixed_dim(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else None


def input_layout(shape: Sequence[Any], source: str, declared: str | None = None, *, name: str = "input") -> InputLayout:
    """Read layout and channels off a rank-4 input shape (ints, or names for symbolic dimensions).

    ``declared`` (``--layout`` or metadata ``layout``) decides when given; otherwise the shape
    does: a channel count of 1 or 3 at dimension 1 is ``NCHW``, at dimension 3 with dimension 1
    neither 1 nor 3 (so it cannot be NCHW channels) is ``NHWC`` (``1 x 224 x 224 x 3`` from
    tf2onnx / Keras), and a symbolic dimension 1 with dimension 3 not 1 or 3 stays ``NCHW`` (the
    contract). A shape that reads both ways (``N x 3 x H x 3``) needs ``--layout``; one with no
    dimension of 1 or 3 in either place is refused. Raises :class:`ModelError` (one line).
    """
    dims = list(shape)
    if len(dims) != 4:
        raise ModelError(f"{source}: input {name!r} has rank {len(dims)} (shape {dims}); evalsuite needs N x C x H x W "
                         f"or N x H x W x C with C 1 or 3")
    d1, d3 = _fixed_dim(dims[1]), _fixed_dim(dims[3])
    nchw_ok = d1 in CHANNELS or (d1 is None and d3 not in CHANNELS)
    nhwc_ok = d3 in CHANNELS and d1 not in CHANNELS
    if declared is not None:
        layout = str(declared).upper()
        cdim = d1 if layout == "NCHW" else d3
        if cdim is not None and cdim not in CHANNELS:
            other = " (it reads as NHWC: drop --layout nchw)" if layout == "NCHW" and nhwc_ok else ""
            raise ModelError(f"{source}: input {name!r} has shape {dims}: {cdim} channels in {layout}, expected 1 or 3"
                             f"{other}")
    elif d1 in CHANNELS and d3 in CHANNELS:
        raise ModelError(f"{source}: input {name!r} has shape {dims}, which reads as NCHW and as NHWC; "
                         f"pass --layout nchw or --layout nhwc (or metadata 'layout')")
    elif nchw_ok:
        layout = "NCHW"
    elif nhwc_ok:
        layout = "NHWC"
    else:
        raise ModelError(f"{source}: input {name!r} has shape {dims}: neither dimension 1 (NCHW) nor dimension 3 "
                         f"(NHWC) is 1 (grayscale) or 3 (RGB) channels")
    if layout == "NCHW":
        return InputLayout(layout, d1, _fixed_dim(dims[0]), _fixed_dim(dims[2]), _fixed_dim(dims[3]))
    return InputLayout(layout, d3, _fixed_dim(dims[0]), _fixed_dim(dims[1]), _fixed_dim(dims[2]))


def apply_input_layout(res: Resolved, found: InputLayout, source: str) -> None:
    """Record ``found`` (read off the input shape) in ``res``: layout and a fixed channel count
    come from the shape unless declared, and must agree with what metadata declares; a
    single-channel model's mean and std must be one value each (they apply to the luma channel)."""
    declared = res.sources.get("layout", "default") != "default"
    if not declared:
        res.values["layout"], res.sources["layout"] = found.layout, SHAPE_SOURCE
    if found.channels is not None:
        if res.sources.get("channels", "default") != "default" and res.values["channels"] != found.channels:
            raise ModelError(f"{source}: channels = {res.values['channels']} (from {res.sources['channels']}) but the "
                             f"model's input has {found.channels}")
        res.values["channels"], res.sources["channels"] = found.channels, SHAPE_SOURCE
    check_channel_stats(res, source)


def check_channel_stats(res: Resolved, source: str) -> None:
    """A single-channel model takes one mean and one std (given once, or three equal values)."""
    if res.values.get("channels") != 1:
        return
    for key in ("mean", "std"):
        vals = res.values.get(key)
        if vals is not None and len(set(vals)) != 1:
            where = res.sources.get(key, "metadata")
            raise (UsageError if where == "flags" else ModelError)(
                f"{source}: the model takes 1 (grayscale) channel but {key} from {where} has 3 different values "
                f"{list(vals)}; give one value"
            )
