"""Hostile and careless inputs to `evalsuite run` / `gate` / `report`: configs, policies,
baselines, output folders, resume, the environment. Every case: exit code, one-line message
naming the problem, no traceback, and the state of --out afterwards."""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from evalsuite.errors import PolicyError, UsageError
from tests.trust_cli import assert_input_error, assert_out_untouched, run_cli, tree_digest

QUICK = ["--suite", "quick", "--data", "builtin:digits", "--limit", "60"]


def _policy(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture(scope="module")
def finished_run(digits_onnx, tmp_path_factory):
    """A finished quick run (the baseline and the "old run" of the all-or-nothing cases)."""
    from evalsuite.cli import main

    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["run", str(digits_onnx), *QUICK, "--out", str(out)]) == 0
    return out


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------- YAML inputs
BOMB = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
    f"{n}: &{n} [" + ",".join([f"*{p}"] * 9) + "]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize("flag", ["--policy", "--config", "--suite"])
def test_yaml_alias_bomb_is_refused_fast(flag, digits_onnx, tmp_path, capsys):
    bomb = _policy(tmp_path, BOMB, "bomb.yaml")
    out = tmp_path / "out"
    t0 = time.perf_counter()
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", out, flag, bomb], capsys)
    assert time.perf_counter() - t0 < 60  # generous: the refusal itself is milliseconds (not a timing gate)
    assert_input_error(code, err, "bomb.yaml", "alias")
    assert_out_untouched(out, {})


def test_yaml_too_many_aliases(tmp_path):
    from evalsuite.safe_yaml import MAX_ALIASES, YamlError, safe_load

    text = "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    with pytest.raises(YamlError, match="aliases"):
        safe_load(text)
    assert safe_load("a: &a [1, 2]\nb: *a\nc: {<<: {x: 1}, y: 2}\n") == {"a": [1, 2], "b": [1, 2], "c": {"x": 1, "y": 2}}


def test_yaml_deep_nesting_is_exit_2(digits_onnx, tmp_path, capsys):
    deep = _policy(tmp_path, "gates: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml")
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", tmp_path / "o", "--policy", deep], capsys)
    assert_input_error(code, err, "deep.yaml", "nesting")


def test_yaml_duplicate_keys_are_refused(digits_onnx, tmp_path, capsys):
    dup = _policy(tmp_path, "gates:\n  - metric: clean.accuracy\n    min: 0.5\n    min: 0.99\n", "dup.yaml")
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", tmp_path / "o", "--policy", dup], capsys)
    assert_input_error(code, err, "dup.yaml", "duplicate key 'min'", "lines 3 and 4")


def test_yaml_too_large_is_refused(digits_onnx, tmp_path, capsys):
    from evalsuite.safe_yaml import MAX_BYTES

    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (MAX_BYTES + 10) + "\n")
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", tmp_path / "o", "--config", big], capsys)
    assert_input_error(code, err, "big.yaml", "MiB")


def test_yaml_not_utf8(digits_onnx, tmp_path, capsys):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("gates: []  # caf\xe9\n".encode("latin-1"))
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", tmp_path / "o", "--policy", bad], capsys)
    assert_input_error(code, err, "latin1.yaml", "UTF-8")


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ('seed: "zero"\n', ("seed", "must be an integer")),
        ('resume: "no"\n', ("resume", "true or false")),
        ("seed: -1\n", ("seed",)),
        ("batch_size: 0\n", ("batch-size",)),
        ("batch_size: 2.5\n", ("batch_size", "integer")),
        ("limit: [1, 2]\n", ("limit",)),
        ("model_overrides: [1]\n", ("model_overrides", "mapping")),
        ("skip_bad_images: 1\n", ("skip_bad_images", "true or false")),
        ("seeed: 1\n", ("seeed", "did you mean 'seed'")),
        ("- a\n- b\n", ("mapping",)),
    ],
)
def test_wrong_typed_config_values(text, needles, digits_onnx, tmp_path, capsys):
    cfg = _policy(tmp_path, text, "run.yaml")
    out = tmp_path / "o"
    code, _, err = run_cli(["run", digits_onnx, "--data", "builtin:digits", "--out", out, "--config", cfg], capsys)
    assert_input_error(code, err, *needles)
    assert_out_untouched(out, {})


