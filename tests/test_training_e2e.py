"""End to end: models by name, checkpoints, export with metadata, resume after a kill, the CLI,
and one short real training run on builtin:digits gated by ``evalsuite run``."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from evalsuite.errors import DataError, ModelError, UsageError
from training.loop import Trainer
from training.testing import tiny_data, tiny_recipe

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------- models
def test_models_by_name_random_init_only():
    from training.models import build_network

    x = torch.rand(2, 3, 32, 32)
    assert build_network("digits_cnn", 7)(x).shape == (2, 7)
    assert build_network("timm:test_resnet", 5)(x).shape == (2, 5)
    assert build_network("torchvision:resnet18", 4)(x).shape == (2, 4)
    with pytest.raises(UsageError, match="did you mean 'test_resnet'"):
        build_network("timm:test_resnett", 3)
    with pytest.raises(UsageError, match="did you mean 'resnet18'"):
        build_network("torchvision:resnet19", 3)
    with pytest.raises(UsageError, match="never|model.checkpoint"):
        build_network("timm:test_resnet", 3, {"pretrained": True})
    with pytest.raises(UsageError, match="timm:<architecture>"):
        build_network("resnet", 3)


def test_checkpoint_loading_reinitialises_a_new_head(tmp_path):
    from training.models import build_network, load_weights

    torch.manual_seed(0)
    src = build_network("timm:test_resnet", 10)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = build_network("timm:test_resnet", 4)
    reinit = load_weights(dst, tmp_path / "w.pt")
    assert sorted(reinit) == ["fc.bias", "fc.weight"]
    for k, v in dst.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(v, src.state_dict()[k]), k
    with pytest.raises(ModelError, match="does not fit"):
        load_weights(build_network("digits_cnn", 4), tmp_path / "w.pt")
    # A training output folder works as a checkpoint (its model.safetensors).
    from training.export import export_model

    meta = {"model": {"name": "timm:test_resnet", "kwargs": {}}, "class_names": [str(i) for i in range(10)],
            "mean": [0.5] * 3, "std": [0.5] * 3, "input_size": [32, 32]}
    export_model(src, tmp_path / "run", metadata=meta, onnx=False)
    again = build_network("timm:test_resnet", 10)
    assert load_weights(again, tmp_path / "run") == []
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in again.state_dict().items())
    with pytest.raises(ModelError, match="not found"):
        load_weights(dst, tmp_path / "missing.safetensors")


# --------------------------------------------------------------------------------------- data
def test_npz_data_with_held_out_validation_and_streamed_decoding(tmp_path, monkeypatch):
    """Any `evalsuite run --data` form trains; val=null holds out a stratified fraction; big data streams."""
    import training.data as tdata
    from training.config import recipe_from_dict

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 20, 20, 3), dtype=np.uint8)
    labels = np.array(["cat", "dog"] * 20)
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    monkeypatch.setattr(tdata, "CACHE_LIMIT_MB", 0)  # force batch-by-batch decoding
    r = recipe_from_dict({"data": {"train": str(tmp_path / "d.npz"), "val": None, "val_fraction": 0.25,
                                   "input_size": [16, 16]}})
    data = tdata.load_splits(r.data, seed=0)
    assert data.class_names == ["cat", "dog"]
    assert len(data.train) == 30 and len(data.val) == 10
    assert np.bincount(data.val.labels).tolist() == [5, 5]
    assert not set(data.train.ids) & set(data.val.ids)
    assert not data.train.in_memory
    batch = data.train.images([0, 3])
    assert batch.shape == (2, 16, 16, 3) and batch.dtype == np.uint8
    rec = data.record()
    assert rec["val"]["source"].endswith("(held-out 0.25, seed 0)") and len(rec["train"]["ids"]) == 30
    with pytest.raises(DataError, match="same data"):
        tdata.load_splits(recipe_from_dict({"data": {"train": "builtin:digits:train", "val": "builtin:digits:train"}}).data)


# ------------------------------------------------------------------------- export and temperature
def test_export_bakes_temperature_and_metadata(tmp_path):
    import onnxruntime as ort

    from evalsuite.models import load_model

    r = tiny_recipe(calibration={"temperature_scaling": True}, schedule={"epochs": 3})
    res = Trainer(r, tmp_path / "cal", data=tiny_data(label_noise=0.3)).fit()
    onnx_path = res.paths["onnx"]
    model = load_model(str(onnx_path), device="cpu")
    info = model.info
    assert list(info.class_names) == ["0", "1", "2"]
    assert tuple(info.input_size) == (16, 16)
    assert list(info.mean) == [0.5] * 3 and list(info.std) == [0.5] * 3
    assert res.temperature != 1.0
    assert info.temperature == pytest.approx(res.temperature)
    # ONNX logits == network logits / T on normalised input.
    from training.models import load_trained

    net, meta = load_trained(res.paths["safetensors"])
    assert meta["temperature"] == pytest.approx(res.temperature)
    x = torch.rand(4, 3, 16, 16)
    xn = ((x - 0.5) / 0.5).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: xn})[0]
    with torch.no_grad():
        want = (net(torch.from_numpy(xn)) / res.temperature).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # The fitted T lowered the validation NLL (it is the NLL minimiser).
    fv = res.final_val
    assert fv["after_temperature"]["val_loss"] <= fv["before_temperature"]["val_loss"] + 1e-9
    assert fv["temperature_fit"]["converged"]


# ------------------------------------------------------------------------------------- resume
class _Killed(Exception):
    pass


def _kill_after(epoch: int):
    def cb(trainer, row):
        if row["epoch"] == epoch:
            raise _Killed

    return cb


def test_resume_after_interruption_is_bit_identical(tmp_path):
    sections = dict(schedule={"epochs": 3, "warmup_epochs": 1}, augment={"random_shift": 2, "mixup_alpha": 0.2},
                    ema={"enabled": True, "decay": 0.9}, model={"name": "digits_cnn", "kwargs": {"width": 4}})
    full = Trainer(tiny_recipe(**sections), tmp_path / "full", data=tiny_data()).fit()
    with pytest.raises(_Killed):
        Trainer(tiny_recipe(**sections), tmp_path / "cut", data=tiny_data(), callbacks=[_kill_after(1)]).fit()
    assert json.loads((tmp_path / "cut" / "log.json").read_text())["epochs"][-1]["epoch"] == 1
    resumed = Trainer(tiny_recipe(**sections), tmp_path / "cut", data=tiny_data()).fit()
    assert resumed.resumed_from_epoch == 1
    from training.models import read_checkpoint

    a, _ = read_checkpoint(full.paths["safetensors"])
    b, _ = read_checkpoint(resumed.paths["safetensors"])
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    timing = ("seconds", "cpu_seconds")
    strip = [{k: v for k, v in row.items() if k not in timing} for row in full.history]
    assert strip == [{k: v for k, v in row.items() if k not in timing} for row in resumed.history]
    # A different recipe in the same folder is refused, not silently mixed.
    with pytest.raises(UsageError, match="different recipe"):
        Trainer(tiny_recipe(**{**sections, "optim": {"lr": 0.5}}), tmp_path / "cut", data=tiny_data()).fit()
    with pytest.raises(UsageError, match="resume=must"):
        Trainer(tiny_recipe(resume="must"), tmp_path / "nothing", data=tiny_data()).fit()


# ------------------------------------------------------------------------------- logs and CLI
def test_per_epoch_log_csv_and_json(tmp_path):
    r = tiny_recipe(adversarial={"eval_epsilon": 0.05, "eval_steps": 2, "eval_samples": 6})
    res = Trainer(r, tmp_path / "log", data=tiny_data()).fit()
    rows = list(csv.DictReader((tmp_path / "log" / "log.csv").open()))
    assert len(rows) == 2
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_ece", "val_robust_accuracy", "lr"):
        assert all(row[key] != "" for row in rows), key
    doc = json.loads((tmp_path / "log" / "log.json").read_text())
    assert [e["epoch"] for e in doc["epochs"]] == [1, 2]
    assert doc["epochs"][0]["val_ece"] == pytest.approx(float(rows[0]["val_ece"]))
    summary = json.loads((tmp_path / "log" / "summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["paths"]["onnx"] == "model.onnx"
    assert res.eval_dir is None  # eval disabled in the tiny recipe


def test_cli_print_recipe_overrides_and_errors(capsys):
    import argparse

    from training.cli import main, register

    assert main(["standard", "--print-recipe", "optim.lr=0.5", "schedule.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.5" in out and "epochs: 3" in out
    assert main(["standard", "optim.lrr=1", "--print-recipe"]) == 2
    assert "did you mean 'lr'" in capsys.readouterr().err
    # Wired as `evalsuite train`: options may follow the overrides.
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "standard", "schedule.epochs=3", "--print-recipe", "--out", "x"])
    assert args.func(args) == 0
    assert args.out == "x" and args.overrides == ["schedule.epochs=3"]


def test_evalsuite_cli_wiring(monkeypatch, capsys):
    """`evalsuite train` through evalsuite's own parser once training.cli is a plugin command."""
    import evalsuite.cli as ecli

    monkeypatch.setattr(ecli, "PLUGIN_COMMANDS", tuple(dict.fromkeys((*ecli.PLUGIN_COMMANDS, "training.cli"))))
    assert ecli.main(["train", "calibration", "loss.aux=dca", "--print-recipe"]) == 0
    assert "aux: dca" in capsys.readouterr().out
    assert ecli.main(["train", "calibration", "loss.aux=dcaa", "--print-recipe"]) == 2
    assert "did you mean 'dca'" in capsys.readouterr().err


