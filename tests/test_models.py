"""Model adapters: ONNX (onnxruntime), TorchScript, torch.export, timm; metadata precedence; errors."""

from __future__ import annotations

import json
import shutil
import sys
import types

import numpy as np
import pytest

from evalsuite.errors import ModelError, UsageError
from evalsuite.models import inspect_model, load_model, resolve_device
from evalsuite.models.export import METADATA_KEY, preprocessing_dict, save_onnx_atomic

DIGITS = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def x_batch():
    from evalsuite.data.builtin import digits_arrays

    images, _, _, splits = digits_arrays()
    idx = splits["test"][:10]
    return np.ascontiguousarray(images[idx].transpose(0, 3, 1, 2)).astype(np.float32) / 255.0


def _ort_direct(path, x_normalised):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x_normalised.astype(np.float32)})[0]


def _strip_metadata(src, dst):
    import onnx

    m = onnx.load(str(src))
    del m.metadata_props[:]
    save_onnx_atomic(m, dst)
    return dst


def _tiny_onnx(path, inputs, outputs, nodes):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------


def test_onnx_matches_onnxruntime_direct(digits_onnx, digits_model, x_batch):
    import torch

    model = load_model(str(digits_onnx), device="cpu")
    assert model.info.format == "onnx" and model.info.input_size == (32, 32)
    assert model.info.class_names == tuple(DIGITS) and model.info.metadata_source == "metadata_props"
    assert model.info.extra["providers"] == ["CPUExecutionProvider"] and model.device == "cpu"
    assert len(model.info.sha256) == 64
    ours = model.predict(x_batch)
    assert ours.dtype == np.float32 and ours.shape == (10, 10)
    ref = _ort_direct(digits_onnx, (x_batch - 0.5) / 0.5)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.predict(torch.from_numpy(x_batch)), ref, rtol=0, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(ours, digits_model(torch.from_numpy(x_batch)).numpy(), atol=1e-4)
    assert model.predict(x_batch[:0]).shape == (0, 10)
    with pytest.raises(ModelError, match="expects N x 3 x 32 x 32"):
        model.predict(x_batch[:, :, :16])
    assert model.path == digits_onnx and model.session is not None


def test_onnx_channel_order_bgr(digits_onnx, x_batch):
    model = load_model(str(digits_onnx), device="cpu", overrides={"channel_order": "BGR", "mean": [0.4, 0.5, 0.6]})
    mean = np.array([0.4, 0.5, 0.6], np.float32).reshape(1, 3, 1, 1)
    ref = _ort_direct(digits_onnx, (x_batch[:, ::-1] - mean) / 0.5)
    np.testing.assert_allclose(model.predict(x_batch), ref, atol=1e-6)


