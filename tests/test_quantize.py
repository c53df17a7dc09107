"""``evalsuite quantize`` and INT8 models in a run: the quantize -> compare round trip on the demo
model, the quantization record and inspect, the calibration-overlap refusal, and attacks on an
INT8 model (transfer from ``--attack-surrogate``, else what the code does without one)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evalsuite.cli import main

CAL = "builtin:digits:val"  # calibration split; builtin:digits (= :test) is disjoint from it
EVAL = "builtin:digits:test"

# Tiny adversarial suite: one L-inf epsilon on 8 samples, no sanity subset, no example pairs.
ADV_SUITE = """suites:
  clean: {}
  adversarial: {n: 8, norms: [linf], linf_eps: ["8/255"], sanity: false, examples: 0, blackbox_n: 0,
                square_queries: 5, attack_batch_size: 8}
"""


@pytest.fixture(scope="module")
def int8(digits_onnx, tmp_path_factory):
    """(INT8 path, --json summary) of the demo model quantized on 200 samples of the val split."""
    out = tmp_path_factory.mktemp("int8") / "digits.int8.onnx"
    summary = out.with_suffix(".json.out")
    rc = main(["quantize", str(digits_onnx), "--calibration-data", CAL, "--calibration-samples", "200",
               "-o", str(out), "--json", str(summary)])
    assert rc == 0
    return out, json.loads(summary.read_text())


def _logits(path, data):
    from evalsuite.calibration.predict import predict_dataset
    from evalsuite.data import open_dataset, resolve_labels
    from evalsuite.models import load_model

    m = load_model(str(path), device="cpu")
    ds = open_dataset(data)
    labels = resolve_labels(ds, list(m.info.class_names))
    return predict_dataset(m, ds, labels, batch_size=128), labels


def test_round_trip_agreement_on_held_out_split(digits_onnx, int8):
    """The INT8 model agrees with FP32 top-1 on >= 97% of the eval split (measured: 99.7%, 359/360,
    on this machine) and keeps FP32's accuracy within two points."""
    path, summary = int8
    z32, y = _logits(digits_onnx, EVAL)
    z8, _ = _logits(path, EVAL)
    agreement = float((z32.argmax(1) == z8.argmax(1)).mean())
    assert len(y) == 360 and agreement >= 0.97, agreement
    acc32, acc8 = float((z32.argmax(1) == y).mean()), float((z8.argmax(1) == y).mean())
    assert abs(acc32 - acc8) <= 0.02
    assert np.all(np.isfinite(z8))
    assert summary["written"] and summary["passed"]
    assert summary["calibration_agreement"]["n"] == 200


def test_record_metadata_and_inspect(digits_onnx, int8, capsys):
    import onnx

    from evalsuite.calibration.onnx_bake import read_onnx_metadata
    from evalsuite.data import open_dataset, select
    from evalsuite.models import inspect_model, load_model
    from evalsuite.models.metadata import file_sha256
    from evalsuite.quantize.record import ids_sha256, quantization_record, sample_digests

    path, _ = int8
    src_meta = read_onnx_metadata(onnx.load(str(digits_onnx)))
    meta = read_onnx_metadata(onnx.load(str(path)))
    for key in ("input_size", "mean", "std", "class_names", "channel_order", "resize", "interpolation", "temperature"):
        assert meta[key] == src_meta[key], key
    rec = quantization_record(load_model(str(path), device="cpu"))
    assert rec["quant_format"] == "QDQ" and rec["per_channel"] is True
    assert rec["weight_type"] == "QInt8" and rec["activation_type"] == "QUInt8"  # U8S8 by default
    assert rec["source_model"]["sha256"] == file_sha256(digits_onnx)
    cal = rec["calibration"]
    full = open_dataset(CAL)
    part = select(full, sample=200, seed=0)  # the same seeded stratified sample
    assert cal["n"] == 200 and cal["seed"] == 0 and cal["data"] == CAL
    assert cal["fingerprint"] == part.fingerprint and cal["source_fingerprint"] == full.fingerprint
    assert cal["ids_sha256"] == ids_sha256(part.ids)
    assert cal["sample_digests"] == sorted(sample_digests(part))

    report = inspect_model(str(path), device="cpu")
    q = report["quantization"]
    assert q["format"] == "QDQ" and q["ops"]["QuantizeLinear"] > 0 and q["ops"]["DequantizeLinear"] > 0
    assert q["integer_types"] == ["INT8", "UINT8"]  # int8 weights, uint8 activation zero points
    assert q["record"]["calibration"]["sample_digests"] == 200
    assert "quantization" not in inspect_model(str(digits_onnx), device="cpu")  # a float graph shows none
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if ln.startswith("Quantization"))
    assert "INT8 QDQ" in line and "QuantizeLinear" in line and f"200 samples of {CAL}" in line
    assert cal["sample_digests"][0] not in text  # digests are counted, not printed