def test_short_digits_run_end_to_end(tmp_path):
    """A few epochs on a digits subset: learns, exports, and `evalsuite run` gates it (scorecard beside)."""
    from training.config import load_recipe

    r = load_recipe("standard", [
        "model.name=digits_cnn", "model.kwargs={width: 8}", "schedule.epochs=3", "optim.batch_size=32",
        "optim.lr=0.01", "schedule.warmup_epochs=0", "ema.enabled=false", "adversarial.eval_epsilon=0",
        "eval.suite=quick", "device=cpu",
    ])
    res = Trainer(r, tmp_path / "std").fit()
    out = tmp_path / "std"
    assert res.history[-1]["val_accuracy"] > 0.7
    for name in ("model.safetensors", "model.onnx", "log.csv", "log.json", "splits.json", "recipe.yaml",
                 "summary.json", "scorecard.html", "checkpoint-last.pt"):
        assert (out / name).exists(), name
    splits = json.loads((out / "splits.json").read_text())
    assert splits["train"]["n"] == 1078 and splits["val"]["source"] == "builtin:digits:val"
    assert not set(splits["train"]["ids"]) & set(splits["val"]["ids"])
    results = json.loads((out / "eval" / "results.json").read_text())
    assert results["data"]["name"].startswith("builtin:digits")
    assert results["metrics"]["clean"]["accuracy"]["value"] > 0.7
    assert res.exit_code in (0, 1)


@pytest.mark.slow
def test_sigkill_then_rerun_resumes(tmp_path):
    """A real kill -9 in the middle of training; the same command then finishes from the checkpoint."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "training", "standard", "--out", str(out), "model.name=digits_cnn",
           "model.kwargs={width: 8}", "data.limit=200", "schedule.epochs=6", "eval.enabled=false",
           "adversarial.eval_epsilon=0", "device=cpu", "threads=1"]
    env = {**os.environ, "CI": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "checkpoint-last.pt").exists():
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads((out / "log.json").read_text())["epochs"]
    assert 1 <= len(done) < 6
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed at epoch" in rerun.stdout
    assert len(json.loads((out / "log.json").read_text())["epochs"]) == 6
    assert Path(out / "model.onnx").exists()
