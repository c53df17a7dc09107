"""The slices suite: a per-group bias audit of every condition, with disparities and CIs.

An average hides who the model fails. This suite audits the run by slice -- the metadata
columns the dataset carries (manifest / NPZ columns, ``builtin:digits``' ``ink_density`` and
``horizontal_position``), opt-in intersections of two columns, and image properties derived
from the pixels -- on the clean data and on every other condition of the run (corruption
severities, device profiles, attacks). Groups smaller than ``min_group_size`` are shown but
left out of every disparity, so a gap is never called real when a group is too small to tell.
Methods: ``docs/slices.md``; computation: :mod:`evalsuite.slices`.

Options (``suites: {slices: {...}}`` in a suite preset):

- ``columns``: metadata columns to audit (default: every column of the dataset; ``[]`` for none).
- ``intersections``: list of ``[a, b]`` column pairs audited jointly (default none). Names may
  be metadata columns or derived properties that are computed in this run.
- ``derived``: ``auto`` (default: derived image-property slices only when no metadata column is
  audited, so every run gets an audit), ``true`` (all six), ``false``, or a list of names
  (``brightness``, ``contrast``, ``colourfulness``, ``sharpness``, ``resolution``, ``aspect``).
- ``min_group_size``: smallest group that enters disparity summaries and gates (default 30).
- ``numeric_bins``: quantile bins for numeric columns and continuous derived properties (default 4).
- ``max_groups``: categorical columns with more values keep the most frequent and pool the
  rest into ``(other)`` (default 50).
- ``n_boot``: bootstrap replicates for every interval (default 1000; 0 disables intervals).
- ``bootstrap``: ``auto`` | ``rows`` | ``counts`` (see :mod:`evalsuite.slices.bootstrap`).
- ``n_bins``: equal-width confidence bins of the slice ECE (:func:`evalsuite.stats.width_bins`);
  default: the calibration suite's ``n_bins`` when that suite is in the run, else 15.
- ``conditions``: condition keys (shell-style patterns such as ``corruption/*/5``) audited
  besides ``clean`` (default: every condition except ``attack/sanity/*``).
- ``max_accuracy_gap``: threshold of the built-in WARN check on each clean column's accuracy
  difference, on the lower end of its CI (default 0.10; ``null`` disables the checks).
- ``fairlearn_check``: recompute the clean audit's point estimates with fairlearn's
  MetricFrame and report the largest difference (``auto``: when the clean data has at most
  5,000 rows; ``true``; ``false``).

Gate paths (``docs/slices.md``): clean ``slices.<column>.<metric>.<summary>`` and
``slices.derived.<property>.<metric>.<summary>``; other conditions insert the condition's gate
path (:func:`evalsuite.results.gate_path`, ``/`` written as ``.``):
``slices.corruption.fog.3.ink_density.accuracy.difference``. Metrics:
``accuracy``, ``error_rate``, ``macro_recall``, ``ece``, ``nll``; summaries: ``difference``,
``ratio``, ``worst_group``, ``best_group``, ``difference_to_overall``, ``ratio_to_overall``,
``overall`` and ``by_group.<group>``; also ``equalized_odds_difference`` (clean:
``equalized_odds_by_class.<class>`` too) and ``demographic_parity_difference.max``.
"""

from __future__ import annotations

import fnmatch
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalsuite.conditions import Condition, ConditionIdentity, condition_identity
from evalsuite.errors import UsageError
from evalsuite.gates import Bound, Gate
from evalsuite.metric_specs import MetricSpec, specs_under
from evalsuite.predictions import PredictionSet
from evalsuite.results import gate_path
from evalsuite.seeding import sample_seed
from evalsuite.suites.base import RunContext, Suite, SuiteOutput

log = logging.getLogger(__name__)

DEFAULT_EXCLUDE = ("attack/sanity/*",)
DEFAULT_MAX_GAP = 0.10
FAIRLEARN_AUTO_LIMIT = 5000
MAX_LINES = 10
MAX_CONDITION_BARS = 24


