"""Work units of a sharded run: ``--shard i/N``, the units folder beside ``--out``, and merging.

A *work unit* is (condition, a contiguous share of the condition's sample positions). Shard
``i`` of ``N`` takes share ``i`` of every condition: the condition's positions are cut into
blocks (the attack batch for attack conditions, ``--batch-size`` for the rest) and the blocks
are split into ``N`` contiguous runs as evenly as whole blocks allow (:func:`unit_bounds`). No
position is padded or repeated, and every batch a shard forms is exactly a batch the
single-process run forms, so the predictions are identical: randomness is keyed on (seed,
condition, sample id), attacks draw per attack batch, and the model sees the same batches.

Shards never touch ``--out``. They write into ``.<name>.units`` beside it: ``run.json`` (the run
identity and configuration, created once by whichever shard starts first; a shard of another
run is refused), ``predictions/<key>@<i>-of-<N>.npz`` (one file per non-empty unit, written
atomically: the resume unit of a shard) and ``shard-<i>-of-<N>.json`` (written when shard
``i`` has finished). Each shard holds its own ``flock`` (``.shard-<i>-of-<N>.lock``), so
shards run concurrently while the same shard cannot run twice. ``evalsuite merge`` (or rank 0
under torchrun) checks every unit against the run identity and then writes ``--out`` whole
through :class:`evalsuite.run_folder.RunFolder`, as a single-process run does.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.atomic_io import atomic_candidate, atomic_write_text, default_file_mode
from evalsuite.errors import UsageError
from evalsuite.predictions import Predictions, PredictionStore
from evalsuite.run_folder import acquire_lock, release_lock
from evalsuite.runner import ConditionRun, condition_positions

log = logging.getLogger(__name__)

FORMAT = 1
# What must agree between every shard of one run (the rest of run.json is the first shard's config).
IDENTITY_KEYS = ("format", "shards", "identity", "batch_size")
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        """``"i/N"`` with ``0 <= i < N``; anything else is a one-line :class:`UsageError`."""
        m = _SPEC.match(str(text))
        if not m:
            raise UsageError(f"--shard {text!r}: expected I/N, shard I (counted from 0) of N, e.g. 0/4")
        index, count = int(m.group(1)), int(m.group(2))
        if count < 1 or index >= count:
            raise UsageError(f"--shard {text}: I must be between 0 and N-1 (N >= 1), e.g. 0/{max(count, 2)} .. "
                             f"{max(count, 2) - 1}/{max(count, 2)}")
        return cls(index, count)

    @property
    def part(self) -> str:
        """The unit files' part name, ``<i>-of-<N>``."""
        return f"{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def unit_bounds(n: int, block: int, count: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each of ``count`` shares of ``n`` positions, cut on multiples of ``block``.

    Share ``k`` gets blocks ``floor(k B / N)`` up to ``floor((k + 1) B / N)`` of the ``B`` blocks
    (the last block may be short): contiguous, disjoint, covering ``0..n`` exactly, sizes within
    one block of each other. Shares may be empty when there are fewer blocks than shards.
    """
    if block < 1 or count < 1:
        raise ValueError(f"block and count must be >= 1, got {block}, {count}")
    blocks = -(-n // block)
    return [(min(n, (k * blocks // count) * block), min(n, ((k + 1) * blocks // count) * block)) for k in range(count)]


def unit_block(condition: Any, batch_size: int) -> int:
    """The batch a condition is cut on: its own ``batch_size`` (attacks) or the run's."""
    return int(getattr(condition, "batch_size", None) or batch_size)


def unit_positions(condition: Any, positions: np.ndarray, shard: ShardSpec, batch_size: int) -> np.ndarray:
    """The positions of ``condition`` (all of them: ``positions``) that shard ``shard`` evaluates."""
    start, stop = unit_bounds(len(positions), unit_block(condition, batch_size), shard.count)[shard.index]
    return positions[start:stop]


def json_roundtrip(doc: Any) -> Any:
    """``doc`` as it reads back from JSON (tuples become lists), for comparing with a stored one."""
    return json.loads(json.dumps(doc, sort_keys=True, default=str))


