"""``evalsuite calibrate``: the ONNX graph edit, the TorchScript wrapper, verification, exit codes,
and the calibration suite's ``calibration_data`` path, on a small over-confident model.

The model is a linear classifier on 4x4-pooled digits (scikit-learn's logistic regression, ~90%
test accuracy) with its logits multiplied by 5, so it is clearly over-confident and a
temperature well above 1 must come out. It trains in well under a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

SCALE = 5.0


@pytest.fixture(scope="module")
def overconfident(tmp_path_factory):
    """(onnx path, torchscript path) of the over-confident linear digits model."""
    import torch
    import torch.nn.functional as F
    from sklearn.linear_model import LogisticRegression
    from torch import nn

    from evalsuite.data.builtin import digits_arrays
    from evalsuite.models.export import METADATA_KEY, export_onnx, preprocessing_dict

    torch.set_num_threads(1)
    images, labels, _, splits = digits_arrays()
    tr = splits["train"]
    x = torch.from_numpy(images[tr]).permute(0, 3, 1, 2).float().div(255.0)
    feats = F.adaptive_avg_pool2d((x - 0.5) / 0.5, 4).flatten(1).numpy()
    lr = LogisticRegression(max_iter=500).fit(feats, labels[tr])
    net = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 10)).eval()
    with torch.no_grad():
        net[2].weight.copy_(torch.from_numpy(lr.coef_ * SCALE).float())
        net[2].bias.copy_(torch.from_numpy(lr.intercept_ * SCALE).float())
    root = tmp_path_factory.mktemp("calib_models")
    meta = dict(input_size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), class_names=[str(i) for i in range(10)])
    onnx_path = export_onnx(net, root / "digits.onnx", **meta)
    ts_path = root / "digits.pt"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(net), str(ts_path), _extra_files={METADATA_KEY: json.dumps(preprocessing_dict(**meta))})
    return onnx_path, ts_path


@pytest.fixture()
def _main(monkeypatch):
    """``evalsuite.cli.main`` with the calibrate sub-command registered; returns the exit code."""
    import evalsuite.cli as cli

    if "evalsuite.calibration.cli" not in cli.PLUGIN_COMMANDS:
        monkeypatch.setattr(cli, "PLUGIN_COMMANDS", (*cli.PLUGIN_COMMANDS, "evalsuite.calibration.cli"))

    def run(argv: list[str]) -> int:
        try:
            return cli.main(argv)
        except SystemExit as exc:  # argparse rejects a flag value
            return int(exc.code)

    return run


def _test_inputs() -> tuple[np.ndarray, np.ndarray]:
    """builtin:digits:test as the ONNX model's normalised float input, and labels."""
    from evalsuite.data.builtin import digits_arrays

    images, labels, _, splits = digits_arrays()
    te = splits["test"]
    x = images[te].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return (x - 0.5) / 0.5, labels[te]


