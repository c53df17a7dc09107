"""Hostile-input battery, outputs: what evalsuite writes stays inert and whole.

Names in a policy or a model reach summary.md (a pull-request comment) and junit.xml (a CI
parser), so they must not inject Markdown/HTML or break the XML; ``evalsuite corrupt`` never
writes over or into its input and never replaces files without ``--overwrite``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.trust_cli import assert_input_error, run_cli, tree_digest

HOSTILE = 'x <script>alert(1)</script> `code` | cell\nnext line [link](http://evil) **bold** \x01\x1b[31m'


def _hostile_policy(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    name = json.dumps(HOSTILE)  # a JSON string is a valid YAML double-quoted scalar (\u0001 escapes)
    p.write_text(
        f"gates:\n  - name: {name}\n    metric: clean.accuracy\n    min: 0.99\n    description: {name}\n"
        f"  - name: {name}\n    metric: clean.accuracy\n    min: 0.1\n    severity: warn\n"
    )
    return p


def _report(quick_run, tmp_path, capsys) -> Path:
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "results.json").write_text((quick_run / "results.json").read_text())
    policy = _hostile_policy(tmp_path)
    code, _, err = run_cli(["gate", folder / "results.json", "--policy", policy], capsys)  # junit.xml, summary.md
    assert code == 1 and "Traceback" not in err, err  # the min 0.99 gate fails
    code, _, err = run_cli(["report", folder / "results.json", "--policy", policy], capsys)  # scorecard.html
    assert code == 0 and "Traceback" not in err, err
    return folder


def test_summary_md_renders_hostile_names_inert(quick_run, tmp_path, capsys):
    text = (_report(quick_run, tmp_path, capsys) / "summary.md").read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "[link](" not in text and "\\[link\\]" in text  # brackets escaped: no Markdown link
    assert "**bold**" not in text
    assert "\x01" not in text and "\x1b" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "clean.accuracy" in line]
    assert len(rows) == 2  # the newline in the name did not split the table row
    for row in rows:
        cells = _split_unescaped_pipes(row)[1:-1]
        assert len(cells) == 8, row  # the | in the name did not add a column (8 columns)


def _split_unescaped_pipes(row: str) -> list[str]:
    out, cur, i = [], "", 0
    while i < len(row):
        if row[i] == "\\" and i + 1 < len(row):
            cur += row[i : i + 2]
            i += 2
            continue
        if row[i] == "|":
            out.append(cur)
            cur = ""
        else:
            cur += row[i]
        i += 1
    out.append(cur)
    return out


def test_md_code_span_survives_backticks():
    from evalsuite.report.render import _md_code

    span = _md_code("a``b`")
    fence = span[: len(span) - len(span.lstrip("`"))]
    assert len(fence) == 3 and span.endswith(fence)
    assert span[len(fence) : -len(fence)].strip() == "a``b`"


def test_junit_xml_parses_with_control_characters_in_names(quick_run, tmp_path, capsys):
    folder = _report(quick_run, tmp_path, capsys)
    root = ET.parse(folder / "junit.xml").getroot()
    cases = root.findall("testcase")
    hostile = [c for c in cases if "alert(1)" in c.get("name", "")]
    assert len(hostile) == 2
    assert all("\x01" not in c.get("name") and "\ufffd" in c.get("name") for c in hostile)
    failure = hostile[0].find("failure")
    assert failure is not None and "clean.accuracy" in failure.text


def test_scorecard_escapes_hostile_names(quick_run, tmp_path, capsys):
    html = (_report(quick_run, tmp_path, capsys) / "scorecard.html").read_text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_scorecard_section_without_its_report_data_says_so(quick_run, tmp_path, capsys):
    res = json.loads((quick_run / "results.json").read_text())
    res["report"]["clean"] = {"unexpected": True}
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(res))
    policy = tmp_path / "p.yaml"
    policy.write_text("gates: []\n")
    code, _, err = run_cli(["report", folder / "results.json", "--policy", policy], capsys)
    assert code == 0, err
    html = (folder / "scorecard.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "</html>" in html
    assert "Provenance" in html  # the rest of the document still renders


# ------------------------------------------------------------------------------ evalsuite corrupt


@pytest.fixture
def images(tmp_path) -> Path:
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for rel in ("a.png", "sub/b.png"):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / rel)
    return root


def _corrupt(args, capsys):
    return run_cli(["corrupt", *args, "--corruption", "gaussian_noise", "--severity", "2"], capsys)


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_corrupt_out_must_be_apart_from_the_input(images, where, capsys):
    out = {"same": images, "inside": images / "sub" / "out", "around": images.parent}[where]
    before = tree_digest(images.parent)
    code, _, err = _corrupt([images, "--out", out], capsys)
    assert_input_error(code, err, "--out", "input folder")
    assert tree_digest(images.parent) == before


def test_corrupt_never_overwrites_a_single_input_file(images, capsys):
    before = tree_digest(images)
    code, _, err = _corrupt([images / "a.png", "--out", images], capsys)
    assert_input_error(code, err, "overwrite the input image")
    assert tree_digest(images) == before


def test_corrupt_keeps_existing_outputs_unless_overwrite(images, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = _corrupt([images, "--out", out], capsys)
    assert code == 0, err
    first = tree_digest(out)
    assert sorted(first) == ["a.png", "sub/b.png"]
    (out / "a.png").write_bytes(b"mine")
    code, _, err = _corrupt([images, "--out", out], capsys)
    assert_input_error(code, err, "already holds 2", "--overwrite")
    assert (out / "a.png").read_bytes() == b"mine" and tree_digest(out)["sub/b.png"] == first["sub/b.png"]
    code, _, err = _corrupt([images, "--out", out, "--overwrite"], capsys)
    assert code == 0, err
    assert tree_digest(out) == first  # same seed, same ids: the same images again
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_corrupt_refuses_images_over_the_pixel_limit(images, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = _corrupt([images, "--out", out, "--max-image-pixels", "100"], capsys)
    assert_input_error(code, err, "a.png", "megapixels")
    assert not out.exists() or not any(out.rglob("*.png"))
