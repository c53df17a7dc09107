"""``--resume`` after a SIGKILL finishes the remaining conditions with identical metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = r'''
import sys, time
import numpy as np
import torch
from evalsuite.conditions import Condition
from evalsuite.seeding import torch_generators
from evalsuite.stats import mean_metric
from evalsuite.suites import SUITES
from evalsuite.suites.base import Suite, SuiteOutput


class SlowNoise(Condition):
    def apply(self, x, ctx):
        time.sleep(float(self.params["sleep"]))
        gens = torch_generators(ctx.seed, self.key, ctx.ids)
        noise = torch.stack([torch.randn(x.shape[1:], generator=g) for g in gens]).to(x.device)  # x is on the run's device
        return (x + self.params["sigma"] * noise).clamp(0, 1)


class SlowSuite(Suite):
    name = "slow"
    option_names = ("sleep",)

    def conditions(self, run):
        s = float(self.options.get("sleep", 0.0))
        return [SlowNoise(key=f"slow/{i}", suite="slow", params={"sigma": 0.1 * i, "sleep": s}) for i in range(1, 7)]

    def summarize(self, run, preds):
        return SuiteOutput(metrics={k.split("/")[1]: mean_metric(p.correct) for k, p in preds.items() if p.suite == "slow"})


SUITES.register("slow", SlowSuite)
from evalsuite.cli import main
raise SystemExit(main(sys.argv[1:]))
'''


def _run(args, tmp_path, **kw):
    script = tmp_path / "run_slow.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "CI": "1"}
    return subprocess.Popen([sys.executable, str(script), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_resume_after_sigkill(digits_onnx, tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text("suites:\n  clean: {}\n  slow: {sleep: 0.3}\n")
    common = [str(digits_onnx), "--data", "builtin:digits:test", "--suite", str(suite), "--batch-size", "120", "--seed", "3"]

    ref = _run(["run", *common, "--out", str(tmp_path / "ref")], tmp_path)
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode()

    out = tmp_path / "killed"
    proc = _run(["run", *common, "--out", str(out)], tmp_path)
    preds = tmp_path / ".killed.staging" / "predictions"  # a run writes beside --out until it commits
    deadline = time.time() + 240
    while time.time() < deadline:
        if preds.exists() and len(list(preds.glob("*.npz"))) >= 3:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = {p.name for p in preds.glob("*.npz")}
    assert 3 <= len(done_before) < 7
    assert not out.exists()  # nothing reached --out: the run had not committed
    assert not list(preds.glob("*.tmp"))  # no half-written prediction file

    resumed = _run(["run", *common, "--out", str(out), "--resume"], tmp_path)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    a = json.loads((tmp_path / "ref" / "results.json").read_text())
    b = json.loads((out / "results.json").read_text())
    assert a["metrics"] == b["metrics"]
    assert len(b["provenance"]["resumed_conditions"]) == len(done_before)


def test_resume_recomputes_when_inputs_change(digits_onnx, tmp_path):
    """A stored condition is reused only for an identical run: same seed reuses all, another seed none."""
    suite = tmp_path / "suite.yaml"
    suite.write_text("suites:\n  clean: {}\n  slow: {sleep: 0}\n")
    common = [str(digits_onnx), "--data", "builtin:digits:test", "--suite", str(suite), "--out", str(tmp_path / "o")]
    assert _run(["run", *common, "--seed", "1"], tmp_path).wait(timeout=300) == 0
    assert _run(["run", *common, "--seed", "1", "--resume"], tmp_path).wait(timeout=300) == 0
    res = json.loads((Path(tmp_path) / "o" / "results.json").read_text())
    assert len(res["provenance"]["resumed_conditions"]) == 7
    assert _run(["run", *common, "--seed", "2", "--resume"], tmp_path).wait(timeout=300) == 0
    res = json.loads((Path(tmp_path) / "o" / "results.json").read_text())
    assert res["provenance"]["resumed_conditions"] == []
