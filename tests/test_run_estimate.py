"""The run plan (#17 item 10): --dry-run prints it and writes nothing, the probe measures what the
model costs, progress logs a line per suite and a heartbeat, the estimate follows measured rates."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pytest

from evalsuite.run_estimate import (
    Rates,
    RunProgress,
    SuitePlan,
    add_reference_work,
    build_plan,
    format_seconds,
    probe_rates,
)
from tests.trust_cli import run_cli


class _SleepyModel:
    """predict() sleeps a known time per call: the probe must see at least that cost."""

    def __init__(self, per_call: float) -> None:
        self.per_call, self.calls = per_call, 0

    def predict(self, x):
        self.calls += 1
        time.sleep(self.per_call)
        return np.zeros((x.shape[0], 3), np.float32)

    def torch_module(self):
        from evalsuite.errors import ModelError

        raise ModelError("no gradients")


@dataclass
class _Cond:
    key: str
    suite: str
    grad: float = 0.0

    def cost(self, n):
        return float(n), self.grad * n


def test_reference_work_is_added_in_the_candidate_pass_units():
    """run --reference: the reference predicts every shared condition (forward passes only) and its
    attack twins, scaled by its own rates: a reference twice as slow costs twice the passes."""
    conds = [_Cond("clean", "clean"), _Cond("corruption/fog/1", "corruption"), _Cond("attack/linf/8_255", "adversarial", grad=10)]
    samples = {"clean": 100, "corruption/fog/1": 100, "attack/linf/8_255": 20}
    plans = build_plan(conds, samples)
    twin = _Cond("attack/linf/8_255", "adversarial", grad=10)
    add_reference_work(plans, conds, samples, lambda c: twin if c.grad else c, Rates(0.001, 0.004), Rates(0.002, 0.004))
    clean, corr, adv = plans
    assert (clean.forward_passes, corr.forward_passes) == (300.0, 300.0)  # 100 + 2 x 100
    assert (adv.forward_passes, adv.gradient_passes) == (60.0, 400.0)  # attack twin: 20 + 2 x 20, 200 + 1 x 200
    no_twin = build_plan(conds, samples)
    add_reference_work(no_twin, conds, samples, lambda c: None if c.grad else c, Rates(0.001, 0.004), Rates(0.001, 0.004))
    assert no_twin[2].forward_passes == 20.0 and no_twin[2].gradient_passes == 200.0  # no twin: nothing added


def test_probe_recovers_an_injected_cost_per_batch():
    model = _SleepyModel(0.02)
    images = np.zeros((24, 8, 8, 3), np.uint8)
    rates = probe_rates(model, images, 8, "cpu", gradient=True)
    assert model.calls == 3  # one warm-up, then two timed batches
    assert rates.forward_s >= 0.02 / 8  # the sleep is a floor of the measured cost
    assert rates.gradient_s is None  # no torch module: no gradient rate, not a made-up one


def test_plan_sums_costs_per_suite_in_run_order():
    conds = [_Cond("clean", "clean"), _Cond("corruption/fog/1", "corruption"), _Cond("corruption/fog/2", "corruption"),
             _Cond("attack/linf/8_255", "adversarial", grad=10)]
    plans = build_plan(conds, {"clean": 100, "corruption/fog/1": 100, "corruption/fog/2": 100, "attack/linf/8_255": 20})
    assert [p.suite for p in plans] == ["clean", "corruption", "adversarial"]
    adv = plans[2]
    assert (adv.conditions, adv.samples, adv.forward_passes, adv.gradient_passes) == (1, 20, 20.0, 200.0)
    rates = Rates(0.001, 0.004)
    assert adv.seconds(rates) == pytest.approx(20 * 0.001 + 200 * 0.004)
    assert format_seconds(42) == "42 s" and format_seconds(600) == "10.0 min" and format_seconds(7200) == "2.0 h"


def test_remaining_time_follows_the_measured_rate():
    plans = [SuitePlan("corruption", 2, 200, 200.0, 0.0)]
    progress = RunProgress(plans, Rates(0.001, None))
    assert progress.remaining_seconds() == pytest.approx(0.2)
    cond = _Cond("corruption/fog/1", "corruption")
    progress.started(cond, 100)
    progress.finished(cond, 100, seconds=5.0)  # 50x slower than the probe said (perturbation cost)
    assert progress.remaining_seconds() == pytest.approx(5.0)


def test_heartbeat_logs_while_a_condition_runs(caplog):
    caplog.set_level(logging.INFO, logger="evalsuite.plan")
    plans = [SuitePlan("adversarial", 1, 10, 10.0, 100.0)]
    with RunProgress(plans, Rates(0.001, 0.01), interval=0.05) as progress:
        progress.started(_Cond("attack/linf/8_255", "adversarial", grad=10), 10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("at condition" in r.message for r in caplog.records):
            time.sleep(0.02)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("suite adversarial: 1 condition(s)") for m in messages)
    assert any("at condition 1/1 attack/linf/8_255" in m for m in messages)


def test_dry_run_prints_the_plan_and_writes_nothing(digits_onnx, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(["run", digits_onnx, "--data", "builtin:digits", "--limit", "40",
                                 "--suite", "clean,corruption", "--out", out, "--dry-run"], capsys)
    assert code == 0, err
    assert not out.exists() and not list(tmp_path.iterdir())
    assert stdout.startswith("plan: ") and "conditions over 40 images" in stdout
    lines = stdout.splitlines()
    assert any(line.split()[0] == "clean" for line in lines[1:]) and any(line.split()[0] == "corruption" for line in lines[1:])


def test_dry_run_validates_like_run(digits_onnx, tmp_path, capsys):
    pol = tmp_path / "p.yaml"
    pol.write_text("gates:\n  - metric: clean.nope\n    min: 0.5\n")
    code, _, err = run_cli(["run", digits_onnx, "--data", "builtin:digits", "--suite", "quick", "--policy", pol,
                            "--out", tmp_path / "o", "--dry-run"], capsys)
    assert code == 2 and "clean.nope" in err


def test_a_run_logs_its_plan_and_each_suite(digits_onnx, tmp_path, caplog):
    from evalsuite.cli import main

    caplog.set_level(logging.INFO, logger="evalsuite.plan")
    assert main(["run", str(digits_onnx), "--data", "builtin:digits", "--limit", "30", "--suite", "clean,corruption",
                 "--out", str(tmp_path / "run")]) in (0, 1)
    messages = [r.getMessage() for r in caplog.records if r.name == "evalsuite.plan"]
    assert messages[0].startswith("plan: ")
    assert any(m.startswith("suite clean:") for m in messages) and any(m.startswith("suite corruption:") for m in messages)
