"""Acceptance runs of the three bundled recipes on ``builtin:digits`` (CPU), measured and recorded.

``python -m training.acceptance [--runs DIR] [--reports DIR] [--threads N]`` trains (or resumes)
``standard``, ``adversarial`` and ``calibration`` into ``<runs>/<name>``, each ending with its
own ``evalsuite run`` on the test split, then measures every model on the 360 test images:

- clean accuracy and 15-bin ECE of the exported ONNX model (onnxruntime; the calibration
  model's temperature is baked into its logits, exactly what ``evalsuite run`` sees);
- L-infinity PGD robust accuracy with ``torchattacks.PGD`` (an implementation independent of
  the one used for training): 20 steps of ``eps / 4``, random start, at 8/255 (the claim) and
  16/255 (context), on the network in [0, 1] pixel space.

Criteria (issue 8): standard >= 97% test accuracy in <= 180 s of training; adversarial >= 20
points more PGD robust accuracy at 8/255 than standard; calibration lower ECE than standard
with accuracy within 1 point. Results go to ``<reports>/train-acceptance.{json,md}`` and each
run's scorecard, results, log and summary to ``<reports>/train-<name>/``. Exit code 0 when
every criterion holds, 1 otherwise. Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

RECIPES = ("standard", "adversarial", "calibration")
EPSILONS = {"8/255": 8 / 255, "16/255": 16 / 255}
COPIED = ("scorecard.html", "summary.json", "log.csv", "log.json", "recipe.yaml")


def machine() -> dict[str, Any]:
    """The machine description plus the load average: the context every timing needs."""
    from evalsuite.machine import describe_machine

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {**describe_machine(), "load_average": list(load) if load else None}


def _test_arrays() -> tuple[np.ndarray, np.ndarray]:
    from evalsuite.data.builtin import digits_arrays

    images, labels, _, splits = digits_arrays()
    idx = splits["test"]
    return images[idx], labels[idx]


def measure(run_dir: Path, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Accuracy/ECE of the ONNX model and PGD robust accuracy of the trained network."""
    import onnxruntime as ort
    import torch
    import torchattacks

    from evalsuite.calibration import ece
    from evalsuite.models.pixel import PixelSpaceModel
    from training.models import load_trained

    net, meta = load_trained(run_dir / "model.safetensors")
    mean, std = np.asarray(meta["mean"], np.float32), np.asarray(meta["std"], np.float32)
    x = images.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    xn = (x - mean.reshape(1, 3, 1, 1)) / std.reshape(1, 3, 1, 1)
    sess = ort.InferenceSession(str(run_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: xn})[0].astype(np.float64)
    z = logits - logits.max(1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    out: dict[str, Any] = {
        "test_accuracy": float((probs.argmax(1) == labels).mean()),
        "test_ece": float(ece(probs, labels, n_bins=15)),
        "temperature": float(meta.get("temperature", 1.0)),
        "n": int(len(labels)),
    }
    model = PixelSpaceModel(net, meta["mean"], meta["std"]).eval()
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))
    robust = {}
    for label, eps in EPSILONS.items():
        torch.manual_seed(0)
        atk = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=20, random_start=True)
        correct = 0
        for s in range(0, len(yt), 120):
            adv = atk(xt[s : s + 120], yt[s : s + 120])
            with torch.no_grad():
                correct += int((model(adv).argmax(1) == yt[s : s + 120]).sum())
        robust[label] = correct / len(yt)
    out["pgd_robust_accuracy"] = robust
    if out["temperature"] == 1.0:
        # Context for the calibration claim: this model with post-hoc temperature scaling only
        # (T fitted on the validation split, as the calibration recipe does).
        from evalsuite.calibration import fit_temperature
        from evalsuite.data.builtin import digits_arrays

        all_images, all_labels, _, splits = digits_arrays()
        xv = all_images[splits["val"]].astype(np.float32).transpose(0, 3, 1, 2) / 255.0
        xvn = (xv - mean.reshape(1, 3, 1, 1)) / std.reshape(1, 3, 1, 1)
        val_logits = sess.run(None, {sess.get_inputs()[0].name: xvn})[0]
        fit = fit_temperature(val_logits, all_labels[splits["val"]])
        if fit.converged:
            zt = logits / fit.temperature
            zt = zt - zt.max(1, keepdims=True)
            pt = np.exp(zt) / np.exp(zt).sum(1, keepdims=True)
            out["posthoc_temperature"] = float(fit.temperature)
            out["test_ece_after_posthoc_temperature"] = float(ece(pt, labels, n_bins=15))
    summary = json.loads((run_dir / "summary.json").read_text())
    out["train_seconds"] = summary["train_seconds"]
    out["train_cpu_seconds"] = summary.get("train_cpu_seconds")
    out["torch_threads"] = summary.get("torch_threads")
    out["epochs_run"] = summary["epochs_run"]
    out["eval_exit_code"] = (summary.get("eval") or {}).get("exit_code")
    results = run_dir / "eval" / "results.json"
    if results.exists():
        res = json.loads(results.read_text())
        out["evalsuite_run_clean_accuracy"] = res["metrics"]["clean"]["accuracy"]["value"]
    return out