def test_negative_seed_flag(digits_onnx, tmp_path, capsys):
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", tmp_path / "o", "--seed", "-3"], capsys)
    assert_input_error(code, err, "--seed")


# ------------------------------------------------------------------------------- policies
def test_empty_policy_file_is_refused(digits_onnx, tmp_path, capsys):
    empty = _policy(tmp_path, "", "empty.yaml")
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", tmp_path / "o", "--policy", empty], capsys)
    assert_input_error(code, err, "empty.yaml", "empty", "gates: []")


def test_policy_without_gates_warns(digits_onnx, tmp_path, capsys, caplog):
    none = _policy(tmp_path, "gates: []\n", "none.yaml")
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", tmp_path / "o", "--policy", none], capsys)
    assert code == 0, err
    assert "defines no gates" in caplog.text and "Traceback" not in err


def _fails_before_predictions(monkeypatch) -> list[str]:
    """Record any prediction the runner starts (there must be none)."""
    import evalsuite.runner as runner

    started: list[str] = []
    real = runner.run_condition

    def spy(condition, **kw):
        started.append(condition.key)
        return real(condition, **kw)

    monkeypatch.setattr(runner, "run_condition", spy)
    return started


def test_unknown_metric_fails_before_any_prediction(digits_onnx, tmp_path, capsys, monkeypatch):
    started = _fails_before_predictions(monkeypatch)
    pol = _policy(tmp_path, "gates:\n  - metric: clean.acuracy\n    min: 0.5\n")
    out = tmp_path / "o"
    code, _, err = run_cli(["run", digits_onnx, "--data", "builtin:digits", "--suite", "standard", "--out", out,
                            "--policy", pol], capsys)
    assert_input_error(code, err, "clean.acuracy", "did you mean", "clean.accuracy")
    assert started == []
    assert_out_untouched(out, {})


def test_unknown_per_condition_metric_fails_before_predictions(digits_onnx, tmp_path, capsys, monkeypatch):
    started = _fails_before_predictions(monkeypatch)
    pol = _policy(tmp_path, "gates:\n  - metric: calibration.corruption.fog.4.ece\n    max: 0.5\n")
    code, _, err = run_cli(["run", digits_onnx, "--data", "builtin:digits", "--suite", "standard",
                            "--out", tmp_path / "o", "--policy", pol], capsys)
    assert_input_error(code, err, "calibration.corruption.fog.4.ece")
    assert started == []


def test_optional_unknown_metric_is_allowed(digits_onnx, tmp_path, capsys):
    pol = _policy(tmp_path, "gates:\n  - metric: corruption.mean_accuracy\n    min: 0.5\n    optional: true\n")
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", tmp_path / "o", "--policy", pol], capsys)
    assert code == 0, err


def test_ci_bound_on_metric_without_interval(digits_onnx, tmp_path, capsys, monkeypatch):
    started = _fails_before_predictions(monkeypatch)
    pol = _policy(tmp_path, "gates:\n  - metric: sanity.nonfinite_logits\n    max: 0\n    bound: ci_upper\n")
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", tmp_path / "o", "--policy", pol], capsys)
    assert_input_error(code, err, "sanity.nonfinite_logits", "confidence interval", "bound: point")
    assert started == []


def test_max_drop_without_baseline(digits_onnx, tmp_path, capsys, monkeypatch):
    started = _fails_before_predictions(monkeypatch)
    pol = _policy(tmp_path, "gates:\n  - metric: clean.accuracy\n    max_drop: 0.01\n")
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", tmp_path / "o", "--policy", pol], capsys)
    assert_input_error(code, err, "max_drop", "--baseline")
    assert started == []


def test_baseline_lacking_the_metric(digits_onnx, finished_run, tmp_path, capsys):
    base = json.loads((finished_run / "results.json").read_text())
    del base["metrics"]["clean"]["macro_f1"]
    bpath = tmp_path / "base.json"
    bpath.write_text(json.dumps(base))
    pol = _policy(tmp_path, "gates:\n  - metric: clean.macro_f1\n    max_drop: 0.01\n")
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", tmp_path / "o", "--policy", pol,
                            "--baseline", bpath], capsys)
    assert_input_error(code, err, "baseline", "clean.macro_f1")