class UnitFolder:
    """The units folder ``.<name>.units`` beside ``out`` (see the module docstring)."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out).absolute()
        if not self.out.name or self.out.name in (".", ".."):
            raise UsageError(f"--out {out} does not name a folder")
        self.root = self.out.parent / f".{self.out.name}.units"
        self.predictions = self.root / "predictions"
        self.manifest_path = self.root / "run.json"

    def record_path(self, shard: ShardSpec) -> Path:
        return self.root / f"shard-{shard.part}.json"

    @contextmanager
    def hold(self, shard: ShardSpec) -> Iterator[UnitFolder]:
        """Hold shard ``shard``'s lock (another process running the same shard is refused)."""
        self.predictions.mkdir(parents=True, exist_ok=True)
        path = self.root / f".shard-{shard.part}.lock"
        fd = acquire_lock(path, f"shard {shard} of --out {self.out} is already running ({{holder}})")
        try:
            yield self
        finally:
            release_lock(fd, path)

    # ------------------------------------------------------------------------------ run.json
    def claim(self, manifest: dict[str, Any]) -> None:
        """Create ``run.json`` from ``manifest`` unless it exists; then it must be this run's."""
        manifest = json_roundtrip({"format": FORMAT, **manifest})
        if not self.manifest_path.exists():
            with atomic_candidate(self.manifest_path) as cand:
                cand.path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
                os.chmod(cand.path, default_file_mode())
                try:
                    os.link(cand.path, self.manifest_path)  # exclusive create: the first shard wins
                except FileExistsError:
                    pass
        stored = self.read_manifest()
        differ = [k for k in IDENTITY_KEYS if stored.get(k) != manifest.get(k)]
        if differ:
            detail = _difference(stored, manifest, differ)
            raise UsageError(f"{self.root} holds the units of another run ({detail}); finish that run with "
                             f"`evalsuite merge {self.out}`, delete {self.root}, or choose another --out")

    def read_manifest(self) -> dict[str, Any]:
        """``run.json`` (a one-line error when there are no units or the file is damaged)."""
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"no shard units for {self.out} (expected {self.manifest_path}); "
                             "run `evalsuite run ... --shard I/N --out` with this folder first") from None
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            raise UsageError(f"{self.manifest_path} is damaged ({type(exc).__name__}); rerun the shards") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("shards"), int):
            raise UsageError(f"{self.manifest_path} is not an evalsuite units manifest (format {FORMAT})")
        return data

    # ------------------------------------------------------------------------------ records
    def clear_record(self, shard: ShardSpec) -> None:
        """Forget that ``shard`` finished (it is being run again)."""
        self.record_path(shard).unlink(missing_ok=True)

    def write_record(self, shard: ShardSpec, record: dict[str, Any]) -> None:
        atomic_write_text(self.record_path(shard), json.dumps(json_roundtrip(record), indent=2, sort_keys=True) + "\n")

    def finished(self, count: int) -> list[int]:
        """Indices of the shards of ``count`` that wrote their record."""
        return [i for i in range(count) if self.record_path(ShardSpec(i, count)).is_file()]

    def read_records(self, manifest: dict[str, Any]) -> list[dict[str, Any]]:
        """Every shard's record; a missing shard or one of another run is a one-line error."""
        count = int(manifest["shards"])
        missing = [f"{i}/{count}" for i in range(count) if i not in self.finished(count)]
        if missing:
            raise UsageError(f"shard(s) {', '.join(missing)} of {self.out} have not finished; run them "
                             "(`--resume` reuses their finished units) and merge again")
        records = []
        for i in range(count):
            path = self.record_path(ShardSpec(i, count))
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError, OSError):
                raise UsageError(f"{path} is damaged; rerun shard {i}/{count} with --resume") from None
            if not isinstance(rec, dict) or rec.get("identity") != manifest["identity"]:
                raise UsageError(f"{path} was written by another run (its model, data, seed or configuration differ); "
                                 f"rerun shard {i}/{count}")
            records.append(rec)
        return records

    # ------------------------------------------------------------------------------ units
    def assemble(self, conditions: list[Any], source: Any, manifest: dict[str, Any], *, labels: np.ndarray,
                 ids: np.ndarray, n_classes: int, seconds: dict[str, float]) -> dict[str, ConditionRun]:
        """Every condition's predictions joined from its units, each checked against the run identity.

        A missing unit names the shards to rerun; a unit of another run (or a damaged one) is
        refused. ``seconds`` are the conditions' summed unit times from the shard records.
        """
        count, batch_size = int(manifest["shards"]), int(manifest["batch_size"])
        runs: dict[str, ConditionRun] = {}
        missing: dict[int, int] = {}
        for cond in conditions:
            positions = condition_positions(cond, source)
            parts: list[Predictions] = []
            for k, (start, stop) in enumerate(unit_bounds(len(positions), unit_block(cond, batch_size), count)):
                if start == stop:
                    continue
                store = PredictionStore(self.predictions, manifest["identity"], part=ShardSpec(k, count).part)
                if not store.path(cond.key).is_file():
                    missing[k] = missing.get(k, 0) + 1
                    continue
                unit = store.load(cond.key, dict(cond.params), positions[start:stop])
                if unit is None:
                    raise UsageError(f"unit {store.path(cond.key).name} does not belong to this run (another run's, "
                                     f"damaged or truncated); rerun shard {k}/{count} with --resume")
                parts.append(unit)
            if not missing:
                runs[cond.key] = ConditionRun(_join(cond, parts, positions, labels, ids, n_classes), seconds.get(cond.key, 0.0), False)
        if missing:
            shown = ", ".join(f"shard {k}/{count} ({n} unit(s))" for k, n in sorted(missing.items()))
            raise UsageError(f"units missing in {self.root}: {shown}; rerun those shards with --resume")
        return runs

    def remove(self) -> None:
        """Delete the units folder (its predictions now live in ``out/predictions``)."""
        shutil.rmtree(self.root, ignore_errors=True)


def _join(cond: Any, parts: list[Predictions], positions: np.ndarray, labels: np.ndarray, ids: np.ndarray,
          n_classes: int) -> Predictions:
    """One condition's units, in order, as the :class:`Predictions` a single process would hold."""
    index = np.concatenate([p.index for p in parts]) if parts else np.empty(0, dtype=np.int64)
    if not np.array_equal(index, positions):
        raise UsageError(f"the units of {cond.key} do not cover its samples exactly; rerun its shards")
    logits = np.concatenate([p.logits for p in parts]) if parts else np.empty((0, n_classes), np.float32)
    names = parts[0].extras.keys() if parts else ()
    extras = {k: np.concatenate([p.extras[k] for p in parts]) for k in names}
    return Predictions(key=cond.key, suite=cond.suite, params=dict(cond.params), index=index, ids=ids[index],
                       labels=np.asarray(labels, dtype=np.int64)[index], logits=logits, extras=extras)


def _difference(stored: dict[str, Any], given: dict[str, Any], keys: list[str]) -> str:
    """Which identity entries differ, for the one-line error."""
    out = []
    for k in keys:
        a, b = stored.get(k), given.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            sub = sorted(x for x in set(a) | set(b) if a.get(x) != b.get(x))
            out.append(f"{k}: {', '.join(sub)} differ")
        else:
            out.append(f"{k}: {a!r} there, {b!r} here")
    return "; ".join(out)
