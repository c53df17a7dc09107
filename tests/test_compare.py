"""Paired candidate-vs-reference comparison: `run --reference` and `evalsuite compare`.

The demo ONNX model against itself must give a difference of exactly 0, agreement 1 and a
McNemar p of 1; against a copy with one output bias shifted, the counts of fixed and broken
samples must be the ones the two models' own clean predictions give, and a policy gate on
``compare.clean.accuracy_diff`` with ``bound: ci_lower`` decides the exit code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.trust_cli import run_cli

QUICK = ["--suite", "quick", "--data", "builtin:digits", "--limit", "80"]


@pytest.fixture(scope="module")
def shifted_onnx(digits_onnx, tmp_path_factory):
    """The demo model with the bias of output class 3 raised by 2 (more samples predicted 3)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(digits_onnx))
    out_name = m.graph.output[0].name
    producer = next(n for n in m.graph.node if out_name in n.output)
    inits = {i.name: i for i in m.graph.initializer}
    bias = next(inits[name] for name in producer.input if name in inits and len(numpy_helper.to_array(inits[name]).shape) == 1)
    b = numpy_helper.to_array(bias).copy()
    b[3] += 2.0
    bias.CopyFrom(numpy_helper.from_array(b, bias.name))
    path = tmp_path_factory.mktemp("shifted") / "digits-shifted.onnx"
    onnx.save(m, str(path))
    return path


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_reference_is_itself(digits_onnx, tmp_path, capsys):
    out = tmp_path / "self"
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--reference", digits_onnx, "--out", out], capsys)
    assert code == 0, err
    res = _results(out)
    c = res["metrics"]["compare"]["clean"]
    assert c["accuracy_diff"]["value"] == 0 and c["accuracy_diff"]["ci"] == [0, 0]
    assert c["agreement"]["value"] == 1 and c["mcnemar_p"]["value"] == 1
    assert c["fixed"]["value"] == c["broken"]["value"] == 0
    assert c["ece_diff"]["value"] == 0
    assert c["candidate_accuracy"] == res["metrics"]["clean"]["accuracy"]
    assert res["provenance"]["reference"]["sha256"] == res["provenance"]["model_sha256"]
    assert (out / "predictions" / "reference" / "clean.npz").is_file()
    summary = (out / "summary.md").read_text()
    assert "Candidate vs reference" in summary and "`clean`" in summary
    html = (out / "scorecard.html").read_text()
    assert "Candidate versus reference" in html and "compare.clean" in html


@pytest.fixture(scope="module")
def paired_run(shifted_onnx, digits_onnx, tmp_path_factory):
    """CANDIDATE = the shifted model, REFERENCE = the demo model, on 60 digits (the quick_run's data)."""
    from evalsuite.cli import main

    out = tmp_path_factory.mktemp("paired") / "run"
    assert main(["run", str(shifted_onnx), *QUICK[:-1], "60", "--reference", str(digits_onnx), "--out", str(out),
                 "--policy", str(_write(out.parent / "none.yaml", "gates: []\n"))]) == 0
    return out


@pytest.fixture(scope="module")
def shifted_run(shifted_onnx, tmp_path_factory):
    from evalsuite.cli import main

    out = tmp_path_factory.mktemp("shifted-run") / "run"
    assert main(["run", str(shifted_onnx), *QUICK[:-1], "60", "--out", str(out)]) in (0, 1)
    return out


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _clean(folder: Path, reference: bool = False):
    from evalsuite.predictions import read_predictions

    return read_predictions(folder / "predictions" / ("reference" if reference else "") / "clean.npz")


def test_paired_counts_match_the_two_models_own_predictions(paired_run, shifted_run, quick_run):
    from evalsuite.stats.paired import mcnemar_pvalue

    cand, ref = _clean(shifted_run), _clean(quick_run)  # each model's own single run
    # the reference predictions stored by run --reference are the reference model's own
    np.testing.assert_allclose(_clean(paired_run, reference=True).logits, ref.logits, atol=1e-5)
    np.testing.assert_allclose(_clean(paired_run).logits, cand.logits, atol=1e-5)
    c_ok, r_ok = cand.correct.astype(bool), ref.correct.astype(bool)
    fixed, broken = int((c_ok & ~r_ok).sum()), int((~c_ok & r_ok).sum())
    m = _results(paired_run)["metrics"]["compare"]["clean"]
    assert (m["fixed"]["value"], m["broken"]["value"]) == (fixed, broken)
    assert broken > 0  # the shifted bias breaks samples (a test that cannot fail otherwise)
    assert m["accuracy_diff"]["value"] == pytest.approx(c_ok.mean() - r_ok.mean())
    assert m["mcnemar_p"]["value"] == pytest.approx(mcnemar_pvalue(fixed, broken))
    assert m["agreement"]["value"] == pytest.approx(np.mean(cand.predicted == ref.predicted))
    lo, hi = m["accuracy_diff"]["ci"]
    assert lo <= m["accuracy_diff"]["value"] <= hi
    gallery = _results(paired_run)["report"]["compare"]["gallery"]
    assert len(gallery) == min(broken, 12) and all(g["image"] for g in gallery)


