"""Third-party plug-ins through entry points: the toy plug-in in tests/plugins, and broken ones.

The toy plug-in is "installed" the way pip leaves a package: a ``toy_plugin-0.1.dist-info``
folder (METADATA + entry_points.txt) in a folder on ``PYTHONPATH``. Everything runs in a
subprocess, so this process's registries never see the plug-in.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from tests.trust_cli import assert_input_error, run_cli_subprocess

PLUGINS = Path(__file__).resolve().parent / "plugins"
TOY = PLUGINS / "toy_plugin"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
DEMO_MODEL = Path(__file__).resolve().parents[1] / "reports" / "demo-model" / "digits_cnn.onnx"


def _install(site: Path, entry_points: str, name: str = "toy_plugin") -> None:
    dist = site / f"{name}-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(entry_points)


def _env(site: Path) -> dict[str, str]:
    path = [str(site), str(PLUGINS), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(p for p in path if p), "EVALSUITE_DISABLE_PLUGINS": ""}


@pytest.fixture()
def toy_env(tmp_path) -> dict[str, str]:
    site = tmp_path / "site"
    _install(site, (TOY / "entry_points.txt").read_text())
    return _env(site)


def _linear_model(path: Path) -> Path:
    """A nearest-class-mean classifier on builtin:digits as a toy ``.lin`` file (W = 2 mu, b = -|mu|^2)."""
    from evalsuite.data.builtin import digits_arrays

    images, labels, _, splits = digits_arrays()
    x = images[splits["train"]].transpose(0, 3, 1, 2).reshape(len(splits["train"]), -1) / 255.0
    y = labels[splits["train"]]
    mu = np.stack([x[y == c].mean(axis=0) for c in range(10)])
    with open(path, "wb") as f:  # a file object: np.savez would append .npz to a name
        np.savez(f, W=(2 * mu).astype(np.float32), b=-(mu * mu).sum(axis=1).astype(np.float32),
                 class_names=np.array([str(c) for c in range(10)]))
    return path


def test_ls_lists_the_plugin_corruption_suite_and_model_format(toy_env):
    from evalsuite.corruptions import list_entries

    code, out, err = run_cli_subprocess(["ls", "corruptions"], env=toy_env)
    assert code == 0, err
    rows = [line.split(None, 1) for line in out.splitlines()]
    assert [r[0] for r in rows] == [n for n, _ in list_entries()] + ["toy_dropout"]  # built-ins first, unchanged
    assert rows[-1][1] == "toy: pixels dropped to black (toy plug-in)"
    code, out, err = run_cli_subprocess(["ls", "suites"], env=toy_env)
    assert code == 0 and re.search(r"^toy\s+plug-in suite from toy-plugin$", out, re.M), out + err
    code, out, err = run_cli_subprocess(["ls", "models"], env=toy_env)
    assert code == 0 and out.splitlines()[-1].split(None, 1) == ["<file>.lin", "linear classifier saved with numpy.savez (toy plug-in)"]


def test_run_uses_the_plugin_model_format_corruption_and_suite(toy_env, tmp_path):
    """The worked examples of docs/architecture.md run: the toy suite's Options, condition, metrics,
    built-in Gate.check and the policy gate on its declared metric (tests/plugins/toy_plugin/policy.yaml)."""
    model = _linear_model(tmp_path / "digits.lin")
    suite = tmp_path / "toy.yaml"
    suite.write_text("suites:\n  corruption: {corruptions: [toy_dropout], severities: [1, 5]}\n  toy: {brighten: 0.25}\n")
    out = tmp_path / "run"
    code, _, err = run_cli_subprocess(["run", model, "--data", "builtin:digits:test", "--limit", "60", "--suite", suite,
                                       "--policy", TOY / "policy.yaml", "--seed", "1", "--device", "cpu", "--out", out],
                                      env=toy_env)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    metrics = results["metrics"]
    clean = metrics["clean"]["accuracy"]["value"]
    assert clean > 0.6  # the nearest-class-mean classifier really ran (format toy-linear)
    assert results["model"]["format"] == "toy-linear"
    drop = metrics["corruption"]["toy_dropout"]
    assert drop["5"]["accuracy"]["value"] < clean  # half the pixels gone: the corruption was applied
    assert set(metrics["toy"]) == {"clean", "corruption.toy_dropout.1", "corruption.toy_dropout.5", "toy.brighter"}
    assert all(0.0 < m["confidence"]["value"] <= 1.0 for m in metrics["toy"].values())
    assert all(m["confident_errors"]["direction"] == "lower" and m["confident_errors"]["ci"] is not None
               for m in metrics["toy"].values())
    assert (out / "predictions" / "corruption__toy_dropout__5.npz").exists()
    assert results["conditions"]["toy/brighter"]["params"]["brighten"] == 0.25  # the typed option reached the condition
    assert (out / "predictions" / "toy__brighter.npz").exists()
    gates = {g["gate"]["name"]: g for g in json.loads((out / "gates.json").read_text())["outcomes"]}
    assert gates["toy: clean confidence"]["gate"]["builtin"] and gates["toy: clean confidence"]["gate"]["min"] == 0.5
    assert gates["toy: clean confidence"]["status"] == "PASS"
    policy = gates["few confident mistakes"]
    assert policy["status"] == "PASS" and not policy["gate"]["builtin"]
    assert policy["gate"]["metric"] == "toy.clean.confident_errors" and policy["gate"]["bound"] == "ci_upper"


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        ("{brighter: 0.2}", ("unknown option 'suites.toy.brighter'", "did you mean 'brighten'", "valid here: brighten")),
        ("{brighten: lots}", ("suites.toy.brighten must be a number", "'lots'")),
        ("{brighten: 2}", ("suite 'toy': option brighten must be a number in [0, 1], got 2.0",)),
    ],
)
def test_plugin_suite_options_are_checked_by_its_dataclass(toy_env, tmp_path, options, needles):
    suite = tmp_path / "toy.yaml"
    suite.write_text(f"suites:\n  toy: {options}\n")
    out = tmp_path / "run"
    code, _, err = run_cli_subprocess(["run", DEMO_MODEL, "--data", "builtin:digits", "--limit", "20", "--suite", suite,
                                       "--out", out], env=toy_env)
    assert_input_error(code, err, *needles)
    assert not out.exists()


def test_policy_on_an_undeclared_toy_metric_is_refused_before_any_prediction(toy_env, tmp_path):
    """The MetricSpec declaration is what a policy is checked against (did-you-mean from it)."""
    policy = tmp_path / "policy.yaml"
    policy.write_text((TOY / "policy.yaml").read_text().replace("toy.clean.confident_errors", "toy.clean.confident_error"))
    suite = tmp_path / "toy.yaml"
    suite.write_text("suites:\n  toy: {}\n")
    out = tmp_path / "run"
    code, _, err = run_cli_subprocess(["run", DEMO_MODEL, "--data", "builtin:digits", "--limit", "20", "--suite", suite,
                                       "--policy", policy, "--out", out], env=toy_env)
    assert_input_error(code, err, "toy.clean.confident_error", "did you mean 'toy.clean.confident_errors'")
    assert not out.exists()


def test_broken_plugin_is_one_line_exit_2(tmp_path):
    site = tmp_path / "site"
    _install(site, "[evalsuite.corruptions]\nbroken = toy_plugin_missing.corruptions\n", name="broken_plugin")
    code, _, err = run_cli_subprocess(["ls", "corruptions"], env=_env(site))
    assert_input_error(code, err, "corruption plug-in failed to load", "'broken'", "toy_plugin_missing",
                       "ModuleNotFoundError")


def test_broken_plugin_suite_is_one_line_exit_2(tmp_path):
    site = tmp_path / "site"
    _install(site, "[evalsuite.suites]\nbroken = toy_plugin.suites:NoSuchSuite\n", name="broken_plugin")
    suite = tmp_path / "broken.yaml"
    suite.write_text("suites:\n  broken: {}\n")
    out = tmp_path / "run"
    code, _, err = run_cli_subprocess(["run", DEMO_MODEL, "--data", "builtin:digits", "--limit", "20", "--suite", suite,
                                       "--out", out], env=_env(site))
    assert_input_error(code, err, "suite plug-in failed to load", "'broken'", "NoSuchSuite")
    assert not out.exists()


def test_plugin_registering_a_builtin_name_is_refused(tmp_path):
    """A plug-in cannot replace a built-in corruption: one line, exit 2."""
    pkg = tmp_path / "pkgs" / "clash_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "from evalsuite.corruptions import register_corruption\n\n"
        "@register_corruption('fog', family='toy', description='not the real fog')\n"
        "def apply_fog(x, severity, draws):\n    return x\n"
    )
    site = tmp_path / "site"
    _install(site, "[evalsuite.corruptions]\nclash = clash_plugin\n", name="clash_plugin")
    env = _env(site)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "pkgs"), env["PYTHONPATH"]])
    code, _, err = run_cli_subprocess(["ls", "corruptions"], env=env)
    assert_input_error(code, err, "'clash'", "corruption 'fog' is already registered")


def test_plugins_can_be_switched_off(toy_env):
    code, out, _ = run_cli_subprocess(["ls", "suites"], env={**toy_env, "EVALSUITE_DISABLE_PLUGINS": "1"})
    assert code == 0 and "toy" not in out.split()


def test_docs_show_the_toy_plugin_verbatim():
    """docs/architecture.md's worked examples are the toy plug-in's code (and policy), which the tests above run."""
    text = DOCS.read_text()
    blocks = re.findall(r"```(?:python|ini|text|yaml)\n(.*?)```", text.split("## Extending evalsuite", 1)[1], re.S)
    sources = {p.name: p.read_text() for p in TOY.iterdir() if p.suffix in (".py", ".txt", ".yaml")}
    assert len(blocks) >= 3
    for block in blocks:
        assert any(block in src for src in sources.values()), f"not in tests/plugins/toy_plugin:\n{block}"
    for name in ("corruptions.py", "formats.py", "suites.py", "policy.yaml", "entry_points.txt"):
        assert any(block in sources[name] for block in blocks), f"docs do not show {name}"
    suite_code = "".join(b for b in blocks if b in sources["suites.py"])
    for piece in ("class ToyOptions", "def conditions", "def summarize", "mean_metric(", "Gate.check(", "def metric_specs"):
        assert piece in suite_code, f"docs do not show the toy suite's {piece}"
