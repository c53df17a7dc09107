"""The device suite: options, conditions, hand-computed metrics, real device shift, scorecard section."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from evalsuite.conditions import BatchContext
from evalsuite.data.base import Dataset
from evalsuite.errors import UsageError
from evalsuite.suites.base import Predictions, PredictionSet, RunContext
from evalsuite.suites.device import DeviceSuite

BUILTIN = ["cctv-night", "dslr-daylight", "older-phone", "phone-lowlight", "scanned-print", "webcam-720p"]


def dataset(n: int, columns: dict | None = None) -> Dataset:
    ids = np.array([f"s{i:03d}" for i in range(n)], dtype=object)
    return Dataset(name="t", ids=ids, labels=np.zeros(n, dtype=np.int64), columns=columns or {}, fingerprint="f",
                   loader=lambda i: np.zeros((8, 8, 3), np.uint8))


def preds_from_correct(key: str, suite: str, correct: np.ndarray, order: np.ndarray | None = None) -> Predictions:
    """Predictions whose argmax is right exactly where ``correct`` is 1 (two classes, label 0)."""
    n = len(correct)
    index = np.arange(n) if order is None else np.asarray(order)
    c = np.asarray(correct, dtype=float)[index]
    logits = np.stack([c, 1 - c], axis=1).astype(np.float32)
    return Predictions(key, suite, {}, index, np.array([f"s{i:03d}" for i in index], dtype=object),
                       np.zeros(n, dtype=np.int64), logits)


def run_ctx(ds: Dataset, tmp_path: Path, image_source=None) -> RunContext:
    return RunContext(model=None, dataset=ds, labels=np.asarray(ds.labels), out_dir=tmp_path, seed=0,
                      image_source=image_source)


def test_default_options_give_builtin_profiles_and_the_ci_ladder(tmp_path):
    suite = DeviceSuite()
    keys = [c.key for c in suite.conditions(run_ctx(dataset(4), tmp_path))]
    assert keys[:6] == [f"device/{n}" for n in BUILTIN]
    assert keys[6:] == [f"device/op/{op}/{s}" for op in ("resolution", "jpeg", "sensor_noise", "lens_blur", "white_balance")
                        for s in (1, 3, 5)]
    cond = suite.conditions(run_ctx(dataset(4), tmp_path))[0]
    assert cond.suite == "device" and cond.params["profile"] == "cctv-night" and cond.params["chain"][0]["op"] == "motion_blur"
    everything = DeviceSuite({"operations": "all", "severities": [1, 2, 3, 4, 5], "profiles": ["webcam-720p"]})
    assert len(everything.build_conditions()) == 1 + 13 * 5
    none = DeviceSuite({"operations": [], "profiles": "webcam-720p,older-phone"})
    assert [c.key for c in none.build_conditions()] == ["device/webcam-720p", "device/older-phone"]


def test_option_errors(tmp_path):
    with pytest.raises(UsageError, match=r"unknown device profile 'webcam' \(did you mean 'webcam-720p'\?\); valid: cctv-night"):
        DeviceSuite({"profiles": ["webcam"]})
    with pytest.raises(UsageError, match=r"unknown operation 'jpg' \(did you mean 'jpeg'.*\); valid: bayer"):
        DeviceSuite({"operations": ["jpg"]})
    with pytest.raises(UsageError, match=r"severities must be a non-empty list of integers 1-5, got \[0, 3\]"):
        DeviceSuite({"severities": [0, 3]})
    with pytest.raises(UsageError, match=r"unknown option 'suites.device.profile' \(did you mean 'profiles'"):
        DeviceSuite({"profile": "all"})
    with pytest.raises(UsageError, match=r"device profiles file not found"):
        DeviceSuite({"profiles_file": str(tmp_path / "nope.yaml")})
    suite = DeviceSuite({"device_column": "camera"})
    with pytest.raises(UsageError, match=r"device column 'camera' is not in the data \(did you mean 'cameras'\?\); "
                                         r"available columns: cameras, site"):
        suite.conditions(run_ctx(dataset(3, {"cameras": np.array(["a"] * 3), "site": np.array(["x"] * 3)}), tmp_path))
    with pytest.raises(UsageError, match=r"available columns: \(none\)"):
        suite.conditions(run_ctx(dataset(3), tmp_path))


def test_profiles_file_selection(tmp_path):
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(textwrap.dedent("""
        profiles:
          - name: doorbell
            chain: [{op: jpeg, quality: 30}]
        """))
    only_file = DeviceSuite({"profiles_file": str(fleet), "operations": []})
    assert [p.name for p in only_file.profiles] == ["doorbell"]
    both = DeviceSuite({"profiles_file": str(fleet), "profiles": "all", "operations": []})
    assert [p.name for p in both.profiles] == BUILTIN + ["doorbell"]
    pick = DeviceSuite({"profiles_file": str(fleet), "profiles": ["doorbell", "cctv-night"]})
    assert [p.name for p in pick.profiles] == ["doorbell", "cctv-night"]


def test_metrics_are_hand_computable(tmp_path):
    n = 20
    clean = np.array([1] * 18 + [0] * 2)  # 90%
    a = np.array([1] * 15 + [0] * 5)  # 75%, loses samples 15-17
    b = np.array([1] * 10 + [0] * 10)  # 50%
    ladder = np.array([1] * 16 + [0] * 4)  # 80%
    cameras = np.array(["x"] * 10 + ["y"] * 8 + [None, ""], dtype=object)
    suite = DeviceSuite({"profiles": ["webcam-720p", "older-phone"], "operations": ["jpeg"], "severities": [2],
                         "device_column": "camera"})
    ps = PredictionSet({
        "clean": preds_from_correct("clean", "clean", clean),
        "device/webcam-720p": preds_from_correct("device/webcam-720p", "device", a, order=np.arange(n)[::-1]),
        "device/older-phone": preds_from_correct("device/older-phone", "device", b),
        "device/op/jpeg/2": preds_from_correct("device/op/jpeg/2", "device", ladder),
    })
    out = suite.summarize(run_ctx(dataset(n, {"camera": cameras}), tmp_path), ps)
    m = out.metrics
    assert m["webcam-720p"]["accuracy"]["value"] == pytest.approx(0.75)
    assert m["webcam-720p"]["drop"]["value"] == pytest.approx(0.15)
    lo, hi = m["webcam-720p"]["drop"]["ci"]
    assert 0.0 <= lo < 0.15 < hi  # paired: only 3 samples differ, all in one direction
    assert m["webcam-720p"]["drop"]["direction"] == "lower"
    assert m["older-phone"]["accuracy"]["value"] == pytest.approx(0.5)
    assert m["worst"]["accuracy"]["value"] == pytest.approx(0.5) and m["worst"]["accuracy"]["profile"] == "older-phone"
    assert m["worst"]["drop"]["value"] == pytest.approx(0.4)
    lo, hi = m["worst"]["accuracy"]["ci"]
    assert lo <= 0.5 <= hi
    assert m["mean_accuracy"]["value"] == pytest.approx(0.625)
    lo, hi = m["mean_accuracy"]["ci"]
    assert lo < 0.625 < hi
    assert m["ops"]["jpeg"]["2"]["accuracy"]["value"] == pytest.approx(0.8)
    assert m["ops"]["jpeg"]["2"]["drop"]["value"] == pytest.approx(0.1)
    # real device shift: x = samples 0-9 (all right), y = 10-17 (all right), 18-19 missing
    real = m["real"]
    assert set(real) == {"x", "y"}
    assert real["x"]["accuracy"]["value"] == 1.0 and real["x"]["accuracy"]["n"] == 10
    assert real["x"]["drop_vs_rest"]["value"] == pytest.approx(0.0) and real["x"]["drop_vs_rest"]["n_rest"] == 8
    assert out.report["real"]["missing"] == 2
    assert out.checks[0].metric == "device.worst.drop" and out.checks[0].max == 0.10
    assert [r["name"] for r in out.report["profiles"]] == ["webcam-720p", "older-phone"]
    assert out.report["bar"]["values"] == pytest.approx([0.75, 0.5]) and out.report["bar"]["reference"] == pytest.approx(0.9)


def test_real_device_drop_against_the_rest(tmp_path):
    n = 60
    cam = np.array(["old"] * 20 + ["new"] * 40, dtype=object)
    clean = np.r_[np.tile([1, 0], 10), np.ones(38), np.zeros(2)]  # old 50%, new 95%
    suite = DeviceSuite({"profiles": [], "operations": [], "device_column": "camera"})
    out = suite.summarize(run_ctx(dataset(n, {"camera": cam}), tmp_path),
                          PredictionSet({"clean": preds_from_correct("clean", "clean", clean)}))
    old = out.metrics["real"]["old"]
    assert old["accuracy"]["value"] == pytest.approx(0.5)
    assert old["drop_vs_rest"]["value"] == pytest.approx(0.45)
    lo, hi = old["drop_vs_rest"]["ci"]
    assert 0.15 < lo < 0.45 < hi < 0.75
    assert out.metrics["real"]["new"]["drop_vs_rest"]["value"] == pytest.approx(-0.45)
    assert "worst" not in out.metrics and out.checks == []


def test_end_to_end_on_digits_with_thumbnails_and_section(digits_model, digits_data, tmp_path):
    import torch

    images, labels, columns, splits = digits_data
    idx = splits["test"][:48]
    ds = Dataset(name="digits", ids=np.array([f"digits/{i:04d}" for i in idx], dtype=object), labels=labels[idx],
                 columns={"camera": np.array(["a", "b", "c"] * 16, dtype=object)}, fingerprint="f",
                 loader=lambda i: images[idx[i]])
    suite = DeviceSuite({"device_column": "camera", "severities": [1, 5], "operations": ["jpeg", "lens_blur"]})
    run = run_ctx(ds, tmp_path, image_source=lambda pos: images[idx[np.asarray(pos)]])
    conds = suite.conditions(run)
    x = torch.from_numpy(images[idx]).permute(0, 3, 1, 2).float() / 255
    ids = ds.ids
    items = {}
    with torch.no_grad():
        clean_logits = digits_model(x).numpy()
        items["clean"] = Predictions("clean", "clean", {}, np.arange(48), ids, labels[idx], clean_logits)
        for c in conds:
            # two batches, as the runner would split them
            y = torch.cat([c.apply(x[:20], BatchContext(ids=ids[:20], labels=None, seed=0)),
                           c.apply(x[20:], BatchContext(ids=ids[20:], labels=None, seed=0))])
            assert torch.equal(y, c.apply(x, BatchContext(ids=ids, labels=None, seed=0)))
            items[c.key] = Predictions(c.key, "device", c.params, np.arange(48), ids, labels[idx], digits_model(y).numpy())
    out = suite.summarize(run, PredictionSet(items))
    m = out.metrics
    assert m["mean_accuracy"]["n"] == 48
    clean_acc = float((clean_logits.argmax(1) == labels[idx]).mean())
    assert clean_acc > 0.85
    for name in BUILTIN:
        assert 0.0 <= m[name]["accuracy"]["value"] <= 1.0
        assert m[name]["drop"]["value"] == pytest.approx(clean_acc - m[name]["accuracy"]["value"])
    assert m["ops"]["jpeg"]["5"]["accuracy"]["value"] <= m["ops"]["jpeg"]["1"]["accuracy"]["value"] + 0.05
    for row in out.report["profiles"]:
        assert (tmp_path / row["thumbnail"]).is_file()
    assert (tmp_path / out.report["thumbnail_clean"]).is_file()

    # the scorecard section renders with the report module's helpers, autoescaped, without scripts
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from evalsuite.report import render, svg

    env = Environment(loader=FileSystemLoader(str(render.TEMPLATE_DIR)),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    html = env.get_template("sections/device.html.j2").render(
        section=out.report, metrics=m, results={}, svg=svg, fmt=render.fmt, pct=render.pct, ci=render.ci,
        img=lambda p: "data:image/png;base64,AAAA" if p else "")
    assert "<h2>Device shift</h2>" in html and "webcam-720p" in html and "<svg" in html
    assert "<script" not in html.lower() and "Real devices in the data" in html
    assert html.count('src="data:image/png') == 1 + len(BUILTIN)