def condition_family(ident: ConditionIdentity) -> str:
    """Column label of a condition in the heatmaps: corruptions are grouped by severity."""
    parts = [str(p) for p in ident.parts]
    if ident.kind == "corruption" and len(parts) == 2:
        return f"corruption s{parts[1]}"
    if ident.kind == "device" and parts:
        return "device " + "/".join(parts)
    if ident.kind == "attack" and len(parts) >= 2:
        return f"attack {parts[0]} {'/'.join(parts[1:])}"
    return ident.key


def _name_list(value: str | list[str] | None) -> list[str] | None:
    return [value] if isinstance(value, str) else value


@dataclass
class SliceOptions:
    """``suites: {slices: {...}}`` (see the module docstring)."""

    columns: str | list[str] | None = None  # None: every column of the dataset; [] for none
    intersections: list[list[str]] | None = None  # [a, b] pairs audited jointly (None: none)
    derived: str | bool | list[str] | None = "auto"  # auto | true (all six) | false/null | names
    min_group_size: int = 30
    numeric_bins: int = 4
    max_groups: int = 50
    n_boot: int = 1000
    bootstrap: str = "auto"  # auto | rows | counts
    conditions: str | list[str] | None = None  # patterns besides clean (None: all but attack/sanity/*)
    max_accuracy_gap: float | None = DEFAULT_MAX_GAP  # None: no built-in checks
    fairlearn_check: str | bool = "auto"  # auto | true | false
    n_bins: int | None = None  # None: the calibration suite's n_bins when it runs, else DEFAULT_N_BINS

    def __post_init__(self) -> None:
        from evalsuite.slices.bootstrap import METHODS
        from evalsuite.slices.derived import check_names

        self.columns = _name_list(self.columns)
        self.conditions = _name_list(self.conditions)
        self.intersections = self.intersections or []
        for pair in self.intersections:
            if len(pair) != 2:
                raise UsageError(f"suite 'slices': each intersection must be a pair [a, b] of column names, got {pair!r}")
            if pair[0] == pair[1]:
                raise UsageError(f"suite 'slices': intersection of {pair[0]!r} with itself")
        if self.derived is None:
            self.derived = False
        if isinstance(self.derived, str) and self.derived != "auto":
            raise UsageError(f"suite 'slices': option derived must be auto, true, false or a list of names, "
                             f"got {self.derived!r}")
        if isinstance(self.derived, list):
            check_names(self.derived)
        for name, minimum in (("min_group_size", 1), ("numeric_bins", 2), ("max_groups", 2), ("n_boot", 0), ("n_bins", 1)):
            value = getattr(self, name)
            if value is not None and value < minimum:
                raise UsageError(f"suite 'slices': option {name} must be an integer >= {minimum}, got {value!r}")
        if self.bootstrap not in METHODS:
            raise UsageError(f"suite 'slices': option bootstrap must be one of {', '.join(METHODS)}, got {self.bootstrap!r}")
        gap = self.max_accuracy_gap
        if gap is not None and not 0 <= gap <= 1:
            raise UsageError(f"suite 'slices': option max_accuracy_gap must be a number in [0, 1] or null, got {gap!r}")
        if self.fairlearn_check not in ("auto", True, False):
            raise UsageError(f"suite 'slices': option fairlearn_check must be auto, true or false, "
                             f"got {self.fairlearn_check!r}")


