"""The ONNX gradient bridge: current-exporter graphs, BatchNorm/residual/pool/flatten, refusal and fallback."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import onnx
import pytest
import torch
from test_attacks_support import OrtModel, TorchModel, digits_info, mini_run, one_thread  # noqa: F401 - one_thread is autouse

from evalsuite.attacks.bridge import bridge_for, clear_bridge_cache
from evalsuite.errors import ModelError


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_bridge_cache()
    yield
    clear_bridge_cache()


def _real_batch(n: int = 24) -> torch.Tensor:
    from evalsuite.data.builtin import digits_arrays

    images, _, _, splits = digits_arrays()
    idx = splits["test"][:n]
    return torch.from_numpy(images[idx]).permute(0, 3, 1, 2).float().div(255).contiguous()


def _ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def _assert_bridge_matches(model: OrtModel, x: torch.Tensor) -> torch.nn.Module:
    module = bridge_for(model, x)
    with torch.no_grad():
        ours = module(x).numpy()
    ref = model.predict(x)
    assert np.abs(ours - ref).max() < 1e-4
    assert module.bridge_max_abs_diff == pytest.approx(np.abs(ours - ref).max(), abs=1e-6)
    assert module.bridge_n_checked == len(x)
    xg = x[:4].clone().requires_grad_(True)
    module(xg).logsumexp(1).sum().backward()
    assert torch.isfinite(xg.grad).all() and (xg.grad.flatten(1).abs().amax(1) > 0).all()
    return module


def test_bridge_on_the_current_torch_exporter_opset18(digits_model, tmp_path):
    """dynamo=True, opset 18, unoptimised: BatchNorm, residual Add, MaxPool/AveragePool, Reshape-flatten."""
    from onnx2torch import convert

    path = tmp_path / "dynamo18.onnx"
    x0 = torch.rand(2, 3, 32, 32)
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(digits_model.network, (x0,), str(path), dynamo=True, opset_version=18, optimize=False,
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    proto = onnx.load(str(path))
    assert max(i.version for i in proto.opset_import if i.domain in ("", "ai.onnx")) >= 18
    assert {"BatchNormalization", "Add", "MaxPool", "AveragePool", "Reshape", "Relu", "Gemm"} <= _ops(path)
    with pytest.raises(Exception):  # noqa: B017 - onnx2torch alone cannot take this file
        convert(proto)
    module = _assert_bridge_matches(OrtModel(path), _real_batch())
    assert any("opset" in n for n in module.bridge_notes)


def test_bridge_on_legacy_export_with_batchnorm_flatten_and_identity_initializers(digits_model, tmp_path):
    path = tmp_path / "legacy_bn.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(digits_model.network, (torch.rand(2, 3, 32, 32),), str(path), dynamo=False, opset_version=17,
                          do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE,
                          input_names=["input"], dynamic_axes={"input": {0: "batch"}})
    assert {"BatchNormalization", "Add", "MaxPool", "Flatten"} <= _ops(path)
    # wrap every initializer in an Identity node, as exporters do for shared weights
    proto = onnx.load(str(path))
    wrapped = []
    for init in proto.graph.initializer:
        name = init.name
        init.name = name + "__raw"
        wrapped.append(onnx.helper.make_node("Identity", [init.name], [name]))
    nodes = wrapped + list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    onnx.save(proto, str(path))
    assert "Identity" in _ops(path)
    _assert_bridge_matches(OrtModel(path), _real_batch())


def test_bridge_via_torch_module_is_cached_and_checked_on_random_inputs(digits_onnx):
    model = OrtModel(digits_onnx)
    m1 = model.torch_module()  # the adapter's contract: bridge_for(self), random [0, 1] inputs
    assert m1.bridge_n_checked == 8 and m1.bridge_max_abs_diff < 1e-4
    m2 = bridge_for(model, _real_batch(16))
    assert m2 is m1 and m2.bridge_n_checked == 24


def test_bridge_refused_above_tolerance(digits_onnx):
    # metadata says mean 0.4 but the deployed pipeline normalises with 0.5: the bridge cannot match it
    model = OrtModel(digits_onnx, info=digits_info("onnx", "wrong-meta", mean=(0.4, 0.4, 0.4)))
    with pytest.raises(ModelError, match="refused: its logits differ from onnxruntime's"):
        bridge_for(model, _real_batch(8))


def _unconvertible(src, dst) -> None:
    """digits ONNX + a Shrink(lambd=0) on the logits: an identity onnxruntime runs but onnx2torch cannot convert."""
    proto = onnx.load(str(src))
    out = proto.graph.output[0]
    old = out.name
    node = onnx.helper.make_node("Shrink", [old], [old + "_shrunk"], lambd=0.0, bias=0.0)
    proto.graph.node.append(node)
    out.name = old + "_shrunk"
    onnx.save(proto, str(dst))


def test_black_box_fallback_when_the_bridge_is_refused(digits_onnx, digits_model, tmp_path):
    from evalsuite.gates import WARN, evaluate

    path = tmp_path / "shrink.onnx"
    _unconvertible(digits_onnx, path)
    model = OrtModel(path)
    x = _real_batch(8)
    np.testing.assert_allclose(model.predict(x), TorchModel(digits_model).predict(x), atol=1e-4)
    with pytest.raises(ModelError, match="onnx2torch cannot convert"):
        bridge_for(model, x)

    opts = {"n": 16, "norms": ["linf"], "linf_eps": ["8/255"], "square_queries": 40, "sanity_n": 8,
            "examples": 1}
    suite, conds, preds, out, _ = mini_run(model, opts, tmp_path, batch_size=16)
    p = preds["attack/linf/8_255"]
    assert p.params["mode"] == "black-box only" and "onnx2torch" in p.params["reason"]
    assert p.params["attacks"] == ["square"]
    assert set(p.extras["attack"]) <= {"", "square", "misclassified"} and "square" in set(p.extras["attack"])
    assert out.report["mode"] == "black-box only" and "onnx2torch" in out.report["reason"]
    assert out.metrics["white_box"]["value"] == 0
    assert "bad_gradient_fraction" not in out.metrics["sanity"]
    robust = out.metrics["linf"]["8_255"]["robust_accuracy"]["value"]
    assert robust < out.metrics["clean_accuracy"]["value"]
    outcomes = {o.gate.metric: o.status for o in evaluate({"metrics": {"adversarial": out.metrics},
                                                          "checks": [c.to_record() for c in out.checks]}, [])}
    assert outcomes["adversarial.white_box"] == WARN
    assert outcomes["adversarial.violations"] == "PASS"


def test_white_box_through_the_bridge_with_final_check_by_onnxruntime(digits_onnx, tmp_path, monkeypatch):
    """Attacks run on the bridge; every stored prediction is onnxruntime's on the returned inputs."""
    model = OrtModel(digits_onnx)
    calls = {"n": 0}
    real = model.predict

    def counting(x):
        calls["n"] += 1
        return real(x)

    monkeypatch.setattr(model, "predict", counting)
    opts = {"n": 24, "norms": ["linf"], "linf_eps": ["8/255"], "sanity": False, "examples": 0}
    _, conds, preds, out, _ = mini_run(model, opts, tmp_path, batch_size=24)
    p = preds["attack/linf/8_255"]
    assert p.params["mode"] == "white-box"
    assert out.report["bridge"]["used"] and out.metrics["bridge"]["max_abs_diff"]["value"] < 1e-4
    assert calls["n"] >= 4  # clean + one per attack in the engine, and the runner's final predict
    assert out.metrics["linf"]["8_255"]["robust_accuracy"]["value"] < out.metrics["clean_accuracy"]["value"]
    assert int(p.extras["bridge_disagree"].sum()) == 0