# ------------------------------------------------------------------------------ graph edit
def _tiny_onnx(dtype: int, two_outputs: bool = False):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    np_dtype = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64, TensorProto.FLOAT16: np.float16}[dtype]
    w = numpy_helper.from_array(np.arange(12, dtype=np_dtype).reshape(4, 3) / 4, name="W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["logits"])]
    outputs = [helper.make_tensor_value_info("logits", dtype, ["N", 3])]
    if two_outputs:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
        outputs.append(helper.make_tensor_value_info("probs", dtype, ["N", 3]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", dtype, ["N", 4])], outputs, [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, np_dtype


@pytest.mark.parametrize("dtype_name", ["FLOAT", "DOUBLE", "FLOAT16"])
def test_scale_output_divides_logits_in_the_output_dtype(dtype_name):
    import onnxruntime as ort
    from onnx import TensorProto

    from evalsuite.calibration.onnx_bake import baked_value, scale_output

    dtype = getattr(TensorProto, dtype_name)
    model, np_dtype = _tiny_onnx(dtype)
    t = baked_value(1.37, dtype)
    scaled = scale_output(model, t)
    assert [o.name for o in scaled.graph.output] == ["logits"]
    assert scaled.graph.node[-1].op_type == "Div"
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np_dtype)
    # The graph as built, not as onnxruntime's optimiser rewrites it: 1.30 turns the double Div by
    # a constant into something 5e-9 (relative) off the exact quotient.
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    a = ort.InferenceSession(model.SerializeToString(), opts).run(None, {"x": x})[0]
    b = ort.InferenceSession(scaled.SerializeToString(), opts).run(None, {"x": x})[0]
    assert b.dtype == a.dtype
    if np_dtype is np.float16:  # onnxruntime's fp16 MatMul may round differently between sessions
        np.testing.assert_allclose(b, a / np_dtype(t), rtol=2 * np.finfo(np.float16).eps)
    else:
        np.testing.assert_array_equal(b, a / np_dtype(t))


def test_scale_output_calibrates_consumers_and_needs_a_name_with_two_outputs():
    import onnxruntime as ort
    from onnx import TensorProto

    from evalsuite.calibration.onnx_bake import scale_output
    from evalsuite.errors import ModelError
    from evalsuite.stats import softmax

    model, _ = _tiny_onnx(TensorProto.FLOAT, two_outputs=True)
    with pytest.raises(ModelError, match="2 outputs"):
        scale_output(model, 2.0)
    with pytest.raises(ModelError, match="no output 'nope'"):
        scale_output(model, 2.0, output="nope")
    with pytest.raises(ModelError, match="positive"):
        scale_output(model, -1.0, output="logits")
    scaled = scale_output(model, 2.0, output="logits")
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    logits, probs = ort.InferenceSession(scaled.SerializeToString()).run(None, {"x": x})
    raw = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(logits, raw / 2, rtol=1e-6)
    np.testing.assert_allclose(probs, softmax(raw / 2), rtol=1e-5)  # the softmax reads calibrated logits


# ------------------------------------------------------------------------------ end to end
def test_calibrate_onnx_end_to_end(overconfident, tmp_path, capsys, _main):
    import onnx
    import onnxruntime as ort

    from evalsuite.calibration.metrics import ece
    from evalsuite.calibration.onnx_bake import read_onnx_metadata
    from evalsuite.calibration.split import stratified_split
    from evalsuite.data import open_dataset
    from evalsuite.stats import softmax

    src, _ = overconfident
    out = tmp_path / "digits.calibrated.onnx"
    summary = tmp_path / "summary.json"
    rc = _main(["calibrate", str(src), "--data", "builtin:digits:test", "-o", str(out), "--device", "cpu",
                "--json", str(summary)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "calibrated:" in text and "[ok] heldout_ece" in text
    meta = read_onnx_metadata(onnx.load(str(out)))
    cal = meta["extra"]["calibration"]
    t = meta["temperature"]
    assert t == cal["temperature_total"] == cal["temperature_fitted"] and cal["temperature_previous"] == 1.0
    assert 1.5 < t < 10  # the logits were inflated by 5
    ds = open_dataset("builtin:digits:test")
    assert cal["data"]["fingerprint"] == ds.fingerprint and cal["data"]["n"] == 360
    split = cal["split"]
    assert split["n_calibration"] + split["n_heldout"] == 360 and split["seed"] == 0 and split["fraction"] == 0.5
    assert meta["mean"] == [0.5, 0.5, 0.5] and meta["input_size"] == [32, 32]
    # independent check with onnxruntime on the same images
    x, y = _test_inputs()
    a = ort.InferenceSession(str(src)).run(None, {"input": x})[0]
    b = ort.InferenceSession(str(out)).run(None, {"input": x})[0]
    np.testing.assert_array_equal(np.argmax(a, 1), np.argmax(b, 1))
    np.testing.assert_allclose(b, a / np.float32(t), rtol=1e-6, atol=1e-6)
    held = stratified_split(ds.ids, y, 0.5, 0).heldout
    assert len(held) == split["n_heldout"]
    assert ece(softmax(b[held]), y[held]) < ece(softmax(a[held]), y[held])
    report = json.loads(summary.read_text())
    assert report["passed"] and report["written"] and {c["name"] for c in report["checks"]} == {
        "metadata", "argmax", "logits", "heldout_ece"}
    assert not [p for p in tmp_path.iterdir() if "calibrating" in p.name]


def test_calibrate_torchscript_wrapper(overconfident, tmp_path, capsys, _main):
    import warnings

    import torch

    from evalsuite.models import load_model
    from evalsuite.models.export import METADATA_KEY

    _, src = overconfident
    out = tmp_path / "digits.calibrated.pt"
    rc = _main(["calibrate", str(src), "--data", "builtin:digits:test", "-o", str(out), "--device", "cpu",
                "--calibration-fraction", "0.4", "--seed", "3"])
    assert rc == 0, capsys.readouterr().out
    extra = {METADATA_KEY: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        wrapped = torch.jit.load(str(out), _extra_files=extra)
        inner = torch.jit.load(str(src))
    meta = json.loads(extra[METADATA_KEY])
    t = meta["temperature"]
    assert float(wrapped.temperature) == pytest.approx(t, rel=1e-7)
    assert meta["extra"]["calibration"]["split"]["seed"] == 3
    assert meta["extra"]["calibration"]["split"]["fraction"] == 0.4
    x = torch.from_numpy(_test_inputs()[0][:50])
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), inner(x) / torch.tensor(t, dtype=torch.float32))
    model = load_model(str(out), device="cpu")
    assert model.info.temperature == pytest.approx(t)


def test_failed_verification_exits_1_and_writes_nothing(overconfident, tmp_path, monkeypatch, capsys, _main):
    import evalsuite.calibration.onnx_bake as bake

    real = bake.bake_onnx

    def wrong_temperature(src, dst, temperature, metadata, output=None):
        return real(src, dst, temperature * 1.5, metadata, output)

    monkeypatch.setattr(bake, "bake_onnx", wrong_temperature)
    src, _ = overconfident
    out = tmp_path / "bad.onnx"
    rc = _main(["calibrate", str(src), "--data", "builtin:digits:test", "-o", str(out), "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "failed verification" in captured.err and "logits:" in captured.err
    assert "[FAILED] logits" in captured.out
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv_tail,message",
    [
        (["-o", "{tmp}/x.pt"], "needs a .onnx file name"),
        (["-o", "{tmp}/exists.onnx"], "exists; pass --force"),
        (["-o", "{tmp}/x.onnx", "--calibration-fraction", "1.5"], "strictly between 0 and 1"),
        (["-o", "{tmp}/x.onnx", "--data", "builtin:nope"], "unknown built-in dataset"),
    ],
)
def test_usage_errors_exit_2(overconfident, tmp_path, capsys, _main, argv_tail, message):
    src, _ = overconfident
    (tmp_path / "exists.onnx").write_bytes(b"x")
    tail = [a.replace("{tmp}", str(tmp_path)) for a in argv_tail]
    data = [] if "--data" in tail else ["--data", "builtin:digits:test"]
    rc = _main(["calibrate", str(src), *data, *tail, "--device", "cpu"])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_unsupported_model_kind_is_a_usage_error(tmp_path, capsys, _main):
    rc = _main(["calibrate", "timm:resnet18", "--data", "builtin:digits:test", "-o", str(tmp_path / "x.onnx")])
    assert rc == 2 and "export it to ONNX first" in capsys.readouterr().err


def test_verify_names_each_failed_check():
    from evalsuite.calibration.calibrate import verify

    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 4)).astype(np.float32) * 4
    y = np.argmax(z + rng.normal(size=z.shape) * 3, axis=1)
    held = np.arange(100, 200)
    ok = verify(z, z / np.float32(2.0), 2.0, y, held)
    assert [c.name for c in ok] == ["argmax", "logits", "heldout_ece"]
    swapped = (z / 2).copy()
    swapped[0] = swapped[0][::-1]
    checks = {c.name: c for c in verify(z, swapped, 2.0, y, held)}
    assert not checks["argmax"].passed and "1 changed" in checks["argmax"].detail
    assert not checks["logits"].passed
    same = {c.name: c for c in verify(z, z.copy(), 1.0, y, held)}
    assert same["argmax"].passed and same["logits"].passed and not same["heldout_ece"].passed


def test_suite_calibration_data_predicts_and_fits_on_other_data(overconfident, tmp_path):
    from evalsuite.calibration.predict import predict_dataset
    from evalsuite.calibration.temperature import fit_temperature
    from evalsuite.data import open_dataset, resolve_labels
    from evalsuite.models import load_model
    from evalsuite.suites.base import Predictions, PredictionSet, RunContext
    from evalsuite.suites.calibration import CalibrationSuite

    src, _ = overconfident
    model = load_model(str(src), device="cpu")
    names = list(model.info.class_names)
    test = open_dataset("builtin:digits:test")
    y = resolve_labels(test, names)
    logits = predict_dataset(model, test, y, batch_size=128)
    x, _ = _test_inputs()
    import onnxruntime as ort

    np.testing.assert_allclose(logits, ort.InferenceSession(str(src)).run(None, {"input": x})[0], rtol=1e-5, atol=1e-5)
    preds = PredictionSet({"clean": Predictions("clean", "clean", {}, np.arange(len(y)), test.ids, y, logits)})
    run = RunContext(model=model, dataset=test, labels=y, out_dir=Path(tmp_path), batch_size=64)
    out = CalibrationSuite({"calibration_data": "builtin:digits:val", "n_boot": 50}).summarize(run, preds)
    leaf = out.metrics["clean"]["temperature"]
    val = open_dataset("builtin:digits:val")
    vy = resolve_labels(val, names)
    expected = fit_temperature(predict_dataset(model, val, vy), vy).temperature
    assert leaf["value"] == pytest.approx(expected, rel=1e-6)
    assert leaf["split"]["source"] == "calibration_data" and leaf["split"]["fingerprint"] == val.fingerprint
    assert leaf["n"] == len(vy)
    after = out.metrics["clean"]["ece_after_temperature"]
    assert after["n"] == len(y)  # every evaluation sample is held out
    assert after["value"] < out.metrics["clean"]["ece_before_temperature"]["value"]


def test_calibrate_takes_the_run_model_flags_and_refuses_probability_outputs(overconfident, tmp_path, capsys, _main):
    """`calibrate` reads the same model flags as `run` (one parser, --outputs included), and a
    model declared to output probabilities is refused: dividing probabilities by T is not
    temperature scaling."""
    onnx_path, _ = overconfident
    out = tmp_path / "calibrated.onnx"
    code = _main(["calibrate", str(onnx_path), "--data", "builtin:digits", "-o", str(out), "--outputs", "probabilities"])
    err = capsys.readouterr().err
    assert code == 2 and "outputs probabilities" in err and not out.exists()
