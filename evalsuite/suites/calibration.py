"""The calibration suite: can the model's confidence be trusted, on clean data and under shift?

An analysis suite (``stage = "analysis"``): it adds no conditions and summarises the stored
predictions of every condition in the run (clean, ``corruption/...``, ``device/...``,
``attack/...``).

Metrics land at ``calibration.<condition>.<metric>`` where ``<condition>`` is the condition's
gate path (:func:`evalsuite.results.gate_path`: ``/`` written as ``.``; ``clean``,
``corruption.fog.3``, ``device.webcam-720p``, ``attack.linf.8_255``). A run whose condition
would shadow one of the suite's own entries (``worst_shift``, ``worst_attack``) is refused
before any prediction; ``report.calibration.conditions`` lists the mapping. Conditions are told
apart by their recorded identity (kind, parts, label; :mod:`evalsuite.conditions`), never by
parsing keys. Per condition: ``ece``,
``adaptive_ece``, ``smooth_ece``, ``sweep_ece``, ``debiased_l2_ece`` (the bias-aware estimators
beside the binned ECE; ``docs/calibration.md``), ``mce``, ``classwise_ece``, ``brier``, ``nll``, ``overconfidence_share``,
``confidence_gap``, ``mean_confidence``, ``accuracy``, ``aurc``, ``eaurc`` (all with n and a 95%
bootstrap CI), plus ``ece_before_temperature`` / ``ece_after_temperature`` on the held-out
samples. ``calibration.clean`` adds ``temperature`` (sandwich CI; the split is recorded in the
leaf), ``temperature_converged``, ``nll_before_temperature`` and ``nll_after_temperature``.
``calibration.worst_shift.ece`` is the largest ECE over natural-shift conditions (every
non-clean condition that is not an attack) and names it; ``calibration.worst_attack.ece`` does
the same for attacks, kept apart because an attack that drives accuracy to zero always has
the worst ECE and would make a shift gate meaningless.

Temperature scaling (``T`` fitted by NLL, :mod:`evalsuite.calibration.temperature`) uses a
seeded, stratified split of the clean predictions (:mod:`evalsuite.calibration.split`): ``T`` is
fitted on the calibration part and every before/after number is computed on the held-out part
only, in every condition (rows whose sample id is held out), so nothing fitted is scored.
With ``calibration_data`` the suite predicts that dataset with the run's model, fits ``T`` on
all of it and holds out all evaluation samples.

Options (suite preset YAML ``suites: {calibration: {...}}``):

- ``n_bins`` (int, 15): bins of every binned metric.
- ``calibration_fraction`` (float in (0, 1), 0.5): share of clean samples used to fit ``T``.
- ``calibration_data`` (dataset spec, none): fit ``T`` on this data instead (``--calibration-data``).
- ``n_boot`` (int >= 0, 1000): bootstrap replicates per interval (0: no intervals).
- ``classwise`` (bool, true): compute the classwise ECE.

Built-in check: a WARN gate when the temperature fit did not converge.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalsuite.conditions import Condition, ConditionIdentity, condition_identity
from evalsuite.errors import DataError, UsageError
from evalsuite.gates import Gate
from evalsuite.metric_specs import MetricSpec, specs_under
from evalsuite.predictions import PredictionSet
from evalsuite.results import check_gate_paths, gate_path
from evalsuite.stats import DEFAULT_BOOTSTRAP, metric, softmax
from evalsuite.suites.base import RunContext, Suite, SuiteOutput

log = logging.getLogger(__name__)

RESERVED = frozenset({"worst_shift", "worst_attack"})
HISTOGRAM_BINS = 20
SHIFT_METRICS = ("ece", "adaptive_ece", "mce", "brier", "nll", "aurc", "accuracy", "mean_confidence")
BIAS_AWARE = ("smooth_ece", "sweep_ece", "debiased_l2_ece")  # report-table columns beside the 15-bin ECE


def metric_keys(condition_keys: Sequence[str]) -> dict[str, str]:
    """Condition key -> key under ``calibration``: its :func:`~evalsuite.results.gate_path`.

    UsageError when two keys share a gate path or one would shadow ``worst_shift`` /
    ``worst_attack`` (only a plug-in condition could).
    """
    check_gate_paths(condition_keys)
    out = {k: gate_path(k) for k in condition_keys}
    clash = sorted(k for k, m in out.items() if m in RESERVED)
    if clash:
        raise UsageError(f"suite 'calibration': condition {clash[0]!r} would shadow calibration.{out[clash[0]]}; "
                         "rename the condition")
    return out


@dataclass
class CalibrationOptions:
    """``suites: {calibration: {...}}`` (see the module docstring)."""

    n_bins: int = 15  # bins of every binned metric
    calibration_fraction: float = 0.5  # share of clean samples used to fit T, in (0, 1)
    calibration_data: str | None = None  # fit T on this dataset instead (--calibration-data)
    n_boot: int = DEFAULT_BOOTSTRAP  # bootstrap replicates per interval (0: no intervals)
    classwise: bool = True  # compute the classwise ECE

    def __post_init__(self) -> None:
        from evalsuite.calibration.split import check_fraction

        for name, minimum in (("n_bins", 1), ("n_boot", 0)):
            if getattr(self, name) < minimum:
                raise UsageError(f"suite 'calibration': option {name} must be an integer >= {minimum}, "
                                 f"got {getattr(self, name)!r}")
        self.calibration_fraction = check_fraction(self.calibration_fraction, "suite 'calibration': calibration_fraction")
        if self.calibration_data is not None and not self.calibration_data.strip():
            raise UsageError(f"suite 'calibration': calibration_data must be a dataset spec string, "
                             f"got {self.calibration_data!r}")


class CalibrationSuite(Suite):
    """Calibration of every condition, temperature scaling on a held-out split, ECE under shift.

    Options: ``n_bins`` (15), ``calibration_fraction`` (0.5), ``calibration_data`` (none),
    ``n_boot`` (1000), ``classwise`` (true). See the module docstring for metric paths.
    """

    name = "calibration"
    stage = "analysis"
    Options = CalibrationOptions

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        o = self.opts
        self.n_bins: int = o.n_bins
        self.n_boot: int = o.n_boot
        self.fraction: float = o.calibration_fraction
        self.calibration_data: str | None = o.calibration_data
        self.classwise: bool = o.classwise

    def metric_specs(self, run: RunContext, conditions: Sequence[Condition]) -> list[MetricSpec]:
        from evalsuite.calibration.bootstrap import DIRECTIONS

        ci = self.n_boot > 0
        leaves = [name for name in DIRECTIONS if self.classwise or name != "classwise_ece"]
        heldout = ("ece_before_temperature", "ece_after_temperature")
        specs = [MetricSpec("calibration.worst_shift.ece", ci)]
        if any(_is_attack(condition_identity(c.key, c.suite, c.params)) for c in conditions):
            specs.append(MetricSpec("calibration.worst_attack.ece", ci))
        for key, mkey in metric_keys([c.key for c in conditions]).items():
            prefix = f"calibration.{mkey}"
            specs += specs_under(prefix, leaves, ci)
            specs += specs_under(prefix, heldout, ci)
            specs.append(MetricSpec(f"{prefix}.nonfinite_rows", ci=False))
            if key == "clean":
                specs += specs_under(prefix, ("nll_before_temperature", "nll_after_temperature"), ci)
                specs.append(MetricSpec(f"{prefix}.temperature"))  # sandwich interval, not bootstrap
                specs.append(MetricSpec(f"{prefix}.temperature_converged", ci=False))
        return specs

    # ------------------------------------------------------------------------------ summary
    def summarize(self, run: RunContext, preds: PredictionSet) -> SuiteOutput:
        from evalsuite.calibration.bootstrap import calibration_leaves
        from evalsuite.seeding import sample_seed

        keys = list(preds)
        mkeys = metric_keys(keys)
        idents = {k: condition_identity(k, preds[k].suite, preds[k].params) for k in keys}
        metrics: dict[str, Any] = {}
        rows: list[dict[str, Any]] = []
        for key in keys:
            p = preds[key]
            ok = p.finite
            seed = sample_seed(run.seed, "calibration/bootstrap", key)
            if ok.sum() == 0:
                leaves = {"ece": metric(None, 0, None, "lower", note="no finite predictions")}
            else:
                leaves = calibration_leaves(
                    p.logits[ok], p.labels[ok], n_bins=self.n_bins, n_boot=self.n_boot, seed=seed,
                    classwise=self.classwise,
                )
            bad = int((~ok).sum())
            if bad:
                leaves["nonfinite_rows"] = metric(bad, len(p), None, "lower")
            metrics[mkeys[key]] = leaves
            rows.append({"key": key, "metric_key": mkeys[key], "suite": p.suite, "n": int(ok.sum())})

        report: dict[str, Any] = {"n_bins": self.n_bins, "n_boot": self.n_boot}
        checks: list[Gate] = []
        if "clean" in preds:
            temp = self._temperature(run, preds, mkeys, metrics, report)
            if temp is not None:
                checks.append(
                    Gate.check(
                        "calibration: temperature fit converged", "calibration.clean.temperature_converged", min=1,
                        description="Fitting the temperature on the calibration split must converge "
                        "(otherwise before/after-temperature numbers mean little).",
                    )
                )
        else:
            report["temperature"] = {"skipped": "no clean condition in this run"}

        metrics["worst_shift"] = {"ece": self._worst(idents, mkeys, metrics, attack=False)}
        if any(_is_attack(i) for i in idents.values()):
            metrics["worst_attack"] = {"ece": self._worst(idents, mkeys, metrics, attack=True)}

        for row in rows:
            leaves = metrics[row["metric_key"]]
            for name in (*SHIFT_METRICS, *BIAS_AWARE, "ece_before_temperature", "ece_after_temperature"):
                leaf = leaves.get(name)
                row[name] = None if leaf is None else leaf["value"]
                if name == "ece" and leaf is not None:
                    row["ece_ci"] = leaf["ci"]
            row["label"] = idents[row["key"]].label
        report["conditions"] = rows
        report["shift"] = _shift_data(rows, idents)
        report["worst_shift"] = {k: metrics["worst_shift"]["ece"].get(k) for k in ("value", "condition", "n")}
        if "worst_attack" in metrics:
            report["worst_attack"] = {k: metrics["worst_attack"]["ece"].get(k) for k in ("value", "condition", "n")}
        return SuiteOutput(metrics=metrics, checks=checks, report=report)

    # ---------------------------------------------------------------------- temperature
    def _calibration_logits(self, run: RunContext) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Logits and labels of ``calibration_data`` predicted with the run's model."""
        from evalsuite.calibration.predict import predict_dataset
        from evalsuite.data import open_dataset, resolve_labels

        ds = open_dataset(self.calibration_data)
        labels = resolve_labels(ds, list(run.model.info.class_names))
        logits = predict_dataset(run.model, ds, labels, batch_size=run.batch_size, desc="calibration data")
        ok = np.all(np.isfinite(logits), axis=1)
        record = {
            "source": "calibration_data",
            "data": ds.name,
            "fingerprint": ds.fingerprint,
            "n_calibration": int(ok.sum()),
            "n_nonfinite_dropped": int((~ok).sum()),
        }
        eval_fp = getattr(run.dataset, "fingerprint", None)
        if eval_fp is not None and eval_fp == ds.fingerprint:
            record["warning"] = "calibration_data is the evaluation data: before/after numbers are not held out"
            log.warning("calibration_data %s is the evaluation data; temperature numbers are not held out", ds.name)
        return logits[ok], labels[ok], record

    def _temperature(
        self,
        run: RunContext,
        preds: PredictionSet,
        mkeys: dict[str, str],
        metrics: dict[str, Any],
        report: dict[str, Any],
    ) -> dict[str, Any] | None:
        """Fit T on the calibration part and add the temperature and held-out before/after leaves.

        Returns the ``report["temperature"]`` record (``{}`` when the split failed, ``None``
        without finite clean predictions), which tells :meth:`summarize` whether to add the
        convergence check.
        """
        from evalsuite.calibration.temperature import fit_temperature
        from evalsuite.seeding import sample_seed

        clean = preds.clean
        ok = clean.finite
        z, y, ids = clean.logits[ok], clean.labels[ok], np.asarray(clean.ids)[ok].astype(str)
        clean_leaves = metrics[mkeys["clean"]]
        if len(y) == 0:
            report["temperature"] = {"skipped": "no finite clean predictions"}
            return None
        self._clean_report(z, y, report, sample_seed(run.seed, "calibration/reliability", "clean"))
        split = self._split(run, z, y, ids)
        if isinstance(split, str):  # too few samples to split
            report["temperature"] = {"skipped": split}
            clean_leaves["temperature_converged"] = metric(0.0, len(y), None, "higher", reason=split)
            return {}
        cz, cy, held_ids, split_record = split
        fit = fit_temperature(cz, cy)
        t = fit.temperature
        clean_leaves["temperature"] = metric(
            t, fit.n, fit.ci, "none",
            ci_method="sandwich (robust Wald) on log T",
            converged=fit.converged,
            message=fit.message,
            nll_calibration_before=fit.nll_before,
            nll_calibration_after=fit.nll_after,
            split=split_record,
        )
        clean_leaves["temperature_converged"] = metric(1.0 if fit.converged else 0.0, fit.n, None, "higher",
                                                       message=fit.message)
        if not math.isfinite(t):
            report["temperature"] = {
                "value": None, "converged": False, "message": fit.message, "split": split_record,
                "skipped": f"no temperature: {fit.message}",
            }
            return report["temperature"]
        self._heldout_leaves(run, preds, mkeys, metrics, held_ids, t)
        record = self._temperature_record(z, y, ids, held_ids, fit, split_record, clean_leaves)
        record.update(self._smooth_heldout(z, y, np.isin(ids, held_ids), t, run.seed))
        report["temperature"] = record
        return report["temperature"]

    def _clean_report(self, z: np.ndarray, y: np.ndarray, report: dict[str, Any], seed: int) -> None:
        """Chart data of all finite clean predictions: reliability (binned and smoothed), confidence
        histogram, risk-coverage."""
        from evalsuite.calibration.metrics import (
            confidence_histogram,
            reliability_from_top_label,
            risk_coverage_from_top_label,
            smooth_reliability_from_top_label,
            top_label,
        )

        tl_all = top_label(softmax(z), y)
        hist_counts, hist_edges = confidence_histogram(softmax(z), HISTOGRAM_BINS)
        correct_hist = np.bincount(
            np.minimum((tl_all.confidence * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS - 1)[tl_all.correct > 0],
            minlength=HISTOGRAM_BINS,
        )
        report["clean_reliability"] = reliability_from_top_label(tl_all, self.n_bins).to_dict()
        report["confidence_histogram"] = {
            "counts": hist_counts,
            "edges": hist_edges,
            "correct_counts": [int(c) for c in correct_hist],
        }
        report["risk_coverage"] = risk_coverage_from_top_label(tl_all).to_dict()
        report["clean_smooth_reliability"] = smooth_reliability_from_top_label(tl_all, n_boot=self.n_boot, seed=seed)

    def _smooth_heldout(self, z: np.ndarray, y: np.ndarray, held: np.ndarray, t: float, run_seed: int) -> dict[str, Any]:
        """Smoothed reliability curves (with bands) of the held-out clean rows before and after T."""
        from evalsuite.calibration.metrics import smooth_reliability_from_top_label, top_label
        from evalsuite.seeding import sample_seed

        out = {}
        for name, temp in (("smooth_before", 1.0), ("smooth_after", t)):
            tl = top_label(softmax(z[held], temp), y[held])
            seed = sample_seed(run_seed, "calibration/reliability", name)
            out[name] = smooth_reliability_from_top_label(tl, n_boot=self.n_boot, seed=seed)
        return out

    def _split(
        self, run: RunContext, z: np.ndarray, y: np.ndarray, ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]] | str:
        """(calibration logits, their labels, held-out sample ids, split record), or why no split
        was possible: ``calibration_data`` when given, else the seeded stratified split of the clean rows."""
        from evalsuite.calibration.split import stratified_split

        if self.calibration_data is not None:
            cz, cy, split_record = self._calibration_logits(run)
            held_ids = np.unique(ids)
            split_record["n_heldout"] = int(len(held_ids))
            return cz, cy, held_ids, split_record
        try:
            split = stratified_split(ids, y, self.fraction, run.seed)
        except DataError as exc:  # too few samples to split
            return str(exc)
        return z[split.calibration], y[split.calibration], np.unique(ids[split.heldout]), split.record()

    def _heldout_leaves(
        self, run: RunContext, preds: PredictionSet, mkeys: dict[str, str], metrics: dict[str, Any],
        held_ids: np.ndarray, t: float,
    ) -> None:
        """``<metric>_before_temperature`` / ``_after_temperature`` leaves on the held-out rows of every condition."""
        from evalsuite.calibration.bootstrap import calibration_leaves
        from evalsuite.seeding import sample_seed

        for key, p in preds.items():
            pok = p.finite & np.isin(np.asarray(p.ids).astype(str), held_ids)
            leaves = metrics[mkeys[key]]
            if not pok.any():
                continue
            seed = sample_seed(run.seed, "calibration/heldout", key)
            include = ("ece", "nll") if key == "clean" else ("ece",)
            before = calibration_leaves(p.logits[pok], p.labels[pok], n_bins=self.n_bins, n_boot=self.n_boot,
                                        seed=seed, include=include)
            after = calibration_leaves(p.logits[pok], p.labels[pok], n_bins=self.n_bins, n_boot=self.n_boot,
                                       seed=seed, include=include, temperature=t)
            for name in include:
                leaves[f"{name}_before_temperature"] = dict(before[name], heldout=True)
                leaves[f"{name}_after_temperature"] = dict(after[name], heldout=True, temperature=t)

    def _temperature_record(
        self, z: np.ndarray, y: np.ndarray, ids: np.ndarray, held_ids: np.ndarray, fit: Any,
        split_record: dict[str, Any], clean_leaves: dict[str, Any],
    ) -> dict[str, Any]:
        """``report["temperature"]``: the fit, the held-out numbers and the reliability data before and after T."""
        from evalsuite.calibration.metrics import reliability_from_top_label, top_label

        t = fit.temperature
        hmask = np.isin(ids, held_ids)
        tl_before = top_label(softmax(z[hmask]), y[hmask])
        tl_after = top_label(softmax(z[hmask], t), y[hmask])
        return {
            "value": t,
            "ci": list(fit.ci) if fit.ci else None,
            "converged": fit.converged,
            "message": fit.message,
            "split": split_record,
            "nll_calibration_before": fit.nll_before,
            "nll_calibration_after": fit.nll_after,
            "heldout_n": int(hmask.sum()),
            "ece_before": clean_leaves["ece_before_temperature"]["value"],
            "ece_after": clean_leaves["ece_after_temperature"]["value"],
            "nll_before": clean_leaves["nll_before_temperature"]["value"],
            "nll_after": clean_leaves["nll_after_temperature"]["value"],
            "reliability_before": reliability_from_top_label(tl_before, self.n_bins).to_dict(),
            "reliability_after": reliability_from_top_label(tl_after, self.n_bins).to_dict(),
        }

    # ----------------------------------------------------------------------------- worst
    @staticmethod
    def _worst(idents: dict[str, ConditionIdentity], mkeys: dict[str, str], metrics: dict[str, Any], *,
               attack: bool) -> dict[str, Any]:
        what = "attack conditions" if attack else "natural-shift conditions (every non-clean, non-attack condition)"
        best_key, best_leaf = None, None
        for key, ident in idents.items():
            if ident.kind == "clean" or _is_attack(ident) != attack:
                continue
            leaf = metrics[mkeys[key]].get("ece")
            if leaf is None or leaf["value"] is None:
                continue
            if best_leaf is None or leaf["value"] > best_leaf["value"]:
                best_key, best_leaf = key, leaf
        if best_leaf is None:
            return metric(None, 0, None, "lower", condition=None, over=what, note="no such condition in this run")
        return dict(best_leaf, condition=best_key, metric_key=mkeys[best_key], over=what)


