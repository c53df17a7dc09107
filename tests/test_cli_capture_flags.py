"""Capture-device flags: ``--device-profiles`` / ``--capture-column`` and their deprecated old names.

``--devices`` and ``--device-column`` keep working for one release (same suite options, one
warning line); ``--device`` stays the compute device. No model runs here: ``api.run`` is replaced
by a stub that records the config the CLI built.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from evalsuite.cli import build_parser, main


@pytest.fixture
def captured(monkeypatch):
    import evalsuite.api

    seen = []

    def fake_run(config):
        seen.append(config)
        return SimpleNamespace(results={}, outcomes=[], out_dir="out", exit_code=0)

    monkeypatch.setattr(evalsuite.api, "run", fake_run)
    return seen


def _deprecations(caplog):
    return [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]


def test_new_capture_flags_set_the_device_suite_options(captured, caplog, capsys):
    caplog.set_level(logging.WARNING)
    code = main(["run", "m.onnx", "--data", "builtin:digits", "--device-profiles", "fleet.yaml",
                 "--capture-column", "camera", "--device", "cpu"])
    assert code == 0
    (config,) = captured
    assert config.suite_overrides["device"] == {"profiles_file": "fleet.yaml", "device_column": "camera"}
    assert config.device == "cpu"
    assert _deprecations(caplog) == []


def test_deprecated_capture_flags_behave_the_same_with_one_warning_each(captured, caplog, capsys):
    caplog.set_level(logging.WARNING)
    code = main(["run", "m.onnx", "--data", "builtin:digits", "--devices", "fleet.yaml", "--device-column", "camera"])
    assert code == 0
    (config,) = captured
    assert config.suite_overrides["device"] == {"profiles_file": "fleet.yaml", "device_column": "camera"}
    assert _deprecations(caplog) == [
        "--devices is deprecated, use --device-profiles (same meaning)",
        "--device-column is deprecated, use --capture-column (same meaning)",
    ]


def test_old_and_new_name_with_different_values_is_a_usage_error(captured, capsys):
    code = main(["run", "m.onnx", "--data", "builtin:digits", "--devices", "a.yaml", "--device-profiles", "b.yaml"])
    assert code == 2 and not captured
    err = capsys.readouterr().err
    assert "--devices is the deprecated name of --device-profiles" in err and len(err.strip().splitlines()) == 1


def test_help_names_both_kinds_of_device(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["run", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--device-profiles" in text and "--capture-column" in text and "capture-device" in text
    assert "deprecated name of --device-profiles" in text and "deprecated name of --capture-column" in text
