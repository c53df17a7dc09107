"""The CI templates in docs/ci.md work: their shell steps run here against a real evalsuite run.

The GitHub workflow's "Evaluate and gate" step must append summary.md to $GITHUB_STEP_SUMMARY
and record evalsuite's exit code in $GITHUB_OUTPUT without ending the step, and its last step
must fail the job with that code; the GitLab job's script must exit with evalsuite's code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DOC = Path(__file__).resolve().parents[1] / "docs" / "ci.md"
FAILING = "gates:\n  - name: impossible accuracy\n    metric: clean.accuracy\n    min: 0.999\n"
PASSING = "gates:\n  - name: some accuracy\n    metric: clean.accuracy\n    min: 0.1\n"


def _block(heading: str, lang: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1]
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)


def _env(tmp_path: Path, digits_onnx: Path, policy: str) -> dict[str, str]:
    pol = tmp_path / "policy.yaml"
    pol.write_text(policy)
    bindir = str(Path(sys.executable).parent)  # the venv's `evalsuite` entry point
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", "CI": "1",
            "MODEL": str(digits_onnx), "DATA": "builtin:digits",
            "EVALSUITE_FLAGS": f"--suite quick --limit 60 --policy {pol}",
            "GITHUB_OUTPUT": str(tmp_path / "github_output"), "GITHUB_STEP_SUMMARY": str(tmp_path / "step_summary")}


def _bash(script: str, env: dict[str, str], cwd: Path) -> int:
    # GitHub runs `run:` scripts with `bash -e {0}`
    return subprocess.run(["bash", "-e", "-c", script], env=env, cwd=cwd, timeout=600).returncode


def _github_steps() -> dict[str, dict]:
    workflow = yaml.safe_load(_block("GitHub Actions", "yaml"))
    steps = workflow["jobs"]["evalsuite"]["steps"]
    return {s["name"]: s for s in steps if "name" in s}


@pytest.mark.parametrize(("policy", "expected"), [(FAILING, 1), (PASSING, 0)])
def test_github_workflow_steps(digits_onnx, tmp_path, policy, expected):
    steps = _github_steps()
    env = _env(tmp_path, digits_onnx, policy)
    assert _bash(steps["Evaluate and gate"]["run"], env, tmp_path) == 0  # the step itself never fails
    outputs = dict(line.split("=", 1) for line in (tmp_path / "github_output").read_text().split())
    assert outputs["exit_code"] == str(expected)
    run = tmp_path / "evalsuite-run"
    assert (tmp_path / "step_summary").read_text() == (run / "summary.md").read_text()
    for path in steps["Upload the scorecard"]["with"]["path"].split():
        assert (tmp_path / path).is_file(), path
    assert (tmp_path / steps["Publish the gates as a test report"]["with"]["report_paths"]).is_file()
    final = steps["Fail the job on a failed gate"]
    assert final["env"]["GATE_EXIT"] == "${{ steps.gate.outputs.exit_code }}"
    assert _bash(final["run"], {**env, "GATE_EXIT": outputs["exit_code"]}, tmp_path) == expected


def test_gitlab_job_exits_with_evalsuite_code(digits_onnx, tmp_path):
    job = yaml.safe_load(_block("GitLab CI", "yaml"))["evalsuite"]
    env = _env(tmp_path, digits_onnx, FAILING)
    script = [line for line in job["script"] if not line.startswith("pip install")]
    # the documented job uses the default policy path; point it at this test's policy
    script = [line.replace("--policy policy.yaml", f"--policy {tmp_path / 'policy.yaml'} --limit 60")
              .replace("--suite standard", "--suite quick") for line in script]
    assert _bash("\n".join(script), env, tmp_path) == 1
    assert (tmp_path / job["artifacts"]["reports"]["junit"]).is_file()
    for path in job["artifacts"]["paths"]:
        assert (tmp_path / path).is_file(), path