def _is_attack(ident: ConditionIdentity) -> bool:
    """Adversarial conditions (kind ``attack``)."""
    return ident.kind == "attack"


def _severity(ident: ConditionIdentity) -> tuple[str, int] | None:
    """(corruption name, severity) of a corruption condition."""
    parts = ident.parts
    if ident.kind == "corruption" and len(parts) == 2 and isinstance(parts[1], int):
        return str(parts[0]), parts[1]
    return None


def _shift_data(rows: list[dict[str, Any]], idents: dict[str, ConditionIdentity]) -> dict[str, Any]:
    """Chart data: ECE by corruption severity (mean / worst / per corruption), by device, by attack."""
    clean = next((r for r in rows if r["key"] == "clean"), None)
    clean_ece = None if clean is None else clean.get("ece")
    grid: dict[str, dict[int, float | None]] = {}
    for r in rows:
        sev = _severity(idents[r["key"]])
        if sev is not None:
            grid.setdefault(sev[0], {})[sev[1]] = r.get("ece")
    severities = sorted({s for g in grid.values() for s in g})
    names = sorted(grid)
    series: dict[str, list[list[float]]] = {}
    if severities:
        mean_pts, worst_pts = [], []
        for s in severities:
            vals = [grid[n][s] for n in names if grid[n].get(s) is not None]
            if vals:
                mean_pts.append([float(s), float(np.mean(vals))])
                worst_pts.append([float(s), float(np.max(vals))])
        if clean_ece is not None:
            series["clean"] = [[0.0, clean_ece], [float(severities[-1]), clean_ece]]
        series["mean over corruptions"] = mean_pts
        series["worst corruption"] = worst_pts
    ymax = 0.0
    for r in rows:
        v = r.get("ece")
        if v is not None and math.isfinite(v):
            ymax = max(ymax, v)
    devices = [r for r in rows if idents[r["key"]].kind == "device"]
    attacks = [r for r in rows if _is_attack(idents[r["key"]])]
    return {
        "clean_ece": clean_ece,
        "ymax": min(1.0, max(0.05, ymax * 1.15)),
        "severities": severities,
        "severity_series": series,
        "corruption_names": names,
        "corruption_grid": [[grid[n].get(s) for s in severities] for n in names],
        "devices": {
            "labels": [r["label"] for r in devices],
            "ece": [r.get("ece") for r in devices],
            "lower": [(r.get("ece_ci") or [None, None])[0] for r in devices],
            "upper": [(r.get("ece_ci") or [None, None])[1] for r in devices],
        },
        "attacks": {
            "labels": [r["label"] for r in attacks],
            "ece": [r.get("ece") for r in attacks],
            "lower": [(r.get("ece_ci") or [None, None])[0] for r in attacks],
            "upper": [(r.get("ece_ci") or [None, None])[1] for r in attacks],
        },
    }


__all__ = ["CalibrationSuite", "metric_keys"]

