"""The compare suite: a candidate model against a reference (production) model on identical inputs.

``evalsuite run CANDIDATE --reference PRODUCTION ...`` scores both models on the very same
perturbed pixels of every condition (the runner applies each condition once per batch and both
models predict that tensor; attacks, whose pixels are crafted against a model, attack each
model with its own attack on the same seeded sample subset, so those are paired by sample).
``evalsuite compare A B`` (:mod:`evalsuite.compare_runs`) summarises two finished runs of the
same data, conditions and seed the same way. Per condition, under
``compare.<gate_path(key)>``:

- ``accuracy_diff``: candidate minus reference accuracy, paired bootstrap CI (both models on
  the same resampled rows, :func:`evalsuite.stats.paired.paired_bootstrap`), higher is better;
- ``candidate_accuracy``, ``reference_accuracy``: each with its bootstrap CI;
- ``mcnemar_p``: exact two-sided McNemar p-value of the discordant pairs (no CI);
- ``agreement``: share of samples with identical top-1 predictions;
- ``fixed`` / ``broken``: counts of samples the reference gets wrong and the candidate right,
  and the reverse (exact counts, no CI);
- ``ece_diff``: candidate minus reference ECE (equal-width bins, the calibration suite's
  ``n_bins``), paired bootstrap CI over the same resamples, lower is better;
- with the slices suite in the run: ``slices.<column>.worst_group_accuracy_diff``, the
  difference of the two models' worst-group accuracies over groups of at least the slices
  suite's ``min_group_size`` (metadata and intersection columns; derived image properties are
  not recomputed here).

A paired test needs far fewer samples than a ``max_drop`` against a stored baseline
(``docs/compare.md``). Options (``suites: {compare: {...}}``): ``n_boot`` (1000), ``mid_p``
(false: exact McNemar; true: mid-p), ``gallery`` (12: newly broken samples shown), ``n_bins``
(None: the calibration suite's, else 15).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalsuite.conditions import Condition, condition_identity
from evalsuite.errors import UsageError
from evalsuite.metric_specs import MetricSpec
from evalsuite.predictions import Predictions, PredictionSet
from evalsuite.results import gate_path
from evalsuite.stats import mean_metric, metric, predicted_labels
from evalsuite.stats.paired import binned_ece, mcnemar, paired_bootstrap, paired_group_min_replicates
from evalsuite.suites.base import RunContext, Suite, SuiteOutput

log = logging.getLogger(__name__)

LEAVES = ("accuracy_diff", "candidate_accuracy", "reference_accuracy", "agreement", "ece_diff")
COUNT_LEAVES = ("mcnemar_p", "fixed", "broken")
DEFAULT_N_BINS = 15


@dataclass
class CompareOptions:
    """``suites: {compare: {...}}`` (added automatically by ``run --reference``)."""

    n_boot: int = 1000  # paired bootstrap replicates of every interval
    mid_p: bool = False  # McNemar mid-p instead of the exact test
    gallery: int = 12  # newly broken samples shown in the scorecard (0: none)
    n_bins: int | None = None  # ECE bins; None: the calibration suite's n_bins when it runs, else 15

    def __post_init__(self) -> None:
        if self.n_boot < 1:
            raise UsageError(f"suites.compare.n_boot must be >= 1, got {self.n_boot}")
        if self.n_bins is not None and self.n_bins < 1:
            raise UsageError(f"suites.compare.n_bins must be >= 1, got {self.n_bins}")


def align(cand: Predictions, ref: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``cand`` and ``ref`` that hold the same dataset positions, in ``cand``'s order."""
    if np.array_equal(cand.index, ref.index):
        rows = np.arange(len(cand.index))
        return rows, rows
    _, a, b = np.intersect1d(cand.index, ref.index, assume_unique=True, return_indices=True)
    order = np.argsort(a, kind="stable")
    return a[order], b[order]