def test_run_refuses_calibration_overlap(int8, tmp_path, caplog):
    path, _ = int8
    out = tmp_path / "run"
    # builtin:digits:val holds the 200 calibration samples: refused before any prediction, exit 2.
    assert main(["run", str(path), "--data", CAL, "--suite", "quick", "--out", str(out)]) == 2
    assert not out.exists()
    # Measured anyway with the flag: the overlap is recorded in the results' model info.
    assert main(["run", str(path), "--data", CAL, "--suite", "quick", "--out", str(out),
                 "--allow-calibration-overlap"]) == 0
    check = json.loads((out / "results.json").read_text())["model"]["extra"]["calibration_overlap"]
    assert check["overlapping"] == 200 and check["evaluated"] == 359 and check["allowed"] is True
    # Disjoint data pass and record zero overlap.
    out2 = tmp_path / "run2"
    assert main(["run", str(path), "--data", EVAL, "--suite", "quick", "--limit", "50", "--out", str(out2)]) == 0
    check = json.loads((out2 / "results.json").read_text())["model"]["extra"]["calibration_overlap"]
    assert check["overlapping"] == 0 and check["evaluated"] == 50 and check["calibration_n"] == 200


def test_overlap_is_found_by_pixels_not_ids(int8, tmp_path, digits_data):
    """The same images under other ids (an .npz of calibration images plus test images) are caught."""
    from evalsuite.data import open_dataset, select
    from evalsuite.errors import DataError
    from evalsuite.models import load_model
    from evalsuite.quantize.record import check_calibration_overlap

    path, _ = int8
    images, labels, _, splits = digits_data
    cal = select(open_dataset(CAL), sample=200, seed=0)
    take = np.array([int(str(i).split("/")[1]) for i in cal.ids[:3]])  # 3 calibration images
    test = np.asarray(splits["test"])[:7]
    npz = tmp_path / "mixed.npz"
    idx = np.concatenate([test, take])
    np.savez(npz, images=images[idx], labels=labels[idx])
    model = load_model(str(path), device="cpu")
    with pytest.raises(DataError, match=r"3 of 10 evaluated samples"):
        check_calibration_overlap(model, open_dataset(str(npz)))
    clean = tmp_path / "clean.npz"
    np.savez(clean, images=images[test], labels=labels[test])
    assert check_calibration_overlap(model, open_dataset(str(clean)))["overlapping"] == 0


def test_bad_records_are_one_line_errors():
    from evalsuite.errors import ModelError
    from evalsuite.quantize.record import pixel_digest, validate_record

    a = np.zeros((4, 5, 3), np.uint8)
    assert pixel_digest(a) == pixel_digest(a.copy()) != pixel_digest(a.reshape(5, 4, 3))
    assert len(pixel_digest(a)) == 16
    ok = {"calibration": {"sample_digests": [pixel_digest(a)], "fingerprint": "x"}}
    assert validate_record(ok, "m.onnx") is ok
    for bad in ([], {"calibration": []}, {"calibration": {"sample_digests": "abc"}},
                {"calibration": {"sample_digests": ["../etc/passwd"]}},
                {"calibration": {"sample_digests": [], "fingerprint": 3}}):
        with pytest.raises(ModelError) as err:
            validate_record(bad, "m.onnx")
        assert "\n" not in str(err.value)