class SliceSuite(Suite):
    """Per-slice bias audit on every condition (see the module docstring for options)."""

    name = "slices"
    stage = "analysis"
    Options = SliceOptions

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        from evalsuite.slices.metrics import DEFAULT_N_BINS

        super().__init__(options)
        self.opts: SliceOptions
        self.n_bins = DEFAULT_N_BINS if self.opts.n_bins is None else self.opts.n_bins

    def link_suites(self, suites: Sequence[Suite]) -> None:
        """Called by the runner with every suite of the run: without its own ``n_bins`` option the
        slice ECE bins like the calibration suite's ECE (its ``n_bins``) when that suite runs."""
        if self.opts.n_bins is not None:
            return
        for suite in suites:
            bins = getattr(suite, "n_bins", None)
            if suite.name == "calibration" and isinstance(bins, int) and not isinstance(bins, bool):
                self.n_bins = bins

    # -- slice columns ------------------------------------------------------------------------

    def build_columns(self, run: RunContext, reserved: set[str]) -> tuple[list[Any], list[str]]:
        """(slice columns, notes) for the run's dataset."""
        from evalsuite.registry import did_you_mean
        from evalsuite.slices.columns import intersect, prepare_column
        from evalsuite.slices.derived import DERIVED, compute_properties, derived_columns

        o = self.opts
        ds = run.dataset
        available = list(ds.columns)
        notes: list[str] = []
        names = available if o.columns is None else o.columns
        for name in names:
            if name not in ds.columns:
                raise UsageError(
                    f"suite 'slices': the dataset has no column {name!r}{did_you_mean(name, available)}; "
                    f"columns: {', '.join(available) or '(none)'}"
                )
        cols = []
        for name in names:
            col = prepare_column(name, ds.columns[name], numeric_bins=o.numeric_bins, max_groups=o.max_groups)
            if name in reserved:
                col.name = f"{name}_column"
                notes.append(f"column {name!r} is reported as {col.name!r}: its name is reserved in slices metrics")
            cols.append(col)
        if o.derived == "auto":
            wanted = [] if cols else list(DERIVED)
        elif isinstance(o.derived, bool):
            wanted = list(DERIVED) if o.derived else []
        else:
            wanted = list(o.derived)
        inter_names = {n for pair in o.intersections for n in pair}
        need_derived = wanted + [n for n in inter_names if n in DERIVED and n not in ds.columns and n not in wanted]
        derived: list[Any] = []
        if need_derived:
            props = compute_properties(ds.read_image, len(ds))
            derived = derived_columns(props, need_derived, o.numeric_bins)
        by_name = {c.name: c for c in cols}
        by_name.update({c.name: c for c in derived if c.name not in by_name})
        inters = []
        for a, b in o.intersections:
            for n in (a, b):
                if n not in by_name:
                    if n in ds.columns:
                        by_name[n] = prepare_column(n, ds.columns[n], numeric_bins=o.numeric_bins, max_groups=o.max_groups)
                    else:
                        raise UsageError(
                            f"suite 'slices': intersection names unknown column {n!r}"
                            f"{did_you_mean(n, available + list(DERIVED))}; columns: {', '.join(available) or '(none)'}, "
                            f"derived: {', '.join(DERIVED)}"
                        )
            inters.append(intersect(by_name[a], by_name[b]))
        derived_out = [c for c in derived if c.name in wanted]
        return cols + inters + derived_out, notes

    # -- conditions ---------------------------------------------------------------------------

    def select_conditions(self, preds: PredictionSet) -> tuple[list[str], list[str]]:
        """(audited condition keys, clean first; notes about patterns that matched nothing)."""
        from evalsuite.registry import did_you_mean

        keys = list(preds)
        notes = []
        if self.opts.conditions is None:
            chosen = [k for k in keys if not any(fnmatch.fnmatchcase(k, pat) for pat in DEFAULT_EXCLUDE)]
        else:
            chosen = []
            for pat in self.opts.conditions:
                hit = [k for k in keys if fnmatch.fnmatchcase(k, pat)]
                if not hit:
                    notes.append(f"condition pattern {pat!r} matched no condition of this run{did_you_mean(pat, keys)}")
                chosen.extend(k for k in hit if k not in chosen)
        if "clean" in keys and "clean" not in chosen:
            chosen.insert(0, "clean")
        chosen.sort(key=lambda k: (k != "clean", keys.index(k)))
        return chosen, notes

    def metric_specs(self, run: RunContext, conditions: Sequence[Condition]) -> list[MetricSpec]:
        """Leaf names are fixed; columns, groups and audited conditions (``*``) depend on the data."""
        from evalsuite.slices.metrics import METRICS, SUMMARY_DIRECTIONS

        specs = [MetricSpec("slices.*.groups", ci=False), MetricSpec("slices.*.eligible_groups", ci=False),
                 MetricSpec("slices.*.equalized_odds_difference"),
                 MetricSpec("slices.*.equalized_odds_by_class.*"),
                 MetricSpec("slices.*.demographic_parity_difference.max"),
                 MetricSpec("slices.*.demographic_parity_difference.by_class.*")]
        for name in METRICS:
            specs += specs_under(f"slices.*.{name}", (*SUMMARY_DIRECTIONS, "overall", "by_group.*"))
        return specs

    # -- summary ------------------------------------------------------------------------------

    def summarize(self, run: RunContext, preds: PredictionSet) -> SuiteOutput:
        from evalsuite.progress import progress
        from evalsuite.slices.audit import audit_groups, audit_metrics
        from evalsuite.slices.metrics import RowStats

        o = self.opts
        keys, cond_notes = self.select_conditions(preds)
        reserved = {"derived"} | {gate_path(k) for k in keys if k != "clean"}
        columns, col_notes = self.build_columns(run, reserved)
        class_names = [str(c) for c in run.model.info.class_names]
        metrics: dict[str, Any] = {}
        audits: dict[str, dict[str, Any]] = {}
        rows_of: dict[str, RowStats] = {}
        n_bins = self.n_bins
        for key in progress(keys, total=len(keys), desc="slices", unit="condition"):
            p = preds[key]
            rows = RowStats.from_logits(p.labels, p.logits, n_bins=n_bins)
            rows_of[key] = rows
            audits[key] = {}
            for col in columns:
                a = audit_groups(
                    rows, col.take(p.index), col.groups, min_group_size=o.min_group_size, n_boot=o.n_boot,
                    seed=sample_seed(run.seed, f"slices/{key}", col.name), method=o.bootstrap, class_names=class_names,
                )
                audits[key][col.name] = a
                node = audit_metrics(a, full=key == "clean")
                target = metrics if key == "clean" else metrics.setdefault(gate_path(key), {})
                if col.source == "derived":
                    target.setdefault("derived", {})[col.name] = node
                else:
                    target[col.name] = node
        report = self._report(run, preds, keys, columns, audits, rows_of, class_names, col_notes + cond_notes)
        checks = self._checks(columns, audits.get("clean", {}))
        return SuiteOutput(metrics=metrics, checks=checks, report=report)

    @staticmethod
    def metric_path(col: Any, key: str = "clean") -> str:
        """Gate-path prefix of a column on a condition."""
        parts = ["slices"]
        if key != "clean":
            parts.append(gate_path(key))
        if col.source == "derived":
            parts.append("derived")
        parts.append(col.name)
        return ".".join(parts)

    def _checks(self, columns: list[Any], clean: dict[str, Any]) -> list[Gate]:
        gap = self.opts.max_accuracy_gap
        if gap is None:
            return []
        checks = []
        for col in columns:
            a = clean.get(col.name)
            if a is None or a.value("s.accuracy.difference") is None or a.interval("s.accuracy.difference") is None:
                continue
            path = self.metric_path(col)
            checks.append(Gate.check(
                f"slices: {path[len('slices.'):]} accuracy gap", f"{path}.accuracy.difference", max=gap,
                bound=Bound.CI_LOWER,
                description=(
                    f"Warn when the accuracy gap between the best and worst {col.name} group (groups of at least "
                    f"{self.opts.min_group_size} samples) exceeds {gap:.0%} even at the lower end of its 95% interval."
                ),
            ))
        return checks

    # -- report data --------------------------------------------------------------------------

    def _report(
        self, run: RunContext, preds: PredictionSet, keys: list[str], columns: list[Any],
        audits: dict[str, dict[str, Any]], rows_of: dict[str, Any], class_names: list[str], notes: list[str],
    ) -> dict[str, Any]:
        from evalsuite.slices.audit import audit_report

        o = self.opts
        clean = audits.get("clean", {})
        families = {k: condition_family(condition_identity(k, preds[k].suite, preds[k].params)) for k in keys}
        col_reports = []
        for col in columns:
            entry: dict[str, Any] = {**col.describe(), "path": self.metric_path(col)}
            if col.name in clean:
                entry["clean"] = audit_report(clean[col.name], full=True)
                entry["fairlearn_check"] = self._fairlearn_check(col, clean[col.name], preds, rows_of)
            entry["heatmap"] = self._heatmap(col, families, audits)
            entry["by_condition"] = self._condition_rows(col, keys, audits)
            ranked = [r for r in entry["by_condition"] if r["difference"] is not None]
            if len(ranked) > MAX_CONDITION_BARS:
                ranked = sorted(ranked, key=lambda r: -r["difference"])[:MAX_CONDITION_BARS]
            entry["condition_chart"] = ranked if len(ranked) >= 2 else []
            col_reports.append(entry)
        lines = self._degradation(run, preds, keys, columns, audits, rows_of)
        return {
            "min_group_size": o.min_group_size,
            "n_boot": o.n_boot,
            "numeric_bins": o.numeric_bins,
            "n_bins": self.n_bins,
            "max_accuracy_gap": o.max_accuracy_gap,
            "conditions": keys,
            "columns": col_reports,
            "degradation": lines,
            "notes": notes,
            "n_clean": int(len(preds.clean)) if "clean" in preds else 0,
            "n_classes": len(class_names),
        }

    def _fairlearn_check(self, col: Any, a: Any, preds: PredictionSet, rows_of: dict[str, Any]) -> dict[str, Any] | None:
        mode = self.opts.fairlearn_check
        p = preds.clean
        if mode is False or (mode == "auto" and len(p) > FAIRLEARN_AUTO_LIMIT):
            return None
        from evalsuite.slices.reference import compare_with_metricframe
        from evalsuite.stats import finite_rows

        if not finite_rows(p.logits).all():
            return {"skipped": "non-finite logits in the clean predictions"}
        res = compare_with_metricframe(a, p.labels, p.probs, np.asarray(col.groups, dtype=object)[col.take(p.index)])
        res["ok"] = bool(res["max_abs_diff"] <= 1e-9)
        if not res["ok"]:
            log.error("slices: column %s differs from fairlearn MetricFrame by %.3g at %s",
                      col.name, res["max_abs_diff"], res["worst"])
        return res

    @staticmethod
    def _heatmap(col: Any, families: dict[str, str], audits: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        """Accuracy by group x condition family (corruptions averaged over types per severity)."""
        fams: dict[str, list[np.ndarray]] = {}
        for key, family in families.items():
            a = audits[key].get(col.name)
            if a is None:
                continue
            fams.setdefault(family, []).append(np.where(a.n > 0, a.est["g.accuracy"], np.nan))
        if len(fams) < 2:
            return None
        labels = list(fams)
        values = []
        for k in range(col.n_groups):
            row = []
            for fam in labels:
                arr = np.array([v[k] for v in fams[fam]])
                row.append(float(np.nanmean(arr)) if np.isfinite(arr).any() else None)
            values.append(row)
        return {"rows": list(col.groups), "cols": labels, "cells": values,
                "averaged": [f for f in labels if len(fams[f]) > 1]}

    @staticmethod
    def _condition_rows(col: Any, keys: list[str], audits: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for key in keys:
            a = audits[key].get(col.name)
            if a is None:
                continue
            worst = a.extreme_group("accuracy", worst=True)
            ci = a.interval("s.accuracy.difference")
            out.append({
                "condition": key,
                "n": a.n_total,
                "overall": a.value("o.accuracy"),
                "worst_group": a.groups[worst] if worst >= 0 else None,
                "worst_accuracy": a.value("g.accuracy", worst) if worst >= 0 else None,
                "difference": a.value("s.accuracy.difference"),
                "lo": None if ci is None else ci[0],
                "hi": None if ci is None else ci[1],
                "eod": a.value("eod"),
                "eligible_groups": int(a.eligible.sum()),
            })
        return out

    def _degradation(
        self, run: RunContext, preds: PredictionSet, keys: list[str], columns: list[Any],
        audits: dict[str, dict[str, Any]], rows_of: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """Per condition and column, the eligible group whose accuracy falls most from clean.

        The drop is measured on the same samples (attacks may cover a subset): per sample,
        clean-correct minus condition-correct, averaged by group, with a stratified bootstrap CI.
        Lines are ranked by how far the group's drop exceeds the drop over all samples, using
        the lower end of its CI; every column gets its worst line, the rest fill up to ten.
        """
        if "clean" not in preds:
            return []
        clean = preds.clean
        size = max([len(run.dataset)] + [int(preds[k].index.max(initial=-1)) + 1 for k in keys])
        pos = np.full(size, -1, dtype=np.int64)
        pos[clean.index] = np.arange(len(clean))
        clean_correct = rows_of["clean"].correct
        found = []
        for key in keys:
            if key == "clean":
                continue
            p = preds[key]
            at = pos[p.index]
            ok = at >= 0
            if not ok.any():
                continue
            drop = clean_correct[at[ok]] - rows_of[key].correct[ok]
            for col in columns:
                if audits[key].get(col.name) is not None:
                    line = self._drop_line(run, key, col, p.index[ok], drop, clean_correct[at[ok]])
                    if line is not None:
                        found.append(line)
        return self._rank_lines(found)

    def _drop_line(
        self, run: RunContext, key: str, col: Any, index: np.ndarray, drop: np.ndarray, clean_correct: np.ndarray,
    ) -> dict[str, Any] | None:
        """The line of the eligible group of ``col`` with the largest mean ``drop`` under ``key``
        (``None`` with fewer than two eligible groups); ``index`` are the dataset positions of the
        samples ``drop`` and ``clean_correct`` belong to."""
        from evalsuite.stats import multinomial_mean_ci

        codes = col.take(index)
        if self.opts.n_boot:
            means, ci = multinomial_mean_ci(drop, codes, col.n_groups, self.opts.n_boot,
                                            sample_seed(run.seed, f"slices-drop/{key}", col.name))
        else:
            means, ci = self._means(drop, codes, col.n_groups), np.full((col.n_groups, 2), np.nan)
        sizes = np.bincount(codes, minlength=col.n_groups)
        elig = sizes >= self.opts.min_group_size
        if elig.sum() < 2:
            return None
        k = int(np.argmax(np.where(elig, means, -np.inf)))
        clean_acc = float(clean_correct[codes == k].mean())
        overall = float(drop.mean())
        return {
            "condition": key,
            "column": col.name,
            "column_path": self.metric_path(col),
            "group": col.groups[k],
            "n": int(sizes[k]),
            "clean_accuracy": clean_acc,
            "condition_accuracy": clean_acc - float(means[k]),
            "drop": float(means[k]),
            "drop_lo": None if not math.isfinite(ci[k, 0]) else float(ci[k, 0]),
            "drop_hi": None if not math.isfinite(ci[k, 1]) else float(ci[k, 1]),
            "overall_drop": overall,
            "excess": float(means[k]) - overall,
        }

    def _rank_lines(self, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The "degrades most" lines to show, best first, each with its ``text``."""
        # rank by the conservative excess (lower CI end of the group's drop beyond the average drop),
        # so a small group's noisy drop does not crowd out a clear one; one line per column first
        def score(d: dict[str, Any]) -> float:
            return (d["drop_lo"] if d["drop_lo"] is not None else d["drop"]) - d["overall_drop"]

        # only groups that really fall further than everyone else; if none does, the largest drop
        found = [d for d in found if d["drop"] > 0 and score(d) > 0] or sorted(found, key=lambda d: -d["drop"])[:1]
        found.sort(key=lambda d: -score(d))
        lines: list[dict[str, Any]] = []
        seen: set[str] = set()
        for d in found:
            if d["column"] not in seen:
                seen.add(d["column"])
                lines.append(d)
        lines += [d for d in found if d not in lines][: max(0, MAX_LINES - len(lines))]
        lines.sort(key=lambda d: -score(d))
        for d in lines:
            d["text"] = self._line(d)
        return lines[:max(MAX_LINES, len(seen))]

    @staticmethod
    def _means(values: np.ndarray, codes: np.ndarray, g: int) -> np.ndarray:
        sizes = np.bincount(codes, minlength=g)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.bincount(codes, weights=values, minlength=g) / sizes

    @staticmethod
    def _line(d: dict[str, Any]) -> str:
        ci = ""
        if d["drop_lo"] is not None:
            ci = f", 95% CI {100 * d['drop_lo']:.1f} to {100 * d['drop_hi']:.1f}"
        return (
            f"The model degrades most for {d['column']} = {d['group']} under {d['condition']}: accuracy "
            f"{100 * d['clean_accuracy']:.1f}% -> {100 * d['condition_accuracy']:.1f}% "
            f"(-{100 * d['drop']:.1f} points{ci}; -{100 * d['overall_drop']:.1f} points over all samples; n={d['n']})."
        )


