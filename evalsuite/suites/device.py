"""The device-shift suite: how the model does when the camera changes.

Simulated shift: every selected device profile (a chain of camera, optics, ISP and codec
operations; see ``docs/devices.md``) and a per-operation severity ladder become conditions;
their accuracy is compared with clean accuracy on the same samples. Real shift: when the data
has a device/source column, each device's clean accuracy is compared with the rest of the data.

Options (suite preset ``suites: {device: {...}}``):

- ``profiles``: ``all`` (built-in plus ``profiles_file``), a list of profile names, or ``[]``.
  Default: every built-in profile, or only the file's profiles when ``profiles_file`` is set.
- ``profiles_file``: a YAML file of the user's own profiles (``--device-profiles my_fleet.yaml``).
- ``operations``: operations for the per-operation x severity ladder: a list of names,
  ``all`` or ``[]``. Default: ``resolution, jpeg, sensor_noise, lens_blur, white_balance``.
- ``severities``: ladder severities (1-5). Default ``[1, 3, 5]``.
- ``device_column``: a data column naming the capturing device (``--capture-column camera``).
- ``n`` / ``ci_half_width``: measure every profile and ladder condition on one seeded stratified
  subset of ``n`` samples, or of the size giving a 95% CI half-width of ``ci_half_width`` for an
  accuracy (worst case; 0.02 -> 2401); default every sample. Drops pair each subset sample with
  its own clean prediction (:mod:`evalsuite.suites.subset`). Real device shift is clean data
  and always uses every sample.

Conditions: ``device/<profile>`` and ``device/op/<operation>/<severity>``.

Metrics (``results.metrics.device``), all with 95% bootstrap CIs:

- ``<profile>.accuracy`` and ``<profile>.drop`` (clean minus profile accuracy; paired bootstrap
  over samples, so the CI is of the difference itself);
- ``worst.accuracy`` / ``worst.drop`` (the worst profile, named in the leaf's ``profile``; the
  CI resamples samples jointly and takes the minimum each time, so it accounts for picking
  the worst) and ``mean_accuracy`` (mean over profiles, joint bootstrap);
- ``ops.<operation>.<severity>.accuracy`` / ``.drop``;
- ``real.<device>.accuracy`` and ``real.<device>.drop_vs_rest`` (accuracy of every other
  device's samples minus this device's; independent bootstrap of the two groups).

Built-in check: a warning when the worst profile loses more than 10 points of accuracy.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from evalsuite.conditions import Condition
from evalsuite.errors import UsageError
from evalsuite.gates import Gate
from evalsuite.metric_specs import MetricSpec, specs_under
from evalsuite.predictions import Predictions, PredictionSet
from evalsuite.registry import did_you_mean
from evalsuite.report.images import thumbnail_png
from evalsuite.stats import (
    DEFAULT_BOOTSTRAP,
    binomial_difference_ci,
    bootstrap_mean_ci,
    correct,
    joint_mean_replicates,
    metric,
    percentile_ci,
)
from evalsuite.suites.base import RunContext, Suite, SuiteOutput
from evalsuite.suites.subset import Subset, SubsetOptions, perturbation_subset, subset_of

log = logging.getLogger(__name__)

DEFAULT_SEVERITIES = (1, 3, 5)
WORST_DROP_WARN = 0.10
THUMBNAIL_PX = 96


def _names(value: str | list[str] | None) -> list[str] | str | None:
    """A names option as ``None``, ``"all"`` or a list: a string is ``all``, ``none`` or comma-separated names."""
    if not isinstance(value, str):
        return value
    v = value.strip()
    if v.lower() == "all":
        return "all"
    if v.lower() in ("none", ""):
        return []
    return [s.strip() for s in v.split(",") if s.strip()]


@dataclass
class DeviceOptions(SubsetOptions):
    """``suites: {device: {...}}`` (see the module docstring); ``n`` and ``ci_half_width`` come
    from :class:`~evalsuite.suites.subset.SubsetOptions`."""

    suite_label: ClassVar[str] = "device"

    profiles: str | list[str] | None = None  # None: built-ins (the file's only, with profiles_file); all; names
    profiles_file: str | None = None  # a YAML file of the user's own profiles (--device-profiles)
    operations: str | list[str] | None = None  # None: DEFAULT_LADDER_OPS; all; names; []
    severities: int | str | list[int] = field(default_factory=lambda: list(DEFAULT_SEVERITIES))
    device_column: str | None = None  # the data column naming each image's capture device
    n: int | str | None = None  # subset size; "all" or null: every sample (unless ci_half_width)
    ci_half_width: float | None = None  # target 95% CI half-width of an accuracy -> n (worst case p = 0.5)

    def __post_init__(self) -> None:
        self.check_subset()
        self.profiles = _names(self.profiles)
        self.operations = _names(self.operations)
        if self.profiles_file is not None and not self.profiles_file.strip():
            raise UsageError(f"suite 'device': option profiles_file must be a path, got {self.profiles_file!r}")
        sev = self.severities
        if isinstance(sev, str):
            try:
                sev = [int(s) for s in sev.split(",") if s.strip()]
            except ValueError:
                raise UsageError(f"suite 'device': option severities must be integers 1-5, got {sev!r}") from None
        if isinstance(sev, int):
            sev = [sev]
        if not sev or any(not 1 <= s <= 5 for s in sev):
            raise UsageError(f"suite 'device': option severities must be a non-empty list of integers 1-5, got {sev!r}")
        self.severities = sev
        if self.device_column == "":
            raise UsageError(f"suite 'device': option device_column must be a column name, got {self.device_column!r}")


class _CleanReference:
    """The clean predictions a shifted condition is paired with, row by row (same samples)."""

    def __init__(self, clean: Predictions, preds: PredictionSet, seed: int) -> None:
        self.preds = preds
        self.seed = seed
        self.correct = correct(clean.logits, clean.labels)
        self.position = {int(i): r for r, i in enumerate(np.asarray(clean.index))}

    def paired(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(correctness under ``key``, clean correctness of the same rows, dataset positions)."""
        p = self.preds.get(key)
        if p is None:
            log.warning("device suite: no predictions for condition %s; skipped", key)
            return None
        rows = np.array([self.position.get(int(i), -1) for i in np.asarray(p.index)], dtype=np.int64)
        keep = rows >= 0
        if not keep.all():
            log.warning("device suite: %d rows of %s have no clean counterpart", int((~keep).sum()), key)
        return correct(p.logits, p.labels)[keep], self.correct[rows[keep]], np.asarray(p.index)[keep]

    def leaves(self, cond: np.ndarray, clean: np.ndarray) -> dict[str, Any]:
        """Accuracy under the condition and the paired drop from clean, with bootstrap CIs."""
        n = len(cond)
        if n == 0:
            return {"accuracy": metric(None, 0), "drop": metric(None, 0, direction="lower")}
        return {
            "accuracy": metric(cond.mean(), n, bootstrap_mean_ci(cond, seed=self.seed)),
            "drop": metric(clean.mean() - cond.mean(), n, bootstrap_mean_ci(clean - cond, seed=self.seed), "lower"),
        }


