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
    ("std", "Std"), ("channel_order", "Channel order"), ("layout", "Input layout"), ("channels", "Channels"),
    ("output_name", "Output used"), ("temperature", "Temperature"), ("metadata_source", "Preprocessing from"),
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


def _quantization(q: dict[str, Any]) -> str:
    """``INT8 QDQ (QuantizeLinear 12, DequantizeLinear 22); MinMax on 256 samples of D (seed 0); from F``."""
    found = list(q.get("integer_types") or [])
    types = "INT8" if found and set(found) <= {"INT8", "UINT8"} else "/".join(found) or "integer"
    ops = ", ".join(f"{k} {v}" for k, v in (q.get("ops") or {}).items())
    text = f"{types} {q.get('format', '?')} ({ops or 'no quantization operators'})"
    rec = q.get("record")
    if not rec:
        return text + "; no evalsuite quantization record"
    cal = rec.get("calibration") or {}
    src = rec.get("source_model") or {}
    return (f"{text}; weights {rec.get('weight_type')} {'per channel' if rec.get('per_channel') else 'per tensor'}, "
            f"activations {rec.get('activation_type')}; {rec.get('calibrate_method')} calibration on {cal.get('n')} "
            f"samples of {cal.get('data')} (seed {cal.get('seed')}); from {src.get('file')} "
            f"(sha256 {str(src.get('sha256'))[:12]})")


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
        elif key in ("mean", "std") and info.get("channels") == 1:
            value = list(value)[:1]  # one luma channel: one value
        elif key == "channel_order" and info.get("channels") == 1:
            value = "not applicable (one channel)"
        elif key == "channels":
            value = {1: "1 (grayscale: fed BT.601 luma of the RGB image)", 3: "3 (RGB)"}.get(value, value)
        elif key == "layout" and value == "NHWC":
            value = "NHWC (channels last; evalsuite permutes its NCHW batches)"
        elif key == "output_name":
            others = list((info.get("extra") or {}).get("ignored_outputs") or [])
            value = f"{value} (not read: {', '.join(map(str, others))})" if others else value
        lines.append(f"{label.ljust(width)}{plain(value)}")
    for key in ("inputs", "outputs"):
        for t in inspection.get(key) or []:
            lines.append(f"{key[:-1].capitalize().ljust(width)}{_tensor(t)}")
    extra = info.get("extra") or {}
    other = dict(extra.get("metadata_extra") or {})
    if inspection.get("quantization"):  # shown on its own line, without the per-sample digests
        other.pop("quantization", None)
    if other:
        lines.append(f"{'Other metadata'.ljust(width)}{plain(other)}")
    if inspection.get("metadata_fields"):
        lines.append(f"{'Field sources'.ljust(width)}{_sources(inspection['metadata_fields'])}")
    for key, value in inspection.items():
        if key in _SHOWN or key in ("inputs", "outputs", "problems"):
            continue
        text = _quantization(value) if key == "quantization" and isinstance(value, dict) else plain(value)
        lines.append(f"{key.replace('_', ' ').capitalize().ljust(width)}{text}")
    problems = inspection.get("problems") or []
    lines.append(f"{'Problems'.ljust(width)}{'none' if not problems else ''}")
    lines += [f"  - {plain(p)}" for p in problems]
    return "\n".join(lines)
