"""``evalsuite inspect`` as text for people: the effective settings once, then what the file holds.

:func:`evalsuite.models.inspect_model` returns one dict per format (the JSON of ``--json``);
it repeats the effective preprocessing under ``info`` and ``metadata`` and keeps runtime
details in ``info.extra``. This prints each fact once, without Python reprs.
"""

from __future__ import annotations

from typing import Any

#: The effective settings, in reading order, with their labels.
_SETTINGS = (
    ("source", "Model"), ("format", "Format"), ("sha256", "sha256"), ("num_classes", "Classes"),
    ("input_size", "Input size"), ("resize", "Resize"), ("interpolation", "Interpolation"), ("mean", "Mean"),
    ("std", "Std"), ("channel_order", "Channel order"), ("temperature", "Temperature"),
    ("metadata_source", "Preprocessing from"),
)
# Keys of the inspection dict already shown through ``info`` (or internal to it).
_SHOWN = {"info", "metadata", "metadata_fields", "metadata_source", "source", "format", "extra"}


def plain(value: Any) -> str:
    """A value as text: lists joined with commas, mappings as ``key=value``, None as ``none``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}={plain(v)}" for k, v in value.items()) if value else "none"
    return str(value)


def _tensor(t: Any) -> str:
    if isinstance(t, dict) and "name" in t:
        shape = " x ".join(str(d) for d in t.get("shape") or [])
        return f"{t['name']}: {shape or '?'} {t.get('type', '')}".rstrip()
    return plain(t)


def _sources(fields: dict[str, Any]) -> str:
    """Where each preprocessing field came from, grouped (``all from metadata_props``)."""
    groups: dict[str, list[str]] = {}
    for name, where in fields.items():
        groups.setdefault(str(where), []).append(name)
    if len(groups) == 1:
        return f"every field from {next(iter(groups))}"
    return "; ".join(f"{where}: {', '.join(names)}" for where, names in groups.items())


def format_inspection(inspection: dict[str, Any]) -> str:
    """The readable report of one model inspection."""
    info = inspection.get("info") or {}
    width = 22
    lines = []
    for key, label in _SETTINGS:
        if key not in info:
            continue
        value = info[key]
        if key == "num_classes":
            names = list(info.get("class_names") or [])
            shown = ", ".join(map(str, names[:20])) + (f", ... ({len(names) - 20} more)" if len(names) > 20 else "")
            value = f"{value}: {shown}" if names else value
        lines.append(f"{label.ljust(width)}{plain(value)}")
    for key in ("inputs", "outputs"):
        for t in inspection.get(key) or []:
            lines.append(f"{key[:-1].capitalize().ljust(width)}{_tensor(t)}")
    extra = info.get("extra") or {}
    if extra.get("metadata_extra"):
        lines.append(f"{'Other metadata'.ljust(width)}{plain(extra['metadata_extra'])}")
    if inspection.get("metadata_fields"):
        lines.append(f"{'Field sources'.ljust(width)}{_sources(inspection['metadata_fields'])}")
    for key, value in inspection.items():
        if key in _SHOWN or key in ("inputs", "outputs", "problems"):
            continue
        lines.append(f"{key.replace('_', ' ').capitalize().ljust(width)}{plain(value)}")
    problems = inspection.get("problems") or []
    lines.append(f"{'Problems'.ljust(width)}{'none' if not problems else ''}")
    lines += [f"  - {plain(p)}" for p in problems]
    return "\n".join(lines)