def test_metadata_precedence(digits_onnx, tmp_path, x_batch):
    path = tmp_path / "m.onnx"
    shutil.copy(digits_onnx, path)
    letters = list("abcdefghij")
    (tmp_path / "m.json").write_text(json.dumps({"class_names": letters, "mean": [0.4, 0.4, 0.4]}))
    model = load_model(str(path), device="cpu")
    assert model.info.class_names == tuple(letters)
    assert model.info.mean == (0.4, 0.4, 0.4) and model.info.std == (0.5, 0.5, 0.5)
    assert model.info.metadata_source == "sidecar m.json+metadata_props"
    assert model.info.extra["metadata_fields"]["std"] == "metadata_props"
    np.testing.assert_allclose(model.predict(x_batch), _ort_direct(path, (x_batch - 0.4) / 0.5), atol=1e-6)
    # <model>.json wins over <stem>.json
    (tmp_path / "m.onnx.json").write_text(json.dumps({"mean": 0.3}))
    model = load_model(str(path), device="cpu")
    assert model.info.mean == (0.3, 0.3, 0.3) and model.info.class_names == tuple(DIGITS)
    # flags win over both
    model = load_model(str(path), device="cpu", overrides={"mean": "0.2,0.2,0.2", "class_names": "k,l,m,n,o,p,q,r,s,t",
                                                           "input_size": None, "resize": 36})
    assert model.info.mean == (0.2, 0.2, 0.2) and model.info.class_names[0] == "k" and model.info.resize == 36
    assert model.info.metadata_source == "flags+metadata_props"  # the sidecar only had mean, overridden
    (tmp_path / "m.onnx.json").write_text(json.dumps({"stdev": [1, 1, 1]}))
    with pytest.raises(ModelError, match="unknown key\\(s\\) 'stdev'.*did you mean 'std'"):
        load_model(str(path), device="cpu")
    (tmp_path / "m.onnx.json").write_text("{not json")
    with pytest.raises(ModelError, match="invalid JSON"):
        load_model(str(path), device="cpu")
    (tmp_path / "m.onnx.json").unlink()
    with pytest.raises(UsageError, match="unknown key\\(s\\) 'colour'"):
        load_model(str(path), device="cpu", overrides={"colour": "RGB"})
    with pytest.raises(UsageError, match="^--mean \\['a', 'b'\\] is invalid; expected 3 numbers"):
        load_model(str(path), device="cpu", overrides={"mean": "a,b"})
    with pytest.raises(UsageError, match="--interpolation 'cubic'.*bicubic"):
        load_model(str(path), device="cpu", overrides={"interpolation": "cubic"})
    with pytest.raises(ModelError, match="3 class names .* outputs 10 logits"):
        load_model(str(path), device="cpu", overrides={"class_names": ["a", "b", "c"]})
    with pytest.raises(ModelError, match="input_size 28x28 .* fixed at 32x32"):
        load_model(str(path), device="cpu", overrides={"input_size": 28})


def test_missing_metadata_message_and_flags(digits_onnx, tmp_path, x_batch):
    path = _strip_metadata(digits_onnx, tmp_path / "bare.onnx")
    with pytest.raises(ModelError) as e:
        load_model(str(path), device="cpu")
    msg = str(e.value)
    assert "\n" not in msg and "no mean, std" in msg and "bare.onnx.json" in msg and "--input-size/--mean/--std" in msg
    found = inspect_model(str(path), device="cpu")
    assert found["info"] is None and found["problems"] == [msg] and found["inputs"][0]["shape"][1:] == [3, 32, 32]
    model = load_model(str(path), device="cpu", overrides={"mean": 0.5, "std": 0.5})
    assert model.info.input_size == (32, 32)  # from the fixed input shape
    assert model.info.class_names == tuple(DIGITS)
    assert "class_names: default indices" in model.info.metadata_source
    assert model.info.extra["metadata_fields"]["input_size"] == "model input shape"
    np.testing.assert_allclose(model.predict(x_batch), _ort_direct(path, (x_batch - 0.5) / 0.5), atol=1e-6)
    report = inspect_model(str(path), device="cpu", overrides={"mean": 0.5, "std": 0.5})
    assert report["problems"] == [] and report["info"]["num_classes"] == 10
    assert report["providers"] == ["CPUExecutionProvider"]


def test_dynamic_spatial_model_needs_input_size_and_dry_runs_for_classes(tmp_path):
    from onnx import helper

    path = _tiny_onnx(tmp_path / "gap.onnx", [("x", ["N", 3, "H", "W"])], [("y", ["N", "C"])],
                      [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])])
    with pytest.raises(ModelError, match="no input_size, mean, std"):
        load_model(str(path), device="cpu")
    model = load_model(str(path), device="cpu", overrides={"input_size": "6x5", "mean": 0, "std": 1})
    assert model.info.input_size == (6, 5) and model.info.num_classes == 3
    x = np.random.default_rng(0).random((2, 3, 6, 5), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x), x.mean(axis=(2, 3)), atol=1e-6)


