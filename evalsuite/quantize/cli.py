"""``evalsuite quantize MODEL.onnx --calibration-data D -o MODEL.int8.onnx``: a verified INT8 copy.

Exit codes: 0 written and verified; 1 a verification check failed (nothing written, the check is
named); 2 bad input (not an ONNX model, already quantized, unreadable data, an existing output
without ``--force``, the output equal to the input). Heavy modules are imported in the handler.

With ``--data EVAL`` the INT8 model is then evaluated against its FP32 source: ``evalsuite run
OUT --reference MODEL --suite quick,performance`` on EVAL (which must be disjoint from the
calibration data; the run refuses overlap), so the scorecard answers "is the INT8 model as good
(paired accuracy difference, McNemar, flips) and how much faster"; the exit code is then the
run's. ``docs/quantize.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``quantize`` sub-command."""
    from evalsuite.cli_args import add_model_flags, positive_int

    p = subparsers.add_parser(
        "quantize",
        help="write an INT8 (QDQ) copy of an ONNX model by onnxruntime's static quantization, calibrated on data",
        description=(
            "Quantize MODEL with onnxruntime's static quantization (QDQ format, per-channel weights) calibrated on a "
            "seeded stratified sample of --calibration-data, preprocessed exactly as evalsuite run preprocesses "
            "it. The INT8 model keeps MODEL's evalsuite metadata and records the source model, the method and "
            "the calibration samples (pixel digests), so evalsuite run refuses evaluation data that overlap "
            "them. The output is verified (loads without flags, same preprocessing, QDQ graph, finite logits) "
            "before it is moved into place (exit 1 otherwise)."
        ),
    )
    p.add_argument("model", help="FP32 model.onnx")
    p.add_argument("--calibration-data", required=True, metavar="DATA",
                   help="image folder, manifest .csv/.parquet, .npz or builtin:digits[:split]; keep it disjoint "
                        "from the data you evaluate on")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="path of the INT8 model (.onnx)")
    p.add_argument("--calibration-samples", type=positive_int, default=256, metavar="N",
                   help="seeded stratified sample of N calibration images (default: 256; all when fewer)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration sample (default: 0)")
    p.add_argument("--activation-type", choices=("int8", "uint8"), default="uint8",
                   help="activation integer type (default: uint8, U8S8 with int8 weights: the fast pairing on x86 "
                        "CPUs; int8 for TensorRT / ARM targets)")
    p.add_argument("--weight-type", choices=("int8", "uint8"), default="int8", help="weight integer type (default: int8)")
    p.add_argument("--per-tensor", action="store_true", help="one scale per weight tensor instead of per output channel")
    p.add_argument("--calibrate-method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="how activation ranges are set from the calibration data (default: minmax)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="calibration batch size (default: 64)")
    p.add_argument("--workers", type=positive_int, help="image decoding threads (default: up to 8)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--json", metavar="PATH", help="also write the summary as JSON to PATH ('-' for stdout)")
    e = p.add_argument_group("evaluation (with --data: the INT8 model against its FP32 source)")
    e.add_argument("--data", metavar="DATA",
                   help="evaluation data, disjoint from --calibration-data: after writing OUT, run it with "
                        "--reference MODEL (paired comparison on identical inputs) and the performance suite for "
                        "both, as `evalsuite run OUT --reference MODEL --suite SUITE` would")
    e.add_argument("--out", default="reports/quantize", metavar="DIR",
                   help="run folder of the evaluation (default: reports/quantize)")
    e.add_argument("--suite", default="quick,performance", metavar="SUITE",
                   help="suites of the evaluation (default: quick,performance; compare is added by --reference)")
    e.add_argument("--policy", metavar="POLICY", help="policy of the evaluation (default: the suites' built-in checks)")
    e.add_argument("--limit", type=positive_int, metavar="N", help="evaluate the first N samples of --data")
    e.add_argument("--sample", type=positive_int, metavar="N", help="evaluate a seeded stratified sample of N")
    add_model_flags(p)
    p.set_defaults(func=cmd_quantize)