def top1(p: Predictions, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predicted class, 0/1 correct, top-1 probability) of ``rows``; a non-finite row predicts -1,
    counts as wrong and has confidence 0 (the sanity check fails such a run anyway)."""
    logits = np.asarray(p.logits)[rows]
    pred = predicted_labels(logits)
    labels = np.asarray(p.labels)[rows]
    ok = pred >= 0
    conf = np.zeros(len(rows))
    if ok.any():
        conf[ok] = p.probs[rows[ok]].max(axis=1)
    return pred, (pred == labels).astype(np.float64), conf


def compare_condition(cand: Predictions, ref: Predictions, *, seed: int, n_boot: int = 1000, n_bins: int = 15,
                      mid_p: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, per-sample data) of one condition's paired comparison (see the module docstring).

    The per-sample data (``rows``, ``fixed``/``broken`` masks, predictions) feed the gallery and
    the slice differences.
    """
    rows_c, rows_r = align(cand, ref)
    n = len(rows_c)
    pred_c, corr_c, conf_c = top1(cand, rows_c)
    pred_r, corr_r, conf_r = top1(ref, rows_r)
    reps = paired_bootstrap(corr_c, corr_r, conf_c, conf_r, n_bins=n_bins, n_boot=n_boot, seed=seed)
    test = mcnemar(corr_c, corr_r, mid_p=mid_p)
    ece_c, ece_r = (binned_ece(conf_c, corr_c, n_bins), binned_ece(conf_r, corr_r, n_bins)) if n else (None, None)
    acc_c = float(corr_c.mean()) if n else None
    acc_r = float(corr_r.mean()) if n else None
    metrics = {
        "accuracy_diff": metric(acc_c - acc_r if n else None, n, reps.ci("accuracy_diff") if n else None, "higher",
                                candidate=acc_c, reference=acc_r),
        "candidate_accuracy": mean_metric(corr_c, "higher", seed=seed),
        "reference_accuracy": mean_metric(corr_r, "higher", seed=seed),
        "mcnemar_p": metric(test.pvalue if n else None, n, None, "none", test="mid-p" if mid_p else "exact"),
        "agreement": mean_metric((pred_c == pred_r).astype(np.float64), "none", seed=seed),
        "fixed": metric(test.fixed, n, None, "higher"),
        "broken": metric(test.broken, n, None, "lower"),
        "ece_diff": metric(ece_c - ece_r if n else None, n, reps.ci("ece_diff") if n else None, "lower",
                           candidate=ece_c, reference=ece_r, n_bins=n_bins),
    }
    data = {"rows": rows_c, "corr_c": corr_c, "corr_r": corr_r, "pred_c": pred_c, "pred_r": pred_r,
            "conf_c": conf_c, "broken": (corr_r == 1) & (corr_c == 0)}
    return metrics, data


