"""Command-line interface: thin wrappers that parse flags, call the API and map errors to exit codes.

Exit codes: 0 every gate passed (or nothing to gate), 1 a FAIL gate, 2 bad input or usage
(one-line message, no traceback), 3 an internal error (a bug: rerun with ``--debug`` for the
traceback), 130 interrupted. Heavy modules are imported inside the handlers so ``--help`` is
fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from evalsuite.cli_args import add_model_flags, model_overrides, positive_int
from evalsuite.errors import EvalsuiteError, UsageError

PROG = "evalsuite"
# Sub-commands that live with their feature; each module exposes register(subparsers).
PLUGIN_COMMANDS: tuple[str, ...] = ("evalsuite.corruptions.cli", "evalsuite.calibration.cli", "evalsuite.quantize.cli",
                                   "training.cli")
LISTABLE = {
    "suites": "evalsuite.suites:list_entries",
    "data": "evalsuite.data:list_entries",
    "models": "evalsuite.models:list_entries",
    "presets": "evalsuite.cli:_list_presets",
    "recipes": "training:list_entries",
    "calibration": "evalsuite.calibration:list_entries",
    "slices": "evalsuite.slices:list_entries",
    "attacks": "evalsuite.attacks:list_entries",
    "corruptions": "evalsuite.corruptions:list_entries",
    "devices": "evalsuite.devices:list_entries",
    "device-operations": "evalsuite.devices:list_operations",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of usage dumps."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING
    if getattr(args, "verbose", 0):
        level = logging.INFO if args.verbose == 1 else logging.DEBUG
    if getattr(args, "quiet", False):
        level = logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if level > logging.INFO and not getattr(args, "quiet", False):
        # The run plan with its estimate, per-suite lines and the heartbeat show without -v, so
        # a terminal or a CI log says where a long run is.
        logging.getLogger("evalsuite.suites.adversarial").setLevel(logging.INFO)
        logging.getLogger("evalsuite.plan").setLevel(logging.INFO)


# ---------------------------------------------------------------------------------------- run
def _torchrun_rank(args: argparse.Namespace) -> Any:
    """This process's rank when torchrun started several (each then is shard RANK of WORLD_SIZE),
    its GPU pinned before torch is imported; None for an ordinary run."""
    from evalsuite.distributed import pin_local_gpu, torchrun_rank

    rank = torchrun_rank()
    if rank is not None:
        if args.shard is not None:
            raise UsageError("--shard is for separate processes (Slurm arrays, indexed jobs); under torchrun every "
                             "rank already is shard RANK of WORLD_SIZE: drop --shard")
        pin_local_gpu(rank)
    return rank


def _cmd_run(args: argparse.Namespace) -> int:
    rank = _torchrun_rank(args)
    from evalsuite.config import RunConfig

    shard = None
    if args.shard is not None:
        from evalsuite.shards import ShardSpec

        shard = ShardSpec.parse(args.shard)  # before anything is loaded: a bad spec costs nothing
    suite_overrides: dict[str, dict[str, Any]] = {}
    if args.corruption_backend:
        suite_overrides.setdefault("corruption", {})["backend"] = args.corruption_backend
    profiles_file = _renamed_flag(args, "device_profiles", "devices")
    if profiles_file:
        suite_overrides.setdefault("device", {})["profiles_file"] = profiles_file
    capture_column = _renamed_flag(args, "capture_column", "device_column")
    if capture_column:
        suite_overrides.setdefault("device", {})["device_column"] = capture_column
    if args.calibration_data:
        suite_overrides.setdefault("calibration", {})["calibration_data"] = args.calibration_data
    if args.attack_surrogate:
        suite_overrides.setdefault("adversarial", {})["surrogate"] = args.attack_surrogate
    flags = {
        "model": args.model,
        "data": args.data,
        "out_dir": args.out,
        "suite": args.suite,
        "policy": args.policy,
        "baseline": args.baseline,
        "reference": args.reference,
        "seed": args.seed,
        "device": args.device,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "target_threads": args.target_threads,
        "limit": args.limit,
        "sample": args.sample,
        "resume": args.resume or None,
        "skip_bad_images": args.skip_bad_images or None,
        "max_image_pixels": args.max_image_pixels,
        "follow_symlinks": args.follow_symlinks or None,
        "allow_baseline_mismatch": args.allow_baseline_mismatch or None,
        "allow_calibration_overlap": args.allow_calibration_overlap or None,
        "checkpoint": args.checkpoint,
        "model_overrides": model_overrides(args) or None,
        "suite_overrides": suite_overrides or None,
        "fail_on": args.fail_on,
        "perturbation_samples": args.perturbation_samples,
        "ci_half_width": args.ci_half_width,
    }
    if args.config:
        config = RunConfig.from_yaml(args.config, **flags)
    else:
        defaults = {"out_dir": "reports/run", "suite": "standard", "seed": 0, "device": "auto", "batch_size": 64}
        for k, v in defaults.items():
            if flags.get(k) is None:
                flags[k] = v
        if flags["model"] is None:
            raise UsageError("run needs a MODEL (model.onnx, model.pt, model.pt2 or timm:<name>), or --config with a model key")
        if flags["data"] is None:
            raise UsageError("--data is required (a folder, a CSV/Parquet manifest, an .npz or builtin:digits)")
        config = RunConfig(**{k: v for k, v in flags.items() if v is not None})
    if args.dry_run:
        from evalsuite.api import dry_run

        print(dry_run(config))
        return 0
    if shard is not None:
        return _run_shard(config, shard)
    from evalsuite.api import run, run_distributed

    outcome = run(config) if rank is None else run_distributed(config, rank)
    if rank is not None and rank.rank != 0:
        return 0  # rank 0 reports the run
    if args.format == "json":
        from pathlib import Path

        print((Path(outcome.out_dir) / "gates.json").read_text(encoding="utf-8"), end="")
    else:
        _print_outcome(outcome.results, outcome.outcomes, outcome.out_dir)
    return outcome.exit_code


def _run_shard(config: Any, shard: Any) -> int:
    from evalsuite.api import run_shard

    done = run_shard(config, shard)
    waiting = [f"{i}/{shard.count}" for i in range(shard.count) if i not in done.finished]
    print(f"shard {shard}: {done.units} unit(s) in {done.units_dir}; " + (
        f"every shard has finished: run `evalsuite merge {config.out_dir}`" if done.complete
        else f"waiting for shard(s) {', '.join(waiting)}, then `evalsuite merge {config.out_dir}`"))
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from pathlib import Path

    from evalsuite.api import merge

    outcome = merge(args.out, fail_on=args.fail_on)
    if args.format == "json":
        print((Path(outcome.out_dir) / "gates.json").read_text(encoding="utf-8"), end="")
    else:
        _print_outcome(outcome.results, outcome.outcomes, outcome.out_dir)
    return outcome.exit_code


def _add_merge(sub: Any) -> None:
    p = sub.add_parser("merge", help="join the shards of a `run --shard I/N` into one run folder and gate it",
                       description=(
        "Check that every shard of OUT has finished with the same model, data, seed and configuration, then "
        "summarise, gate and write results.json, gates.json, junit.xml, summary.md and scorecard.html to OUT "
        "once (exit 0, 1 or 2 as `run`). Run it from the shards' working directory."))
    p.add_argument("out", metavar="OUT", help="the --out folder the shards were given")
    add_decision_flags(p)
    p.set_defaults(func=_cmd_merge)


def _cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from evalsuite.compare_runs import compare_runs

    outcome = compare_runs(args.candidate, args.reference, out=args.out, policy=args.policy,
                           fail_on=args.fail_on or "fail", n_boot=args.n_boot, mid_p=args.mid_p)
    if args.format == "json":
        print((Path(outcome.out_dir) / "gates.json").read_text(encoding="utf-8"), end="")
    else:
        _print_outcome(outcome.results, outcome.outcomes, outcome.out_dir)
    return outcome.exit_code


def _add_compare(sub: Any) -> None:
    p = sub.add_parser("compare", help="paired comparison of two finished runs on identical data, conditions and seed",
                       description=(
        "Compare CANDIDATE with REFERENCE sample by sample (both run folders or their results.json, measured on the "
        "same data, conditions and seed): accuracy difference with a paired bootstrap CI, exact McNemar test, fixed "
        "and broken samples, ECE difference per condition (docs/compare.md). Writes results.json, gates.json, "
        "junit.xml, summary.md and scorecard.html to --out; exit 0, 1 or 2 as `run`."))
    p.add_argument("candidate", metavar="CANDIDATE", help="the candidate's run folder (or its results.json)")
    p.add_argument("reference", metavar="REFERENCE", help="the reference's run folder (or its results.json)")
    p.add_argument("--out", required=True, help="output folder of the comparison")
    p.add_argument("--policy", help="policy YAML on compare.* metrics (default: the built-in compare policy)")
    p.add_argument("--n-boot", type=positive_int, help="paired bootstrap replicates (default: 1000)")
    p.add_argument("--mid-p", action="store_true", help="McNemar mid-p instead of the exact test")
    add_decision_flags(p)
    p.set_defaults(func=_cmd_compare)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _renamed_flag(args: argparse.Namespace, new: str, old: str) -> Any:
    """The value of ``--new``, or of its deprecated alias ``--old`` (with a one-line warning).

    ``--devices`` and ``--device-column`` are the old names of ``--device-profiles`` and
    ``--capture-column`` (capture devices, not the compute ``--device``); kept for one release.
    """
    value, legacy = getattr(args, new, None), getattr(args, old, None)
    if legacy is None:
        return value
    if value is not None and value != legacy:
        raise UsageError(f"{_flag(old)} is the deprecated name of {_flag(new)}; give only {_flag(new)}")
    logging.getLogger(__name__).warning("%s is deprecated, use %s (same meaning)", _flag(old), _flag(new))
    return legacy


def _print_outcome(results: dict[str, Any], outcomes: list[Any], out_dir: Any) -> None:
    from evalsuite.gates import verdict

    v = verdict(outcomes) if outcomes else "PASS"
    acc = results.get("metrics", {}).get("clean", {}).get("accuracy", {})
    lines = [f"{v}: {sum(o.status == 'FAIL' for o in outcomes)} failed, {sum(o.status == 'WARN' for o in outcomes)} warned, "
             f"{sum(o.status == 'PASS' for o in outcomes)} passed gates"]
    if acc:
        lo, hi = acc.get("ci") or (None, None)
        lines.append(f"clean accuracy {acc.get('value', float('nan')):.4f} (95% CI {lo:.4f}-{hi:.4f}, n={acc.get('n')})"
                     if lo is not None else f"clean accuracy {acc.get('value')}")
    for o in outcomes:
        if o.status in ("FAIL", "WARN"):
            lines.append(f"  {o.status} {o.gate.name}: {o.message}")
    lines.append(f"scorecard: {os.path.join(str(out_dir), 'scorecard.html')}")
    print("\n".join(lines))


def _add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="evaluate a model and gate it (the main job)", description=(
        "Evaluate MODEL on --data with the suites of --suite, write results.json, junit.xml, summary.md and "
        "scorecard.html to --out, and exit 0 (all gates pass), 1 (a FAIL gate) or 2 (bad input)."))
    p.add_argument("model", nargs="?", help="model.onnx, model.pt (TorchScript), model.pt2 (torch.export) or timm:<name> "
                                            "(or the config file's model key)")
    p.add_argument("--data", help="image folder, manifest .csv/.parquet, .npz, or builtin:digits[:train|val|test|all]")
    p.add_argument("--suite", help="suite preset (quick, standard, full) or a suite YAML (default: standard)")
    p.add_argument("--policy", help="policy YAML (default: the built-in default policy)")
    p.add_argument("--baseline", help="baseline results.json for max_drop gates and mCE")
    p.add_argument("--reference", metavar="MODEL",
                   help="reference (production) model scored on the identical inputs of every condition: paired "
                        "comparison under compare.* (docs/compare.md)")
    p.add_argument("--allow-baseline-mismatch", action="store_true",
                   help="compare against a baseline measured on other data or conditions (warns instead of refusing)")
    p.add_argument("--out", help="output folder (default: reports/run)")
    p.add_argument("--config", help="run config YAML with the same keys as the flags (flags win)")
    p.add_argument("--seed", type=int, help="seed for sampling, corruptions and attacks (default: 0)")
    p.add_argument("--batch-size", type=positive_int, help="batch size (default: 64)")
    p.add_argument("--workers", type=positive_int, help="image decoding threads (default: up to 8)")
    p.add_argument("--target-threads", type=positive_int, metavar="N",
                   help="threads the performance suite measures with (a smaller target machine; predictions unaffected)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="evaluate only the first N samples")
    p.add_argument("--sample", type=positive_int, metavar="N", help="evaluate a seeded stratified sample of N")
    p.add_argument("--resume", action="store_true", help="reuse predictions of conditions already completed in --out")
    p.add_argument("--shard", metavar="I/N",
                   help="evaluate only shard I (from 0) of N of every condition, into a units folder beside --out; "
                        "`evalsuite merge OUT` writes the results once all N have finished")
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images (counted in results) instead of failing")
    p.add_argument("--max-image-pixels", type=positive_int, metavar="N",
                   help="refuse images with more than N pixels (width x height; default: 64000000)")
    p.add_argument("--follow-symlinks", action="store_true",
                   help="let symbolic links in a data folder or manifest lead out of it (refused by default)")
    p.add_argument("--allow-calibration-overlap", action="store_true",
                   help="evaluate an INT8 model (evalsuite quantize) on data that overlap its calibration samples "
                        "(refused by default; the overlap is recorded)")
    p.add_argument("--attack-surrogate", metavar="MODEL",
                   help="craft the adversarial suite's attacks on this differentiable model (e.g. the FP32 source "
                        "of an INT8 model) and score MODEL on them: a transfer attack")
    p.add_argument("--corruption-backend", choices=("torch", "reference"), help="corruption engine (default: torch)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--perturbation-samples", metavar="N|all",
                        help="corruption and device conditions on a seeded stratified subset of N samples "
                             "(all: every sample); overrides the suite file's n / ci_half_width")
    budget.add_argument("--ci-half-width", type=float, metavar="H",
                        help="corruption and device conditions on a subset sized for a 95%% CI half-width H of an "
                             "accuracy (worst case; 0.02 -> 2401 samples; the standard preset's default)")
    p.add_argument("--device-profiles", metavar="FLEET.yaml",
                   help="capture-device profiles (camera, ISP, codec) for the device suite")
    p.add_argument("--capture-column", metavar="COLUMN",
                   help="data column naming each sample's capture device (real device shift)")
    p.add_argument("--devices", metavar="FLEET.yaml", help="deprecated name of --device-profiles")
    p.add_argument("--device-column", metavar="COLUMN", help="deprecated name of --capture-column")
    p.add_argument("--calibration-data", metavar="DATA", help="separate data to fit the temperature on")
    p.add_argument("--dry-run", action="store_true",
                   help="validate every input, probe this machine's speed, print the plan with an estimated time, "
                        "and exit 0 without writing anything")
    add_decision_flags(p)
    add_model_flags(p)
    p.set_defaults(func=_cmd_run)


# -------------------------------------------------------------------------------- gate/report
def _cmd_gate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from evalsuite.api import regate
    from evalsuite.report import render_summary, write_reports

    if args.list_metrics is not None:
        return _list_metrics(args.results, args.list_metrics)
    results, decision = regate(args.results, args.policy, args.baseline, allow_mismatch=args.allow_baseline_mismatch,
                               fail_on=args.fail_on or "fail")
    results_path = Path(args.results)
    base = results_path if results_path.is_dir() else results_path.parent
    out = Path(args.out) if args.out else base
    out.mkdir(parents=True, exist_ok=True)
    # Every artefact is re-rendered from the one new decision, so no folder holds a scorecard
    # of one verdict beside a junit.xml of another.
    write_reports(results, decision, out, artifacts_dir=base)
    if args.format == "json":
        print(json.dumps(decision.to_json(), indent=2, default=str))
    else:
        print(render_summary(results, decision))
    return decision.exit_code


def _list_metrics(results_path: str, pattern: str) -> int:
    """Print every gateable metric path matching ``pattern`` (shell-style) with value, n and CI."""
    import fnmatch

    from evalsuite.results import iter_metric_paths, load_results

    results = load_results(results_path)
    rows = [(path, leaf) for path, leaf in iter_metric_paths(results.get("metrics", {}))
            if fnmatch.fnmatchcase(path, pattern if any(c in pattern for c in "*?[") else f"*{pattern}*")]
    if not rows:
        raise UsageError(f"no metric path matches {pattern!r}; `evalsuite gate {results_path} --list-metrics` lists all")
    print("path\tvalue\tn\tci_lower\tci_upper")
    for path, leaf in rows:
        lo, hi = leaf.get("ci") or (None, None)
        print(f"{path}\t{_num(leaf.get('value'))}\t{leaf.get('n')}\t{_num(lo)}\t{_num(hi)}")
    return 0


def _num(x: Any) -> str:
    return "n/a" if x is None else f"{x:.6g}" if isinstance(x, float) else str(x)


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from evalsuite.api import regate
    from evalsuite.atomic_io import atomic_write_text
    from evalsuite.decision import Decision
    from evalsuite.report import render_scorecard, write_reports
    from evalsuite.results import load_results

    src = Path(args.results)
    base = src if src.is_dir() else src.parent
    stored = base / "gates.json"
    if args.policy is None and args.baseline is None and stored.is_file():
        # The verdict the run (or the last `gate`) reached, with the policy recorded there.
        results = load_results(args.results)
        try:
            data = json.loads(stored.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise UsageError(f"{stored} is damaged; pass --policy to re-evaluate the gates") from None
        decision = Decision.from_json(data, str(stored))
    else:
        results, decision = regate(args.results, args.policy, args.baseline)
        if not args.out:
            # A new verdict in the run folder: every artefact there follows it.
            write_reports(results, decision, base)
            print(f"scorecard: {base / 'scorecard.html'} (gates.json, junit.xml and summary.md re-rendered)")
            return 0
    out = Path(args.out) if args.out else base / "scorecard.html"
    atomic_write_text(out, render_scorecard(results, decision, base))
    print(f"scorecard: {out}")
    return 0


def _add_gate_report(sub: Any) -> None:
    p = sub.add_parser("gate", help="re-evaluate a policy against stored results (no model run)", description=(
        "Evaluate --policy (default: the built-in policy) against stored results and re-render gates.json, "
        "junit.xml, summary.md and scorecard.html together (beside results.json, or in --out)."))
    p.add_argument("results", help="results.json (or the folder holding it)")
    p.add_argument("--policy", help="policy YAML (default: built-in default policy)")
    p.add_argument("--baseline", help="baseline results.json for max_drop gates")
    p.add_argument("--allow-baseline-mismatch", action="store_true",
                   help="compare against a baseline measured on other data or conditions (warns instead of refusing)")
    p.add_argument("--out", help="folder for the four artefacts (default: beside results.json)")
    add_decision_flags(p)
    p.add_argument("--list-metrics", nargs="?", const="*", metavar="PATTERN",
                   help="print gateable metric paths (all, or those matching PATTERN: a substring or a glob) "
                        "with value, n and CI, and exit")
    p.set_defaults(func=_cmd_gate)
    p = sub.add_parser("report", help="re-render scorecard.html from stored results (no model run)")
    p.add_argument("results", help="results.json (or the folder holding it)")
    p.add_argument("--policy", help="policy YAML for the verdict (default: the gates.json the run wrote, else the built-in policy)")
    p.add_argument("--baseline", help="baseline results.json for max_drop gates")
    p.add_argument("--out", help="output HTML path (default: scorecard.html beside results.json; with --policy or "
                                 "--baseline and no --out every artefact there is re-rendered)")
    p.set_defaults(func=_cmd_report)


def add_decision_flags(p: Any) -> None:
    """``--fail-on`` and ``--format``, shared by ``run`` and ``gate``."""
    p.add_argument("--fail-on", choices=("fail", "warn"), default=None,
                   help="what makes exit code 1: a FAIL gate (default) or a WARN gate too")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="stdout: a readable summary (default) or the gates.json document")


# --------------------------------------------------------------------- inspect / ls / schema
def _cmd_inspect(args: argparse.Namespace) -> int:
    from evalsuite.models import inspect_model

    info = inspect_model(args.model, device=args.device, checkpoint=args.checkpoint, overrides=model_overrides(args) or None)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    from evalsuite.inspect_text import format_inspection

    print(format_inspection(info))
    return 0


def _list_presets() -> list[tuple[str, str]]:
    from importlib import resources

    import yaml

    from evalsuite.config import PRESET_PACKAGE, preset_names

    out = []
    for name in preset_names():
        data = yaml.safe_load(resources.files(PRESET_PACKAGE).joinpath(f"{name}.yaml").read_text(encoding="utf-8")) or {}
        suites = ", ".join(data.get("suites", {}))
        out.append((name, f"[{suites}] {str(data.get('description', '')).strip()}"))
    return out


def _cmd_ls(args: argparse.Namespace) -> int:
    from evalsuite.registry import did_you_mean

    if args.kind not in LISTABLE:
        raise UsageError(f"cannot list {args.kind!r}{did_you_mean(args.kind, list(LISTABLE))}; choose from {', '.join(LISTABLE)}")
    module, attr = LISTABLE[args.kind].split(":")
    entries = getattr(importlib.import_module(module), attr)()
    width = max((len(n) for n, _ in entries), default=0)
    for name, desc in entries:
        print(f"{name.ljust(width)}  {desc}")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    if args.gates:
        from evalsuite.decision import GATES_SCHEMA as schema
    else:
        from evalsuite.results import JSON_SCHEMA as schema

    print(json.dumps(schema, indent=2))
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from evalsuite.init_files import write_starter_files

    for path in write_starter_files(args.folder, force=args.force):
        print(f"wrote {path}")
    print("next: edit them, then `evalsuite run --config evalsuite-run.yaml` (or --dry-run first)")
    return 0


def _cmd_completion(args: argparse.Namespace) -> int:
    """Print a static completion script for the shell (shtab reads the argparse parser)."""
    try:
        import shtab
    except ImportError:
        raise UsageError("shell completion needs the shtab package (pip install shtab)") from None
    print(shtab.complete(build_parser(), shell=args.shell))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from evalsuite.demo import run_demo

    outcome = run_demo(out_dir=args.out, suite=args.suite, device=args.device, epochs=args.epochs, seed=args.seed)
    _print_outcome(outcome.results, outcome.outcomes, outcome.out_dir)
    return outcome.exit_code


def _add_misc(sub: Any) -> None:
    p = sub.add_parser("inspect", help="print what evalsuite found in a model file (inputs, preprocessing, classes)")
    p.add_argument("model", help="model.onnx, model.pt, model.pt2 or timm:<name>")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_model_flags(p)
    p.set_defaults(func=_cmd_inspect)
    p = sub.add_parser("ls", help="list plug-ins: " + ", ".join(LISTABLE))
    p.add_argument("kind", help="what to list: " + ", ".join(LISTABLE))
    p.set_defaults(func=_cmd_ls)
    p = sub.add_parser("schema", help="print the JSON Schema of results.json (or, with --gates, of gates.json)")
    p.add_argument("--gates", action="store_true", help="the schema of gates.json instead")
    p.set_defaults(func=_cmd_schema)
    p = sub.add_parser("init", help="write a starter policy, suite file and run config (with comments) to edit")
    p.add_argument("folder", nargs="?", default=".", help="where to write them (default: the current folder)")
    p.add_argument("--force", action="store_true", help="overwrite existing starter files")
    p.set_defaults(func=_cmd_init)
    p = sub.add_parser("completion", help="print a shell completion script (bash, zsh or tcsh)", description=(
        "Print a completion script: `evalsuite completion bash > ~/.local/share/bash-completion/completions/evalsuite`, "
        "or for zsh `evalsuite completion zsh > \"${fpath[1]}/_evalsuite\"`."))
    p.add_argument("shell", choices=("bash", "zsh", "tcsh"))
    p.set_defaults(func=_cmd_completion)
    p = sub.add_parser("demo", help="train a small CNN on builtin:digits, export ONNX, run the standard suite")
    p.add_argument("--out", default="reports/demo", help="output folder (default: reports/demo)")
    p.add_argument("--suite", default="standard", help="suite preset or YAML (default: standard)")
    p.add_argument("--epochs", type=positive_int, default=12, help="training epochs (default: 12)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.set_defaults(func=_cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Decide whether an image classifier is fit to ship.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_run(sub)
    _add_merge(sub)
    _add_compare(sub)
    _add_gate_report(sub)
    _add_misc(sub)
    for module in PLUGIN_COMMANDS:
        importlib.import_module(module).register(sub)
    for command in set(sub.choices.values()):
        _add_common_flags(command)
    return parser


def _add_common_flags(p: argparse.ArgumentParser) -> None:
    """``-v``/``-q``/``--debug`` after the command too (``evalsuite run ... -q``); SUPPRESS keeps a
    flag given before the command when it is not repeated after it."""
    p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more logging (-vv for debug)")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only errors")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of internal errors")


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("evalsuite")
    except metadata.PackageNotFoundError:
        return "unknown"


def _environment_error(exc: BaseException) -> str | None:
    """The one-line message for failures of the machine or of input sizes, not of evalsuite (exit 2)."""
    if isinstance(exc, MemoryError):
        return "not enough memory for this run; lower --batch-size or check --input-size/--resize and the data"
    if isinstance(exc, RecursionError):
        return "an input is nested too deeply to read (a YAML or JSON file with thousands of levels)"
    if isinstance(exc, OSError):
        from evalsuite.run_folder import describe_os_error

        return describe_os_error(exc, "read or write")
    return None


def _route_warnings(verbose: int) -> None:
    """Python warnings from dependencies go to logging (shown with -vv), never raw to the terminal."""
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if verbose >= 2 else logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _setup_logging(args)
    _route_warnings(getattr(args, "verbose", 0) or 0)
    try:
        return int(args.func(args) or 0)
    except EvalsuiteError as exc:
        msg = " ".join(str(exc).split())
        sys.stderr.write(f"{PROG}: error: {msg}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except (MemoryError, RecursionError, OSError) as exc:
        if args.debug:
            raise
        sys.stderr.write(f"{PROG}: error: {' '.join(str(_environment_error(exc)).split())}\n")
        return 2
    except Exception as exc:  # noqa: BLE001 - one line for users, traceback with --debug
        if args.debug:
            raise
        sys.stderr.write(
            f"{PROG}: internal error (a bug in evalsuite, please report it): {type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:300]} (rerun with --debug for the traceback)\n"
        )
        return 3


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
