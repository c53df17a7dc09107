"""``evalsuite calibrate``: fit a temperature, bake it into a copy of the model, verify the copy.

Steps (:func:`calibrate_model`):

1. run the model over ``--data`` (the same preprocessing as ``evalsuite run``);
2. split the samples into calibration / held-out parts (:mod:`evalsuite.calibration.split`), or
   fit on ``--calibration-data`` and hold out all of ``--data``;
3. fit ``T`` on the calibration part (:func:`evalsuite.calibration.temperature.fit_temperature`);
4. write the calibrated model to a temporary file beside the output: ONNX through a graph edit
   (a ``Div`` after the logits), TorchScript through a ``TemperatureScaled`` wrapper; its
   metadata records the total temperature, the data fingerprint and the split;
5. load the temporary file *as a user would* (:func:`evalsuite.models.load_model`, no flags) and
   verify: metadata carries the temperature, the argmax is identical on every sample, the
   logits equal ``original / T`` within float tolerance, and the held-out ECE is lower;
6. move the file into place only when every check passed; otherwise delete it and raise
   :class:`VerificationError` (exit code 1) naming the failed checks.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.errors import ModelError, UsageError
from evalsuite.verification import Check, VerificationError

log = logging.getLogger(__name__)

#: ``|new - original / T| <= RTOL * |original / T| + ATOL * max(1, max |original / T|)``.
RTOL = 1e-5
ATOL = 1e-6


@dataclass
class CalibrateOutcome:
    """What :func:`calibrate_model` did; ``to_dict`` is the ``--json`` summary."""

    model: str
    output: str
    format: str
    temperature: float
    temperature_total: float
    fit: dict[str, Any]
    split: dict[str, Any]
    heldout: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    written: bool = False

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "output": self.output,
            "format": self.format,
            "temperature": self.temperature,
            "temperature_total": self.temperature_total,
            "fit": self.fit,
            "split": self.split,
            "heldout": self.heldout,
            "checks": [c.to_dict() for c in self.checks],
            "passed": self.passed,
            "written": self.written,
        }

    def summary_lines(self) -> list[str]:
        """A short human summary (printed by the CLI)."""
        h = self.heldout
        ci = self.fit.get("ci")
        ci_txt = f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
        src = self.split
        if src.get("source") == "calibration_data":
            how = f"fitted on {src['n_calibration']} samples of {src['data']}"
        else:
            how = (
                f"fitted on {src['n_calibration']} samples (stratified {src['fraction']:g} split, seed {src['seed']})"
            )
        lines = [
            f"{'calibrated' if self.written else 'NOT written'}: {self.model} -> {self.output} ({self.format})",
            f"  temperature  T = {self.temperature:.4f}{ci_txt}, {how}",
            f"  held-out     n = {h['n']}: ECE {h['ece_before']:.4f} -> {h['ece_after']:.4f}, "
            f"NLL {h['nll_before']:.4f} -> {h['nll_after']:.4f}, accuracy {100 * h['accuracy']:.1f}% (unchanged)",
        ]
        for c in self.checks:
            lines.append(f"  [{'ok' if c.passed else 'FAILED'}] {c.name}: {c.detail}")
        return lines


def _model_kind(spec: str) -> str:
    """The model format's registered name (``onnx``, ``torchscript``, ``torch.export``, ``timm``,
    a plug-in's), from the one format registry ``load_model`` uses."""
    from evalsuite.models.formats import find_format

    return find_format(spec).name


def _check_output(model: str, output: str, kind: str, force: bool) -> Path:
    from evalsuite.models import TORCHSCRIPT_SUFFIXES
    from evalsuite.models.metadata import sidecar_candidates

    if kind not in ("onnx", "torchscript"):
        raise UsageError(
            f"evalsuite calibrate writes ONNX (.onnx) and TorchScript ({', '.join(TORCHSCRIPT_SUFFIXES)}) models; "
            f"{model} is {kind}: export it to ONNX first (evalsuite.models.export.export_onnx)"
        )
    out = Path(output).expanduser()
    want = (".onnx",) if kind == "onnx" else TORCHSCRIPT_SUFFIXES
    if out.suffix.lower() not in want:
        raise UsageError(f"-o {output}: a calibrated {kind} model needs a {' or '.join(want)} file name")
    if out.exists() and Path(model).expanduser().exists() and out.resolve() == Path(model).expanduser().resolve():
        raise UsageError("-o must differ from the input model (evalsuite calibrate never overwrites its input)")
    if out.is_dir():
        raise UsageError(f"-o {output} is a directory; give a file name")
    if out.exists() and not force:
        raise UsageError(f"{output} exists; pass --force to replace it")
    for side in sidecar_candidates(out):
        if side.exists():
            raise UsageError(
                f"sidecar {side} exists and would override the calibrated model's metadata; remove it or choose another -o"
            )
    return out


