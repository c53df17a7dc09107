"""``evalsuite train RECIPE [--out DIR] [key=value ...]`` (and ``python -m training``).

``RECIPE`` is a bundled recipe name (``standard``, ``adversarial``, ``calibration``, ...) or a
YAML path; each ``key=value`` overrides one dotted recipe key (``optim.lr=0.01``,
``schedule.epochs=5``, ``adversarial.method=trades``). The exit code is the gate verdict of the
final ``evalsuite run`` (0 pass, 1 a gate failed), 2 for a mistake in the recipe or data.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

DEFAULT_OUT = "runs/train-{name}"

HELP = (
    "Train a model from RECIPE, export it (safetensors + ONNX) and gate it with evalsuite run. "
    "RECIPE is a bundled recipe name (evalsuite ls recipes, or --list) or a YAML path; each KEY=VALUE "
    "overrides one dotted recipe key (optim.lr=0.01, schedule.epochs=5, adversarial.method=trades). "
    "Exit code: the gate verdict of the final run (0 pass, 1 a gate failed), 2 for a mistake in the "
    "recipe or data."
)


def add_arguments(p: argparse.ArgumentParser, *, remainder: bool) -> None:
    """The train arguments; with ``remainder`` overrides and options may be mixed after RECIPE."""
    p.add_argument("recipe", nargs="?", help="bundled recipe name (see --list) or a recipe YAML file")
    p.add_argument("--list", action="store_true", help="print the bundled recipes and exit")
    p.add_argument("--out", default=None, help="output folder (default: runs/train-<recipe name>); a rerun resumes")
    p.add_argument("--print-recipe", action="store_true", help="print the resolved recipe as YAML and exit")
    if remainder:
        p.add_argument("overrides", nargs=argparse.REMAINDER, metavar="KEY=VALUE",
                       help="dotted recipe overrides, e.g. optim.lr=0.01 schedule.epochs=5")
    else:
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="dotted recipe overrides, e.g. optim.lr=0.01 schedule.epochs=5")


def _split_remainder(args: argparse.Namespace) -> argparse.Namespace:
    """Options given after RECIPE land in the remainder; parse them out (intermixed)."""
    rest = list(getattr(args, "overrides", None) or [])
    if not rest:
        args.overrides = []
        return args
    inner = argparse.ArgumentParser(prog="evalsuite train", add_help=False)
    inner.add_argument("--out", default=None)
    inner.add_argument("--print-recipe", action="store_true")
    inner.add_argument("--list", action="store_true")
    inner.add_argument("overrides", nargs="*")
    try:
        ns, unknown = inner.parse_known_intermixed_args(rest)
    except SystemExit:
        from evalsuite.errors import UsageError

        raise UsageError(f"cannot parse train arguments {' '.join(rest)}") from None
    if unknown:
        from evalsuite.errors import UsageError

        raise UsageError(f"unknown train option(s) {' '.join(unknown)}; overrides look like section.key=value")
    args.out = ns.out or args.out
    args.print_recipe = args.print_recipe or ns.print_recipe
    args.list = args.list or ns.list
    args.overrides = list(ns.overrides)
    return args


def _epoch_printer(quiet: bool) -> Any:
    def callback(trainer: Any, row: dict[str, Any]) -> None:
        if quiet:
            return
        parts = [
            f"epoch {row['epoch']:>3}/{trainer.recipe.schedule.epochs}",
            f"loss {row['train_loss']:.4f}",
            f"val_acc {row['val_accuracy']:.2%}",
            f"val_ece {row['val_ece']:.4f}",
        ]
        if row.get("val_robust_accuracy") is not None:
            parts.append(f"robust {row['val_robust_accuracy']:.2%}")
        parts.append(f"{row['seconds']:.1f}s" + (" *" if row.get("best") else ""))
        sys.stderr.write("  ".join(parts) + "\n")
        sys.stderr.flush()

    return callback


def handle(args: argparse.Namespace) -> int:
    """Run ``evalsuite train``; returns the exit code of the final evaluation (0 when none ran)."""
    import yaml

    from training.config import load_recipe
    from training.loop import Trainer

    args = _split_remainder(args)
    if args.list:
        from training import list_entries

        for name, desc in list_entries():
            print(f"{name}  {desc}")
        return 0
    if not args.recipe:
        from evalsuite.errors import UsageError

        raise UsageError("train needs a RECIPE (a bundled name, see `evalsuite train --list`, or a YAML path)")
    recipe = load_recipe(args.recipe, args.overrides)
    if args.print_recipe:
        sys.stdout.write(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
        return 0
    out = args.out or DEFAULT_OUT.format(name=recipe.name)
    quiet = bool(getattr(args, "quiet", False))
    result = Trainer(recipe, out, callbacks=[_epoch_printer(quiet)]).fit()
    if not quiet:
        before = result.final_val.get("before_temperature", {})
        after = result.final_val.get("after_temperature", {})
        print(f"trained {recipe.name}: {len(result.history)} epoch(s) in {result.train_seconds:.1f} s"
              + (f" (resumed at epoch {result.resumed_from_epoch + 1})" if result.resumed_from_epoch is not None else ""))
        print(f"  weights: {result.final_val.get('weights')}")
        print(f"  val accuracy {before.get('val_accuracy', float('nan')):.2%}, ECE {before.get('val_ece', float('nan')):.4f}"
              + (f" -> {after.get('val_ece'):.4f} at T = {result.temperature:.3f}" if result.temperature != 1.0 else ""))
        for kind, path in result.paths.items():
            print(f"  {kind}: {path}")
        if result.eval_dir is not None:
            verdict = "PASS" if result.eval_exit_code == 0 else "FAIL"
            print(f"  evalsuite run on {recipe.data.test}: {verdict} (scorecard {result.out_dir / 'scorecard.html'})")
    return result.exit_code


def register(subparsers: Any) -> None:
    """Add ``evalsuite train`` to the top-level CLI."""
    p = subparsers.add_parser(
        "train",
        help="train a model from a YAML recipe, export it (safetensors + ONNX) and gate it with evalsuite run",
        description=HELP,
    )
    add_arguments(p, remainder=True)
    p.set_defaults(func=handle)


def main(argv: list[str] | None = None) -> int:
    """``python -m training``: same arguments as ``evalsuite train``."""
    import logging

    from evalsuite.errors import EvalsuiteError

    p = argparse.ArgumentParser(prog="python -m training", description=HELP)
    add_arguments(p, remainder=False)
    p.add_argument("-v", "--verbose", action="store_true", help="log every step of the pipeline")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors")
    args = p.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return handle(args)
    except EvalsuiteError as exc:
        sys.stderr.write(f"python -m training: error: {' '.join(str(exc).split())}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("python -m training: interrupted (rerun the same command to resume)\n")
        return 130
