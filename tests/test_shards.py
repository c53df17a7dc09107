"""Sharded runs (#18): exact work units, ``run --shard I/N`` + ``merge`` equal one process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from evalsuite.cli import main
from evalsuite.errors import UsageError
from evalsuite.shards import ShardSpec, unit_bounds

SUITE = """suites:
  clean: {}
  corruption: {corruptions: [gaussian_noise, fog], severities: [3]}
  adversarial: {n: 16, attack_batch_size: 8, norms: [linf], linf_eps: ["8/255"], blackbox_n: 0}
  calibration: {}
"""
# Timings differ between any two runs; the shard record exists only in the merged run.
TIMINGS = ("started_at", "finished_at", "seconds", "suite_seconds")


def comparable(results: dict) -> dict:
    """results.json without what may differ between two runs of the same work: timings, the
    adversarial suite's speed probe and the shard record."""
    out = json.loads(json.dumps(results))
    for k in (*TIMINGS, "shards"):
        out["provenance"].pop(k, None)
    for cond in out["conditions"].values():
        cond.pop("seconds")
    out["report"].get("adversarial", {}).pop("estimate", None)
    return out


# ------------------------------------------------------------------------------ unit layout
@pytest.mark.parametrize("n,block,count", [(60, 16, 3), (60, 1, 7), (16, 8, 3), (0, 4, 2), (5, 64, 4), (1000, 64, 8),
                                           (10, 3, 10), (7, 1, 7)])