class CompareSuite(Suite):
    """Paired candidate-vs-reference comparison on every condition (``run --reference``)."""

    name = "compare"
    stage = "analysis"
    Options = CompareOptions

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.opts: CompareOptions
        self.n_bins = self.opts.n_bins or DEFAULT_N_BINS
        self.slices: Any = None
        self._conditions: dict[str, Condition] = {}

    def link_suites(self, suites: Sequence[Suite]) -> None:
        """ECE bins like the calibration suite's; slice differences when the slices suite runs."""
        for suite in suites:
            bins = getattr(suite, "n_bins", None)
            if suite.name == "calibration" and self.opts.n_bins is None and isinstance(bins, int):
                self.n_bins = bins
            if suite.name == "slices":
                self.slices = suite

    def metric_specs(self, run: RunContext, conditions: Sequence[Condition]) -> list[MetricSpec]:
        self._conditions = {c.key: c for c in conditions}
        specs = []
        for c in conditions:
            prefix = f"compare.{gate_path(c.key)}"
            specs += [MetricSpec(f"{prefix}.{leaf}") for leaf in LEAVES]
            specs += [MetricSpec(f"{prefix}.{leaf}", ci=False) for leaf in COUNT_LEAVES]
            if self.slices is not None:
                specs.append(MetricSpec(f"{prefix}.slices.*.worst_group_accuracy_diff"))
        return specs

    def summarize(self, run: RunContext, preds: PredictionSet) -> SuiteOutput:
        reference = getattr(preds, "reference", None)
        if reference is None:
            raise UsageError("suite 'compare' needs the reference model's predictions (run --reference MODEL)")
        columns = self._slice_columns(run)
        metrics: dict[str, Any] = {}
        rows: list[dict[str, Any]] = []
        missing: list[str] = []
        per_sample: dict[str, tuple[Predictions, dict[str, Any]]] = {}
        for key, cand in preds.items():
            ref = reference.get(key) if hasattr(reference, "get") else None
            if ref is None:
                missing.append(key)
                continue
            m, data = compare_condition(cand, ref, seed=run.seed, n_boot=self.opts.n_boot, n_bins=self.n_bins,
                                        mid_p=self.opts.mid_p)
            if columns:
                m["slices"] = self._slice_diffs(cand, data, columns, run.seed)
            metrics[gate_path(key)] = m
            per_sample[key] = (cand, data)
            ident = condition_identity(key, cand.suite, cand.params)
            rows.append({"key": key, "path": gate_path(key), "label": ident.label, "kind": ident.kind,
                         "suite": cand.suite, "n": m["accuracy_diff"]["n"],
                         **{leaf: m[leaf]["value"] for leaf in (*LEAVES, *COUNT_LEAVES)},
                         "accuracy_diff_ci": m["accuracy_diff"]["ci"], "ece_diff_ci": m["ece_diff"]["ci"],
                         "paired_by": "sample" if ident.kind == "attack" else "pixels"})
        report = {
            "rows": rows,
            "missing": missing,
            "n_bins": self.n_bins,
            "n_boot": self.opts.n_boot,
            "test": "mid-p" if self.opts.mid_p else "exact",
            "gallery": self._gallery(run, per_sample, self.opts.gallery),
            "slices": [c.name for c in columns],
        }
        if missing:
            log.warning("compare: no reference predictions for %s", ", ".join(missing))
        return SuiteOutput(metrics=metrics, report=report)

    # -- slices --------------------------------------------------------------------------------

    def _slice_columns(self, run: RunContext) -> list[Any]:
        if self.slices is None or getattr(run, "dataset", None) is None:
            return []
        o = self.slices.opts
        if o.derived is True or (isinstance(o.derived, list) and o.derived):
            log.info("compare: derived image-property slices are not compared (metadata columns only)")
        saved = o.derived
        try:
            o.derived = False  # never recompute image properties here
            columns, _ = self.slices.build_columns(run, {"slices"})
        finally:
            o.derived = saved
        return [c for c in columns if c.source != "derived"]

    def _slice_diffs(self, cand: Predictions, data: dict[str, Any], columns: list[Any], seed: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        index = np.asarray(cand.index)[data["rows"]]
        min_size = int(self.slices.opts.min_group_size)
        for col in columns:
            codes = col.take(index)
            sizes = np.bincount(codes[codes >= 0], minlength=col.n_groups)
            eligible = sizes >= min_size
            point, reps = paired_group_min_replicates(data["corr_c"], data["corr_r"], np.where(codes >= 0, codes, -1),
                                                      eligible, n_boot=self.opts.n_boot, seed=seed)
            from evalsuite.stats import percentile_ci

            ci = percentile_ci(reps) if eligible.any() else None
            out[col.name] = {"worst_group_accuracy_diff": metric(point if eligible.any() else None, len(index), ci,
                                                                 "higher", groups=int(eligible.sum()))}
        return out

    # -- gallery -------------------------------------------------------------------------------

    def _gallery(self, run: RunContext, per_sample: dict[str, tuple[Predictions, dict[str, Any]]],
                 k: int) -> list[dict[str, Any]]:
        """Up to ``k`` newly broken samples (reference right, candidate wrong), the candidate's most
        confident first, from the clean condition and then the condition with the most of them;
        thumbnails show the very pixels both models saw (attacks: the clean input)."""
        if k <= 0 or not per_sample:
            return []
        from evalsuite.report.images import thumbnail_png

        order = sorted(per_sample, key=lambda key: (key != "clean", -int(per_sample[key][1]["broken"].sum())))
        class_names = [str(c) for c in run.model.info.class_names] if getattr(run, "model", None) else []
        items: list[dict[str, Any]] = []
        for key in order[:2]:
            cand, data = per_sample[key]
            picked = np.flatnonzero(data["broken"])
            picked = picked[np.argsort(-data["conf_c"][picked], kind="stable")][: k - len(items)]
            if not len(picked):
                continue
            positions = np.asarray(cand.index)[data["rows"][picked]]
            images = self._images(run, key, positions, np.asarray(cand.ids)[data["rows"][picked]])
            for j, (r, pos) in enumerate(zip(picked, positions, strict=True)):
                name = lambda c: class_names[int(c)] if 0 <= int(c) < len(class_names) else str(int(c))  # noqa: E731
                item = {"condition": key, "id": str(cand.ids[data["rows"][r]]), "position": int(pos),
                        "label": name(cand.labels[data["rows"][r]]), "candidate": name(data["pred_c"][r]),
                        "reference": name(data["pred_r"][r]), "confidence": float(data["conf_c"][r]), "image": None}
                if images is not None:
                    item["image"] = run.save_artifact(f"compare_broken_{len(items):02d}.png", thumbnail_png(images[j]))
                items.append(item)
            if len(items) >= k:
                break
        return items

    def _images(self, run: RunContext, key: str, positions: np.ndarray, ids: np.ndarray) -> np.ndarray | None:
        """uint8 NHWC images of ``positions`` as condition ``key`` showed them (None without images)."""
        if getattr(run, "image_source", None) is None:
            return None
        images = run.image_source(positions)
        cond = self._conditions.get(key)
        if key == "clean" or cond is None or cond.uses_model:
            return images
        import torch

        from evalsuite.conditions import BatchContext
        from evalsuite.report.images import to_uint8_hwc
        from evalsuite.tensors import to_tensor

        labels = torch.as_tensor(np.asarray(run.labels)[positions], dtype=torch.long)
        ctx = BatchContext(ids=ids, labels=labels.to(run.device), seed=run.seed, device=run.device)
        with torch.no_grad():
            out = cond.apply(to_tensor(images, run.device), ctx)
        x = out[0] if isinstance(out, tuple) else out
        return np.stack([to_uint8_hwc(a) for a in x.detach().float().cpu().numpy()])
