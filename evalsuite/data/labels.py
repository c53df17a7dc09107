"""Map a dataset's raw labels onto a model's class indices -- exactly, or not at all.

String labels (folder names, manifest strings) are looked up in the model's class names.
Integer labels are looked up as ``str(label)``: they act as indices when the model's classes are
the default ``"0" .. "C-1"``, and map by name when the model's classes are other integers
written as strings (``"3", "5", "7"``). Any label the model does not know is an error listing up
to five of them and the model's classes: a silent remap would report a wrong accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evalsuite.data.base import Dataset
from evalsuite.errors import DataError


def _shorten(items: Sequence[str], limit: int) -> str:
    shown = ", ".join(repr(s) for s in items[:limit])
    return shown + (f", ... ({len(items)} total)" if len(items) > limit else "")


def _label_kind(labels: np.ndarray) -> str:
    if labels.dtype.kind in "iu":
        return "int"
    if labels.dtype.kind == "f":
        finite = np.isfinite(labels)
        if finite.all() and np.all(labels == np.round(labels)):
            return "int"
        return "bad"
    if labels.dtype.kind in "US":
        return "str"
    if labels.dtype.kind == "O":
        kinds = {"int" if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else
                 "str" if isinstance(v, str) else "bad" for v in labels}
        if len(kinds) == 1:
            return kinds.pop()
        return "mixed" if "bad" not in kinds else "bad"
    return "bad"


def resolve_labels(dataset: Dataset, class_names: Sequence[str]) -> np.ndarray:
    """``int64`` model class index for every sample of ``dataset`` (rules in the module docstring).

    Raises :class:`DataError` when labels are neither integers nor strings, or when some label
    is not among ``class_names``.
    """
    names = [str(c) for c in class_names]
    if not names:
        raise DataError("the model has no classes")
    labels = np.asarray(dataset.labels)
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int64)
    kind = _label_kind(labels)
    if kind in ("bad", "mixed"):
        what = "a mix of integers and strings" if kind == "mixed" else f"values of dtype {labels.dtype}"
        raise DataError(f"labels of {dataset.name} are {what}; expected all integers or all strings")
    if kind == "int":
        keys = [str(int(v)) for v in labels]
    else:
        keys = [str(v) for v in labels]
    index = {name: i for i, name in enumerate(names)}
    out = np.empty(len(keys), dtype=np.int64)
    unknown: dict[str, None] = {}
    for i, k in enumerate(keys):
        j = index.get(k)
        if j is None:
            unknown.setdefault(k, None)
            out[i] = -1
        else:
            out[i] = j
    if unknown:
        missing = sorted(unknown, key=lambda s: (len(s), s))
        hint = ""
        if kind == "int" and names != [str(i) for i in range(len(names))]:
            hint = "; integer labels need class names '0'..'C-1' (pass --class-names) or string labels"
        raise DataError(
            f"{len(missing)} label(s) of {dataset.name} are not among the model's classes "
            f"(not a silent remap): {_shorten(missing, 5)}; model classes: {_shorten(names, 20)}{hint}"
        )
    return out