def base_metadata(info: Any) -> dict[str, Any]:
    """The evalsuite metadata object for a loaded model (flags, sidecar and file merged)."""
    from evalsuite.models.export import preprocessing_dict

    extra = dict((info.extra or {}).get("metadata_extra") or {})
    return preprocessing_dict(
        input_size=info.input_size,
        mean=info.mean,
        std=info.std,
        class_names=info.class_names,
        resize=info.resize,
        interpolation=info.interpolation,
        channel_order=info.channel_order,
        temperature=info.temperature,
        extra=extra or None,
    )


def _predict(model: Any, dataset: Any, labels: np.ndarray, batch_size: int, workers: int | None, desc: str) -> np.ndarray:
    from evalsuite.calibration.predict import predict_dataset

    logits = predict_dataset(model, dataset, labels, batch_size=batch_size, workers=workers, desc=desc)
    bad = ~np.all(np.isfinite(logits), axis=1)
    if bad.any():
        first = str(dataset.ids[int(np.flatnonzero(bad)[0])])
        raise ModelError(f"{model.info.source} gives non-finite logits on {int(bad.sum())} sample(s) of {dataset.name} (first: {first})")
    return logits


def _heldout_numbers(logits: np.ndarray, labels: np.ndarray, temperature: float, n_bins: int) -> dict[str, Any]:
    from evalsuite.calibration.metrics import ece, nll_from_logits
    from evalsuite.stats import correct, softmax

    z = logits.astype(np.float64)
    return {
        "n": int(len(labels)),
        "ece_before": ece(softmax(z), labels, n_bins),
        "ece_after": ece(softmax(z, temperature), labels, n_bins),
        "nll_before": nll_from_logits(z, labels),
        "nll_after": nll_from_logits(z / temperature, labels),
        "accuracy": float(correct(z, labels).mean()),
        "n_bins": int(n_bins),
    }


def verify(
    original: np.ndarray,
    calibrated: np.ndarray,
    temperature: float,
    labels: np.ndarray,
    heldout: np.ndarray,
    n_bins: int = 15,
    rtol: float = RTOL,
) -> list[Check]:
    """The three output checks on logits of the original and the calibrated model (same samples).

    ``rtol`` is the relative tolerance of the logits check (:data:`RTOL` for float32 models; two
    machine epsilons of the model's own precision for float16 / bfloat16 models).
    """
    from evalsuite.calibration.metrics import ece, nll_from_logits
    from evalsuite.stats import softmax

    checks: list[Check] = []
    if original.shape != calibrated.shape:
        return [Check("logits", False, f"shape {calibrated.shape} differs from the original {original.shape}")]
    a0, a1 = np.argmax(original, axis=1), np.argmax(calibrated, axis=1)
    diff = int((a0 != a1).sum())
    checks.append(
        Check("argmax", diff == 0, f"identical on {len(a0) - diff}/{len(a0)} samples" + ("" if diff == 0 else f"; {diff} changed"))
    )
    expected = original.astype(np.float64) / float(temperature)
    err = np.abs(calibrated.astype(np.float64) - expected)
    tol = rtol * np.abs(expected) + ATOL * max(1.0, float(np.abs(expected).max()))
    worst = float(err.max()) if err.size else 0.0
    checks.append(
        Check(
            "logits",
            bool(np.all(err <= tol)),
            f"max |logit - original/T| = {worst:.3g} (tolerance {rtol:g} relative + {ATOL * max(1.0, float(np.abs(expected).max())):.3g})",
        )
    )
    y = labels[heldout]
    before = ece(softmax(original[heldout]), y, n_bins)
    after = ece(softmax(calibrated[heldout]), y, n_bins)
    nll0, nll1 = nll_from_logits(original[heldout], y), nll_from_logits(calibrated[heldout], y)
    detail = f"held-out ECE {before:.4f} -> {after:.4f} (n = {len(y)}; NLL {nll0:.4f} -> {nll1:.4f})"
    if not after < before:
        detail += "; with few held-out samples the ECE is noisy: use more data or a larger held-out part"
    checks.append(Check("heldout_ece", after < before, detail))
    return checks


@dataclass(frozen=True)
class _Settings:
    """The options every step of :func:`calibrate_model` shares (where and how to predict, ECE bins)."""

    device: str
    batch_size: int
    workers: int | None
    n_bins: int


@dataclass(frozen=True)
class _Predictions:
    """The loaded model and its logits on ``--data``: the fit, the bake and the checks all read them."""

    model: Any
    dataset: Any
    labels: np.ndarray
    logits: np.ndarray

    @property
    def info(self) -> Any:
        return self.model.info


