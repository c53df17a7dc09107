"""Plausible preprocessing mistakes, as alternative pipelines of a model (the ``preprocessing`` suite).

A model's declared preprocessing (:class:`~evalsuite.models.base.ModelInfo`) is a
:class:`Pipeline`: geometry (input size, shorter-side ``resize`` + centre crop or a plain resize,
``interpolation``) applied by the data loader, and values (channel order, input scale, mean/std)
applied inside :meth:`Model.predict`. A :class:`Variant` is the declared pipeline with exactly one
of those facts replaced by the value a common mistake would have used: the other channel order,
a [0, 255] input scale, another usual normalisation (ImageNet, 0.5, none), resize + centre crop
instead of a plain resize (or the reverse), bilinear instead of bicubic (or the reverse). Only
alternatives that differ from the declared pipeline are listed (:func:`variants_for`).

Geometry variants are evaluated by re-reading the images with the data loader under the
variant's ``resize`` / ``interpolation`` (there is one image pipeline). Value variants act on the
[0, 1] RGB tensor: :func:`value_transform` returns ``x'`` such that the model's own value
preprocessing of ``x'`` is exactly the variant's preprocessing of ``x``, so the network sees what
it would see had it been fed under the variant (``model.predict`` is never bypassed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB order
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
NONE_MEAN, NONE_STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

#: The families of alternatives, in report order; ``variants:`` of the suite names these.
FAMILIES = ("channel_order", "scale", "normalisation", "resize", "interpolation")
#: Default share of the resized image a centre crop keeps (torchvision / timm's 0.875).
CROP_FRACTION = 0.875
_TOL = 1e-4  # two normalisations closer than this per channel are the same one


@dataclass(frozen=True)
class Pipeline:
    """Everything that decides what the network receives for an image.

    ``mean``/``std`` are in the network's channel order (as :class:`ModelInfo` holds them);
    ``scale`` multiplies the [0, 1] pixels before normalisation (1: the evalsuite contract,
    255: a network fed 0-255 values).
    """

    input_size: tuple[int, int]
    resize: int | None
    interpolation: str
    channel_order: str
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channels: int = 3  # 1: a grayscale network fed luma, normalised by the first mean/std value

    @classmethod
    def of(cls, info: Any) -> Pipeline:
        """The declared pipeline of a :class:`~evalsuite.models.base.ModelInfo`."""
        return cls(
            input_size=(int(info.input_size[0]), int(info.input_size[1])),
            resize=None if info.resize is None else int(info.resize),
            interpolation=str(info.interpolation),
            channel_order=str(info.channel_order).upper(),
            scale=1.0,
            mean=_triple(info.mean),
            std=_triple(info.std),
            channels=int(getattr(info, "channels", 3) or 3),
        )

    def geometry(self) -> tuple[int | None, str]:
        """(resize, interpolation): what the data loader needs besides the input size."""
        return self.resize, self.interpolation

    def describe(self) -> dict[str, Any]:
        """JSON form for results.json's report data."""
        return {
            "input_size": list(self.input_size), "resize": self.resize, "interpolation": self.interpolation,
            "channel_order": self.channel_order, "scale": self.scale, "mean": list(self.mean), "std": list(self.std),
        }


@dataclass(frozen=True)
class Variant:
    """One alternative pipeline: ``name`` is its gate-path segment, ``change`` says what differs."""

    name: str
    family: str
    label: str
    change: str
    pipeline: Pipeline

    @property
    def changes_geometry(self) -> bool:
        return self.family in ("resize", "interpolation")


def _triple(values: Any) -> tuple[float, float, float]:
    """Three per-channel floats (a single value, as a grayscale model may declare, repeated)."""
    v = [float(x) for x in values]
    return (v[0], v[0], v[0]) if len(v) == 1 else (v[0], v[1], v[2])


def _same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(abs(x - y) <= _TOL for x, y in zip(a, b, strict=True))


def _in_order(rgb: tuple[float, float, float], channel_order: str) -> tuple[float, float, float]:
    """An RGB-ordered per-channel triple in the network's channel order."""
    return rgb[::-1] if channel_order == "BGR" else rgb


def _norm_text(mean: tuple[float, ...], std: tuple[float, ...]) -> str:
    return f"mean ({', '.join(f'{v:g}' for v in mean)}), std ({', '.join(f'{v:g}' for v in std)})"


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def resize_for_crop(input_size: tuple[int, int], crop_fraction: float = CROP_FRACTION) -> int:
    """Shorter side to resize to before a centre crop of ``input_size`` keeping ``crop_fraction``
    (timm's ``floor(size / crop_pct)``; 32 -> 36, 224 -> 256)."""
    return int(math.floor(max(input_size) / crop_fraction))