def test_baseline_from_other_data_is_refused(digits_onnx, finished_run, tmp_path, capsys, caplog):
    pol = _policy(tmp_path, "gates:\n  - metric: clean.accuracy\n    max_drop: 0.5\n")
    args = ["run", digits_onnx, "--suite", "quick", "--data", "builtin:digits", "--limit", "50", "--out",
            tmp_path / "o", "--policy", pol, "--baseline", finished_run / "results.json"]
    code, _, err = run_cli(args, capsys)
    assert_input_error(code, err, "baseline", "fingerprint", "--allow-baseline-mismatch")
    code, _, err = run_cli([*args, "--allow-baseline-mismatch"], capsys)
    assert code == 0, err
    assert "differs from this run" in caplog.text


def test_baseline_from_other_conditions_is_refused(digits_onnx, finished_run, tmp_path, capsys):
    base = json.loads((finished_run / "results.json").read_text())
    base["conditions"]["corruption/fog/3"] = {"suite": "corruption", "params": {"name": "fog"}, "n": 60}
    bpath = tmp_path / "base.json"
    bpath.write_text(json.dumps(base))
    pol = _policy(tmp_path, "gates:\n  - metric: clean.accuracy\n    max_drop: 0.5\n")
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", tmp_path / "o", "--policy", pol,
                            "--baseline", bpath], capsys)
    assert_input_error(code, err, "conditions only in the baseline", "corruption/fog/3")


def test_regate_checks_baseline_too(finished_run, tmp_path, capsys):
    pol = _policy(tmp_path, "gates:\n  - metric: clean.accuracy\n    max_drop: 0.01\n")
    code, _, err = run_cli(["gate", finished_run / "results.json", "--policy", pol, "--out", tmp_path / "g"], capsys)
    assert_input_error(code, err, "--baseline")
    code, out, err = run_cli(["gate", finished_run / "results.json", "--policy", pol, "--out", tmp_path / "g",
                              "--baseline", finished_run / "results.json"], capsys)
    assert code == 0, err


def test_check_policy_unit():
    from evalsuite.gates import check_policy, parse_policy
    from evalsuite.metric_specs import MetricSpec

    specs = [MetricSpec("clean.accuracy", True), MetricSpec("slices.*.accuracy.by_group.*", True),
             MetricSpec("sanity.nonfinite_logits", False)]
    check_policy(parse_policy({"gates": [{"metric": "slices.region.accuracy.by_group.a.b", "min": 0}]}, "t"), specs, None)
    with pytest.raises(PolicyError, match="did you mean 'clean.accuracy'"):
        check_policy(parse_policy({"gates": [{"metric": "clean.accurcy", "min": 0}]}, "t"), specs, None)
    with pytest.raises(PolicyError, match="confidence interval"):
        check_policy(parse_policy({"gates": [{"metric": "sanity.nonfinite_logits", "max": 0, "bound": "ci_lower"}]},
                                  "t"), specs, None)


