"""Slice columns: turning metadata (or derived image properties) into integer group codes.

A :class:`SliceColumn` is a column of the evaluated dataset expressed as one group code per
sample plus the group names, so every metric can be reduced with ``np.bincount``. The rules:

- **Categorical** values (strings, booleans, numbers with at most ``numeric_bins`` distinct
  values) are groups as they are, named by their text (``3``, ``0.5``, ``True``, ``north``).
- **Numeric** values with more than ``numeric_bins`` distinct finite values are binned into
  ``numeric_bins`` quantile bins (NumPy's default linear quantiles over the finite values).
  The edges are recorded (``SliceColumn.edges``); bins are closed on the right (``(lo, hi]``)
  except the first (``[lo, hi]``). Tied quantiles collapse, so a column may end with fewer
  bins than asked for; a note says so.
- **Missing** values (``None``, ``NaN``, ``±inf``, pandas ``NA``/``NaT``, empty or
  whitespace-only strings) form their own group named ``"(missing)"``, listed last. They are
  never dropped and never merged into a real group.
- **Too many groups**: a categorical column with more than ``max_groups`` distinct values keeps
  the ``max_groups - 1`` most frequent ones and pools the rest into ``"(other)"`` (with a note).
- **Intersections** of two columns (:func:`intersect`) have one group per combination that
  occurs, named ``"<a group> & <b group>"``; the column is named ``"<a>&<b>"``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evalsuite.errors import DataError, UsageError

MISSING = "(missing)"
OTHER = "(other)"
DEFAULT_NUMERIC_BINS = 4
DEFAULT_MAX_GROUPS = 50


@dataclass
class SliceColumn:
    """One slice column over the evaluated dataset.

    Attributes:
        name: the column's key in metrics and gate paths (``ink_density``, ``a&b``).
        codes: int64 group code per dataset position (``0 .. len(groups) - 1``).
        groups: group names, indexed by code.
        kind: ``categorical`` | ``numeric`` | ``intersection``.
        source: ``metadata`` | ``derived`` | ``intersection``.
        edges: quantile bin edges of a binned numeric column, else ``None``.
        notes: plain-language facts about how the column was built (pooled groups, collapsed bins).
        description: what the column measures (derived columns say how it was computed).
    """

    name: str
    codes: np.ndarray
    groups: list[str]
    kind: str
    source: str = "metadata"
    edges: list[float] | None = None
    notes: list[str] = field(default_factory=list)
    description: str = ""

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    def take(self, index: np.ndarray) -> np.ndarray:
        """Group codes of the samples at dataset positions ``index``."""
        return self.codes[np.asarray(index, dtype=np.int64)]

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts about the column (for report data)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "groups": list(self.groups),
            "edges": None if self.edges is None else [float(e) for e in self.edges],
            "notes": list(self.notes),
            "description": self.description,
        }


def _is_missing_value(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, str):
        return v.strip() == ""
    if isinstance(v, (float, np.floating)):
        return not np.isfinite(v)
    try:
        import pandas as pd

        return bool(pd.isna(v)) if np.ndim(v) == 0 else False
    except (TypeError, ValueError):
        return False


def missing_mask(values: np.ndarray) -> np.ndarray:
    """True where a value counts as missing (see the module docstring)."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        return ~np.isfinite(arr)
    if arr.dtype.kind in "iub":
        return np.zeros(arr.shape, dtype=bool)
    if arr.dtype.kind in "US":
        return np.char.strip(arr.astype(str)) == ""
    if arr.dtype.kind == "M":
        return np.isnat(arr)
    codes, uniques = _factorize(arr)
    umiss = np.array([_is_missing_value(u) for u in uniques], dtype=bool)
    return (codes < 0) | (umiss[np.maximum(codes, 0)] & (codes >= 0))


def _factorize(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code per value, distinct values) by hashing (fast on object arrays); ``NaN``/``None`` get -1."""
    import pandas as pd

    codes, uniques = pd.factorize(np.asarray(arr, dtype=object), use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64), np.asarray(uniques, dtype=object)


def _numeric_view(values: np.ndarray, missing: np.ndarray) -> np.ndarray | None:
    """float64 values when the column is numeric (bools excluded), else ``None``."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iuf":
        return arr.astype(np.float64)
    if arr.dtype.kind != "O":
        return None
    codes, uniques = _factorize(arr)
    present = [u for u in uniques if not _is_missing_value(u)]
    if not present or not all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in present):
        return None
    uvals = np.array([float(u) if not _is_missing_value(u) else np.nan for u in uniques], dtype=np.float64)
    out = np.where(codes >= 0, uvals[np.maximum(codes, 0)] if uvals.size else np.nan, np.nan)
    return np.where(missing, np.nan, out)


def format_number(x: float) -> str:
    """Short text for a number in a group name (integers without a decimal point)."""
    x = float(x)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.4g}"