def cmd_quantize(args: argparse.Namespace) -> int:
    """Handler of ``evalsuite quantize``; returns the exit code."""
    from evalsuite.cli_args import model_overrides
    from evalsuite.quantize.core import QuantizeVerificationError, quantize_model
    from evalsuite.verification import report, report_failure

    if str(args.device).strip().lower() not in ("auto", "cpu"):
        from evalsuite.errors import UsageError

        raise UsageError(f"--device {args.device}: onnxruntime calibrates and quantizes on the CPU; drop --device")
    evaluation = evaluation_config(args)
    try:
        outcome = quantize_model(
            args.model,
            args.calibration_data,
            args.output,
            calibration_samples=args.calibration_samples,
            seed=args.seed,
            activation_type=args.activation_type,
            weight_type=args.weight_type,
            per_channel=not args.per_tensor,
            calibrate_method=args.calibrate_method,
            batch_size=args.batch_size,
            workers=args.workers,
            overrides=model_overrides(args),
            force=args.force,
        )
    except QuantizeVerificationError as exc:
        report_failure(exc, args.json)
        raise
    report(outcome, args.json)
    if evaluation is None:
        return 0
    from evalsuite.api import run

    done = run(evaluation)
    sys.stdout.write("\n".join(evaluation_lines(done.results, done.outcomes, done.out_dir)) + "\n")
    return done.exit_code


def evaluation_config(args: argparse.Namespace) -> Any:
    """The RunConfig of the INT8-vs-FP32 evaluation (None without ``--data``), built and its data
    opened before quantizing, so a bad flag or unreadable data costs no calibration."""
    if not args.data:
        return None
    from evalsuite.config import RunConfig
    from evalsuite.data.readers import open_dataset

    open_dataset(args.data)
    return RunConfig(model=str(args.output), data=args.data, reference=str(args.model), out_dir=args.out,
                     suite=args.suite, policy=args.policy, seed=args.seed, device=args.device,
                     limit=args.limit, sample=args.sample,
                     **({"workers": args.workers} if args.workers else {}))


def evaluation_lines(results: dict[str, Any], outcomes: list[Any], out_dir: Any) -> list[str]:
    """What the terminal shows after the evaluation: the verdict, INT8 minus FP32 clean accuracy
    with its paired CI, the agreement and the measured speed-up."""
    from evalsuite.gates import verdict

    metrics = results.get("metrics", {})
    lines = [f"evaluation {verdict(outcomes) if outcomes else 'PASS'}: "
             f"{sum(o.status == 'FAIL' for o in outcomes)} failed, {sum(o.status == 'WARN' for o in outcomes)} warned"]
    clean = metrics.get("compare", {}).get("clean", {})
    diff, agree = clean.get("accuracy_diff", {}), clean.get("agreement", {})
    if diff.get("value") is not None:
        ci = diff.get("ci") or (float("nan"), float("nan"))
        lines.append(f"INT8 - FP32 clean accuracy {diff['value']:+.4f} (paired 95% CI {ci[0]:+.4f} to {ci[1]:+.4f}, "
                     f"n={diff.get('n')}); top-1 agreement {agree.get('value', float('nan')):.4f}")
    speed = metrics.get("performance", {}).get("speedup", {})
    parts = [f"{name} {leaf['value']:.2f}x" for name, leaf in speed.items() if leaf.get("value") is not None]
    if parts:
        lines.append("speed-up of INT8 over FP32: " + ", ".join(parts))
    for o in outcomes:
        if o.status in ("FAIL", "WARN"):
            lines.append(f"  {o.status} {o.gate.name}: {o.message}")
    lines.append(f"scorecard: {Path(str(out_dir)) / 'scorecard.html'}")
    return lines