def test_bad_onnx_files(tmp_path):
    from onnx import helper

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf at all \x00\x01")
    with pytest.raises(ModelError, match="not an ONNX model") as e:
        load_model(str(junk), device="cpu")
    assert "\n" not in str(e.value)
    two = _tiny_onnx(tmp_path / "two.onnx", [("a", ["N", 3, 4, 4]), ("b", ["N", 3, 4, 4])], [("y", ["N", 3, 4, 4])],
                     [helper.make_node("Add", ["a", "b"], ["y"])])
    with pytest.raises(ModelError, match="has 2 inputs \\(a, b\\)"):
        load_model(str(two), device="cpu")
    rank3 = _tiny_onnx(tmp_path / "r3.onnx", [("x", ["N", 28, 28])], [("y", ["N", 28, 28])],
                       [helper.make_node("Identity", ["x"], ["y"])])
    with pytest.raises(ModelError, match="input 'x' has rank 3"):
        load_model(str(rank3), device="cpu")
    rgba = _tiny_onnx(tmp_path / "g.onnx", [("x", ["N", 4, 8, 8])], [("y", ["N", 4, 8, 8])],
                      [helper.make_node("Identity", ["x"], ["y"])])
    with pytest.raises(ModelError, match="neither dimension 1 \\(NCHW\\) nor dimension 3 \\(NHWC\\) is 1"):
        load_model(str(rgba), device="cpu")
    both = _tiny_onnx(tmp_path / "h.onnx", [("x", ["N", 3, 8, 3])], [("y", ["N", 3, 8, 3])],
                      [helper.make_node("Identity", ["x"], ["y"])])
    with pytest.raises(ModelError, match="reads as NCHW and as NHWC; pass --layout"):
        load_model(str(both), device="cpu")  # grayscale and NHWC inputs: tests/test_model_layouts.py
    with pytest.raises(ModelError, match="^no such file or directory: "):
        load_model(str(tmp_path / "missing.onnx"))
    (tmp_path / "w.pth").write_bytes(b"x")
    with pytest.raises(ModelError, match="a state dict needs timm:<name> --checkpoint"):
        load_model(str(tmp_path / "w.pth"))
    with pytest.raises(UsageError, match="--checkpoint applies to timm"):
        load_model(str(junk), checkpoint="w.pt")


def test_onnx_fixed_batch(digits_model, tmp_path, x_batch):
    import torch

    from evalsuite.models.export import write_metadata

    path = tmp_path / "fixed.onnx"
    with torch.no_grad():
        torch.onnx.export(digits_model.network.eval(), (torch.rand(4, 3, 32, 32),), str(path),
                          input_names=["input"], output_names=["logits"], opset_version=18, dynamo=False)
    write_metadata(path, preprocessing_dict(input_size=(32, 32), mean=[0.5] * 3, std=[0.5] * 3, class_names=DIGITS))
    model = load_model(str(path), device="cpu")
    assert model.fixed_batch == 4 and model.info.extra["fixed_batch"] == 4
    out = model.predict(x_batch)  # 10 images: 4 + 4 + 2 (padded)
    assert out.shape == (10, 10)
    with torch.no_grad():
        ref = digits_model(torch.from_numpy(x_batch)).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-4)
    np.testing.assert_allclose(model.predict(x_batch[:3]), out[:3], atol=1e-6)


def test_onnx_torch_module_delegates_to_bridge(digits_onnx, monkeypatch):
    model = load_model(str(digits_onnx), device="cpu")
    seen = []
    fake = types.ModuleType("evalsuite.models.onnx_bridge")
    fake.bridge_for = lambda m: seen.append(m) or "module"
    monkeypatch.setitem(sys.modules, "evalsuite.models.onnx_bridge", fake)
    assert model.torch_module() == "module" and seen == [model]


# ---------------------------------------------------------------------------------------------
# TorchScript and torch.export
# ---------------------------------------------------------------------------------------------


