"""The one typed loader for option mappings: YAML/CLI values checked against dataclass fields.

A dataclass's type hints are the schema: ``int``, ``float``, ``bool``, ``str``, ``X | None``,
``list[X]``, ``dict[...]`` and nested dataclasses. :func:`build` turns a plain mapping into the
dataclass, raising :class:`~evalsuite.errors.UsageError` with the full dotted key and a
did-you-mean hint for an unknown key or a wrong-typed value, never a silent cast: ``"zero"`` is
not a seed, ``"no"`` is not a boolean (YAML's own ``no``/``false`` already arrive as ``False``).
Numbers may be written as fractions (``8/255``). Used by run configs (:mod:`evalsuite.config`)
and training recipes (:mod:`training.config`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from fractions import Fraction
from typing import Any, Union

from evalsuite.errors import UsageError
from evalsuite.registry import did_you_mean


def to_plain(obj: Any) -> Any:
    """Dataclasses, dicts and sequences as plain JSON-able containers."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def parse_number(value: Any, where: str, kind: type) -> Any:
    """``value`` as ``kind`` (int or float); fractions such as ``8/255`` are accepted."""
    if isinstance(value, bool):
        raise UsageError(f"{where} must be a number, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(Fraction(text)) if "/" in text else float(text)
        except (ValueError, ZeroDivisionError):
            raise UsageError(f"{where} must be a number (or a fraction such as 8/255), got {value!r}") from None
    if not isinstance(value, (int, float)):
        raise UsageError(f"{where} must be a number, got {type(value).__name__}")
    if kind is int:
        if float(value) != int(value):
            raise UsageError(f"{where} must be an integer, got {value!r}")
        return int(value)
    return float(value)


def coerce(value: Any, tp: Any, where: str, what: str = "key") -> Any:
    """``value`` checked against the type hint ``tp`` (see the module docstring)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return coerce(value, args[0], where, what)
    if dataclasses.is_dataclass(tp):
        if value is None:
            return tp()
        if not isinstance(value, dict):
            raise UsageError(f"{where} must be a mapping, got {type(value).__name__}")
        return build(tp, value, where, what)
    if value is None:
        raise UsageError(f"{where} may not be null")
    if tp is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{where} must be true or false, got {value!r}")
        return value
    if tp in (int, float):
        return parse_number(value, where, tp)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UsageError(f"{where} must be a string, got {value!r}")
        return str(value)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{where} must be a list, got {value!r}")
        return [coerce(v, item, f"{where}[{i}]", what) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UsageError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    return value


def build(cls: type, data: dict[str, Any], prefix: str = "", what: str = "key") -> Any:
    """An instance of dataclass ``cls`` from ``data``; ``what`` names the keys in messages ("recipe key")."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key).replace("-", "_")
        where = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise UsageError(f"unknown {what} {where!r}{did_you_mean(key, names)}; valid here: {', '.join(names)}")
        kwargs[key] = coerce(value, hints[key], where, what)
    return cls(**kwargs)
