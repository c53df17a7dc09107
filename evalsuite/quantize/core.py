"""``evalsuite quantize``: an INT8 copy of an ONNX classifier by onnxruntime's static quantization.

Steps (:func:`quantize_model`):

1. validate everything first: MODEL is an FP32 ONNX file (not already quantized), the output is a
   new ``.onnx`` path that is not the input and has no sidecar, the options are known, and the
   calibration data open and carry the model's labels;
2. take a seeded stratified sample of ``--calibration-data`` (``--calibration-samples``,
   :func:`evalsuite.data.select`) and digest every sample's decoded pixels (the record's
   ``sample_digests``, which ``evalsuite run`` checks its evaluation data against);
3. feed onnxruntime's calibrator exactly the tensors the session sees in ``evalsuite run``: the
   loader's geometric preprocessing (:func:`evalsuite.data.iter_batches`), then the model's own
   :meth:`~evalsuite.models.onnx_model.OnnxModel.normalise` (channel order, mean/std, dtype);
4. ``quant_pre_process`` (shape inference and graph clean-up, onnxruntime's recommended first
   step), then ``quantize_static`` in QDQ format with per-channel weights (defaults: unsigned
   8-bit activations and signed INT8 weights, U8S8, MinMax calibration; see ``docs/quantize.md``
   for why U8S8 and when to pick signed activations);
5. write the result to a temporary file beside the output with the FP32 model's
   ``evalsuite.preprocessing`` metadata plus ``extra.quantization`` (:mod:`evalsuite.quantize.record`),
   load it as a user would (no flags) and verify it: same preprocessing and classes, a QDQ graph,
   finite logits on the calibration samples; move it into place only then (exit 1 otherwise).

The top-1 agreement with the FP32 model on the calibration samples is reported as a smoke
number; it is not held out. The held-out comparison is a run of both models on evaluation data
disjoint from the calibration data (``docs/quantize.md``).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.errors import EvalsuiteError, ModelError, UsageError
from evalsuite.quantize import RECORD_KEY
from evalsuite.verification import Check, VerificationError

log = logging.getLogger(__name__)

ACTIVATION_TYPES = {"int8": "QInt8", "uint8": "QUInt8"}
WEIGHT_TYPES = {"int8": "QInt8", "uint8": "QUInt8"}
CALIBRATE_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
DEFAULT_SAMPLES = 256


class QuantizeVerificationError(VerificationError):
    """The INT8 model failed a check; nothing was written. Exit code 1 (like a failed gate)."""


@dataclass
class QuantizeOutcome:
    """What :func:`quantize_model` did; ``to_dict`` is the ``--json`` summary.

    ``record`` is the quantization record stored in the model (its per-sample digests left out
    of ``to_dict``); ``agreement`` the top-1 agreement with the FP32 model on the calibration
    samples (not held out); ``seconds`` the calibration + quantization time.
    """

    model: str
    output: str
    record: dict[str, Any]
    agreement: float | None = None
    n_agreement: int = 0
    census: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    written: bool = False
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        rec = dict(self.record)
        cal = {k: v for k, v in rec.get("calibration", {}).items() if k != "sample_digests"}
        rec["calibration"] = cal
        return {
            "model": self.model,
            "output": self.output,
            "record": rec,
            "calibration_agreement": {"value": self.agreement, "n": self.n_agreement,
                                      "note": "top-1 agreement with the FP32 model on the calibration samples "
                                              "(not held out)"},
            "census": self.census,
            "checks": [c.to_dict() for c in self.checks],
            "passed": self.passed,
            "written": self.written,
            "seconds": self.seconds,
        }

    def summary_lines(self) -> list[str]:
        """A short human summary (printed by the CLI)."""
        r, cal = self.record, self.record["calibration"]
        ops = ", ".join(f"{k} {v}" for k, v in (self.census.get("ops") or {}).items())
        lines = [
            f"{'quantized' if self.written else 'NOT written'}: {self.model} -> {self.output}",
            f"  method       {r['quant_format']}, weights {r['weight_type']} "
            f"{'per channel' if r['per_channel'] else 'per tensor'}, activations {r['activation_type']}, "
            f"{r['calibrate_method']} calibration (onnxruntime {r['onnxruntime']})",
            f"  calibration  {cal['n']} samples of {cal['data']} ({cal['sampling']}, seed {cal['seed']})",
        ]
        if ops:
            lines.append(f"  graph        {ops}")
        if self.agreement is not None:
            lines.append(f"  agreement    {100 * self.agreement:.1f}% top-1 with the FP32 model on the {self.n_agreement} "
                         "calibration samples (not held out: evaluate both on disjoint data)")
        for c in self.checks:
            lines.append(f"  [{'ok' if c.passed else 'FAILED'}] {c.name}: {c.detail}")
        return lines


# -------------------------------------------------------------------------------- validation
def _check_options(calibration_samples: int | None, activation_type: str, weight_type: str,
                   calibrate_method: str, batch_size: int) -> None:
    for flag, value, valid in (("--activation-type", activation_type, ACTIVATION_TYPES),
                               ("--weight-type", weight_type, WEIGHT_TYPES),
                               ("--calibrate-method", calibrate_method, CALIBRATE_METHODS)):
        if value not in valid:
            from evalsuite.registry import did_you_mean

            raise UsageError(f"{flag} {value!r}{did_you_mean(str(value), list(valid))}; valid: {', '.join(valid)}")
    if calibration_samples is not None and (isinstance(calibration_samples, bool) or int(calibration_samples) < 1):
        raise UsageError(f"--calibration-samples must be a positive integer, got {calibration_samples!r}")
    if int(batch_size) < 1:
        raise UsageError(f"--batch-size must be a positive integer, got {batch_size!r}")


def _check_output(model: str, output: str, force: bool) -> Path:
    """The output path: a new ``.onnx`` file (or ``--force``), not the input, no sidecar, writable folder."""
    from evalsuite.models.metadata import sidecar_candidates

    out = Path(output).expanduser()
    src = Path(model).expanduser()
    if out.suffix.lower() != ".onnx":
        raise UsageError(f"-o {output}: the INT8 model needs a .onnx file name")
    if out.is_dir():
        raise UsageError(f"-o {output} is a directory; give a file name")
    if src.exists() and (out.resolve() == src.resolve()):
        raise UsageError("-o must differ from the input model (evalsuite quantize never overwrites its input)")
    if out.exists() and not force:
        raise UsageError(f"{output} exists; pass --force to replace it")
    for side in sidecar_candidates(out):
        if side.exists():
            raise UsageError(f"sidecar {side} exists and would override the INT8 model's metadata; remove it or "
                             "choose another -o")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"-o {output}: folder {parent} is not writable")
    return out


def _load_source(model: str, overrides: dict[str, Any] | None) -> Any:
    """The FP32 ONNX model (CPU session: calibration runs in onnxruntime's CPU provider)."""
    from evalsuite.models import load_model
    from evalsuite.models.formats import find_format
    from evalsuite.quantize.record import qdq_census

    kind = find_format(model).name
    if kind != "onnx":
        raise UsageError(f"evalsuite quantize quantizes ONNX (.onnx) models; {model} is {kind}: export it to ONNX "
                         "first (evalsuite.models.export.export_onnx)")
    m = load_model(model, device="cpu", overrides=overrides or None)
    census = qdq_census(Path(model).expanduser())
    if census.get("quantized"):
        raise UsageError(f"{model} is already quantized ({census['format']}: "
                         f"{', '.join(f'{k} {v}' for k, v in census['ops'].items())}); quantize its FP32 source")
    return m


def _calibration_set(model: Any, calibration_data: str, samples: int | None, seed: int) -> tuple[Any, Any, np.ndarray]:
    """(full dataset, the calibration sample, its labels in the model's class order)."""
    from evalsuite.data import open_dataset, resolve_labels, select

    full = open_dataset(calibration_data)
    part = select(full, sample=samples, seed=seed) if samples is not None else full
    labels = resolve_labels(part, list(model.info.class_names))
    return full, part, labels


# ---------------------------------------------------------------------------- calibration
class CalibrationFeeds:
    """The session inputs of the calibration samples, batch by batch: the loader's geometric
    preprocessing, then ``model.normalise`` (what ``predict`` hands onnxruntime). A model with a
    fixed batch ``k`` gets chunks of exactly ``k`` rows (the last one filled by repeating rows,
    which leaves MinMax ranges and histograms' support unchanged)."""

    def __init__(self, model: Any, dataset: Any, labels: np.ndarray, batch_size: int, workers: int | None) -> None:
        self.model, self.dataset, self.labels = model, dataset, labels
        self.batch_size, self.workers = int(batch_size), workers

    def __iter__(self) -> Any:
        from evalsuite.data import iter_batches
        from evalsuite.tensors import to_tensor

        info = self.model.info
        k = self.model.fixed_batch
        batches = iter_batches(self.dataset, np.arange(len(self.dataset)), self.batch_size if k is None else k,
                               input_size=info.input_size, resize=info.resize, interpolation=info.interpolation,
                               labels=self.labels, workers=self.workers)
        for batch in batches:
            if len(batch.index) == 0:
                continue
            arr = self.model.normalise(to_tensor(batch.images, "cpu"))
            if k is not None and len(arr) < k:
                arr = arr[np.resize(np.arange(len(arr)), k)]
            yield {self.model.input_name: np.ascontiguousarray(arr)}


def _reader(feeds: CalibrationFeeds) -> Any:
    """An onnxruntime ``CalibrationDataReader`` over ``feeds`` (rewindable: entropy and percentile
    calibration read the data once per pass)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = iter(feeds)

    return Reader()


def _record(model: Any, source: str, full: Any, part: Any, seed: int, samples: int | None,
            settings: dict[str, Any], pre: dict[str, Any]) -> dict[str, Any]:
    """The ``extra.quantization`` record (see :mod:`evalsuite.quantize.record`)."""
    import onnxruntime as ort

    from evalsuite.quantize.record import ids_sha256, sample_digests

    digests = sample_digests(part)
    unreadable = [str(part.ids[i]) for i, d in enumerate(digests) if d is None]
    if unreadable:
        from evalsuite.errors import DataError

        raise DataError(f"calibration image {unreadable[0]} of {part.name} cannot be read "
                        f"({len(unreadable)} unreadable); fix or remove it")
    return {
        "tool": "evalsuite quantize",
        "source_model": {"file": Path(source).name, "sha256": model.info.sha256},
        "method": "onnxruntime.quantization.quantize_static",
        "onnxruntime": ort.__version__,
        **settings,
        "pre_process": pre,
        "calibration": {
            "data": full.name,
            "source_fingerprint": full.fingerprint,
            "fingerprint": part.fingerprint,
            "n": int(len(part)),
            "seed": int(seed),
            "sampling": "all samples" if len(part) == len(full) else f"stratified sample of {samples} of {len(full)}",
            "ids_sha256": ids_sha256(part.ids),
            "sample_digests": sorted(set(d for d in digests if d is not None)),
        },
    }


def _pre_process(src: Path, workdir: Path) -> tuple[Path, dict[str, Any]]:
    """onnxruntime's ``quant_pre_process`` into ``workdir`` (falls back to ``src`` with a note)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    dst = workdir / "preprocessed.onnx"
    try:
        quant_pre_process(str(src), str(dst))
    except Exception as exc:  # noqa: BLE001 - a best-effort step: quantize_static works without it
        note = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        log.warning("quantize: onnxruntime's quant_pre_process failed (%s); quantizing the model as it is", note)
        return src, {"applied": False, "note": note}
    return dst, {"applied": True}


def _quantize(src: Path, dst: Path, feeds: CalibrationFeeds, settings: dict[str, Any]) -> None:
    import onnxruntime.quantization as q

    try:
        q.quantize_static(
            str(src), str(dst), _reader(feeds),
            quant_format=q.QuantFormat.QDQ,
            per_channel=bool(settings["per_channel"]),
            activation_type=getattr(q.QuantType, settings["activation_type"]),
            weight_type=getattr(q.QuantType, settings["weight_type"]),
            calibrate_method=getattr(q.CalibrationMethod, settings["calibrate_method"]),
        )
    except EvalsuiteError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises many types for graphs it cannot quantize
        raise ModelError(f"onnxruntime could not quantize {src.name}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from None


def _metadata(model: str, info: Any, record: dict[str, Any]) -> dict[str, Any]:
    """The FP32 file's evalsuite metadata with the effective preprocessing (flags applied) and the record."""
    import onnx

    from evalsuite.calibration.calibrate import base_metadata
    from evalsuite.calibration.onnx_bake import read_onnx_metadata

    embedded = read_onnx_metadata(onnx.load(str(Path(model).expanduser()), load_external_data=False)) or {}
    meta = {**embedded, **base_metadata(info)}
    extra = {**(embedded.get("extra") or {}), **(meta.get("extra") or {})}
    extra[RECORD_KEY] = record
    meta["extra"] = extra
    return meta


# ---------------------------------------------------------------------------------- verify
def _verify(outcome: QuantizeOutcome, candidate: Path, fp32: Any, feeds: CalibrationFeeds) -> None:
    """Load the candidate as a user would and check it (checks go into ``outcome``)."""
    from evalsuite.models import load_model
    from evalsuite.quantize.record import qdq_census, quantization_record

    try:
        q = load_model(str(candidate), device="cpu")
    except EvalsuiteError as exc:
        outcome.checks.append(Check("loads", False, str(exc)))
        return
    a, b = fp32.info, q.info
    same = (tuple(a.class_names) == tuple(b.class_names) and tuple(a.input_size) == tuple(b.input_size)
            and tuple(a.mean) == tuple(b.mean) and tuple(a.std) == tuple(b.std) and a.resize == b.resize
            and a.interpolation == b.interpolation and a.channel_order == b.channel_order
            and float(a.temperature) == float(b.temperature))
    rec = quantization_record(q)
    outcome.checks.append(Check("metadata", same and rec is not None,
                                ("preprocessing and classes unchanged" if same else "preprocessing differs from the FP32 "
                                 "model") + ("; quantization record present" if rec is not None else "; no record")))
    census = qdq_census(candidate)
    outcome.census = census
    outcome.checks.append(Check("graph", bool(census.get("quantized")),
                                f"{census.get('format', 'not quantized')}: "
                                + ", ".join(f"{k} {v}" for k, v in (census.get("ops") or {}).items())))
    agree = n = nonfinite = 0
    for feed in feeds:
        arr = feed[fp32.input_name]
        za = fp32.session.run([fp32.output_name], {fp32.input_name: arr})[0]
        zb = q.session.run([q.output_name], {q.input_name: arr})[0]
        za, zb = np.asarray(za).reshape(len(arr), -1), np.asarray(zb).reshape(len(arr), -1)
        nonfinite += int((~np.all(np.isfinite(zb), axis=1)).sum())
        agree += int((za.argmax(1) == zb.argmax(1)).sum())
        n += len(arr)
    outcome.checks.append(Check("finite", nonfinite == 0, f"finite logits on {n - nonfinite}/{n} calibration inputs"))
    outcome.agreement, outcome.n_agreement = (agree / n if n else None), n


def quantize_model(
    model: str,
    calibration_data: str,
    output: str,
    *,
    calibration_samples: int | None = DEFAULT_SAMPLES,
    seed: int = 0,
    activation_type: str = "uint8",
    weight_type: str = "int8",
    per_channel: bool = True,
    calibrate_method: str = "minmax",
    batch_size: int = 64,
    workers: int | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
) -> QuantizeOutcome:
    """Quantize, record and verify (see the module docstring); returns what was done.

    ``calibration_samples``: size of the seeded stratified calibration sample (None: every
    sample of ``calibration_data``). Raises :class:`QuantizeVerificationError` (exit 1, nothing
    written) when the candidate fails a check, and one-line usage/model/data errors (exit 2)
    before any work for bad input.
    """
    from evalsuite.atomic_io import atomic_candidate
    from evalsuite.models.export import save_onnx_atomic, set_metadata_prop

    t0 = time.perf_counter()
    model = str(model)
    _check_options(calibration_samples, activation_type, weight_type, calibrate_method, batch_size)
    out = _check_output(model, output, force)
    fp32 = _load_source(model, overrides)
    full, part, labels = _calibration_set(fp32, calibration_data, calibration_samples, seed)
    settings = {"quant_format": "QDQ", "per_channel": bool(per_channel),
                "activation_type": ACTIVATION_TYPES[activation_type], "weight_type": WEIGHT_TYPES[weight_type],
                "calibrate_method": CALIBRATE_METHODS[calibrate_method]}
    feeds = CalibrationFeeds(fp32, part, labels, batch_size, workers)
    import onnx

    with tempfile.TemporaryDirectory(prefix=".evalsuite-quantize-", dir=out.parent if out.parent.exists() else None) as tmp:
        work = Path(tmp)
        src, pre = _pre_process(Path(model).expanduser(), work)
        record = _record(fp32, model, full, part, seed, calibration_samples, settings, pre)
        raw = work / "quantized.onnx"
        _quantize(src, raw, feeds, settings)
        proto = onnx.load(str(raw))
        set_metadata_prop(proto, _metadata(model, fp32.info, record))
        outcome = QuantizeOutcome(model=model, output=str(out), record=record)
        with atomic_candidate(out, suffix=".onnx") as candidate:
            save_onnx_atomic(proto, candidate.path)
            _verify(outcome, candidate.path, fp32, feeds)
            outcome.seconds = round(time.perf_counter() - t0, 3)
            if outcome.passed:
                candidate.commit()
                outcome.written = True
    if not outcome.passed:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in outcome.checks if not c.passed)
        err = QuantizeVerificationError(f"INT8 model failed verification ({failed}); {out} not written")
        err.outcome = outcome  # type: ignore[attr-defined]
        raise err
    log.info("wrote %s (%s)", out, outcome.census.get("ops"))
    return outcome
