"""CLI conventions (#17 item 11): suite lists, config keys named as flags, common flags after the
command, readable `inspect`, `train --list`, a `--help` that imports no NumPy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.trust_cli import run_cli


def test_suite_accepts_names_and_comma_lists():
    from evalsuite.config import load_suite_spec
    from evalsuite.suites import SUITES

    names = SUITES.names()
    assert load_suite_spec("clean", names) == {"clean": {}}
    assert list(load_suite_spec("clean, calibration", names)) == ["clean", "calibration"]
    quick = load_suite_spec("quick", names)
    merged = load_suite_spec("quick,slices", names)
    assert merged == {**quick, "slices": merged["slices"]} and "slices" in merged


def test_unknown_suite_names_the_choices(capsys):
    code, _, err = run_cli(["run", "m.onnx", "--data", "builtin:digits", "--suite", "clean,calibratoin"], capsys)
    assert code == 2
    assert "calibratoin" in err and "did you mean 'calibration'" in err and "presets:" in err


def test_a_run_with_a_suite_list_and_flags_after_the_command(digits_onnx, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(["run", digits_onnx, "--data", "builtin:digits", "--limit", "40",
                                 "--suite", "clean,calibration", "--out", out, "-q"], capsys)
    assert code in (0, 1), err
    assert err == ""  # -q after the command: only errors
    results = json.loads((out / "results.json").read_text())
    assert set(results["metrics"]) == {"clean", "calibration", "sanity"}


def test_config_file_takes_the_flag_names(tmp_path):
    from evalsuite.config import RunConfig
    from evalsuite.errors import UsageError

    cfg = tmp_path / "run.yaml"
    cfg.write_text("model: m.onnx\ndata: builtin:digits\nout: somewhere\nbatch-size: 8\n")
    config = RunConfig.from_yaml(cfg)
    assert (config.model, config.out_dir, config.batch_size) == ("m.onnx", "somewhere", 8)
    cfg.write_text("model: m.onnx\ndata: builtin:digits\nout: a\nout_dir: b\n")
    with pytest.raises(UsageError, match="not both"):
        RunConfig.from_yaml(cfg)


def test_run_without_a_model_says_so(capsys):
    code, _, err = run_cli(["run", "--data", "builtin:digits"], capsys)
    assert code == 2 and "needs a MODEL" in err


def test_inspect_is_plain_text_with_each_fact_once(digits_onnx, capsys):
    code, out, _ = run_cli(["inspect", digits_onnx, "--device", "cpu"], capsys)
    assert code == 0
    assert not any(ch in out for ch in "[]{}'"), out  # no Python reprs
    labels = [line[:22].strip() for line in out.splitlines() if line and not line.startswith(" ")]
    assert len(labels) == len(set(labels)), labels  # no repeated fact
    assert "Classes               10: 0, 1, 2" in out and "Mean                  0.5, 0.5, 0.5" in out


def test_train_help_is_plain_and_list_exists(capsys):
    with pytest.raises(SystemExit):
        run_cli(["train", "--help"], capsys)
    text = capsys.readouterr().out
    assert "``" not in text and "--list" in text
    code, out, _ = run_cli(["train", "--list"], capsys)
    assert code == 0 and "standard" in out


def test_help_imports_neither_numpy_nor_torch():
    code = ("import sys; from evalsuite.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_init_writes_starter_files_that_load_as_they_are(tmp_path, capsys):
    from evalsuite.config import RunConfig, load_suite_spec
    from evalsuite.gates import load_policy
    from evalsuite.suites import SUITES

    code, out, err = run_cli(["init", tmp_path], capsys)
    assert code == 0, err
    policy, suite, run = (tmp_path / n for n in ("evalsuite-policy.yaml", "evalsuite-suite.yaml", "evalsuite-run.yaml"))
    assert all(p.read_text().startswith("# evalsuite") for p in (policy, suite, run))
    gates, _ = load_policy(policy)
    assert [g.metric for g in gates][:2] == ["clean.accuracy", "clean.macro_f1"]
    spec = load_suite_spec(str(suite), SUITES.names())
    assert set(spec) == {"clean", "corruption", "device", "adversarial", "calibration", "slices", "preprocessing"}
    for name, opts in spec.items():
        SUITES.get(name)(opts)  # every option is one the suite knows, with a valid value
    config = RunConfig.from_yaml(run)
    assert (config.out_dir, config.batch_size, config.fail_on) == ("reports/run", 64, "fail")
    code, _, err = run_cli(["init", tmp_path], capsys)
    assert code == 2 and "--force" in err
    assert run_cli(["init", tmp_path, "--force"], capsys)[0] == 0


def test_completion_script_knows_the_commands_and_flags(capsys):
    pytest.importorskip("shtab")
    code, out, _ = run_cli(["completion", "bash"], capsys)
    assert code == 0
    assert "--fail-on" in out and "--list-metrics" in out and "calibrate" in out
    script = subprocess.run(["bash", "-n"], input=out, capture_output=True, text=True)
    assert script.returncode == 0, script.stderr  # the script parses as bash
