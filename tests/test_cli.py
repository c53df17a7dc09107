"""End to end through the CLI: a tiny ONNX model, a generated image folder and manifest."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evalsuite.cli import main

QUICK = ["--suite", "quick"]


@pytest.fixture(scope="module")
def image_folder(digits_data, tmp_path_factory):
    """60 digits test images as PNGs in one folder per class, plus a CSV manifest with a slice column."""
    images, labels, columns, splits = digits_data
    root = tmp_path_factory.mktemp("imgs")
    rows = ["path,label,ink"]
    for i in splits["test"][:60]:
        rel = Path(str(labels[i])) / f"img{i:04d}.png"
        (root / rel.parent).mkdir(exist_ok=True)
        Image.fromarray(images[i]).save(root / rel)
        rows.append(f"{rel.as_posix()},{labels[i]},{columns['ink_density'][i]}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def _cases(path):
    from junitparser import JUnitXml, TestSuite

    xml = JUnitXml.fromfile(str(path))
    suites = [xml] if isinstance(xml, TestSuite) else list(xml)
    return [c for s in suites for c in s]


def _run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_folder_passes_and_writes_everything(digits_onnx, image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, stderr = _run(["run", str(digits_onnx), "--data", str(image_folder), "--out", str(out), *QUICK], capsys)
    assert code == 0, stderr
    assert "scorecard" in stdout
    for name in ("results.json", "junit.xml", "summary.md", "scorecard.html", "config.json"):
        assert (out / name).is_file()
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["n"] == 60
    assert results["metrics"]["clean"]["accuracy"]["value"] > 0.8
    cases = _cases(out / "junit.xml")
    # quick preset: sanity + clean gates pass; the default policy's optional suite gates are skipped
    assert len(cases) == 5
    assert sum(c.is_passed for c in cases) == 3 and sum(c.is_skipped for c in cases) == 2
    summary = (out / "summary.md").read_text()
    assert "| Status | Gate |" in summary and "PASS" in summary
    html = (out / "scorecard.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html.lower()
    assert "url(http" not in html
    assert "data:image/png;base64," in html  # gallery thumbnails inline


def test_gate_fail_exit_1_and_regate(digits_onnx, image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    strict = tmp_path / "strict.yaml"
    strict.write_text("gates:\n  - metric: clean.accuracy\n    min: 0.9999\n    name: perfect\n")
    code, stdout, _ = _run(["run", str(digits_onnx), "--data", str(image_folder / "manifest.csv"), "--out", str(out),
                            "--policy", str(strict), *QUICK], capsys)
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"]["clean"]["accuracy"]["value"] < 0.9999
    assert code == 1 and "FAIL" in stdout
    failed = [c for c in _cases(out / "junit.xml") if not c.is_passed and not c.is_skipped]
    assert [c.name for c in failed] == ["perfect"]
    assert "0.9999" in failed[0].result[0].text
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text("gates:\n  - metric: clean.accuracy\n    min: 0.5\n")
    assert _run(["gate", str(out / "results.json"), "--policy", str(lenient)], capsys)[0] == 0
    assert _run(["gate", str(out / "results.json"), "--policy", str(strict)], capsys)[0] == 1
    code, stdout, _ = _run(["gate", str(out), "--list-metrics"], capsys)
    assert code == 0 and "clean.accuracy" in stdout
    code, stdout, _ = _run(["report", str(out / "results.json"), "--out", str(tmp_path / "re.html")], capsys)
    assert code == 0 and (tmp_path / "re.html").read_text().startswith("<!DOCTYPE html>")


def test_baseline_non_regression(digits_onnx, image_folder, tmp_path, capsys):
    base = tmp_path / "base"
    assert _run(["run", str(digits_onnx), "--data", str(image_folder), "--out", str(base), *QUICK], capsys)[0] == 0
    policy = tmp_path / "p.yaml"
    policy.write_text("gates:\n  - metric: clean.accuracy\n    max_drop: 0.0\n")
    code, _, _ = _run(["run", str(digits_onnx), "--data", str(image_folder), "--out", str(tmp_path / "new"),
                       "--policy", str(policy), "--baseline", str(base / "results.json"), *QUICK], capsys)
    assert code == 0  # same model, same data: no drop


def _bad_inputs(tmp: Path, digits_onnx: Path, image_folder: Path) -> list[tuple[list[str], str]]:
    not_onnx = tmp / "model.onnx"
    not_onnx.write_text("hello")
    escape = tmp / "escape.csv"
    escape.write_text("path,label\n../../etc/passwd,1\n")
    nocol = tmp / "nocol.csv"
    nocol.write_text("file,label\na.png,1\n")
    empty = tmp / "empty"
    empty.mkdir()
    unknown = tmp / "unknown"
    (unknown / "cat").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(unknown / "cat" / "a.png")
    bad_img = tmp / "badimg"
    (bad_img / "1").mkdir(parents=True)
    (bad_img / "1" / "broken.png").write_bytes(b"not a png")
    policy = tmp / "policy.yaml"
    policy.write_text("gates:\n  - metric: clean.acuracy\n    min: 0.5\n")
    policy_keys = tmp / "policy2.yaml"
    policy_keys.write_text("gates:\n  - metric: clean.accuracy\n    minimum: 0.5\n")
    m = str(digits_onnx)
    return [
        (["run", str(tmp / "nope.onnx"), "--data", str(image_folder)], "nope.onnx"),
        (["run", str(not_onnx), "--data", str(image_folder)], "onnx"),
        (["run", m, "--data", str(tmp / "missing")], "missing"),
        (["run", m, "--data", str(escape)], "outside"),
        (["run", m, "--data", str(nocol)], "path"),
        (["run", m, "--data", str(empty)], "empty"),
        (["run", m, "--data", str(unknown)], "cat"),
        (["run", m, "--data", str(bad_img)], "broken.png"),
        (["run", m, "--data", str(image_folder), "--policy", str(policy)], "clean.accuracy"),
        (["run", m, "--data", str(image_folder), "--policy", str(policy_keys)], "minimum"),
        (["run", m, "--data", str(image_folder), "--suite", "standrd"], "standard"),
        (["run", m, "--data", str(image_folder), "--batch-size", "0"], "positive"),
        (["run", m], "--data"),
    ]


def test_bad_input_one_line_exit_2_nothing_written(digits_onnx, image_folder, tmp_path, capsys):
    cases = _bad_inputs(tmp_path, digits_onnx, image_folder)
    for i, (args, needle) in enumerate(cases):
        out = tmp_path / f"out{i}"
        code = None
        try:
            extra = ["--out", str(out)] + ([] if "--suite" in args else QUICK)
            code = main([*args, *extra])
        except SystemExit as exc:  # argparse errors
            code = exc.code
        err = capsys.readouterr().err.strip()
        assert code == 2, (args, err)
        assert len(err.splitlines()) == 1, err
        assert needle.lower() in err.lower(), (needle, err)
        assert "Traceback" not in err
        if "--policy" not in args:
            assert not (out / "results.json").exists()


def test_policy_with_unknown_metric_writes_no_results(digits_onnx, image_folder, tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text("gates:\n  - metric: clean.acuracy\n    min: 0.5\n")
    out = tmp_path / "o"
    assert main(["run", str(digits_onnx), "--data", str(image_folder), "--out", str(out), "--policy", str(policy), *QUICK]) == 2
    # The policy is checked against real metric paths after the run; it must not leave a verdict behind.
    for name in ("results.json", "junit.xml", "scorecard.html", "summary.md"):
        assert not (out / name).exists()


def test_skip_bad_images_counts_them(digits_onnx, image_folder, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(image_folder, data, ignore=shutil.ignore_patterns("*.csv"))
    (data / "3" / "zz_broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "o"
    code = main(["run", str(digits_onnx), "--data", str(data), "--out", str(out), "--skip-bad-images", *QUICK])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["skipped_bad_images"] == ["3/zz_broken.png"]
    assert results["data"]["n"] == 60 and results["metrics"]["sanity"]["skipped_bad_images"]["value"] == 1


def test_console_script_help_and_schema():
    exe = Path(sys.executable).parent / "evalsuite"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "evalsuite"]
    env = {**os.environ, "CI": "1"}
    r = subprocess.run([*cmd, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "run" in r.stdout and "gate" in r.stdout
    r = subprocess.run([*cmd, "schema"], capture_output=True, text=True, env=env, timeout=120)
    assert json.loads(r.stdout)["properties"]["schema_version"]["const"]
    r = subprocess.run([*cmd, "run", "missing.onnx", "--data", "builtin:digits"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys; from evalsuite.cli import build_parser; build_parser();"
        "heavy = [m for m in ('torch', 'onnxruntime', 'torchattacks', 'netcal', 'fairlearn', 'cv2') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout + r.stderr


def test_inspect_and_ls(digits_onnx, capsys):
    code, stdout, _ = _run(["inspect", str(digits_onnx)], capsys)
    assert code == 0 and "32" in stdout
    code, stdout, _ = _run(["ls", "suites"], capsys)
    assert code == 0 and "clean" in stdout
    code, stdout, _ = _run(["ls", "presets"], capsys)
    assert code == 0 and "standard" in stdout
    code, _, err = _run(["ls", "suits"], capsys)
    assert code == 2 and "suites" in err
