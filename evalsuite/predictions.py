"""Per-condition predictions: :class:`Predictions`, :class:`PredictionSet` and their files.

:class:`Predictions` (one condition's stored outputs, aligned by row) and :class:`PredictionSet`
(all conditions of a run) are the data the runner produces and the suites summarise; they live
here, below both, so the runner never imports a suite module.

Each condition's predictions land in ``<out>/predictions/<key>.npz`` (``/`` in the key becomes
``__``) as soon as the condition completes, written atomically. A file carries the identity of
what produced it (model hash, data fingerprint, seed, condition key and parameters, sample
positions), so ``--resume`` reuses a file only when it would be recomputed identically. With
``run --reference`` the reference model's predictions of the same conditions are stored the
same way in ``<out>/predictions/reference/`` (:data:`REFERENCE_FOLDER`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.atomic_io import atomic_path
from evalsuite.conditions import measured_params, with_identity
from evalsuite.stats import softmax

EXTRA_PREFIX = "extra__"
#: Sub-folder of ``predictions/`` holding the reference model's files (``run --reference``).
REFERENCE_FOLDER = "reference"

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    """Stored outputs of one condition, aligned by row."""

    key: str
    suite: str
    params: dict[str, Any]
    index: np.ndarray  # dataset positions
    ids: np.ndarray
    labels: np.ndarray  # int class indices
    logits: np.ndarray  # float32 N x C
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def probs(self) -> np.ndarray:
        cached = self.__dict__.get("_probs")
        if cached is None:
            cached = softmax(self.logits)
            self.__dict__["_probs"] = cached
        return cached

    @property
    def predicted(self) -> np.ndarray:
        return np.argmax(self.logits, axis=1)

    @property
    def correct(self) -> np.ndarray:
        return (self.predicted == self.labels).astype(np.float64)

    @property
    def finite(self) -> np.ndarray:
        """Per-row flag: all logits finite."""
        return np.all(np.isfinite(self.logits), axis=1)


class PredictionSet(Mapping[str, Predictions]):
    """All conditions' predictions of a run, by condition key (insertion ordered).

    ``reference``: the reference model's predictions of the same conditions (``run
    --reference``; a condition it was not scored on is absent there), or None.
    """

    def __init__(self, items: dict[str, Predictions], reference: PredictionSet | None = None) -> None:
        self._items = dict(items)
        self.reference = reference

    def __getitem__(self, key: str) -> Predictions:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def by_suite(self, suite: str) -> list[Predictions]:
        return [p for p in self._items.values() if p.suite == suite]

    @property
    def clean(self) -> Predictions:
        return self._items["clean"]


def condition_filename(key: str, part: str | None = None) -> str:
    """The file name of a condition's predictions; ``part`` names a work unit of a sharded run
    (``<key>@<part>.npz``; ``@`` never occurs in a whole condition's file name)."""
    safe = key.replace("/", "__")
    stem = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in safe)
    return stem + (f"@{part}" if part else "") + ".npz"


def identity(run_identity: dict[str, Any], key: str, params: dict[str, Any], index: np.ndarray) -> str:
    """sha256 over everything that determines a condition's predictions.

    The condition's identity (``params["condition"]``) is left out: it follows from the key, and
    files written before conditions carried one keep their hash, so ``--resume`` reuses them.
    """
    doc = {"run": run_identity, "key": key, "params": measured_params(params)}
    h = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(index, dtype=np.int64).tobytes())
    return h.hexdigest()


def read_predictions(path: Path) -> Predictions:
    """One stored prediction file, read as data (``allow_pickle=False``), without checking which
    run wrote it (``evalsuite compare`` checks the two runs' identities from their results.json).
    ValueError when it is not a prediction file."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            extras = {k[len(EXTRA_PREFIX) :]: z[k] for k in z.files if k.startswith(EXTRA_PREFIX)}
            key, suite = str(meta["key"]), str(meta["suite"])
            preds = Predictions(key=key, suite=suite, params=with_identity(key, suite, meta["params"]),
                                index=z["index"], ids=z["ids"].astype(object), labels=z["labels"],
                                logits=z["logits"], extras=extras)
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable prediction file ({type(exc).__name__})") from None
    n = len(preds.index)
    if not (len(preds.ids) == len(preds.labels) == len(preds.logits) == n) or preds.logits.ndim != 2:
        raise ValueError(f"{path} is not a readable prediction file (its arrays differ in length)")
    return preds


class PredictionStore:
    """Reads and writes the prediction files of one output folder.

    With ``part`` (a sharded run's ``<i>-of-<N>``, :mod:`evalsuite.shards`) every file is one work
    unit of a condition, ``<key>@<part>.npz``, covering that unit's contiguous share of positions.
    """

    def __init__(self, folder: Path, run_identity: dict[str, Any], part: str | None = None) -> None:
        self.folder = Path(folder)
        self.run_identity = run_identity
        self.part = part

    def path(self, key: str) -> Path:
        return self.folder / condition_filename(key, self.part)

    def load(self, key: str, params: dict[str, Any], index: np.ndarray) -> Predictions | None:
        """Stored predictions if present and produced by an identical condition, else None.

        A file that is truncated, damaged, replaced by something else or written by a different
        run is not an error: it is recomputed, and a warning says so.
        """
        import zipfile

        path = self.path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if not isinstance(meta, dict) or meta.get("identity") != identity(self.run_identity, key, params, index):
                    log.warning("resume: stored predictions of %s come from a different run; recomputing them", key)
                    return None
                extras = {k[len(EXTRA_PREFIX) :]: z[k] for k in z.files if k.startswith(EXTRA_PREFIX)}
                preds = Predictions(
                    key=key,
                    suite=meta["suite"],
                    params=with_identity(key, meta["suite"], meta["params"]),
                    index=z["index"],
                    ids=z["ids"].astype(object),
                    labels=z["labels"],
                    logits=z["logits"],
                    extras=extras,
                )
        except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError):
            log.warning("resume: stored predictions of %s are damaged or truncated; recomputing them", key)
            return None
        n = len(preds.index)
        if not (len(preds.ids) == len(preds.labels) == len(preds.logits) == n) or not np.array_equal(preds.index, index):
            log.warning("resume: stored predictions of %s do not cover the expected samples; recomputing them", key)
            return None
        return preds

    def save(self, p: Predictions) -> Path:
        """Write atomically (temporary file + rename); a killed run leaves no partial file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(p.key)
        meta = {
            "key": p.key,
            "suite": p.suite,
            "params": p.params,
            "identity": identity(self.run_identity, p.key, p.params, p.index),
        }
        arrays: dict[str, np.ndarray] = {
            "meta": np.array(json.dumps(meta, default=str)),
            "index": np.asarray(p.index, dtype=np.int64),
            "ids": np.asarray(p.ids).astype(str),
            "labels": np.asarray(p.labels, dtype=np.int64),
            "logits": np.asarray(p.logits, dtype=np.float32),
        }
        for name, arr in p.extras.items():
            a = np.asarray(arr)
            arrays[EXTRA_PREFIX + name] = a.astype(str) if a.dtype == object else a
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        return path
