"""The corruption suite (options, conditions, hand-computed metrics, mCE, scorecard) and `evalsuite corrupt`."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from evalsuite.conditions import ConditionIdentity, measured_params
from evalsuite.data.base import Dataset
from evalsuite.errors import UsageError
from evalsuite.suites.base import Predictions, PredictionSet, RunContext
from evalsuite.suites.corruption import CorruptionSuite, baseline_from_results, load_alexnet_errors


def model_stub(size: int = 32, classes: int = 10) -> SimpleNamespace:
    return SimpleNamespace(info=SimpleNamespace(input_size=(size, size), num_classes=classes))


def ctx(tmp_path: Path, n: int = 4, size: int = 32, classes: int = 10, baseline=None, image_source=None) -> RunContext:
    ds = Dataset(name="t", ids=np.array([f"s{i}" for i in range(n)], dtype=object), labels=np.zeros(n, dtype=np.int64),
                 columns={}, fingerprint="f", loader=lambda i: np.zeros((size, size, 3), np.uint8))
    return RunContext(model=model_stub(size, classes), dataset=ds, labels=np.zeros(n, dtype=np.int64), out_dir=tmp_path,
                      seed=0, baseline=baseline, image_source=image_source)


def preds(key: str, suite: str, correct, params=None) -> Predictions:
    """Two-class predictions, label 0, right exactly where ``correct`` is 1."""
    c = np.asarray(correct, dtype=float)
    n = len(c)
    logits = np.stack([c, 1 - c], axis=1).astype(np.float32)
    return Predictions(key, suite, params or {}, np.arange(n), np.array([f"s{i}" for i in range(n)], dtype=object),
                       np.zeros(n, dtype=np.int64), logits)


def test_presets_and_conditions(tmp_path):
    run = ctx(tmp_path)
    fast = CorruptionSuite({}).conditions(run)
    assert len(fast) == 18
    assert {c.params["name"] for c in fast} >= {"gaussian_noise", "fog", "contrast", "jpeg_compression"}
    assert {c.params["severity"] for c in fast} == {1, 3, 5}
    c0 = fast[0]
    assert c0.key == "corruption/gaussian_noise/1" and c0.suite == "corruption" and not c0.uses_model
    assert measured_params(c0.params) == {"name": "gaussian_noise", "severity": 1, "backend": "torch"}
    assert c0.identity == ConditionIdentity("corruption", "corruption", ("gaussian_noise", 1))
    assert c0.params["condition"] == {"suite": "corruption", "kind": "corruption", "parts": ["gaussian_noise", 1],
                                      "label": "gaussian_noise 1"}
    assert len(CorruptionSuite({"preset": "benchmark"}).conditions(run)) == 75
    assert len(CorruptionSuite({"preset": "all"}).conditions(run)) == 95
    explicit = CorruptionSuite({"corruptions": ["saturate", "fog"], "severities": [2]}).conditions(run)
    assert [c.key for c in explicit] == ["corruption/saturate/2", "corruption/fog/2"]
    assert len(CorruptionSuite({"corruptions": ["fog"]}).conditions(run)) == 5
    ref = CorruptionSuite({"corruptions": ["fog"], "severities": [1], "backend": "reference"}).conditions(run)
    assert ref[0].params["backend"] == "reference"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"preset": "fastest"}, "did you mean 'fast'"),
        ({"corruptions": ["frosty"]}, "did you mean 'frost'"),
        ({"corruptions": []}, "non-empty"),
        ({"corruptions": ["fog", "fog"]}, "twice"),
        ({"severities": [0]}, "from 1 to 5"),
        ({"severities": [2.5]}, r"suites.corruption.severities\[0\] must be an integer, got 2.5"),
        ({"backend": "pytorch"}, "did you mean 'torch'"),
        ({"baseline_errors": "no/such/results.json"}, "not found"),
        ({"severity": [1]}, "did you mean 'severities'"),
    ],
)
def test_option_errors(options, match):
    with pytest.raises(UsageError, match=match):
        CorruptionSuite(options)


def test_condition_errors(tmp_path):
    with pytest.raises(UsageError, match=r"corruption gaussian_noise needs images of at least 32 x 32.*16 x 16"):
        CorruptionSuite({}).conditions(ctx(tmp_path, size=16))
    with pytest.raises(UsageError, match="only applies to ImageNet classifiers"):
        CorruptionSuite({"baseline_errors": "alexnet"}).conditions(ctx(tmp_path, classes=10))


def hand_case():
    clean = preds("clean", "clean", [1, 1, 1, 1])
    cells = {("fog", 1): [1, 1, 1, 0], ("fog", 2): [1, 0, 1, 0], ("contrast", 1): [1, 1, 0, 0], ("contrast", 2): [0, 0, 0, 0]}
    items = {"clean": clean}
    for (name, sev), c in cells.items():
        key = f"corruption/{name}/{sev}"
        items[key] = preds(key, "corruption", c, {"name": name, "severity": sev, "backend": "torch"})
    return PredictionSet(items)


def test_metrics_are_hand_computable(tmp_path):
    suite = CorruptionSuite({"corruptions": ["fog", "contrast"], "severities": [1, 2]})
    out = suite.summarize(ctx(tmp_path), hand_case())
    m = out.metrics
    assert m["fog"]["1"]["accuracy"]["value"] == 0.75 and m["fog"]["2"]["accuracy"]["value"] == 0.5
    assert m["contrast"]["2"]["accuracy"]["value"] == 0.0
    assert m["fog"]["mean_accuracy"]["value"] == 0.625 and m["contrast"]["mean_accuracy"]["value"] == 0.25
    assert m["mean_accuracy"]["value"] == pytest.approx(0.4375)
    assert m["relative_drop"]["value"] == pytest.approx(0.5625) and m["relative_drop"]["direction"] == "lower"
    assert m["worst"]["accuracy"]["value"] == 0.0 and m["worst"]["accuracy"]["condition"] == "contrast/2"
    for leaf in (m["mean_accuracy"], m["fog"]["1"]["accuracy"], m["relative_drop"], m["worst"]["accuracy"]):
        lo, hi = leaf["ci"]
        assert lo <= leaf["value"] <= hi and leaf["n"] == 4
    assert "mce" not in m  # no baseline given
    assert out.checks and out.checks[0].metric == "corruption.relative_drop"
    # ties keep the suite's order (fog before contrast)
    assert [(w["name"], w["severity"]) for w in out.report["worst"]] == [("contrast", 2), ("fog", 2), ("contrast", 1)]
    assert out.report["heatmap"] == [[0.75, 0.5], [0.5, 0.0]]


def test_mce_against_a_baseline_results_file(tmp_path):
    """CE_c = sum_s E_s,c / sum_s E^base_s,c; relative CE subtracts each model's clean error."""
    from evalsuite.stats import metric

    base = {"metrics": {
        "clean": {"accuracy": metric(0.9, 4)},
        "corruption": {
            "fog": {"1": {"accuracy": metric(0.5, 4)}, "2": {"accuracy": metric(0.5, 4)}, "mean_accuracy": metric(0.5, 4)},
            "contrast": {"1": {"accuracy": metric(0.8, 4)}},
        },
    }}
    errs, clean_err = baseline_from_results(base)
    assert errs == {("fog", 1): 0.5, ("fog", 2): 0.5, ("contrast", 1): pytest.approx(0.2)} and clean_err == pytest.approx(0.1)
    suite = CorruptionSuite({"corruptions": ["fog", "contrast"], "severities": [1, 2]})
    m = suite.summarize(ctx(tmp_path, baseline=base), hand_case()).metrics
    ce_fog = (0.25 + 0.5) / (0.5 + 0.5)
    ce_contrast = 0.5 / 0.2  # only severity 1 is in the baseline
    assert m["fog"]["ce"]["value"] == pytest.approx(ce_fog)
    assert m["contrast"]["ce"]["value"] == pytest.approx(ce_contrast)
    assert m["mce"]["value"] == pytest.approx((ce_fog + ce_contrast) / 2)
    assert m["mce"]["baseline"] == "--baseline" and m["mce"]["complete"] is False
    rel_fog = ((0.25 - 0.0) + (0.5 - 0.0)) / ((0.5 - 0.1) + (0.5 - 0.1))
    rel_contrast = (0.5 - 0.0) / (0.2 - 0.1)
    assert m["relative_mce"]["value"] == pytest.approx((rel_fog + rel_contrast) / 2)
    lo, hi = m["mce"]["ci"]
    assert lo <= m["mce"]["value"] <= hi