@pytest.mark.parametrize(("threshold", "code"), [(-0.9, 0), (0.0, 1)])
def test_policy_gate_on_paired_difference(paired_run, tmp_path, capsys, threshold, code):
    pol = _write(tmp_path / "p.yaml", "gates:\n  - name: no regression\n    metric: compare.clean.accuracy_diff\n"
                                      f"    min: {threshold}\n    bound: ci_lower\n")
    got, out, err = run_cli(["gate", paired_run, "--policy", pol, "--out", tmp_path / "g"], capsys)
    assert got == code, out + err
    assert "compare.clean.accuracy\\_diff" in out or "compare.clean.accuracy_diff" in out


def test_misspelt_compare_metric_fails_before_predictions(digits_onnx, tmp_path, capsys):
    pol = _write(tmp_path / "p.yaml", "gates:\n  - metric: compare.clean.accuracy_dif\n    min: 0\n")
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--reference", digits_onnx, "--out", tmp_path / "o",
                            "--policy", pol], capsys)
    assert code == 2 and "accuracy_diff" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_reference_with_other_classes_is_refused(digits_onnx, tmp_path, capsys):
    import onnx

    m = onnx.load(str(digits_onnx))
    for prop in m.metadata_props:
        if prop.key == "evalsuite.preprocessing":
            meta = json.loads(prop.value)
            meta["class_names"] = [f"c{i}" for i in range(10)]
            prop.value = json.dumps(meta)
    other = tmp_path / "other.onnx"
    onnx.save(m, str(other))
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--reference", other, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "class names differ" in err and len(err.strip().splitlines()) == 1


def test_compare_suite_without_reference_is_refused(digits_onnx, tmp_path, capsys):
    code, _, err = run_cli(["run", digits_onnx, "--suite", "quick,compare", "--data", "builtin:digits", "--limit", "20",
                            "--out", tmp_path / "o"], capsys)
    assert code == 2 and "--reference" in err


def test_worst_group_difference_with_the_slices_suite(shifted_onnx, digits_onnx, tmp_path, capsys):
    from evalsuite.data import open_dataset, select
    from evalsuite.slices.columns import prepare_column

    suite = _write(tmp_path / "suite.yaml", "suites:\n  slices: {columns: [ink_density], min_group_size: 10, n_boot: 50}\n"
                                            "  compare: {n_boot: 200}\n")
    out = tmp_path / "slices"
    code, _, err = run_cli(["run", shifted_onnx, "--suite", str(suite), "--data", "builtin:digits", "--limit", "80",
                            "--reference", digits_onnx, "--out", out, "--policy",
                            _write(tmp_path / "none.yaml", "gates: []\n")], capsys)
    assert code == 0, err
    res = _results(out)
    leaf = res["metrics"]["compare"]["clean"]["slices"]["ink_density"]["worst_group_accuracy_diff"]
    cand, ref = _clean(out), _clean(out, reference=True)
    ds = select(open_dataset("builtin:digits"), limit=80, sample=None, seed=0)
    col = prepare_column("ink_density", ds.columns["ink_density"], numeric_bins=4)
    codes = col.take(cand.index)
    by_group = res["metrics"]["slices"]["ink_density"]["accuracy"]["by_group"]
    worst_c, worst_r = [], []
    for k, name in enumerate(col.groups):
        rows = codes == k
        if rows.sum() >= 10:
            assert by_group[name]["value"] == pytest.approx(cand.correct[rows].mean())  # the slices suite's groups
            worst_c.append(cand.correct[rows].mean())
            worst_r.append(ref.correct[rows].mean())
    assert leaf["groups"] == len(worst_c) >= 2
    assert leaf["value"] == pytest.approx(min(worst_c) - min(worst_r))
    assert leaf["ci"][0] <= leaf["value"] <= leaf["ci"][1]
    # the compare suite's declarations are true in both directions (as tests/test_metric_specs.py for the others)
    from evalsuite.api import plan_run
    from evalsuite.config import RunConfig
    from evalsuite.metric_specs import match_specs
    from evalsuite.results import iter_metric_paths

    specs = [sp for sp in plan_run(RunConfig(model=str(shifted_onnx), data="builtin:digits", suite=str(suite), limit=80,
                                             reference=str(digits_onnx), out_dir=str(tmp_path / "x"))).specs
             if sp.pattern.startswith("compare.")]
    written = list(iter_metric_paths({"compare": res["metrics"]["compare"]}))
    for path, leaf in written:
        matched = match_specs(path, specs)
        assert matched and (leaf["ci"] is None or any(m.ci for m in matched)), path
        if path.rsplit(".", 1)[-1] in ("mcnemar_p", "fixed", "broken"):  # exact: a ci bound on them is refused
            assert leaf["ci"] is None and not any(m.ci for m in matched), path
    assert all(any(sp.matches(p) for p, _ in written) for sp in specs)