@dataclass(frozen=True)
class _CalibrationPart:
    """Where ``T`` is fitted (its logits and labels) and which ``--data`` samples are held out."""

    logits: np.ndarray
    labels: np.ndarray
    heldout: np.ndarray
    record: dict[str, Any]


def _check_options(calibration_fraction: float, calibration_data: str | None, n_bins: int) -> float:
    """Reject bad options before any model is loaded; returns the validated calibration fraction."""
    from evalsuite.calibration.split import check_fraction

    if calibration_data is None:
        calibration_fraction = check_fraction(calibration_fraction, "--calibration-fraction")
    if int(n_bins) < 1:
        raise UsageError(f"--n-bins must be a positive integer, got {n_bins}")
    return calibration_fraction


def _predict_data(
    model: str, data: str, settings: _Settings, checkpoint: str | None, overrides: dict[str, Any] | None
) -> _Predictions:
    """Load the model (flags applied) and predict every sample of ``data`` with labels in its class order."""
    from evalsuite.data import open_dataset, resolve_labels
    from evalsuite.models import load_model
    from evalsuite.models.outputs import declared_kind

    m = load_model(model, device=settings.device, checkpoint=checkpoint, overrides=overrides or None)
    if declared_kind(m) == "probabilities":
        # T divides logits (a Div node before the output); dividing probabilities by T is not
        # temperature scaling, so such a model is refused rather than silently mis-calibrated.
        raise UsageError(f"{model}: evalsuite calibrate bakes T into models that output logits; this one outputs "
                         "probabilities (export it without its final softmax, then calibrate)")
    dataset = open_dataset(data)
    labels = resolve_labels(dataset, list(m.info.class_names))
    logits = _predict(m, dataset, labels, settings.batch_size, settings.workers, "predict")
    return _Predictions(m, dataset, labels, logits)


def _calibration_part(
    pred: _Predictions, calibration_data: str | None, fraction: float, seed: int, settings: _Settings
) -> _CalibrationPart:
    """The fitting samples: all of ``calibration_data`` (holding out all of ``--data``), or the
    calibration side of a seeded stratified split of ``--data`` (holding out the rest)."""
    from evalsuite.calibration.split import stratified_split
    from evalsuite.data import open_dataset, resolve_labels

    if calibration_data is None:
        split = stratified_split(pred.dataset.ids, pred.labels, fraction, seed)
        return _CalibrationPart(
            pred.logits[split.calibration], pred.labels[split.calibration], split.heldout, split.record()
        )
    cds = open_dataset(calibration_data)
    c_labels = resolve_labels(cds, list(pred.info.class_names))
    c_logits = _predict(pred.model, cds, c_labels, settings.batch_size, settings.workers, "predict calibration data")
    record = {
        "source": "calibration_data",
        "data": cds.name,
        "fingerprint": cds.fingerprint,
        "n_calibration": int(len(c_labels)),
        "n_heldout": int(len(pred.labels)),
    }
    return _CalibrationPart(c_logits, c_labels, np.arange(len(pred.labels)), record)


def _stored_temperature(model: str, kind: str, m: Any, temperature: float) -> tuple[float, float]:
    """(``T`` as the calibrated model will store it, relative tolerance of the logits check).

    ONNX stores ``T`` in the logits' element type; TorchScript wrappers in float32. float16 /
    bfloat16 models get two bfloat16 epsilons of tolerance (which cover float16 too).
    """
    from evalsuite.calibration.onnx_bake import baked_value, output_elem_type

    if kind == "onnx":
        import onnx

        proto = onnx.load(str(Path(model).expanduser()), load_external_data=False)
        elem = output_elem_type(proto, m.info.extra.get("output_name"))
        stored = baked_value(temperature, elem)
        low_precision = elem in (10, 16)  # FLOAT16, BFLOAT16
    else:
        stored = float(np.float32(temperature))
        low_precision = str(getattr(m, "_dtype", "")) in ("torch.float16", "torch.bfloat16")
    return stored, (2 * 7.8125e-3 if low_precision else RTOL)


def _calibrated_meta(
    pred: _Predictions, part: _CalibrationPart, fit: Any, held: dict[str, Any], stored: float
) -> dict[str, Any]:
    """The calibrated model's metadata: the original's, the total temperature and a record of
    the data, the split, the fit and the held-out numbers (what a later reader needs to trust ``T``)."""
    from evalsuite.calibration.onnx_bake import calibrated_metadata

    info, dataset = pred.info, pred.dataset
    record = {
        "data": {"name": dataset.name, "fingerprint": dataset.fingerprint, "n": int(len(pred.labels))},
        "split": part.record,
        "fit": {k: v for k, v in fit.to_dict().items() if k != "temperature"},
        "heldout": held,
        "source_model_sha256": info.sha256,
        "tool": "evalsuite calibrate",
    }
    return calibrated_metadata(base_metadata(info), stored, record)