def test_torchscript(digits_model, tmp_path, x_batch):
    import torch

    net = digits_model.network.eval()
    scripted = torch.jit.trace(net, torch.rand(2, 3, 32, 32))
    meta = preprocessing_dict(input_size=(32, 32), mean=[0.5] * 3, std=[0.5] * 3, class_names=DIGITS)
    with_meta = tmp_path / "m.pt"
    torch.jit.save(scripted, str(with_meta), _extra_files={METADATA_KEY: json.dumps(meta)})
    model = load_model(str(with_meta), device="cpu")
    assert model.info.format == "torchscript" and model.info.metadata_source == "extra_files"
    with torch.no_grad():
        ref = digits_model(torch.from_numpy(x_batch)).numpy()
    np.testing.assert_allclose(model.predict(x_batch), ref, atol=1e-5)
    np.testing.assert_allclose(model.predict(torch.from_numpy(x_batch)), ref, atol=1e-5)
    module = model.torch_module()
    xt = torch.from_numpy(x_batch[:2]).requires_grad_(True)
    module(xt).sum().backward()
    assert xt.grad is not None and float(xt.grad.abs().sum()) > 0

    report = inspect_model(str(with_meta), device="cpu")
    assert report["problems"] == [] and report["format"] == "torchscript"
    assert report["outputs"] == [{"name": "logits", "shape": ["N", 10]}] and report["info"]["input_size"] == [32, 32]

    bare = tmp_path / "bare.pt"
    torch.jit.save(scripted, str(bare))
    with pytest.raises(ModelError, match="no input_size, mean, std .*bare.pt.json"):
        load_model(str(bare), device="cpu")
    (tmp_path / "bare.json").write_text(json.dumps(meta))
    assert load_model(str(bare), device="cpu").info.metadata_source == "sidecar bare.json"

    sd = tmp_path / "sd.pt"
    torch.save(net.state_dict(), sd)
    with pytest.raises(ModelError, match="not a TorchScript archive.*timm:<name> --checkpoint"):
        load_model(str(sd), device="cpu")


def test_torch_export_pt2_static_batch(digits_model, tmp_path, x_batch):
    import torch

    net = digits_model.network.eval()
    program = torch.export.export(net, (torch.rand(4, 3, 32, 32),))
    path = tmp_path / "m.pt2"
    meta = {"mean": [0.5] * 3, "std": [0.5] * 3}
    torch.export.save(program, str(path), extra_files={METADATA_KEY: json.dumps(meta)})
    model = load_model(str(path), device="cpu")
    assert model.info.format == "torch.export" and model.fixed_batch == 4
    assert model.info.input_size == (32, 32) and model.info.class_names == tuple(DIGITS)
    assert model.info.extra["metadata_fields"]["input_size"] == "model input shape"
    with torch.no_grad():
        ref = digits_model(torch.from_numpy(x_batch)).numpy()
    np.testing.assert_allclose(model.predict(x_batch), ref, atol=1e-5)
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"nope")
    with pytest.raises(ModelError, match="not a torch.export program"):
        load_model(str(junk), device="cpu")


# ---------------------------------------------------------------------------------------------
# timm
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def timm_net():
    import timm
    import torch

    torch.manual_seed(0)
    return timm.create_model("test_resnet", pretrained=False, num_classes=10).eval()