def variants_for(info: Any, families: tuple[str, ...] | list[str] = FAMILIES,
                 crop_fraction: float = CROP_FRACTION) -> list[Variant]:
    """The alternatives to ``info``'s declared pipeline, one fact changed each, in family order."""
    base = Pipeline.of(info)
    out: list[Variant] = []
    for family in FAMILIES:
        if family not in families:
            continue
        if family == "channel_order":
            if base.channels == 1:  # a grayscale network sees luma: channel order does not reach it
                continue
            other = "RGB" if base.channel_order == "BGR" else "BGR"
            out.append(Variant(other.lower(), family, f"{other} input",
                               f"channel order {base.channel_order} -> {other}", replace(base, channel_order=other)))
        elif family == "scale":
            out.append(Variant("scale_255", family, "0-255 input", "input scale [0, 1] -> [0, 255]",
                               replace(base, scale=255.0)))
        elif family == "normalisation":
            for name, label, mean, std in (("norm_imagenet", "ImageNet mean/std", IMAGENET_MEAN, IMAGENET_STD),
                                           ("norm_half", "0.5 mean/std", HALF, HALF),
                                           ("norm_none", "no normalisation", NONE_MEAN, NONE_STD)):
                m, s = _in_order(mean, base.channel_order), _in_order(std, base.channel_order)
                if _same(m, base.mean) and _same(s, base.std):
                    continue
                out.append(Variant(name, family, label,
                                   f"{_norm_text(base.mean, base.std)} -> {_norm_text(m, s)}",
                                   replace(base, mean=m, std=s)))
        elif family == "resize":
            size = _size_text(base.input_size)
            if base.resize is None:
                s = resize_for_crop(base.input_size, crop_fraction)
                out.append(Variant("resize_crop", family, "resize + centre crop",
                                   f"resize to {size} -> shorter side to {s}, centre crop {size}",
                                   replace(base, resize=s)))
            else:
                out.append(Variant("plain_resize", family, "plain resize",
                                   f"shorter side to {base.resize}, centre crop {size} -> resize to {size}",
                                   replace(base, resize=None)))
        elif family == "interpolation":
            others = {"bilinear": ("bicubic",), "bicubic": ("bilinear",)}.get(base.interpolation, ("bilinear", "bicubic"))
            for other in others:
                out.append(Variant(other, family, f"{other} interpolation",
                                   f"interpolation {base.interpolation} -> {other}", replace(base, interpolation=other)))
    return out


def value_transform(x: Any, declared: Pipeline, variant: Pipeline) -> Any:
    """``x'`` (float NCHW RGB tensor) such that ``declared``'s value preprocessing of ``x'`` equals
    ``variant``'s of ``x``.

    A model normalises its input as ``(reorder(x') - mean) / std`` (``reorder`` flips the channels
    for a BGR network). The variant means the network should have received
    ``(reorder_v(x) * scale_v - mean_v) / std_v``; solving for ``x'`` gives
    ``x' = reorder(mean + std * (reorder_v(x) * scale_v - mean_v) / std_v)``. ``x'`` may leave
    [0, 1]: it is what reaches ``predict``, not an image. The identity (same values) returns ``x``.
    For a grayscale network (``channels == 1``) the same holds for the luma it is fed.
    """
    import torch

    if (variant.channel_order == declared.channel_order and variant.scale == declared.scale
            and variant.mean == declared.mean and variant.std == declared.std):
        return x

    def col(v: tuple[float, ...]) -> Any:
        # A grayscale network normalises luma by the first value; an affine map that is the same on
        # every channel commutes with luma (its weights sum to 1), so the first value is used on all.
        v = (v[0],) * 3 if declared.channels == 1 else v
        return torch.tensor(v, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)

    y = x.flip(1) if variant.channel_order == "BGR" else x
    z = (y * variant.scale - col(variant.mean)) / col(variant.std)  # what the network should see
    y_decl = z * col(declared.std) + col(declared.mean)
    return (y_decl.flip(1) if declared.channel_order == "BGR" else y_decl).contiguous()


#: Fields of a training record compared with the model's metadata, in report order.
RECORD_FIELDS = ("input_size", "resize", "interpolation", "mean", "std", "channel_order")
RECORD_KEY = "training_preprocessing"  # in the metadata's ``extra`` (written by ``evalsuite train``)


def training_record(info: Any) -> tuple[dict[str, Any] | None, str]:
    """(the training pipeline a model carries, a note): ``extra.training_preprocessing`` of its
    metadata, as :mod:`training.export` writes it. ``None`` with the reason when absent or unusable.

    The record is data from the model file: only its known fields are read, each checked for type.
    """
    meta_extra = (getattr(info, "extra", None) or {}).get("metadata_extra") or {}
    raw = meta_extra.get(RECORD_KEY) if isinstance(meta_extra, dict) else None
    if raw is None:
        return None, "The model's metadata carries no training record (extra.training_preprocessing)"
    if not isinstance(raw, dict):
        return None, "The model's training record is not a JSON object; not compared"
    record: dict[str, Any] = {}
    try:
        for key in RECORD_FIELDS:
            if key not in raw:
                continue
            value = raw[key]
            if key in ("input_size", "mean", "std"):
                if not isinstance(value, (list, tuple)) or isinstance(value, (str, bytes)):
                    raise ValueError(key)
                record[key] = [int(v) for v in value] if key == "input_size" else [float(v) for v in value]
            elif key == "resize":
                record[key] = None if value is None else int(value)
            else:
                record[key] = str(value).upper() if key == "channel_order" else str(value)
    except (TypeError, ValueError):
        return None, "The model's training record has a malformed field; not compared"
    if not record:
        return None, "The model's training record names none of the compared fields"
    return record, f"Training record from the model's metadata ({', '.join(record)})"


def compare_record(info: Any, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Field-by-field comparison of the declared pipeline with a training record:
    ``[{field, declared, trained, match}]`` for every field the record holds."""
    declared = Pipeline.of(info).describe()
    rows = []
    for key in RECORD_FIELDS:
        if key not in record:
            continue
        mine, theirs = declared[key], record[key]
        if key in ("mean", "std"):
            match = len(mine) == len(theirs) and _same(tuple(mine), tuple(theirs))
        else:
            match = mine == theirs
        rows.append({"field": key, "declared": mine, "trained": theirs, "match": bool(match)})
    return rows
