"""torchrun as the engine (#18): two gloo CPU ranks write the same results as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from evalsuite.cli import main
from evalsuite.distributed import RankInfo, pin_local_gpu, torchrun_rank
from tests.test_shards import SUITE, as_new_process, comparable


def test_torchrun_rank_from_the_environment():
    base = {"TORCHELASTIC_RUN_ID": "x", "RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}
    assert torchrun_rank(base) == RankInfo(3, 4, 1)
    assert torchrun_rank({**base, "WORLD_SIZE": "1", "RANK": "0"}) is None  # a world of one is a plain run
    assert torchrun_rank({"RANK": "0", "WORLD_SIZE": "2"}) is None  # not started by torchrun
    assert torchrun_rank({**base, "RANK": "one"}) is None


@pytest.mark.parametrize("visible,local,expected", [("2,3", 0, "2"), ("2,3", 1, "3"), ("2,3", 2, "2"), ("5", 3, "5")])
def test_each_rank_sees_its_own_gpu(monkeypatch, visible, local, expected):
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # as in a rank before torch is imported
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    pin_local_gpu(RankInfo(local, 4, local))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == expected


def test_gpus_stay_as_they_are_once_torch_is_imported(monkeypatch):
    import torch  # noqa: F401 - the condition under test

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    pin_local_gpu(RankInfo(1, 2, 1))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_shard_flag_under_torchrun_is_refused(monkeypatch, tmp_path, capsys):
    for k, v in {"TORCHELASTIC_RUN_ID": "x", "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)
    assert main(["run", "model.onnx", "--data", "builtin:digits", "--shard", "0/2", "--out", str(tmp_path / "o")]) == 2
    assert "under torchrun" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_equal_one_process(digits_onnx, tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    common = [str(digits_onnx), "--data", "builtin:digits", "--limit", "60", "--suite", str(suite),
              "--batch-size", "16", "--device", "cpu", "--seed", "1", "-q"]
    single, ranked = tmp_path / "single", tmp_path / "ranked"
    code = as_new_process(["run", *common, "--out", str(single)])
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "evalsuite", "run", *common, "--out", str(ranked)],
                          env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == code, proc.stderr[-3000:]
    assert proc.stdout.count("scorecard:") == 1  # rank 0 alone reports
    assert not (tmp_path / ".ranked.units").exists()
    merged = json.loads((ranked / "results.json").read_text())
    assert comparable(merged) == comparable(json.loads((single / "results.json").read_text()))
    assert [r["shard"] for r in merged["provenance"]["shards"]["records"]] == ["0/2", "1/2"]