def test_alexnet_errors_are_the_published_ones():
    data = load_alexnet_errors()
    from evalsuite.corruptions import BENCHMARK

    assert sorted(data["errors"]) == sorted(BENCHMARK)
    for name, vals in data["errors"].items():
        assert len(vals) == 5 and all(0 < v < 1 for v in vals)
        # the per-severity table averages to hendrycks/robustness's ALEXNET_ERR per corruption
        assert np.mean(vals) == pytest.approx(data["mean_errors"][name], abs=2e-6)


def test_end_to_end_run_with_scorecard(digits_onnx, tmp_path, monkeypatch):
    """evalsuite.api.run with the corruption suite: prefetched conditions, metrics, thumbnails, section."""
    import yaml

    from evalsuite import api
    from evalsuite.config import RunConfig
    from evalsuite.suites import SUITES

    if "corruption" not in SUITES:
        monkeypatch.setitem(SUITES._entries, "corruption", "evalsuite.suites.corruption:CorruptionSuite")
        monkeypatch.setitem(SUITES._descriptions, "corruption", "ImageNet-C corruptions")
    spec = tmp_path / "suite.yaml"
    spec.write_text(yaml.safe_dump({"suites": {"clean": {}, "corruption": {"corruptions": ["fog", "motion_blur", "jpeg_compression"], "severities": [1, 5]}}}))
    out = api.run(RunConfig(model=str(digits_onnx), data="builtin:digits:test", suite=str(spec), out_dir=str(tmp_path / "run"),
                            limit=96, batch_size=32, device="cpu", progress=False))
    m = out.results["metrics"]["corruption"]
    assert m["mean_accuracy"]["n"] == 96
    assert m["fog"]["5"]["accuracy"]["value"] <= m["fog"]["1"]["accuracy"]["value"]
    assert set(out.results["conditions"]) >= {"corruption/fog/1", "corruption/jpeg_compression/5"}
    thumbs = out.results["report"]["corruption"]["thumbnails"]
    assert len(thumbs) == 20 and all((out.out_dir / t["image"]).is_file() for t in thumbs)
    html = out.scorecard_path.read_text()
    assert "Common corruptions" in html and "Worst corruptions" in html and "<script" not in html.lower()


