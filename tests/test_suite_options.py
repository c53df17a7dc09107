"""Suite options: one typed ``Options`` dataclass per suite, built by ``evalsuite.options.build``.

Every built-in suite refuses an unknown option (with did-you-mean) and a wrongly typed value
with one line, exit 2, through ``evalsuite run --suite FILE``; the defaults are the documented
ones; a plug-in suite's own dataclass works the same way; the mapping as given is what the run
records (``config.json`` and the config hash), the typed result is ``suite.opts``.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from evalsuite.errors import UsageError
from evalsuite.suites import SUITES
from evalsuite.suites.base import NoOptions, Suite
from tests.trust_cli import assert_input_error, run_cli

DEMO_MODEL = Path(__file__).resolve().parents[1] / "reports" / "demo-model" / "digits_cnn.onnx"
BUILTIN = ("clean", "corruption", "device", "calibration", "slices", "adversarial", "preprocessing", "performance")

# One wrongly typed value per suite, and what the one-line message says.
WRONG_TYPE = {
    "clean": ("gallery: many", "suites.clean.gallery must be an integer, got 'many'"),
    "corruption": ("severities: high", "suites.corruption.severities must be an integer or a list, got 'high'"),
    "device": ("device_column: [a, b]", "suites.device.device_column must be a string, got ['a', 'b']"),
    "calibration": ("classwise: 'yes'", "suites.calibration.classwise must be true or false, got 'yes'"),
    "slices": ("min_group_size: ten", "suites.slices.min_group_size must be an integer, got 'ten'"),
    "adversarial": ("amp: 1", "suites.adversarial.amp must be true or false, got 1"),
    "preprocessing": ("margin: lots", "suites.preprocessing.margin must be a number (or a fraction such as 8/255), got 'lots'"),
    "performance": ("warmup: [1]", "suites.performance.warmup must be an integer, got list"),
}
# A misspelt option per suite and the name the hint offers.
MISSPELT = {
    "clean": ("galery", "gallery"),
    "corruption": ("severites", "severities"),
    "device": ("profile", "profiles"),
    "calibration": ("n_bin", "n_bins"),
    "slices": ("min_groupsize", "min_group_size"),
    "adversarial": ("tiers", "tier"),
    "preprocessing": ("margins", "margin"),
    "performance": ("iteration", "iterations"),
}

# The documented defaults (module docstrings and docs/*.md), field by field.
DEFAULTS = {
    "clean": {"gallery": 12},
    "corruption": {"preset": "fast", "corruptions": None, "severities": None, "backend": "torch",
                   "baseline_errors": None, "n": None, "ci_half_width": None},
    "device": {"profiles": None, "profiles_file": None, "operations": None, "severities": [1, 3, 5],
               "device_column": None, "n": None, "ci_half_width": None},
    "calibration": {"n_bins": 15, "calibration_fraction": 0.5, "calibration_data": None, "n_boot": 1000,
                    "classwise": True},
    "slices": {"columns": None, "intersections": [], "derived": "auto", "min_group_size": 30, "numeric_bins": 4,
               "max_groups": 50, "n_boot": 1000, "bootstrap": "auto", "conditions": None, "max_accuracy_gap": 0.10,
               "fairlearn_check": "auto", "n_bins": None},
    "adversarial": {"tier": "smoke", "n": 128, "seed": None, "norms": ["linf", "l2"], "linf_eps": None,
                    "l2_eps": None, "attacks": None, "steps": 10, "apgd_steps": 100, "targets": 9,
                    "square_queries": None, "sanity": True, "blackbox_n": 32, "blackbox_queries": None,
                    "large_eps": 0.5, "sanity_n": 32, "bridge_tolerance": 1e-3, "surrogate": None, "examples": 3,
                    "amp": False,
                    "channels_last": False, "attack_batch_size": 64},
    "preprocessing": {"sample": 256, "margin": 0.02, "variants": None, "crop_fraction": 0.875, "severity": "fail"},
    "performance": {"warmup": 10, "iterations": 400, "throughput_iterations": 30, "min_seconds": 2.0,
                    "max_seconds": 60.0, "latency_batch_sizes": [1], "throughput_batch_size": None, "images": 16,
                    "macs": True},
}


def _run_with_suite_file(tmp_path, capsys, name: str, options: str) -> tuple[int, str, Path]:
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"suites:\n  {name}: {{{options}}}\n")
    out = tmp_path / "run"
    code, _, err = run_cli(["run", DEMO_MODEL, "--data", "builtin:digits", "--limit", "20", "--suite", suite,
                            "--device", "cpu", "--out", out], capsys)
    return code, err, out


@pytest.mark.parametrize("name", BUILTIN)
def test_unknown_option_is_one_line_exit_2_with_did_you_mean(tmp_path, capsys, name):
    wrong, right = MISSPELT[name]
    code, err, out = _run_with_suite_file(tmp_path, capsys, name, f"{wrong}: 1")
    valid = ", ".join(f.name for f in dataclasses.fields(SUITES.get(name).Options))
    assert_input_error(code, err, f"unknown option 'suites.{name}.{wrong}'", f"did you mean '{right}'",
                       f"valid here: {valid}")
    assert not out.exists()


@pytest.mark.parametrize("name", BUILTIN)
def test_wrongly_typed_option_is_one_line_exit_2(tmp_path, capsys, name):
    options, message = WRONG_TYPE[name]
    code, err, out = _run_with_suite_file(tmp_path, capsys, name, options)
    assert_input_error(code, err, message)
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [  # range checks and enumerations the types cannot say stay in the dataclass's __post_init__
        ("corruption", "severities: [0]", "suite 'corruption': severity 0 is not an integer from 1 to 5"),
        ("device", "severities: [0, 3]", "suite 'device': option severities must be a non-empty list of integers 1-5"),
        ("calibration", "n_bins: 0", "suite 'calibration': option n_bins must be an integer >= 1, got 0"),
        ("slices", "bootstrap: fast", "suite 'slices': option bootstrap must be one of auto, rows, counts, got 'fast'"),
        ("adversarial", "n: 0", "suite 'adversarial': option n must be a positive integer or 'all', got 0"),
    ],
)
def test_value_checks_are_one_line_exit_2(tmp_path, capsys, name, options, message):
    code, err, _ = _run_with_suite_file(tmp_path, capsys, name, options)
    assert_input_error(code, err, message)


@pytest.mark.parametrize("name", BUILTIN)
def test_defaults_are_the_documented_ones(name):
    cls = SUITES.get(name)
    suite = cls()
    assert dataclasses.asdict(suite.opts) == DEFAULTS[name]
    assert dataclasses.asdict(cls.Options()) == DEFAULTS[name]
    assert cls.option_names == tuple(DEFAULTS[name])
    assert suite.options == {}
    doc = importlib.import_module(cls.__module__).__doc__ or ""
    missing = [f for f in cls.option_names if f"``{f}``" not in doc]  # the module docstring documents each
    assert not missing, f"{cls.__module__} docstring does not document {missing}"


def test_resolved_defaults_of_the_suites():
    """What the defaults turn into (the selections and budgets the docs describe)."""
    from evalsuite.devices.ops import DEFAULT_LADDER_OPS
    from evalsuite.devices.profiles import builtin_profiles
    from evalsuite.suites.corruption import FAST_CORRUPTIONS

    corruption = SUITES.get("corruption")()
    assert (corruption.names, corruption.severities) == (list(FAST_CORRUPTIONS), [1, 3, 5])
    assert SUITES.get("corruption")({"corruptions": ["fog"]}).severities == [1, 2, 3, 4, 5]
    assert SUITES.get("corruption")({"preset": "benchmark"}).severities == [1, 2, 3, 4, 5]
    device = SUITES.get("device")()
    assert device.operations == list(DEFAULT_LADDER_OPS) == ["resolution", "jpeg", "sensor_noise", "lens_blur",
                                                             "white_balance"]
    assert len(device.profiles) == len(builtin_profiles()) and device.severities == [1, 3, 5]
    adv = SUITES.get("adversarial")()
    assert (adv.settings.square_queries, adv.blackbox_queries) == (1000, 300)
    assert [e.label for e in adv.eps["linf"]] == ["1/255", "2/255", "4/255", "8/255"]
    assert [e.label for e in adv.eps["l2"]] == ["0.25", "0.5"]
    std = SUITES.get("adversarial")({"tier": "standard"})
    assert (std.settings.square_queries, std.blackbox_queries) == (5000, 5000)
    assert SUITES.get("slices")().n_bins == 15


def test_typed_values_and_the_raw_mapping():
    """``opts`` holds typed values; ``options`` the mapping as given (what config.json records)."""
    raw = {"n_bins": "10", "calibration_fraction": "1/4", "classwise": False}
    cal = SUITES.get("calibration")(raw)
    assert (cal.opts.n_bins, cal.opts.calibration_fraction, cal.opts.classwise) == (10, 0.25, False)
    assert (cal.n_bins, cal.fraction) == (10, 0.25)
    assert cal.options == raw and cal.options is not raw
    # "all" | a list | a comma-separated string, as before
    dev = SUITES.get("device")({"operations": "all", "profiles": "webcam-720p, older-phone", "severities": "1,5"})
    assert dev.opts.operations == "all" and dev.opts.profiles == ["webcam-720p", "older-phone"]
    assert dev.severities == [1, 5]
    assert SUITES.get("device")({"operations": "none"}).operations == []
    corr = SUITES.get("corruption")({"corruptions": "fog, contrast", "severities": 3})
    assert (corr.names, corr.severities) == (["fog", "contrast"], [3])
    adv = SUITES.get("adversarial")({"n": "all", "linf_eps": ["8/255", 0.5, 1], "norms": "LINF"})
    assert adv.n is None and adv.norms == ["linf"]
    assert [e.label for e in adv.eps["linf"]] == ["8/255", "0.5", "1"]  # numbers and fractions kept as written
    sl = SUITES.get("slices")({"derived": True, "fairlearn_check": False, "columns": "region"})
    assert (sl.opts.derived, sl.opts.fairlearn_check, sl.opts.columns) == (True, False, ["region"])


def test_build_suites_records_the_options_as_given(tmp_path):
    from evalsuite.api import build_suites
    from evalsuite.config import RunConfig

    suite = tmp_path / "suite.yaml"
    suite.write_text("suites:\n  calibration: {n_bins: '12'}\n  slices: {}\n")
    config = RunConfig(model=str(DEMO_MODEL), data="builtin:digits", suite=str(suite), out_dir=str(tmp_path / "o"))
    suites, recorded = build_suites(config)
    assert recorded == {"clean": {}, "calibration": {"n_bins": "12"}, "slices": {}}
    assert {s.name: s.n_bins for s in suites if s.name in ("calibration", "slices")} == {"calibration": 12,
                                                                                        "slices": 12}


@dataclass
class EchoOptions:
    level: int = 2
    names: str | list[str] | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.level > 5:
            raise UsageError(f"suite 'echo': option level must be at most 5, got {self.level}")


class EchoSuite(Suite):
    name = "echo"
    Options = EchoOptions


def test_plugin_suite_with_its_own_options_dataclass():
    assert EchoSuite.option_names == ("level", "names", "tags")
    assert EchoSuite().opts == EchoOptions()
    s = EchoSuite({"level": 3, "names": "all", "tags": ["a", "b"]})
    assert s.opts == EchoOptions(level=3, names="all", tags=["a", "b"])
    assert EchoSuite({"names": ["x"]}).opts.names == ["x"]
    with pytest.raises(UsageError, match=r"^unknown option 'suites.echo.levl' \(did you mean 'level'\?\); "
                                         r"valid here: level, names, tags$"):
        EchoSuite({"levl": 1})
    with pytest.raises(UsageError, match=r"^suites.echo.level must be an integer, got 'high'$"):
        EchoSuite({"level": "high"})
    with pytest.raises(UsageError, match=r"^suites.echo.tags\[1\] must be a string, got \[1\]$"):
        EchoSuite({"tags": ["a", [1]]})
    with pytest.raises(UsageError, match=r"^suites.echo.names must be a string or a list, got \{'a': 1\}$"):
        EchoSuite({"names": {"a": 1}})
    with pytest.raises(UsageError, match="option level must be at most 5"):
        EchoSuite({"level": 6})


def test_suites_without_options_and_older_plugins():
    class Bare(Suite):
        name = "bare"

    assert Bare.Options is NoOptions and Bare.option_names == () and Bare().opts == NoOptions()
    with pytest.raises(UsageError, match=r"unknown option 'suites.bare.x'; valid here: \(none\)"):
        Bare({"x": 1})

    class Older(Suite):  # lists names only (before Options): its options are taken as given
        name = "older"
        option_names = ("sleep",)

    assert Older.option_names == ("sleep",)
    assert Older({"sleep": "0.5"}).opts.sleep == "0.5" and Older().opts.sleep is None
    with pytest.raises(UsageError, match="did you mean 'sleep'"):
        Older({"slep": 1})

    with pytest.raises(TypeError, match="Options must be a dataclass"):
        class NotADataclass(Suite):
            name = "bad"
            Options = dict