# ------------------------------------------------------------------------------- output folders
def test_out_is_a_file(digits_onnx, tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("keep me")
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", f], capsys)
    assert_input_error(code, err, "file.txt", "not a folder")
    assert f.read_text() == "keep me"


def test_out_holding_foreign_files_is_refused(digits_onnx, tmp_path, capsys):
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    before = tree_digest(out)
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", out], capsys)
    assert_input_error(code, err, "thesis.tex", "did not write")
    assert tree_digest(out) == before


def test_out_under_a_file_is_exit_2(digits_onnx, tmp_path, capsys):
    f = tmp_path / "plain"
    f.write_text("x")
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", f / "sub"], capsys)
    assert_input_error(code, err, "cannot write")
    assert f.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_out_parent(digits_onnx, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", ro / "run"], capsys)
        assert_input_error(code, err, "permission denied")
    finally:
        ro.chmod(0o755)


def test_unwritable_out_parent_as_root(digits_onnx, tmp_path, capsys, monkeypatch):
    """The same refusal, simulated where the tests run as root (mkdir raising EACCES)."""
    import evalsuite.run_folder as rf

    real_mkdir = Path.mkdir

    def deny(self, *a, **k):
        if self.name.endswith(".staging"):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(rf.Path, "mkdir", deny)
    out = tmp_path / "run"
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", out], capsys)
    assert_input_error(code, err, "permission denied", "run")
    assert_out_untouched(out, {})
    assert not (tmp_path / ".run.lock").exists()


def test_full_disk_keeps_the_old_run_whole(digits_onnx, finished_run, tmp_path, capsys, monkeypatch):
    out = _copy_run(finished_run, tmp_path / "run")
    before = tree_digest(out)
    import evalsuite.report.render as render

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", "summary.md")

    monkeypatch.setattr(render, "render_summary", no_space)
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--seed", "1", "--out", out], capsys)
    assert_input_error(code, err, "no space left on device", "--resume")
    assert_out_untouched(out, before, staging_ok=True)


def test_failed_validation_over_an_old_run_leaves_it_whole(digits_onnx, finished_run, tmp_path, capsys):
    out = _copy_run(finished_run, tmp_path / "run")
    before = tree_digest(out)
    pol = _policy(tmp_path, "gates:\n  - metric: clean.nope\n    min: 0.5\n")
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", out, "--policy", pol], capsys)
    assert_input_error(code, err, "clean.nope")
    assert_out_untouched(out, before)


def test_a_new_run_replaces_the_old_one_whole(digits_onnx, finished_run, tmp_path, capsys):
    out = _copy_run(finished_run, tmp_path / "run")
    (out / "artifacts").mkdir(exist_ok=True)
    (out / "artifacts" / "stale.png").write_bytes(b"old")
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--seed", "2", "--out", out], capsys)
    assert code == 0, err
    assert not (out / "artifacts" / "stale.png").exists()
    cfg = json.loads((out / "config.json").read_text())
    res = json.loads((out / "results.json").read_text())
    assert cfg["seed"] == res["provenance"]["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging, lock or old copy left


def test_a_second_run_on_a_locked_out_is_refused(digits_onnx, tmp_path, capsys):
    from evalsuite.run_folder import RunFolder

    out = tmp_path / "run"
    with RunFolder(out):
        code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", out], capsys)
        assert_input_error(code, err, "in use by another evalsuite run", f"pid {os.getpid()}")
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", out], capsys)
    assert code == 0, err


def test_interrupted_run_keeps_out_and_resumes_from_staging(digits_onnx, finished_run, tmp_path, capsys, monkeypatch):
    import evalsuite.suites.clean as clean

    out = _copy_run(finished_run, tmp_path / "run")
    before = tree_digest(out)

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(clean.CleanSuite, "summarize", interrupt)
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--seed", "3", "--out", out], capsys)
    assert code == 130
    assert tree_digest(out) == before
    staging = tmp_path / ".run.staging"
    assert (staging / "predictions" / "clean.npz").is_file()
    monkeypatch.undo()
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--seed", "3", "--out", out, "--resume"], capsys)
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["provenance"]["resumed_conditions"] == ["clean"] and res["provenance"]["seed"] == 3
    assert not staging.exists()


def test_resume_from_a_finished_run_reuses_its_predictions(digits_onnx, finished_run, tmp_path, capsys):
    out = _copy_run(finished_run, tmp_path / "run")
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", out, "--resume"], capsys)
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["provenance"]["resumed_conditions"] == ["clean"]
    old = json.loads((finished_run / "results.json").read_text())
    assert res["metrics"] == old["metrics"]


@pytest.mark.parametrize("damage", ["truncate", "replace", "garbage"])
def test_damaged_prediction_file_on_resume_is_recomputed(damage, digits_onnx, finished_run, tmp_path, capsys, caplog):
    out = _copy_run(finished_run, tmp_path / "run")
    pred = out / "predictions" / "clean.npz"
    data = pred.read_bytes()
    if damage == "truncate":
        pred.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        pred.write_bytes(b"\x00" * 100)
    else:
        np.savez(pred, meta=np.array(json.dumps({"identity": "someone else's"})), index=np.arange(3))
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", out, "--resume"], capsys)
    assert code == 0, err
    assert "recomputing" in caplog.text
    res = json.loads((out / "results.json").read_text())
    assert res["provenance"]["resumed_conditions"] == []
    old = json.loads((finished_run / "results.json").read_text())
    assert res["metrics"] == old["metrics"]


# ------------------------------------------------------------------------------- sizes and memory
def test_absurd_input_size_is_exit_2(digits_onnx, tmp_path, capsys, monkeypatch):
    started = _fails_before_predictions(monkeypatch)
    code, _, err = run_cli(["run", digits_onnx, "--suite", "quick", "--data", "builtin:digits", "--out",
                            tmp_path / "o", "--input-size", "200000", "--mean", "0.5", "--std", "0.5"], capsys)
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err
    assert started == []


def test_memory_error_is_exit_2(digits_onnx, tmp_path, capsys, monkeypatch):
    import evalsuite.runner as runner

    def oom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(runner.ImageSource, "scan", oom)
    out = tmp_path / "o"
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", out], capsys)
    assert_input_error(code, err, "not enough memory")
    assert_out_untouched(out, {}, staging_ok=True)


def test_deeply_nested_results_json_is_exit_2(tmp_path, capsys):
    deep = tmp_path / "results.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = run_cli(["gate", deep], capsys)
    assert_input_error(code, err, "results.json")


def test_results_json_without_what_report_needs(finished_run, tmp_path, capsys):
    res = json.loads((finished_run / "results.json").read_text())
    res["metrics"] = {"clean": {}}
    res["checks"] = []
    res["report"] = {}
    res["data"] = {"name": "d", "n": 0, "fingerprint": "f"}
    res["model"] = {"source": "m", "format": "onnx", "sha256": "x", "class_names": []}
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(res))
    code, _, err = run_cli(["report", folder / "results.json", "--policy", _policy(tmp_path, "gates: []\n")], capsys)
    assert code == 0, err
    assert "Traceback" not in err and "internal error" not in err
    assert (folder / "scorecard.html").read_text().startswith("<!DOCTYPE html>")


def test_internal_error_asks_for_a_report(digits_onnx, tmp_path, capsys, monkeypatch):
    import evalsuite.suites.clean as clean

    def bug(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(clean.CleanSuite, "summarize", bug)
    out = tmp_path / "o"
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", out], capsys)
    assert code == 3
    assert "please report" in err and "--debug" in err and "Traceback" not in err
    assert not (out / "results.json").exists()


def test_suite_presets_do_not_list_policies(digits_onnx, tmp_path, capsys):
    from evalsuite.config import preset_names

    assert "policy-default" not in preset_names()
    code, _, err = run_cli(["run", digits_onnx, "--data", "builtin:digits", "--suite", "standrd", "--out",
                            tmp_path / "o"], capsys)
    line = assert_input_error(code, err, "standrd", "did you mean 'standard'")
    assert "policy-default" not in line
    with pytest.raises(UsageError):
        from evalsuite.config import load_suite_spec

        load_suite_spec("policy-default")


def test_python_warnings_never_reach_the_terminal(digits_onnx, tmp_path, capsys, monkeypatch):
    import warnings

    import evalsuite.suites.clean as clean

    real = clean.CleanSuite.summarize

    def noisy(self, *a, **k):
        warnings.warn("a raw dependency warning", UserWarning, stacklevel=1)
        np.log(np.zeros(1))  # RuntimeWarning: divide by zero
        return real(self, *a, **k)

    monkeypatch.setattr(clean.CleanSuite, "summarize", noisy)
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", tmp_path / "o"], capsys)
    assert code == 0, err
    assert "UserWarning" not in err and "RuntimeWarning" not in err and "raw dependency" not in err


# ------------------------------------------------------------------------------- model files
def test_onnx_external_data_outside_the_model_folder_is_refused(tmp_path, capsys):
    """An initializer stored in ``../secret.bin`` is never read (onnxruntime's check, kept by this test)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder = tmp_path / "model"
    folder.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(3 * 8 * 8 * 10, np.float32).tobytes())
    weight = numpy_helper.from_array(np.zeros((3 * 8 * 8, 10), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    init = model.graph.initializer[0]
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", str(secret.stat().st_size))):
        entry = init.external_data.add()
        entry.key, entry.value = key, value
    path = folder / "model.onnx"
    onnx.save_model(model, str(path), save_as_external_data=False)
    code, _, err = run_cli(["inspect", path], capsys)
    assert_input_error(code, err, "model.onnx", "escapes model directory")
    out = tmp_path / "run"
    code, _, err = run_cli(["run", path, *QUICK, "--out", out], capsys)
    assert_input_error(code, err, "model.onnx")
    assert not out.exists()