@pytest.mark.slow
def test_bridge_on_a_timm_resnet18_from_the_current_exporter(tmp_path):
    import timm

    net = timm.create_model("resnet18", pretrained=False, num_classes=10).eval()
    path = tmp_path / "resnet18.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(net, (torch.rand(2, 3, 64, 64),), str(path), dynamo=True, opset_version=18,
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    from evalsuite.models.base import ModelInfo

    info = ModelInfo(input_size=(64, 64), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                     class_names=tuple(map(str, range(10))), format="onnx", source=str(path), sha256="r18")
    model = OrtModel(path, info=info, predict_mean=info.mean, predict_std=info.std)
    module = bridge_for(model, torch.rand(4, 3, 64, 64))
    assert module.bridge_max_abs_diff < 1e-4


def test_bridge_through_the_onnx_adapter_with_a_fixed_batch_graph(digits_model, tmp_path):
    """The models package's OnnxModel (zero-pads a fixed batch) and the bridge (same chunking) agree."""
    from evalsuite.demo_model import DIGITS_MEAN, DIGITS_STD
    from evalsuite.models import load_model
    from evalsuite.models.export import preprocessing_dict, write_metadata

    path = tmp_path / "fixed4.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(digits_model.network, (torch.rand(4, 3, 32, 32),), str(path), dynamo=False,
                          opset_version=17, input_names=["input"])
    write_metadata(path, preprocessing_dict(input_size=(32, 32), mean=DIGITS_MEAN, std=DIGITS_STD,
                                            class_names=[str(i) for i in range(10)]))
    model = load_model(str(path), device="cpu")
    assert model.fixed_batch == 4
    x = _real_batch(6)  # one full chunk and one padded
    module = model.torch_module()  # the adapter's own call: bridge_for(self) on random inputs
    assert any("fixed batch size 4" in n for n in module.bridge_notes)
    module = bridge_for(model, x)
    with torch.no_grad():
        np.testing.assert_allclose(module(x).numpy(), model.predict(x), atol=1e-4)