def test_compare_command_equals_run_reference(paired_run, shifted_run, quick_run, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, stdout, err = run_cli(["compare", shifted_run, quick_run / "results.json", "--out", out], capsys)
    assert code in (0, 1), err
    got = _results(out)
    want = _results(paired_run)["metrics"]["compare"]
    assert got["metrics"]["compare"] == want  # same pairs, same seed, same bootstrap draws
    assert got["provenance"]["reference"]["sha256"] == _results(quick_run)["provenance"]["model_sha256"]
    assert {p.name for p in out.iterdir()} >= {"results.json", "gates.json", "junit.xml", "summary.md", "scorecard.html"}
    assert "Candidate vs reference" in (out / "summary.md").read_text()


def test_compare_refuses_different_seeds(quick_run, shifted_onnx, tmp_path, capsys):
    other = tmp_path / "seed1"
    assert run_cli(["run", shifted_onnx, *QUICK[:-1], "60", "--seed", "1", "--out", other], capsys)[0] in (0, 1)
    code, _, err = run_cli(["compare", other, quick_run, "--out", tmp_path / "cmp"], capsys)
    assert code == 2 and "different seeds" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "cmp").exists()


def test_resume_reuses_reference_predictions(paired_run, tmp_path, capsys):
    import shutil

    out = tmp_path / "again"
    shutil.copytree(paired_run, out)
    before = _results(out)
    code, _, err = run_cli(["run", *_argv(before), "--out", out, "--resume", "--policy",
                            _write(tmp_path / "none.yaml", "gates: []\n")], capsys)
    assert code == 0, err
    after = _results(out)
    assert after["provenance"]["resumed_conditions"] == ["clean"]
    assert after["metrics"]["compare"] == before["metrics"]["compare"]


def _argv(results: dict) -> list[str]:
    c = results["config"]
    return [c["model"], "--suite", "quick", "--data", c["data"], "--limit", str(c["limit"]), "--reference", c["reference"]]


def test_attacks_are_paired_by_sample(shifted_onnx, digits_onnx, tmp_path, capsys):
    """An attack crafts pixels against a model: the reference is attacked with its own attack on
    the same seeded subset, so both rows of every pair are the same sample."""
    suite = _write(tmp_path / "suite.yaml", "suites:\n  adversarial: {tier: smoke, n: 12, norms: [linf], "
                                            "linf_eps: ['8/255'], sanity: false}\n")
    out = tmp_path / "adv"
    code, _, err = run_cli(["run", shifted_onnx, "--suite", str(suite), "--data", "builtin:digits", "--limit", "60",
                            "--reference", digits_onnx, "--out", out, "--policy",
                            _write(tmp_path / "none.yaml", "gates: []\n")], capsys)
    assert code == 0, err
    from evalsuite.predictions import read_predictions

    key = "attack__linf__8_255.npz"
    cand = read_predictions(out / "predictions" / key)
    ref = read_predictions(out / "predictions" / "reference" / key)
    assert np.array_equal(cand.index, ref.index) and len(cand.index) == 12
    m = _results(out)["metrics"]["compare"]["attack.linf.8_255"]
    c_ok, r_ok = cand.correct.astype(bool), ref.correct.astype(bool)
    assert (m["fixed"]["value"], m["broken"]["value"]) == (int((c_ok & ~r_ok).sum()), int((~c_ok & r_ok).sum()))
    # the reference was attacked through its own model: its robust predictions are not the candidate's pixels
    own = _results(out)["metrics"]["adversarial"]
    assert own  # the candidate's own adversarial metrics are untouched
    row = next(r for r in _results(out)["report"]["compare"]["rows"] if r["key"] == "attack/linf/8_255")
    assert row["paired_by"] == "sample"
