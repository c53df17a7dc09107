"""The one typed loader for option mappings: YAML/CLI values checked against dataclass fields.

A dataclass's type hints are the schema: ``int``, ``float``, ``bool``, ``str``, ``X | None``,
``X | Y`` (a value that already has one alternative's shape takes it: ``"all"`` for
``str | list[str]``, ``[1, 3]`` for ``int | list[int]``), ``list[X]``, ``dict[...]``, nested
dataclasses and ``Any`` (taken as given). :func:`build` turns a plain mapping into the
dataclass, raising :class:`~evalsuite.errors.UsageError` with the full dotted key and a
did-you-mean hint for an unknown key or a wrong-typed value, never a silent cast: ``"zero"`` is
not a seed, ``"no"`` is not a boolean (YAML's own ``no``/``false`` already arrive as ``False``).
Numbers may be written as fractions (``8/255``). Used by run configs (:mod:`evalsuite.config`),
suite options (``Suite.Options``, :mod:`evalsuite.suites.base`) and training recipes
(:mod:`training.config`). Range checks and enumerations the types cannot express belong in the
dataclass's ``__post_init__``.
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
    noun = "an integer" if kind is int else "a number"
    if isinstance(value, bool):
        raise UsageError(f"{where} must be {noun}, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(Fraction(text)) if "/" in text else float(text)
        except (ValueError, ZeroDivisionError):
            hint = "" if kind is int else " (or a fraction such as 8/255)"
            raise UsageError(f"{where} must be {noun}{hint}, got {value!r}") from None
    if not isinstance(value, (int, float)):
        raise UsageError(f"{where} must be {noun}, got {type(value).__name__}")
    if kind is int:
        if float(value) != int(value):
            raise UsageError(f"{where} must be an integer, got {value!r}")
        return int(value)
    return float(value)


def _shape_matches(value: Any, tp: Any) -> bool:
    """Whether ``value`` already has the shape of ``tp`` (no conversion needed to try it)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, (list, tuple))
    if origin is dict or dataclasses.is_dataclass(tp):
        return isinstance(value, dict)
    return False


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce_union(value: Any, args: list[Any], where: str, what: str) -> Any:
    """``value`` against ``X | Y | ...``: the first alternative whose shape it has, else the first
    that converts it (``"3"`` for ``int | list[int]``), else one error naming every alternative."""
    for tp in args:
        if _shape_matches(value, tp):
            return coerce(value, tp, where, what)
    for tp in args:
        try:
            return coerce(value, tp, where, what)
        except UsageError:
            continue
    names = list(dict.fromkeys(_describe(tp) for tp in args))
    wanted = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
    raise UsageError(f"{where} must be {wanted}, got {value!r}")


def coerce(value: Any, tp: Any, where: str, what: str = "key") -> Any:
    """``value`` checked against the type hint ``tp`` (see the module docstring)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) > 1:
            return _coerce_union(value, args, where, what)
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
            raise UsageError(f"unknown {what} {where!r}{did_you_mean(key, names)}; valid here: {', '.join(names) or '(none)'}")
        kwargs[key] = coerce(value, hints[key], where, what)
    return cls(**kwargs)