def test_timm_checkpoints(timm_net, tmp_path, x_batch):
    import torch
    from safetensors.torch import save_file

    st = tmp_path / "w.safetensors"
    save_file(timm_net.state_dict(), str(st))
    pt = tmp_path / "w.pt"
    torch.save({"module." + k: v for k, v in timm_net.state_dict().items()}, pt)  # DataParallel prefix
    with torch.no_grad():
        ref = timm_net((torch.from_numpy(x_batch) - 0.5) / 0.5).numpy()
    for ckpt in (st, pt):
        model = load_model("timm:test_resnet", device="cpu", checkpoint=str(ckpt), overrides={"input_size": 32})
        assert model.info.num_classes == 10  # from the checkpoint's classifier
        assert model.info.mean == (0.5, 0.5, 0.5) and model.info.interpolation == "bilinear"
        assert model.info.resize == 33  # floor(32 / crop_pct 0.95)
        assert model.info.extra["metadata_fields"]["mean"] == "timm pretrained_cfg"
        assert model.info.sha256 != "" and model.info.format == "timm"
        np.testing.assert_allclose(model.predict(x_batch), ref, atol=1e-5)
    (tmp_path / "w.json").write_text(json.dumps({"class_names": list("abcdefghij"), "std": [0.25] * 3}))
    model = load_model("timm:test_resnet", device="cpu", checkpoint=str(st), overrides={"input_size": 32})
    assert model.info.class_names[0] == "a" and model.info.std == (0.25, 0.25, 0.25)


def test_timm_refuses_bad_checkpoints(timm_net, tmp_path):
    import torch

    whole = tmp_path / "whole.pt"
    torch.save(timm_net, whole)
    with pytest.raises(ModelError, match="not a plain state dict: torch.load\\(weights_only=True\\) refused") as e:
        load_model("timm:test_resnet", device="cpu", checkpoint=str(whole))
    assert "\n" not in str(e.value)
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": timm_net.state_dict(), "epoch": 3}, wrapped)
    with pytest.raises(ModelError, match="not a plain state dict: entry 'state_dict' is not a tensor .*save checkpoint\\['state_dict'\\] itself"):
        load_model("timm:test_resnet", device="cpu", checkpoint=str(wrapped))
    partial = tmp_path / "partial.pt"
    sd = dict(timm_net.state_dict())
    del sd["fc.bias"]
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, partial)
    with pytest.raises(ModelError, match="missing keys: fc.bias; unexpected keys: extra.weight"):
        load_model("timm:test_resnet", device="cpu", checkpoint=str(partial))
    with pytest.raises(ModelError, match="needs --checkpoint"):
        load_model("timm:test_resnet", device="cpu")
    with pytest.raises(ModelError, match="unknown timm model 'test_resnt'.*did you mean 'test_resnet'"):
        load_model("timm:test_resnt", device="cpu", checkpoint=str(partial))


# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------


def test_resolve_device():
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="unknown --device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            resolve_device("cuda")
        with pytest.raises(UsageError, match="CUDA is not available"):
            resolve_device("cuda:1")
    else:
        n = torch.cuda.device_count()
        assert resolve_device("cuda:0") == "cuda:0"
        with pytest.raises(UsageError, match="CUDA device"):
            resolve_device(f"cuda:{n}")


def test_auto_device_with_gpu_but_no_cuda_provider_runs_onnx_on_cpu(digits_onnx, monkeypatch, caplog, x_batch):
    """Seen on an H100 with the CPU-only onnxruntime: ``auto`` must fall back, not fail."""
    import onnxruntime as ort
    import torch

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("EVALSUITE_ONNX_CUDA_BRIDGE", "0")  # the CUDA bridge (tests/test_cuda_bridge.py) off
    with caplog.at_level("INFO"):
        model = load_model(str(digits_onnx), device="auto")
    assert model.device == "cpu" and model.cuda_bridge is None
    assert "no CUDA execution provider" in caplog.text
    assert model.predict(x_batch).shape[0] == x_batch.shape[0]
    with pytest.raises(ModelError, match="no CUDA execution provider"):
        load_model(str(digits_onnx), device="cuda")


def test_provenance_says_where_the_model_ran():
    from evalsuite.api import _model_device_note

    onnx_on_cpu = types.SimpleNamespace(device="cpu")
    assert _model_device_note("cuda", onnx_on_cpu) == "; model on cpu"
    assert _model_device_note("cpu", onnx_on_cpu) == ""
    assert _model_device_note("cuda:0", types.SimpleNamespace(device="cuda:0")) == ""