def criteria(m: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    std, adv, cal = m["standard"], m["adversarial"], m["calibration"]
    gain = adv["pgd_robust_accuracy"]["8/255"] - std["pgd_robust_accuracy"]["8/255"]
    acc_gap = cal["test_accuracy"] - std["test_accuracy"]
    return {
        "standard: test accuracy >= 97%": {"value": std["test_accuracy"], "ok": std["test_accuracy"] >= 0.97},
        "standard: training <= 180 s": {"value": std["train_seconds"], "ok": std["train_seconds"] <= 180},
        "adversarial: PGD 8/255 robust accuracy gain >= 20 points": {"value": gain, "ok": gain >= 0.20},
        "calibration: ECE below standard": {"value": cal["test_ece"] - std["test_ece"],
                                            "ok": cal["test_ece"] < std["test_ece"]},
        "calibration: accuracy within 1 point of standard": {"value": acc_gap, "ok": abs(acc_gap) <= 0.01},
    }


def markdown(doc: dict[str, Any]) -> str:
    lines = ["# Training acceptance (builtin:digits, CPU)", ""]
    mach = doc["machine"]
    lines.append(f"Machine: {mach['cores']} cores, {mach['cpu']}, torch {mach['torch']} "
                 f"({mach['torch_threads']} threads), load average at the end {mach['load_average']}.")
    lines += ["", "Training seconds are wall time of the epochs (training + per-epoch validation), measured on a",
              "2-core machine shared with other jobs; CPU seconds are the process's CPU time over the same epochs.",
              "", "| recipe | test acc | test ECE | T | PGD 8/255 | PGD 16/255 | train s (wall) | train s (CPU) | epochs |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, m in doc["models"].items():
        lines.append(
            f"| {name} | {m['test_accuracy']:.2%} | {m['test_ece']:.4f} | {m['temperature']:.3f} | "
            f"{m['pgd_robust_accuracy']['8/255']:.2%} | {m['pgd_robust_accuracy']['16/255']:.2%} | "
            f"{m['train_seconds']:.1f} | {m['train_cpu_seconds']:.1f} | {m['epochs_run']} |"
        )
    lines += ["", "| criterion | value | verdict |", "| --- | --- | --- |"]
    for name, c in doc["criteria"].items():
        lines.append(f"| {name} | {c['value']:.4f} | {'PASS' if c['ok'] else 'FAIL'} |")
    std = doc["models"]["standard"]
    if "test_ece_after_posthoc_temperature" in std:
        lines += ["", f"Context: the standard model with post-hoc temperature scaling alone (T = "
                  f"{std['posthoc_temperature']:.3f} fitted on val) has test ECE "
                  f"{std['test_ece_after_posthoc_temperature']:.4f}."]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.acceptance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs/acceptance", help="where the training runs go (resumable)")
    p.add_argument("--reports", default="reports", help="where train-<recipe>/ and train-acceptance.* go")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for training (default: torch's)")
    p.add_argument("--only", choices=RECIPES, action="append", help="train only these recipes (measure all present)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    import torch

    from training.config import load_recipe
    from training.loop import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    runs = Path(args.runs)
    for name in args.only or RECIPES:
        overrides = ["device=cpu"] + ([f"threads={args.threads}"] if args.threads else [])
        Trainer(load_recipe(name, overrides), runs / name).fit()
    images, labels = _test_arrays()
    models = {name: measure(runs / name, images, labels) for name in RECIPES if (runs / name / "summary.json").exists()}
    doc: dict[str, Any] = {"machine": machine(), "models": models}
    if all(r in models for r in RECIPES):
        doc["criteria"] = criteria(models)
    reports = Path(args.reports)
    for name in models:
        dst = reports / f"train-{name}"
        dst.mkdir(parents=True, exist_ok=True)
        for f in COPIED:
            if (runs / name / f).exists():
                shutil.copyfile(runs / name / f, dst / f)
        if (runs / name / "eval" / "results.json").exists():
            shutil.copyfile(runs / name / "eval" / "results.json", dst / "results.json")
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "train-acceptance.json").write_text(json.dumps(doc, indent=2) + "\n")
    if "criteria" in doc:
        (reports / "train-acceptance.md").write_text(markdown(doc))
        sys.stdout.write(markdown(doc))
        return 0 if all(c["ok"] for c in doc["criteria"].values()) else 1
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