def test_unit_bounds_tile_exactly_on_blocks(n, block, count):
    bounds = unit_bounds(n, block, count)
    assert len(bounds) == count
    covered = np.concatenate([np.arange(a, b) for a, b in bounds]) if n else np.empty(0)
    assert np.array_equal(covered, np.arange(n))  # contiguous, in order, no gap, no duplicate: no padding
    for a, b in bounds:
        assert a % block == 0 and (b % block == 0 or b == n)  # cut on batch boundaries only
    sizes = [-(-(b - a) // block) for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1  # whole blocks spread within one of each other


def test_unit_bounds_hand_computed():
    assert unit_bounds(60, 16, 3) == [(0, 16), (16, 32), (32, 60)]  # 4 blocks: 1, 1, 2
    assert unit_bounds(16, 8, 3) == [(0, 0), (0, 8), (8, 16)]  # 2 blocks over 3 shards: one empty
    assert unit_bounds(10, 1, 4) == [(0, 2), (2, 5), (5, 7), (7, 10)]


@pytest.mark.parametrize("text", ["3/2", "2/2", "0/0", "-1/3", "1", "a/b", "1/3/4", ""])
def test_bad_shard_spec_is_a_usage_error(text):
    with pytest.raises(UsageError, match="--shard"):
        ShardSpec.parse(text)


def test_shard_spec_parses():
    spec = ShardSpec.parse(" 2 / 5 ")
    assert (spec.index, spec.count, spec.part, str(spec)) == (2, 5, "2-of-5", "2/5")


def test_bad_shard_flag_exits_2_before_loading_anything(capsys, tmp_path):
    code = main(["run", str(tmp_path / "no-such-model.onnx"), "--data", "builtin:digits", "--shard", "3/2",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "--shard 3/2" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / ".out.units").exists()


# ------------------------------------------------------------------------------ identical numbers
def as_new_process(argv: list[str]) -> int:
    """``main(argv)`` as a fresh ``evalsuite`` process runs it: the ONNX gradient bridge cache is
    per process and records every check made in it, so a second run in one process would report
    more checked inputs than a run of its own."""
    from evalsuite.models.onnx_bridge import clear_bridge_cache

    clear_bridge_cache()
    return main(argv)


def test_three_shards_and_merge_equal_one_process(digits_onnx, tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    common = [str(digits_onnx), "--data", "builtin:digits", "--limit", "60", "--suite", str(suite),
              "--batch-size", "16", "--device", "cpu", "--seed", "1", "-q"]
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    code = as_new_process(["run", *common, "--out", str(single)])
    assert code in (0, 1)
    for i in range(3):
        assert as_new_process(["run", *common, "--out", str(sharded), "--shard", f"{i}/3"]) == 0
        assert not sharded.exists()  # shards never write --out
    units = tmp_path / ".sharded.units"
    names = sorted(p.name for p in (units / "predictions").glob("*.npz"))
    # 16 attacked samples in attack batches of 8 over 3 shards: shard 0 has no attack unit.
    assert "attack__linf__8_255@0-of-3.npz" not in names and "attack__linf__8_255@2-of-3.npz" in names
    assert "clean@0-of-3.npz" in names and "clean@2-of-3.npz" in names
    capsys.readouterr()
    assert as_new_process(["merge", str(sharded), "-q"]) == code
    assert not units.exists()  # the units live on as sharded/predictions

    one = json.loads((single / "results.json").read_text())
    merged = json.loads((sharded / "results.json").read_text())
    assert comparable(merged) == comparable(one)
    assert merged["provenance"]["shards"]["count"] == 3
    assert [r["shard"] for r in merged["provenance"]["shards"]["records"]] == ["0/3", "1/3", "2/3"]
    assert sorted(p.name for p in sharded.iterdir()) == sorted(p.name for p in single.iterdir())
    for path in sorted((single / "predictions").glob("*.npz")):  # byte-for-byte the same arrays
        with np.load(path) as a, np.load(sharded / "predictions" / path.name) as b:
            for k in a.files:
                if k != "meta":
                    assert np.array_equal(a[k], b[k]), (path.name, k)
    assert json.loads((sharded / "gates.json").read_text())["verdict"] == json.loads((single / "gates.json").read_text())["verdict"]


# ------------------------------------------------------------------------------ refusals
QUICK = ["--data", "builtin:digits", "--limit", "40", "--suite", "quick", "--batch-size", "8", "--device", "cpu", "-q"]


def _shards(model: Path, out: Path, count: int, *extra: str) -> None:
    for i in range(count):
        assert main(["run", str(model), *QUICK, *extra, "--out", str(out), "--shard", f"{i}/{count}"]) == 0


def test_merge_refuses_a_missing_shard_then_completes(digits_onnx, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(digits_onnx), *QUICK, "--out", str(out), "--shard", "0/2"]) == 0
    capsys.readouterr()
    assert main(["merge", str(out)]) == 2
    err = capsys.readouterr().err
    assert "shard(s) 1/2" in err and "not finished" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert main(["run", str(digits_onnx), *QUICK, "--out", str(out), "--shard", "1/2"]) == 0
    assert main(["merge", str(out)]) in (0, 1)
    assert (out / "results.json").is_file() and (out / "predictions" / "clean.npz").is_file()


def test_merge_refuses_a_unit_from_another_run(digits_onnx, tmp_path, capsys):
    out, other = tmp_path / "run", tmp_path / "other"
    _shards(digits_onnx, out, 2)
    _shards(digits_onnx, other, 2, "--seed", "5")
    # Same file name, same samples: only the run identity inside tells it apart.
    shutil.copy(tmp_path / ".other.units" / "predictions" / "clean@1-of-2.npz",
                tmp_path / ".run.units" / "predictions" / "clean@1-of-2.npz")
    capsys.readouterr()
    assert main(["merge", str(out)]) == 2
    err = capsys.readouterr().err
    assert "clean@1-of-2.npz does not belong to this run" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    (tmp_path / ".run.units" / "predictions" / "clean@1-of-2.npz").unlink()
    assert main(["merge", str(out)]) == 2
    err = capsys.readouterr().err
    assert "units missing" in err and "shard 1/2 (1 unit(s))" in err


def test_a_shard_of_another_run_is_refused(digits_onnx, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(digits_onnx), *QUICK, "--out", str(out), "--shard", "0/2"]) == 0
    capsys.readouterr()
    assert main(["run", str(digits_onnx), *QUICK, "--seed", "3", "--out", str(out), "--shard", "1/2"]) == 2
    err = capsys.readouterr().err
    assert "holds the units of another run" in err and "config_hash" in err
    assert main(["run", str(digits_onnx), *QUICK, "--out", str(out), "--shard", "1/3"]) == 2
    assert "shards: 2 there, 3 here" in capsys.readouterr().err


def test_merge_without_units_is_a_usage_error(tmp_path, capsys):
    assert main(["merge", str(tmp_path / "nothing")]) == 2
    assert "no shard units" in capsys.readouterr().err


def test_shard_resume_reuses_its_units(digits_onnx, tmp_path, caplog):
    out = tmp_path / "run"
    _shards(digits_onnx, out, 2)
    unit = tmp_path / ".run.units" / "predictions" / "clean@0-of-2.npz"
    before = unit.stat().st_mtime_ns
    assert main(["run", str(digits_onnx), *QUICK, "--out", str(out), "--shard", "0/2", "--resume"]) == 0
    assert unit.stat().st_mtime_ns == before
    assert main(["merge", str(out)]) in (0, 1)
    results = json.loads((out / "results.json").read_text())
    assert results["conditions"]["clean"]["n"] == 40


def test_the_same_shard_cannot_run_twice_at_once(digits_onnx, tmp_path, capsys):
    from evalsuite.shards import UnitFolder

    out = tmp_path / "run"
    with UnitFolder(out).hold(ShardSpec(1, 2)):  # another process running shard 1/2 holds this lock
        assert main(["run", str(digits_onnx), *QUICK, "--out", str(out), "--shard", "1/2"]) == 2
        assert "shard 1/2 of --out" in capsys.readouterr().err
        assert main(["run", str(digits_onnx), *QUICK, "--out", str(out), "--shard", "0/2"]) == 0  # others run
