"""``evalsuite calibrate MODEL --data D -o OUT``: temperature scaling baked into a verified copy.

Exit codes: 0 written and verified; 1 the fit or a verification check failed (nothing written,
the failed check is named); 2 bad input (missing files, bad flags, an existing output without
``--force``). Heavy modules are imported in the handler only.
"""

from __future__ import annotations

import argparse
from typing import Any


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number strictly between 0 and 1, got {v:g}")
    return v


def register(subparsers: Any) -> None:
    """Add the ``calibrate`` sub-command."""
    from evalsuite.cli_args import add_model_flags, positive_int

    p = subparsers.add_parser(
        "calibrate",
        help="fit a temperature on data and write a calibrated, verified copy of an ONNX/TorchScript model",
        description=(
            "Fit the temperature T that minimises the NLL on a seeded stratified calibration split of DATA "
            "(or on --calibration-data), write a copy of MODEL whose logits are divided by T (ONNX: a Div node "
            "after the logits; TorchScript: a wrapper module) with T, the data fingerprint and the split in its "
            "metadata, then verify the copy: argmax identical on every sample, logits = original/T, lower "
            "held-out ECE. The output is written only when every check passes (exit 1 otherwise)."
        ),
    )
    p.add_argument("model", help="model.onnx or TorchScript model.pt")
    p.add_argument("--data", required=True, help="image folder, manifest .csv/.parquet, .npz or builtin:digits[:split]")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="path of the calibrated model (.onnx / .pt)")
    p.add_argument(
        "--calibration-fraction",
        type=_fraction,
        default=0.5,
        metavar="F",
        help="share of DATA used to fit T, the rest is held out for verification (default: 0.5)",
    )
    p.add_argument(
        "--calibration-data",
        metavar="DATA",
        help="fit T on this data instead and hold out all of --data",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration split (default: 0)")
    p.add_argument("--n-bins", type=positive_int, default=15, help="ECE bins (default: 15)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="batch size (default: 64)")
    p.add_argument("--workers", type=positive_int, help="image decoding threads (default: up to 8)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--json", metavar="PATH", help="also write the summary as JSON to PATH ('-' for stdout)")
    add_model_flags(p)
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Handler of ``evalsuite calibrate``; returns the exit code."""
    from evalsuite.calibration.calibrate import calibrate_model
    from evalsuite.cli_args import model_overrides
    from evalsuite.verification import VerificationError, report, report_failure

    try:
        outcome = calibrate_model(
            args.model,
            args.data,
            args.output,
            calibration_fraction=args.calibration_fraction,
            calibration_data=args.calibration_data,
            seed=args.seed,
            n_bins=args.n_bins,
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
            checkpoint=args.checkpoint,
            overrides=model_overrides(args),
            force=args.force,
        )
    except VerificationError as exc:
        report_failure(exc, args.json)
        raise
    report(outcome, args.json)
    return 0
