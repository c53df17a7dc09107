"""ONNX models on a GPU that onnxruntime cannot use: predictions through the gradient bridge on
torch, re-checked against onnxruntime on every condition (evalsuite/models/onnx_model.py).

Without a GPU the mechanism runs with the bridge on the CPU (``use_cuda_bridge("cpu")``): the
same build, per-condition checks, records and fallback as on CUDA."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evalsuite.models import load_model


def test_auto_on_a_gpu_without_cuda_provider_chooses_the_bridge(digits_onnx, monkeypatch, caplog):
    import onnxruntime as ort
    import torch

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with caplog.at_level("WARNING"):
        model = load_model(str(digits_onnx), device="auto")
    assert model.cuda_bridge is not None and model.cuda_bridge["device"].startswith("cuda")
    assert model.device == model.cuda_bridge["device"] and "gradient bridge" in caplog.text
    assert load_model(str(digits_onnx), device="cpu").cuda_bridge is None  # an explicit CPU run stays on onnxruntime


def test_bridge_predictions_match_onnxruntime_and_every_condition_is_checked(digits_onnx):
    model, ort_model = load_model(str(digits_onnx), device="cpu"), load_model(str(digits_onnx), device="cpu")
    model.use_cuda_bridge("cpu")
    x = np.random.default_rng(0).random((9, 3, 32, 32), dtype=np.float32)
    for key in ("clean", "corruption/fog/3"):
        model.begin_condition(key)
        got = model.predict(x)
        np.testing.assert_allclose(got, ort_model.predict(x), atol=1e-4, rtol=1e-4)
    checks = model.info.extra["cuda_bridge"]["checks"]
    assert set(checks) == {"clean", "corruption/fog/3"}
    assert all(c["passed"] and c["n"] == 4 and c["top1_agreement"] == 1.0 for c in checks.values())
    assert model.cuda_bridge["active"] and model.cuda_bridge["fallback"] is None
    model.predict(x)  # without begin_condition: no further check
    assert len(checks) == 2


def test_a_disagreeing_bridge_hands_the_run_back_to_onnxruntime(digits_onnx, caplog):
    import torch

    model, ort_model = load_model(str(digits_onnx), device="cpu"), load_model(str(digits_onnx), device="cpu")
    model.use_cuda_bridge("cpu")
    x = np.random.default_rng(1).random((6, 3, 32, 32), dtype=np.float32)
    model.begin_condition("clean")
    model.predict(x)

    class Shifted(torch.nn.Module):  # a bridge whose logits are off by one on class 0
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, t):
            out = self.inner(t).clone()
            out[:, 0] += 50.0
            return out

    model._bridge = Shifted(model._bridge)
    model.begin_condition("device/webcam-720p")
    with caplog.at_level("WARNING"):
        got = model.predict(x)
    np.testing.assert_array_equal(got, ort_model.predict(x))  # this batch already comes from onnxruntime
    record = model.info.extra["cuda_bridge"]
    assert record["active"] is False and "device/webcam-720p" in record["fallback"]
    assert record["checks"]["device/webcam-720p"]["passed"] is False and model.device == "cpu"
    assert "disagrees with onnxruntime" in caplog.text


def test_a_run_in_bridge_mode_records_a_check_per_condition(digits_onnx, tmp_path, monkeypatch):
    """The runner announces each condition; results.json carries one passed check per condition."""
    from evalsuite.cli import main
    from evalsuite.models import onnx_model

    monkeypatch.setattr(onnx_model, "cuda_bridge_device", lambda device, session_device: "cpu")
    out = tmp_path / "run"
    assert main(["run", str(digits_onnx), "--suite", "clean,corruption", "--data", "builtin:digits", "--limit", "40",
                 "--out", str(out)]) in (0, 1)
    results = json.loads((out / "results.json").read_text())
    record = results["model"]["extra"]["cuda_bridge"]
    assert record["active"] and record["fallback"] is None
    assert set(record["checks"]) == set(results["conditions"]) and len(record["checks"]) > 1
    assert all(c["passed"] for c in record["checks"].values())


@pytest.mark.gpu
def test_bridge_on_cuda_matches_onnxruntime(digits_onnx):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model, ort_model = load_model(str(digits_onnx), device="cpu"), load_model(str(digits_onnx), device="cpu")
    model.use_cuda_bridge("cuda:0")
    x = torch.rand(32, 3, 32, 32, device="cuda")
    model.begin_condition("clean")
    np.testing.assert_allclose(model.predict(x), ort_model.predict(x.cpu()), atol=1e-4, rtol=1e-4)
    assert model.info.extra["cuda_bridge"]["checks"]["clean"]["passed"]
