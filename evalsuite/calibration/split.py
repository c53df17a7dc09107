"""The calibration / held-out split: seeded, stratified, keyed on sample ids.

Within every class the samples are ranked by ``blake2b(seed, "calibration/split", sample id)``
(:func:`evalsuite.stats.hash_order`) and the first ``floor(fraction * n_class + 0.5)`` go to
the calibration part (:func:`evalsuite.stats.stratified_split`). The split therefore depends
only on (seed, fraction, ids, labels): not on sample order, batch size or which other samples
are present, so the same image lands on the same side in every condition of a run (shifted
copies of calibration images are never scored as held-out). A fingerprint of the calibration
ids is recorded so auditors can check it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalsuite.errors import DataError, UsageError

SPLIT_KEY = "calibration/split"


@dataclass(frozen=True)
class CalibrationSplit:
    """Positions (into the arrays given to :func:`stratified_split`) of both parts."""

    calibration: np.ndarray
    heldout: np.ndarray
    fraction: float
    seed: int
    ids_sha256: str

    def record(self) -> dict[str, Any]:
        """What results.json and model metadata store about the split."""
        return {
            "source": "split",
            "method": "stratified by class, samples ranked by blake2b(seed, 'calibration/split', id)",
            "fraction": self.fraction,
            "seed": self.seed,
            "n_calibration": int(len(self.calibration)),
            "n_heldout": int(len(self.heldout)),
            "calibration_ids_sha256": self.ids_sha256,
        }


def check_fraction(fraction: Any, what: str = "calibration_fraction") -> float:
    """``fraction`` as a float strictly between 0 and 1 (UsageError otherwise)."""
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number between 0 and 1, got {fraction!r}") from None
    if not 0.0 < f < 1.0:
        raise UsageError(f"{what} must lie strictly between 0 and 1, got {f:g}")
    return f


def ids_fingerprint(ids: np.ndarray) -> str:
    """sha256 over the sorted ids (newline separated)."""
    h = hashlib.sha256()
    for s in sorted(str(i) for i in ids):
        h.update(s.encode())
        h.update(b"\n")
    return h.hexdigest()


def stratified_split(ids: Any, labels: Any, fraction: float = 0.5, seed: int = 0) -> CalibrationSplit:
    """Split samples into calibration and held-out parts (see the module docstring).

    Raises :class:`DataError` when either part would be empty.
    """
    from evalsuite.stats import fraction_sizes, hash_order
    from evalsuite.stats import stratified_split as split_parts

    fraction = check_fraction(fraction)
    ids = np.asarray(ids).astype(str)
    labels = np.asarray(labels, dtype=np.int64)
    if len(ids) != len(labels):
        raise ValueError(f"{len(ids)} ids but {len(labels)} labels")
    cal, held = split_parts(labels, fraction_sizes(fraction, "half_up"), hash_order(seed, SPLIT_KEY, ids))
    if len(cal) == 0 or len(held) == 0:
        raise DataError(
            f"cannot split {len(labels)} samples into calibration and held-out parts with fraction {fraction:g}; "
            "use more data or --calibration-data"
        )
    return CalibrationSplit(cal.astype(np.int64), held.astype(np.int64), fraction, int(seed), ids_fingerprint(ids[cal]))