class DeviceSuite(Suite):
    """Simulated device profiles, a per-operation severity ladder and real per-device shift.

    See the module docstring for options, conditions and metrics.
    """

    name = "device"
    Options = DeviceOptions

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        from evalsuite.devices.ops import DEFAULT_LADDER_OPS, OPS
        from evalsuite.devices.profiles import builtin_profiles, load_profiles_file

        o = self.opts
        builtin = builtin_profiles()
        user: dict[str, Any] = load_profiles_file(o.profiles_file) if o.profiles_file is not None else {}
        available = {**builtin, **user}
        chosen = o.profiles
        if chosen is None:
            chosen = list(user) if user else list(builtin)
        elif chosen == "all":
            chosen = list(available)
        for name in chosen:
            if name not in available:
                raise UsageError(
                    f"suite 'device': unknown device profile {name!r}{did_you_mean(name, list(available))}; "
                    f"valid: {', '.join(available)}"
                )
        self.profiles = [available[n] for n in dict.fromkeys(chosen)]

        ops = o.operations
        if ops is None:
            ops = list(DEFAULT_LADDER_OPS)
        elif ops == "all":
            ops = OPS.names()
        for op in ops:
            if op not in OPS:
                raise UsageError(
                    f"suite 'device': unknown operation {op!r}{did_you_mean(op, OPS.names())}; valid: {', '.join(OPS.names())}"
                )
        self.operations = list(dict.fromkeys(ops))
        self.severities = sorted(set(o.severities))
        self.device_column: str | None = o.device_column
        self.subset: Subset | None = None  # set by conditions()

    # ------------------------------------------------------------------------------ conditions

    def _check_column(self, run: RunContext) -> None:
        if self.device_column is None:
            return
        columns = sorted(getattr(run.dataset, "columns", {}) or {})
        if self.device_column not in columns:
            raise UsageError(
                f"device column {self.device_column!r} is not in the data{did_you_mean(self.device_column, columns)}; "
                f"available columns: {', '.join(columns) or '(none)'}"
            )

    def build_conditions(self) -> list[Any]:
        """The suite's conditions (independent of the run): profiles first, then the ladder."""
        from evalsuite.devices.condition import DeviceCondition, op_identity, profile_identity
        from evalsuite.devices.ops import make_op

        conds: list[Any] = []
        for prof in self.profiles:
            conds.append(DeviceCondition(identity=profile_identity(prof.name, self.name), params=prof.config(),
                                         ops=prof.ops))
        for op_name in self.operations:
            for s in self.severities:
                op = make_op(op_name, severity=s)
                conds.append(
                    DeviceCondition(
                        identity=op_identity(op_name, s, self.name),
                        params={"operation": op_name, "severity": s, "chain": [op.config()]},
                        ops=(op,),
                    )
                )
        return conds

    def conditions(self, run: RunContext) -> list[Any]:
        self._check_column(run)
        conds = self.build_conditions()
        subset = self.subset = perturbation_subset(self.opts, run.labels, run.seed)
        if subset.positions is not None:
            log.info("device: every condition on a seeded stratified subset of %d of %d samples", subset.n, subset.total)
            for c in conds:
                c.indices = subset.positions
                c.params.update(subset.params())
        return conds

    def metric_specs(self, run: RunContext, conditions: Sequence[Condition]) -> list[MetricSpec]:
        pair = ("accuracy", "drop")
        specs: list[MetricSpec] = []
        if self.profiles:
            specs += [MetricSpec("device.mean_accuracy"), *specs_under("device.worst", pair)]
        for prof in self.profiles:
            specs += specs_under(f"device.{prof.name}", pair)
        for op_name in self.operations:
            for sev in self.severities:
                specs += specs_under(f"device.ops.{op_name}.{sev}", pair)
        if self.device_column is not None:
            specs += specs_under("device.real.*", ("accuracy", "drop_vs_rest"))
        return specs

    # ------------------------------------------------------------------------------ summary

    def summarize(self, run: RunContext, preds: PredictionSet) -> SuiteOutput:
        self._check_column(run)
        clean = preds.get("clean")
        if clean is None:
            raise RuntimeError("the device suite needs the clean condition's predictions")
        ref = _CleanReference(clean, preds, int(run.seed))
        metrics: dict[str, Any] = {}
        checks: list[Gate] = []
        mine = preds.by_suite(self.name)
        report: dict[str, Any] = {"clean_accuracy": self._clean_accuracy(ref, mine), "subset": None}
        if subset_of(mine) is not None:
            report["subset"] = (self.subset.report() if self.subset is not None and self.subset.positions is not None
                                else {"n": min(len(p) for p in mine), "of": len(clean), "subset": True,
                                      "target_half_width": self.opts.ci_half_width})
        self._profiles_section(ref, metrics, checks, report)
        self._ops_section(ref, metrics, report)
        if self.device_column is not None:
            metrics["real"], report["real"] = self._real_shift(run, clean, ref.correct, ref.seed)
        self._thumbnails(run, report)
        return SuiteOutput(metrics=metrics, checks=checks, report=report)

    @staticmethod
    def _clean_accuracy(ref: _CleanReference, mine: list[Predictions]) -> float | None:
        """Clean accuracy on the samples the suite's conditions cover (the subset, if any), the
        reference the profile chart draws: every drop pairs a condition with these same samples."""
        if not mine:
            return float(ref.correct.mean()) if len(ref.correct) else None
        covered = np.unique(np.concatenate([np.asarray(p.index, dtype=np.int64) for p in mine]))
        rows = [ref.position[int(i)] for i in covered if int(i) in ref.position]
        return float(ref.correct[rows].mean()) if rows else None

    def _profiles_section(
        self, ref: _CleanReference, metrics: dict[str, Any], checks: list[Gate], report: dict[str, Any]
    ) -> None:
        """Per-profile accuracy and drop, the worst profile and its gate, and the bar chart data."""
        from evalsuite.devices.condition import profile_key

        profile_rows: list[dict[str, Any]] = []
        columns: dict[str, np.ndarray] = {}
        for prof in self.profiles:
            got = ref.paired(profile_key(prof.name))
            if got is None:
                continue
            cond, clean_rows, index = got
            metrics[prof.name] = ref.leaves(cond, clean_rows)
            columns[prof.name] = index
            profile_rows.append(
                {
                    "name": prof.name,
                    "description": prof.description,
                    "chain": prof.chain_summary(),
                    "source": prof.source,
                    "steps": [op.describe() for op in prof.ops],
                    "thumbnail": None,
                }
            )
        if columns:
            self._summarise_profiles(metrics, columns, ref.preds, ref.correct, ref.position, ref.seed, report)
            worst = metrics["worst"]
            checks.append(
                Gate.check(
                    "device: worst profile accuracy drop", "device.worst.drop", max=WORST_DROP_WARN,
                    description=(
                        f"The worst simulated device profile ({worst['accuracy'].get('profile')}) should not cost more than "
                        f"{WORST_DROP_WARN:.0%} accuracy against clean data."
                    ),
                )
            )
        report["profiles"] = profile_rows
        report["bar"] = {
            "labels": [r["name"] for r in profile_rows],
            "values": [metrics[r["name"]]["accuracy"]["value"] for r in profile_rows],
            "lower": [(metrics[r["name"]]["accuracy"]["ci"] or [None, None])[0] for r in profile_rows],
            "upper": [(metrics[r["name"]]["accuracy"]["ci"] or [None, None])[1] for r in profile_rows],
            "reference": report["clean_accuracy"],
        }

    def _ops_section(self, ref: _CleanReference, metrics: dict[str, Any], report: dict[str, Any]) -> None:
        """The per-operation severity ladder: accuracy and drop of every (operation, severity)."""
        from evalsuite.devices.condition import op_key
        from evalsuite.devices.ops import make_op

        op_rows = []
        if self.operations:
            metrics["ops"] = {}
        for op_name in self.operations:
            per_sev: dict[str, Any] = {}
            cells = []
            for s in self.severities:
                got = ref.paired(op_key(op_name, s))
                if got is None:
                    continue
                cond, clean_rows, _ = got
                per_sev[str(s)] = ref.leaves(cond, clean_rows)
                cells.append(
                    {
                        "severity": s,
                        "params": make_op(op_name, severity=s).describe(),
                        "accuracy": per_sev[str(s)]["accuracy"]["value"],
                        "drop": per_sev[str(s)]["drop"]["value"],
                    }
                )
            metrics["ops"][op_name] = per_sev
            op_rows.append({"operation": op_name, "cells": cells})
        report["ops"] = {"severities": list(self.severities), "rows": op_rows}

    def _summarise_profiles(
        self,
        metrics: dict[str, Any],
        columns: dict[str, np.ndarray],
        preds: PredictionSet,
        clean_correct: np.ndarray,
        clean_pos: dict[int, int],
        seed: int,
        report: dict[str, Any],
    ) -> None:
        """``worst`` and ``mean_accuracy`` over profiles, on the samples every profile has."""
        from evalsuite.devices.condition import profile_key

        names = list(columns)
        common = columns[names[0]]
        for n in names[1:]:
            common = np.intersect1d(common, columns[n])
        common = np.intersect1d(common, np.asarray(list(clean_pos), dtype=np.int64))
        mat = np.empty((len(common), len(names) + 1))
        for j, name in enumerate(names):
            p = preds[profile_key(name)]
            pos = {int(i): r for r, i in enumerate(np.asarray(p.index))}
            mat[:, j] = correct(p.logits, p.labels)[[pos[int(i)] for i in common]]
        mat[:, -1] = clean_correct[[clean_pos[int(i)] for i in common]]
        n = len(common)
        if n == 0:
            metrics["worst"] = {"accuracy": metric(None, 0, profile=None), "drop": metric(None, 0, direction="lower")}
            metrics["mean_accuracy"] = metric(None, 0)
            return
        acc = mat[:, :-1].mean(axis=0)
        worst_j = int(np.argmin(acc))
        boot = joint_mean_replicates(mat, DEFAULT_BOOTSTRAP, seed)
        boot_worst = boot[:, :-1].min(axis=1)
        clean_acc = mat[:, -1].mean()
        metrics["worst"] = {
            "accuracy": metric(acc[worst_j], n, percentile_ci(boot_worst), profile=names[worst_j]),
            "drop": metric(clean_acc - acc[worst_j], n, percentile_ci(boot[:, -1] - boot_worst), "lower",
                           profile=names[worst_j]),
        }
        metrics["mean_accuracy"] = metric(acc.mean(), n, percentile_ci(boot[:, :-1].mean(axis=1)))
        report["worst"] = names[worst_j]

    def _real_shift(
        self, run: RunContext, clean: Predictions, clean_correct: np.ndarray, seed: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Per-device clean accuracy and its drop against every other device's samples."""
        col = self.device_column
        values = np.asarray(run.dataset.columns[col], dtype=object)[np.asarray(clean.index, dtype=np.int64)]
        missing = np.array([_is_missing(v) for v in values], dtype=bool)
        labels = np.array([_label(v) for v in values], dtype=object)
        groups = sorted({str(v) for v in labels[~missing]})
        out: dict[str, Any] = {}
        rows = []
        for g in groups:
            mask = (labels == g) & ~missing
            rest = ~mask & ~missing
            a = clean_correct[mask]
            b = clean_correct[rest]
            acc_leaf = metric(a.mean(), len(a), bootstrap_mean_ci(a, seed=seed))
            if len(b):
                drop = metric(b.mean() - a.mean(), len(a), binomial_difference_ci(b, a, DEFAULT_BOOTSTRAP, seed), "lower",
                              n_rest=int(len(b)))
            else:
                drop = metric(None, len(a), None, "lower", n_rest=0)
            out[g] = {"accuracy": acc_leaf, "drop_vs_rest": drop}
            rows.append({"device": g, "n": int(len(a))})
        if len(groups) > 50:
            log.warning("device column %r has %d distinct values; is it really a device?", col, len(groups))
        return out, {"column": col, "rows": rows, "missing": int(missing.sum())}

    def _thumbnails(self, run: RunContext, report: dict[str, Any]) -> None:
        """One real sample through every profile, saved as PNG artifacts (what the model saw)."""
        if not report["profiles"] or run.image_source is None:
            return
        import torch

        from evalsuite.conditions import BatchContext
        from evalsuite.devices.condition import DeviceCondition, profile_key

        try:
            images, idx = run.sample_images(1)
        except Exception as exc:  # noqa: BLE001 - thumbnails are decoration, never fail a run
            log.warning("device suite: no thumbnail sample (%s)", exc)
            return
        if len(idx) == 0:
            return
        ids = [str(run.dataset.ids[int(i)]) for i in idx[:1]]
        x = torch.from_numpy(np.ascontiguousarray(images[:1])).permute(0, 3, 1, 2).float().div(255.0)
        report["thumbnail_id"] = ids[0]
        report["thumbnail_clean"] = run.save_artifact("device_clean.png", thumbnail_png(images[0], THUMBNAIL_PX, smooth="lanczos"))
        by_name = {p.name: p for p in self.profiles}
        ctx = BatchContext(ids=np.array(ids, dtype=object), labels=None, seed=int(run.seed))
        for row in report["profiles"]:
            prof = by_name[row["name"]]
            cond = DeviceCondition(key=profile_key(prof.name), suite=self.name, ops=prof.ops)
            y = cond.apply(x, ctx)
            img = (y[0].permute(1, 2, 0).clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
            row["thumbnail"] = run.save_artifact(f"device_{prof.name}.png", thumbnail_png(img, THUMBNAIL_PX, smooth="lanczos"))


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, (float, np.floating)) and math.isnan(float(v)):
        return True
    return isinstance(v, str) and not v.strip()


def _label(v: Any) -> str:
    if isinstance(v, (np.integer,)):
        return str(int(v))
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


__all__ = ["DeviceSuite"]