def test_quantize_validates_before_work(digits_onnx, int8, tmp_path, capsys):
    path, _ = int8
    out = tmp_path / "q.onnx"
    cases = [
        ([str(digits_onnx), "--calibration-data", CAL, "-o", str(digits_onnx)], "must differ from the input"),
        ([str(digits_onnx), "--calibration-data", CAL, "-o", str(tmp_path / "q.pt")], "needs a .onnx file name"),
        ([str(path), "--calibration-data", CAL, "-o", str(out)], "already quantized"),
        ([str(digits_onnx), "--calibration-data", str(tmp_path / "nope"), "-o", str(out)], "no such file"),
        ([str(digits_onnx), "--calibration-data", CAL, "-o", str(path)], "exists; pass --force"),
        ([str(digits_onnx), "--calibration-data", CAL, "-o", str(out), "--device", "cuda"], "on the CPU"),
    ]
    for argv, message in cases:
        assert main(["quantize", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not list(tmp_path.iterdir())
    (tmp_path / "q.onnx.json").write_text("{}")
    assert main(["quantize", str(digits_onnx), "--calibration-data", CAL, "-o", str(out)]) == 2
    assert "sidecar" in capsys.readouterr().err and not out.exists()


def _adversarial_run(model, tmp_path, *extra):
    suite = tmp_path / "adv.yaml"
    suite.write_text(ADV_SUITE)
    out = tmp_path / "run"
    rc = main(["run", str(model), "--data", EVAL, "--suite", str(suite), "--out", str(out), *extra])
    return rc, out


def test_attack_surrogate_is_a_transfer_attack(digits_onnx, int8, tmp_path):
    path, _ = int8
    rc, out = _adversarial_run(path, tmp_path, "--attack-surrogate", str(digits_onnx))
    assert rc in (0, 1)
    res = json.loads((out / "results.json").read_text())
    adv = res["metrics"]["adversarial"]
    wb = adv["white_box"]
    assert wb["attack_mode"] == "transfer" and wb["value"] == 0.0
    assert wb["surrogate"]["source"] == str(digits_onnx) and wb["surrogate"]["is_quantization_source"] is True
    params = res["conditions"]["attack/linf/8_255"]["params"]
    assert params["mode"] == "transfer" and params["surrogate"]["sha256"] == wb["surrogate"]["sha256"]
    assert params["attacks"] == ["fgsm", "pgd"]  # the smoke tier's gradient attacks ran (on the surrogate)
    node = adv["linf"]["8_255"]
    assert node["robust_accuracy"]["n"] == 8 and 0.0 <= node["robust_accuracy"]["value"] <= 1.0
    html = (out / "scorecard.html").read_text()
    assert f"Transfer attack from {digits_onnx}" in html and "Black-box only" not in html


def test_without_surrogate_the_mode_is_what_the_code_does(int8, tmp_path):
    """No surrogate: the INT8 graph's own gradient path if the bridge converts and checks it, else
    black-box Square (today: onnx2torch has no DequantizeLinear converter)."""
    import torch

    from evalsuite.errors import ModelError
    from evalsuite.models import load_model

    path, _ = int8
    model = load_model(str(path), device="cpu")
    try:
        model.checked_torch_module(torch.rand(2, 3, 32, 32), tolerance=1e-3, device="cpu")
        expected = "white-box"
    except ModelError:
        expected = "black-box"
    rc, out = _adversarial_run(path, tmp_path)
    assert rc in (0, 1)
    res = json.loads((out / "results.json").read_text())
    assert res["metrics"]["adversarial"]["white_box"]["attack_mode"] == expected
    params = res["conditions"]["attack/linf/8_255"]["params"]
    assert "surrogate" not in params
    if expected == "black-box":
        assert params["mode"] == "black-box only" and params["attacks"] == ["square"]
        assert "Black-box only" in (out / "scorecard.html").read_text()


def test_surrogate_must_match_classes_and_geometry(digits_onnx, int8, tmp_path, capsys):
    import shutil

    from evalsuite.calibration.onnx_bake import read_onnx_metadata
    from evalsuite.models.export import write_metadata

    path, _ = int8
    other = tmp_path / "other.onnx"
    shutil.copy(digits_onnx, other)
    import onnx

    meta = read_onnx_metadata(onnx.load(str(other)))
    meta["class_names"] = [f"c{i}" for i in range(10)]
    write_metadata(other, meta)
    rc, out = _adversarial_run(path, tmp_path, "--attack-surrogate", str(other))
    assert rc == 2 and not out.exists()
    assert "class names" in capsys.readouterr().err
    # The flag needs the adversarial suite in the run.
    assert main(["run", str(path), "--data", EVAL, "--suite", "quick", "--attack-surrogate", str(digits_onnx),
                 "--out", str(tmp_path / "q")]) == 2
    assert "adversarial" in capsys.readouterr().err


@pytest.mark.gpu
def test_transfer_attack_on_cuda(digits_onnx, int8, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    path, _ = int8
    # auto: perturbations and the surrogate's module on the GPU; onnxruntime runs where its providers allow
    rc, out = _adversarial_run(path, tmp_path, "--attack-surrogate", str(digits_onnx), "--device", "auto")
    assert rc in (0, 1)
    res = json.loads((out / "results.json").read_text())
    assert res["metrics"]["adversarial"]["white_box"]["attack_mode"] == "transfer"
    assert res["provenance"]["device"].startswith("cuda")


def test_docs_name_every_flag():
    text = (Path(__file__).resolve().parents[1] / "docs" / "quantize.md").read_text()
    for flag in ("--calibration-data", "--calibration-samples", "--activation-type", "--weight-type", "--per-tensor",
                 "--calibrate-method", "--allow-calibration-overlap", "--attack-surrogate"):
        assert flag in text, flag


def test_calibration_feeds_are_what_predict_feeds(digits_onnx):
    """onnxruntime's calibrator sees exactly the tensors ``evalsuite run`` hands the session."""
    from evalsuite.calibration.predict import predict_dataset
    from evalsuite.data import open_dataset, resolve_labels, select
    from evalsuite.models import load_model
    from evalsuite.quantize.core import CalibrationFeeds

    model = load_model(str(digits_onnx), device="cpu")
    ds = select(open_dataset(CAL), sample=20, seed=0)
    labels = resolve_labels(ds, list(model.info.class_names))
    seen = []

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def run(self, names, feed):
            seen.append(np.array(feed[model.input_name]))
            return self.inner.run(names, feed)

    model.session = Spy(model.session)
    predict_dataset(model, ds, labels, batch_size=8)
    feeds = [f[model.input_name] for f in CalibrationFeeds(model, ds, labels, 8, None)]
    assert [len(f) for f in feeds] == [8, 8, 4]
    np.testing.assert_array_equal(np.concatenate(feeds), np.concatenate(seen))
    assert feeds[0].dtype == np.float32 and feeds[0].shape[1:] == (3, 32, 32)


def test_quantize_with_data_compares_int8_against_fp32(digits_onnx, tmp_path, capsys):
    """``--data`` runs the paired INT8-vs-FP32 evaluation and the performance suite for both; the
    paired figures equal what the two models' own predictions give."""
    out, run_dir = tmp_path / "d.int8.onnx", tmp_path / "eval"
    rc = main(["quantize", str(digits_onnx), "--calibration-data", CAL, "--calibration-samples", "100",
               "-o", str(out), "--data", EVAL, "--limit", "120", "--suite", "clean,performance", "--out", str(run_dir)])
    assert rc in (0, 1)
    shown = capsys.readouterr().out
    assert "INT8 - FP32 clean accuracy" in shown and "speed-up of INT8 over FP32" in shown
    results = json.loads((run_dir / "results.json").read_text())
    import hashlib

    assert results["provenance"]["reference"]["sha256"] == hashlib.sha256(digits_onnx.read_bytes()).hexdigest()
    clean = results["metrics"]["compare"]["clean"]
    z32, y = _logits(digits_onnx, EVAL)
    z8, _ = _logits(out, EVAL)
    z32, z8, y = z32[:120], z8[:120], y[:120]
    assert clean["agreement"]["value"] == pytest.approx(float((z32.argmax(1) == z8.argmax(1)).mean()))
    want = float((z8.argmax(1) == y).mean() - (z32.argmax(1) == y).mean())
    assert clean["accuracy_diff"]["value"] == pytest.approx(want)
    perf = results["metrics"]["performance"]
    assert perf["reference"]["model"]["file_mb"]["value"] > 0
    assert perf["speedup"]["throughput"]["value"] > 0
    assert "Candidate against the reference model" in (run_dir / "scorecard.html").read_text()


def test_quantize_checks_evaluation_data_before_calibrating(digits_onnx, tmp_path, capsys):
    out = tmp_path / "d.int8.onnx"
    rc = main(["quantize", str(digits_onnx), "--calibration-data", CAL, "-o", str(out),
               "--data", str(tmp_path / "missing")])
    assert rc == 2 and not out.exists()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_int8_model_counts_the_weights_of_its_fp32_source(digits_onnx, int8):
    """Quantized weights are stored as integers behind DequantizeLinear: they are still weights,
    the scales and zero points are not. Hand check on the demo CNN: FP32 float initializers vs INT8
    integer initializers feeding DequantizeLinear (biases become int32 copies)."""
    import onnx

    from evalsuite.perf.macs import onnx_parameters

    path, _ = int8
    fp32, q = onnx_parameters(digits_onnx), onnx_parameters(path)
    graph = onnx.load(str(path)).graph
    scales = {i for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") for i in n.input[1:]}
    weights = {n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    by_hand = sum(int(np.prod(t.dims)) for t in graph.initializer
                  if t.name not in scales and (t.data_type == onnx.TensorProto.FLOAT or t.name in weights))
    assert q == by_hand
    assert abs(q - fp32) <= 0.01 * fp32, (q, fp32)