def _categorical(name: str, values: np.ndarray, missing: np.ndarray, max_groups: int, numeric: np.ndarray | None) -> SliceColumn:
    notes: list[str] = []
    if numeric is not None:
        uniq = np.unique(numeric[~missing])
        labels = [format_number(u) for u in uniq]
        codes = np.searchsorted(uniq, np.where(missing, uniq[0] if uniq.size else 0.0, numeric)).astype(np.int64)
    else:
        raw_codes, uniques = _factorize(np.asarray(values))
        text = np.array([str(u) for u in uniques], dtype=object)
        # distinct values with the same text (1 and "1") are one group; sort groups by name
        labels_arr, remap = np.unique(text.astype(str), return_inverse=True) if text.size else (np.array([], dtype=str), np.array([], dtype=np.int64))
        codes = np.where(raw_codes >= 0, np.asarray(remap, dtype=np.int64).ravel()[np.maximum(raw_codes, 0)] if text.size else 0, 0)
        # labels of values that are only ever missing (e.g. "") must not become groups
        used = np.zeros(len(labels_arr), dtype=bool)
        used[np.unique(codes[~missing])] = True
        keep = np.flatnonzero(used)
        squeeze = np.full(len(labels_arr), 0, dtype=np.int64)
        squeeze[keep] = np.arange(len(keep))
        codes = squeeze[codes] if len(labels_arr) else codes
        labels = [str(labels_arr[k]) for k in keep]
    codes = np.asarray(codes, dtype=np.int64)
    if len(labels) > max_groups:
        counts = np.bincount(codes[~missing], minlength=len(labels))
        order = sorted(range(len(labels)), key=lambda k: (-counts[k], labels[k]))
        keep_idx = sorted(order[: max_groups - 1])
        remap2 = np.full(len(labels), len(keep_idx), dtype=np.int64)
        remap2[keep_idx] = np.arange(len(keep_idx))
        pooled = len(labels) - len(keep_idx)
        notes.append(f"{pooled} rare values pooled into {OTHER!r} (more than {max_groups} groups)")
        labels = [labels[k] for k in keep_idx] + [OTHER]
        codes = remap2[codes]
    if missing.any():
        codes = np.where(missing, len(labels), codes)
        labels = labels + [MISSING]
        notes.append(f"{int(missing.sum())} samples with no value form the group {MISSING!r}")
    return SliceColumn(name=name, codes=codes.astype(np.int64), groups=labels, kind="categorical", notes=notes)


def quantile_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Distinct quantile edges (``<= n_bins + 1`` values) of the finite ``values``."""
    finite = values[np.isfinite(values)]
    return np.unique(np.quantile(finite, np.linspace(0.0, 1.0, n_bins + 1)))


def bin_codes(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each value: first bin ``[e0, e1]``, then ``(e_k, e_k+1]``; values outside clip."""
    inner = edges[1:-1]
    return np.searchsorted(inner, values, side="left").astype(np.int64)


def bin_labels(edges: np.ndarray) -> list[str]:
    """``[lo, hi]`` for the first bin and ``(lo, hi]`` for the rest."""
    out = []
    for k in range(len(edges) - 1):
        left = "[" if k == 0 else "("
        out.append(f"{left}{format_number(edges[k])}, {format_number(edges[k + 1])}]")
    return out


def prepare_column(
    name: str,
    values: Any,
    *,
    numeric_bins: int = DEFAULT_NUMERIC_BINS,
    max_groups: int = DEFAULT_MAX_GROUPS,
    source: str = "metadata",
    description: str = "",
) -> SliceColumn:
    """A :class:`SliceColumn` from raw values (see the module docstring for the rules)."""
    if numeric_bins < 2:
        raise UsageError(f"numeric_bins must be at least 2, got {numeric_bins}")
    if max_groups < 2:
        raise UsageError(f"max_groups must be at least 2, got {max_groups}")
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(f"slice column {name!r} must be one value per sample, got shape {arr.shape}")
    missing = missing_mask(arr)
    numeric = _numeric_view(arr, missing)
    if numeric is not None:
        missing = missing | ~np.isfinite(numeric)
    n_distinct = len(np.unique(numeric[~missing])) if numeric is not None else 0
    if numeric is None or n_distinct <= numeric_bins:
        col = _categorical(name, arr, missing, max_groups, numeric)
        col.source, col.description = source, description
        return col
    edges = quantile_bins(numeric, numeric_bins)
    labels = bin_labels(edges)
    codes = bin_codes(np.where(missing, edges[0], numeric), edges)
    notes = [f"numeric: {numeric_bins} quantile bins requested, edges " + ", ".join(format_number(e) for e in edges)]
    if len(labels) < numeric_bins:
        notes.append(f"tied quantiles left {len(labels)} bins instead of {numeric_bins}")
    if missing.any():
        codes = np.where(missing, len(labels), codes)
        labels = labels + [MISSING]
        notes.append(f"{int(missing.sum())} samples with no value form the group {MISSING!r}")
    return SliceColumn(
        name=name,
        codes=codes.astype(np.int64),
        groups=labels,
        kind="numeric",
        source=source,
        edges=[float(e) for e in edges],
        notes=notes,
        description=description,
    )


def intersect(a: SliceColumn, b: SliceColumn) -> SliceColumn:
    """The intersection of two columns: one group per combination present in the data."""
    if len(a) != len(b):
        raise DataError(f"cannot intersect {a.name!r} and {b.name!r}: lengths {len(a)} and {len(b)} differ")
    combo = a.codes * b.n_groups + b.codes
    present, codes = np.unique(combo, return_inverse=True)
    groups = [f"{a.groups[c // b.n_groups]} & {b.groups[c % b.n_groups]}" for c in present]
    return SliceColumn(
        name=f"{a.name}&{b.name}",
        codes=np.asarray(codes, dtype=np.int64).ravel(),
        groups=groups,
        kind="intersection",
        source="intersection",
        notes=[f"intersection of {a.name!r} ({a.n_groups} groups) and {b.name!r} ({b.n_groups} groups): "
               f"{len(groups)} combinations occur"],
        description=f"every combination of {a.name} and {b.name}",
    )