# -- evalsuite corrupt ---------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    import argparse

    from evalsuite.corruptions.cli import register

    parser = argparse.ArgumentParser(prog="evalsuite")
    sub = parser.add_subparsers()
    register(sub)
    args = parser.parse_args(["corrupt", *argv])
    return args.func(args)


def test_corrupt_command_on_a_folder(tmp_path, digits_data):
    import torch
    from PIL import Image

    from evalsuite.corruptions import corrupt

    src = tmp_path / "in"
    (src / "cats").mkdir(parents=True)
    img = np.asarray(Image.fromarray(digits_data[0][5]).resize((40, 36)))
    Image.fromarray(img).save(src / "cats" / "a.png")
    Image.fromarray(img).convert("L").save(src / "b.jpg", quality=95)
    Image.fromarray(img).convert("RGBA").save(src / ".hidden.png")
    assert _cli([str(src), "--corruption", "fog", "--severity", "3", "--out", str(tmp_path / "out"), "--seed", "4"]) == 0
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert written == ["b.png", "cats/a.png"]
    got = np.asarray(Image.open(tmp_path / "out" / "cats" / "a.png"))
    x = torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255
    expected = torch.round(corrupt(x, "fog", 3, seed=4, ids=["cats/a.png"]) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(got, expected)  # same seeding as a run on this folder
    assert np.asarray(Image.open(tmp_path / "out" / "b.png")).shape == (36, 40, 3)  # grayscale made RGB
    assert _cli([str(src / "cats" / "a.png"), "--corruption", "noise", "--severity", "1,5", "--out", str(tmp_path / "o2")]) == 0
    assert (tmp_path / "o2" / "speckle_noise" / "5" / "a.png").is_file()


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--corruption", "fogg"], "did you mean 'fog'"),
        (["--corruption", "fog", "--severity", "7"], "from 1 to 5"),
        (["--corruption", "fog", "--severity", "x"], "integer"),
        (["--corruption", "fog", "--device", "cuda:0"], "CUDA|cpu or cuda"),
    ],
)
def test_corrupt_command_errors(tmp_path, argv, match):
    from PIL import Image

    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "a.png")
    import torch

    if "cuda:0" in argv and torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(UsageError, match=match):
        _cli([str(tmp_path / "a.png"), *argv, "--out", str(tmp_path / "o")])


def test_corrupt_command_small_image_and_missing_input(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(tmp_path / "tiny.png")
    with pytest.raises(UsageError, match=r"tiny.png: fog needs images of at least 32 x 32"):
        _cli([str(tmp_path / "tiny.png"), "--corruption", "fog", "--out", str(tmp_path / "o")])
    with pytest.raises(UsageError, match="input not found"):
        _cli([str(tmp_path / "nope"), "--corruption", "fog", "--out", str(tmp_path / "o")])
