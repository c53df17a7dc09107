"""Preprocessing parity: does the declared preprocessing look like the one the model was trained with?

A wrong channel order, input scale, normalisation, crop or resampling filter rarely breaks a model
outright; it quietly costs accuracy, and every other suite then measures the wrong thing. On a
seeded stratified sample of the clean condition's samples (:func:`evalsuite.data.sampling.stratified_indices`)
this suite evaluates the model under each plausible mistake that differs from the declared
pipeline (:func:`evalsuite.models.preprocess_variants.variants_for`: RGB/BGR, [0, 1]/[0, 255],
ImageNet/0.5/no mean-std, resize + centre crop/plain resize, bilinear/bicubic) and compares each
with the declared pipeline on the same samples. The declared accuracy is the clean condition's own
predictions on those samples; geometry variants re-read the images with the data loader under the
variant's ``resize``/``interpolation``; value variants feed ``predict`` the tensor whose own
normalisation equals the variant's (:func:`~evalsuite.models.preprocess_variants.value_transform`).

Metrics: ``preprocessing.declared.accuracy`` and, per variant, ``preprocessing.<variant>.accuracy``
and ``.accuracy_gain`` (mean of the per-sample ``correct_variant - correct_declared``: the paired
difference, with its paired bootstrap CI, direction ``lower``). A variant is *suspected* when its
gain exceeds ``margin`` and the lower end of its 95% CI is above zero; the best suspect becomes a
FAIL check "preprocessing mismatch suspected: <variant> scores X points higher" (``bound:
ci_lower``, ``max: 0`` on its gain). Without a suspect one passing check records that the declared
pipeline held (on the best variant's gain: ``max: margin`` on the point, or ``max: 0`` on the CI's
lower end when the point exceeds the margin without significance), so re-gating the stored results
reproduces the verdict.

A model exported by ``evalsuite train`` carries its training pipeline in its metadata
(``extra.training_preprocessing``); it is compared field by field with the preprocessing in force
(flags and sidecars may have overridden the file's own) and any difference is a FAIL check on
``preprocessing.training_record.mismatches``. Without a record the report says so and nothing is
checked.

The work is ``len(sample) x variants`` forward passes in the summary (not conditions: the analysis
suites must not audit deliberately wrong inputs as if they were shifts); a variant whose inputs to
``predict`` equal the declared ones exactly (a plain resize of images already at the input size,
a channel flip of grey images) reuses the declared logits.

Options (``suites: {preprocessing: {...}}``): ``sample`` (default 256; ``null``: every sample),
``margin`` (default 0.02, a fraction of accuracy), ``variants`` (families to try, default all of
``channel_order, scale, normalisation, resize, interpolation``), ``crop_fraction`` (default 0.875,
for the resize + centre crop alternative), ``severity`` (``fail`` or ``warn``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalsuite.conditions import Condition
from evalsuite.errors import UsageError
from evalsuite.gates import Bound, Gate, Severity
from evalsuite.metric_specs import MetricSpec
from evalsuite.models.preprocess_variants import (
    CROP_FRACTION,
    FAMILIES,
    Pipeline,
    Variant,
    compare_record,
    training_record,
    value_transform,
    variants_for,
)
from evalsuite.predictions import Predictions, PredictionSet
from evalsuite.stats import correct, mean_metric, metric
from evalsuite.suites.base import RunContext, Suite, SuiteOutput

log = logging.getLogger(__name__)

DEFAULT_SAMPLE = 256
DEFAULT_MARGIN = 0.02


@dataclass
class PreprocessingOptions:
    """``suites: {preprocessing: {...}}`` (see the module docstring)."""

    sample: int | None = DEFAULT_SAMPLE  # seeded stratified sample of the clean samples (None: all)
    margin: float = DEFAULT_MARGIN  # accuracy gain (fraction) a variant must exceed to be suspected
    variants: list[str] | None = None  # families to try (None: all of FAMILIES)
    crop_fraction: float = CROP_FRACTION  # share kept by the resize + centre crop alternative
    severity: str = "fail"  # of the mismatch checks: fail | warn

    def __post_init__(self) -> None:
        if self.sample is not None and self.sample < 1:
            raise UsageError(f"suite 'preprocessing': option sample must be a positive integer or null, got {self.sample!r}")
        if not 0.0 <= self.margin < 1.0:
            raise UsageError(f"suite 'preprocessing': option margin must be a number in [0, 1), got {self.margin!r}")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise UsageError(
                f"suite 'preprocessing': option crop_fraction must be a number in (0, 1], got {self.crop_fraction!r}")
        if self.severity not in ("fail", "warn"):
            raise UsageError(f"suite 'preprocessing': option severity must be fail or warn, got {self.severity!r}")
        for name in self.variants or []:
            if name not in FAMILIES:
                from evalsuite.registry import did_you_mean

                raise UsageError(f"suite 'preprocessing': unknown variant family {name!r}{did_you_mean(name, list(FAMILIES))}; "
                                 f"valid: {', '.join(FAMILIES)}")


class PreprocessingSuite(Suite):
    """Preprocessing parity: the declared pipeline against plausible mistakes, and against the training record."""

    name = "preprocessing"
    Options = PreprocessingOptions

    def variants(self, info: Any) -> list[Variant]:
        families = FAMILIES if self.opts.variants is None else tuple(self.opts.variants)
        return variants_for(info, families, self.opts.crop_fraction)

    def metric_specs(self, run: RunContext, conditions: Sequence[Condition]) -> list[MetricSpec]:
        specs = [MetricSpec("preprocessing.declared.accuracy")]
        for v in self.variants(run.model.info):
            specs += [MetricSpec(f"preprocessing.{v.name}.accuracy"), MetricSpec(f"preprocessing.{v.name}.accuracy_gain")]
        if training_record(run.model.info)[0] is not None:
            specs.append(MetricSpec("preprocessing.training_record.mismatches", ci=False))
        return specs

    # ---------------------------------------------------------------------------------- summary
    def summarize(self, run: RunContext, preds: PredictionSet) -> SuiteOutput:
        o = self.opts
        info = run.model.info
        declared = Pipeline.of(info)
        clean = preds.clean
        rows = self.sample_rows(clean, run.seed)
        positions = np.asarray(clean.index, dtype=np.int64)[rows]
        labels = np.asarray(clean.labels, dtype=np.int64)[rows]
        ok_declared = correct(clean.logits[rows], labels)
        n = len(rows)
        metrics: dict[str, Any] = {"declared": {"accuracy": mean_metric(ok_declared, seed=run.seed)}}
        report: dict[str, Any] = {
            "n": n, "n_clean": len(clean), "margin": o.margin, "seed": run.seed,
            "sample": "every clean sample" if n == len(clean) else f"seeded stratified sample of {n} of {len(clean)}",
            "declared": declared.describe(), "variants": [],
        }
        checks: list[Gate] = []
        t0 = time.perf_counter()
        variants = self.variants(info)
        if n:
            outcomes = self.evaluate(run, variants, declared, positions, labels, clean.logits[rows])
        else:
            outcomes = {}
        for v in variants:
            ok_v, identical = outcomes.get(v.name, (np.empty(0), False))
            metrics[v.name] = {
                "accuracy": mean_metric(ok_v, seed=run.seed),
                "accuracy_gain": mean_metric(ok_v - ok_declared if n else ok_v, direction="lower", seed=run.seed),
            }
            gain = metrics[v.name]["accuracy_gain"]
            report["variants"].append({
                "name": v.name, "family": v.family, "label": v.label, "change": v.change, "identical": identical,
                "suspect": self.suspect(gain),
            })
        log.info("preprocessing: %d variant(s) on %d sample(s) in %.1fs", len(variants), n, time.perf_counter() - t0)
        checks += self.parity_checks(metrics, variants)
        suspects = [r["name"] for r in report["variants"] if r["suspect"]]
        report["suspects"] = sorted(suspects, key=lambda k: -metrics[k]["accuracy_gain"]["value"])
        record_metrics, record_report, record_checks = self.record_check(info)
        if record_metrics:
            metrics["training_record"] = record_metrics
        report["training_record"] = record_report
        checks += record_checks
        return SuiteOutput(metrics=metrics, checks=checks, report=report)

    def sample_rows(self, clean: Predictions, seed: int) -> np.ndarray:
        """Rows of the clean predictions in the sample (all when ``sample`` is None or not smaller)."""
        n = len(clean)
        if self.opts.sample is None or self.opts.sample >= n:
            return np.arange(n, dtype=np.int64)
        from evalsuite.data.sampling import subset_positions

        return subset_positions(np.asarray(clean.labels), int(self.opts.sample), seed)

    def suspect(self, gain: dict[str, Any]) -> bool:
        """Gain above the margin with the lower end of its 95% paired CI above zero."""
        ci = gain.get("ci")
        return bool(gain["value"] is not None and ci and ci[0] is not None
                    and gain["value"] > self.opts.margin and ci[0] > 0.0)

    def evaluate(self, run: RunContext, variants: list[Variant], declared: Pipeline, positions: np.ndarray,
                 labels: np.ndarray, declared_logits: np.ndarray) -> dict[str, tuple[np.ndarray, bool]]:
        """Per variant: (per-sample correctness on ``positions``, whether its inputs equalled the declared ones)."""
        import torch

        from evalsuite.data.loader import iter_batches, load_images
        from evalsuite.tensors import to_tensor

        model, device, bs = run.model, run.device, max(1, int(run.batch_size))

        def declared_images(pos: np.ndarray) -> np.ndarray:
            """The run's own decoded copies (its image source), else the loader under the declared geometry."""
            if run.image_source is not None:
                return np.asarray(run.image_source(pos))
            resize, interpolation = declared.geometry()
            return load_images(run.dataset, pos, input_size=declared.input_size, resize=resize,
                               interpolation=interpolation, batch_size=bs)

        value_variants = [v for v in variants if not v.changes_geometry]
        out: dict[str, tuple[list[np.ndarray], bool]] = {v.name: ([], True) for v in variants}

        def score(v: Variant, x: Any, x_declared: Any, rows: slice) -> None:
            parts, same = out[v.name]
            if same and x_declared is not None and x.shape == x_declared.shape and torch.equal(x, x_declared):
                logits = declared_logits[rows]
            else:
                same = False
                logits = np.asarray(model.predict(x), dtype=np.float32)
            parts.append(correct(logits, labels[rows]))
            out[v.name] = (parts, same)

        # Value variants: the declared images (the run's own decoded copies), transformed.
        if value_variants:
            for start in range(0, len(positions), bs):
                rows = slice(start, start + bs)
                x = to_tensor(declared_images(positions[rows]), device)
                for v in value_variants:
                    with torch.no_grad():
                        score(v, value_transform(x, declared, v.pipeline), x, rows)
        # Geometry variants: the same images re-read by the data loader under the variant's geometry.
        for v in variants:
            if not v.changes_geometry:
                continue
            resize, interpolation = v.pipeline.geometry()
            start = 0
            for batch in iter_batches(run.dataset, positions, bs, input_size=declared.input_size, resize=resize,
                                      interpolation=interpolation):
                rows = slice(start, start + len(batch.index))
                start += len(batch.index)
                images = declared_images(positions[rows])
                x_declared = to_tensor(images, device) if np.array_equal(batch.images, images) else None
                score(v, to_tensor(batch.images, device), x_declared, rows)
        return {k: (np.concatenate(parts) if parts else np.empty(0), same) for k, (parts, same) in out.items()}

    def parity_checks(self, metrics: dict[str, Any], variants: list[Variant]) -> list[Gate]:
        """One check: FAIL on the best suspected variant, else a passing record of the best variant."""
        scored = [v for v in variants if metrics[v.name]["accuracy_gain"]["value"] is not None]
        if not scored:
            return []
        severity = Severity(self.opts.severity)
        margin = self.opts.margin
        rule = (f"A variant is suspected when it scores more than {100 * margin:g} points above the declared "
                "preprocessing on the same samples and the lower end of the 95% paired bootstrap CI of that gain is above zero.")
        suspects = [v for v in scored if self.suspect(metrics[v.name]["accuracy_gain"])]
        if suspects:
            best = max(suspects, key=lambda v: (metrics[v.name]["accuracy_gain"]["ci"][0], metrics[v.name]["accuracy_gain"]["value"]))
            gain = metrics[best.name]["accuracy_gain"]
            others = [v.name for v in suspects if v is not best]
            also = f" Also suspected: {', '.join(others)}." if others else ""
            return [Gate.check(
                f"preprocessing mismatch suspected: {best.name} scores {100 * gain['value']:.1f} points higher",
                f"preprocessing.{best.name}.accuracy_gain", max=0.0, bound=Bound.CI_LOWER, severity=severity,
                description=f"Evaluated with {best.change}, the model is more accurate than with its declared "
                            f"preprocessing: check the model's metadata. {rule}{also}",
            )]
        best = max(scored, key=lambda v: metrics[v.name]["accuracy_gain"]["value"])
        gain = metrics[best.name]["accuracy_gain"]
        if gain["value"] > margin:  # above the margin but not significant: the CI's lower end decides
            return [Gate.check(
                "preprocessing parity: no alternative is significantly better",
                f"preprocessing.{best.name}.accuracy_gain", max=0.0, bound=Bound.CI_LOWER, severity=severity,
                description=f"The best alternative ({best.change}) is not significantly better than the declared "
                            f"preprocessing. {rule}",
            )]
        return [Gate.check(
            f"preprocessing parity: no alternative scores more than {100 * margin:g} points higher",
            f"preprocessing.{best.name}.accuracy_gain", max=margin, severity=severity,
            description=f"The best alternative ({best.change}) does not beat the declared preprocessing by more "
                        f"than the margin. {rule}",
        )]

    def record_check(self, info: Any) -> tuple[dict[str, Any], dict[str, Any], list[Gate]]:
        """(metrics, report, checks) of the field-by-field comparison with the training record."""
        record, note = training_record(info)
        if record is None:
            return {}, {"present": False, "note": note, "fields": []}, []
        rows = compare_record(info, record)
        bad = [r["field"] for r in rows if not r["match"]]
        leaf = metric(len(bad), len(rows), None, "lower", fields=bad)
        report = {"present": True, "note": note, "fields": rows, "sources": dict(info.extra.get("metadata_fields") or {})}
        severity = Severity(self.opts.severity)
        what = "The preprocessing in force (flags > sidecar > the file's metadata) is compared field by field " \
               "with the pipeline `evalsuite train` recorded when it trained and exported the model."
        name = (f"preprocessing differs from the training record: {', '.join(bad)}" if bad
                else "preprocessing matches the training record")
        check = Gate.check(name, "preprocessing.training_record.mismatches", max=0, severity=severity, description=what)
        return {"mismatches": leaf}, report, [check]


__all__ = ["PreprocessingOptions", "PreprocessingSuite"]