def _metadata_check(calibrated: Any, original: Any, total: float) -> Check:
    """The calibrated model, loaded as a user would, reports the total ``T`` and the original preprocessing."""
    ok = (
        math.isclose(calibrated.temperature, total, rel_tol=1e-9)
        and tuple(calibrated.class_names) == tuple(original.class_names)
        and tuple(calibrated.input_size) == tuple(original.input_size)
        and tuple(calibrated.mean) == tuple(original.mean)
        and tuple(calibrated.std) == tuple(original.std)
    )
    return Check(
        "metadata",
        ok,
        f"temperature {calibrated.temperature:.6g} (expected {total:.6g}); preprocessing "
        + ("unchanged" if ok else "differs from the original"),
    )


def _bake_and_verify(
    outcome: CalibrateOutcome,
    pred: _Predictions,
    meta: dict[str, Any],
    heldout: np.ndarray,
    out: Path,
    settings: _Settings,
    rtol: float,
) -> None:
    """Write the calibrated model to a temporary file beside ``out``, load and check it (checks go
    into ``outcome``), and move it into place only when every check passed; the temporary file
    never survives, so a failed or interrupted run leaves nothing behind."""
    from evalsuite.atomic_io import atomic_candidate
    from evalsuite.calibration.onnx_bake import bake_onnx, bake_torchscript
    from evalsuite.models import load_model

    source, stored, info = Path(outcome.model).expanduser(), outcome.temperature, pred.info
    with atomic_candidate(out, suffix=out.suffix) as candidate:  # the loader picks the format by suffix
        tmp = candidate.path
        if outcome.format == "onnx":
            bake_onnx(source, tmp, stored, meta, output=info.extra.get("output_name"))
        else:
            bake_torchscript(source, tmp, stored, meta)
        cal_model = load_model(str(tmp), device=settings.device)
        outcome.checks.append(_metadata_check(cal_model.info, info, outcome.temperature_total))
        new_logits = _predict(cal_model, pred.dataset, pred.labels, settings.batch_size, settings.workers, "verify")
        outcome.checks.extend(verify(pred.logits, new_logits, stored, pred.labels, heldout, settings.n_bins, rtol))
        if outcome.passed:
            candidate.commit()
            outcome.written = True


def _raise_if_failed(outcome: CalibrateOutcome, out: Path) -> None:
    """:class:`VerificationError` naming the failed checks (the outcome attached for the CLI's summary)."""
    if outcome.passed:
        return
    failed = "; ".join(f"{c.name}: {c.detail}" for c in outcome.checks if not c.passed)
    err = VerificationError(f"calibrated model failed verification ({failed}); {out} not written")
    err.outcome = outcome  # type: ignore[attr-defined]
    raise err


def calibrate_model(
    model: str,
    data: str,
    output: str,
    *,
    calibration_fraction: float = 0.5,
    calibration_data: str | None = None,
    seed: int = 0,
    n_bins: int = 15,
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
    checkpoint: str | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
) -> CalibrateOutcome:
    """Fit, bake and verify (see the module docstring). Raises :class:`VerificationError` on a failed check.

    Every option is validated before the model is loaded, and nothing is written unless the
    calibrated copy passes every check.
    """
    from evalsuite.calibration.temperature import fit_temperature

    model = str(model)
    kind = _model_kind(model)
    out = _check_output(model, output, kind, force)
    calibration_fraction = _check_options(calibration_fraction, calibration_data, n_bins)
    settings = _Settings(device=device, batch_size=batch_size, workers=workers, n_bins=n_bins)
    pred = _predict_data(model, data, settings, checkpoint, overrides)
    part = _calibration_part(pred, calibration_data, calibration_fraction, seed, settings)

    fit = fit_temperature(part.logits, part.labels)
    if not fit.converged:
        raise VerificationError(f"temperature fit failed: {fit.message}; nothing written")
    stored, rtol = _stored_temperature(model, kind, pred.model, fit.temperature)
    held = _heldout_numbers(pred.logits[part.heldout], pred.labels[part.heldout], stored, n_bins)
    meta = _calibrated_meta(pred, part, fit, held, stored)

    outcome = CalibrateOutcome(
        model=model,
        output=str(out),
        format=kind,
        temperature=stored,
        temperature_total=float(meta["temperature"]),
        fit=fit.to_dict(),
        split=part.record,
        heldout=held,
    )
    _bake_and_verify(outcome, pred, meta, part.heldout, out, settings, rtol)
    _raise_if_failed(outcome, out)
    log.info("wrote %s (T = %.4f)", out, stored)
    return outcome
