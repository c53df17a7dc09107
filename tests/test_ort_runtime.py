"""IO-bound onnxruntime runs (evalsuite/models/ort_runtime.py) and the one-wheel install rule."""

from __future__ import annotations

from importlib import metadata

import numpy as np
import pytest

from evalsuite.models import ort_runtime


def _session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_run_bound_matches_session_run_on_cpu(digits_onnx):
    """Binding a torch tensor gives exactly what ``session.run`` gives on the same array."""
    import torch

    session = _session(digits_onnx)
    inp, out = session.get_inputs()[0].name, session.get_outputs()[0].name
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(5, 3, 32, 32)).astype(np.float32))
    want = session.run([out], {inp: x.numpy()})[0]
    got = ort_runtime.run_bound(session, inp, out, x)
    assert got.shape == want.shape == (5, 10)
    np.testing.assert_array_equal(got, want)
    # a non-contiguous view is bound as its contiguous copy, not as the strided memory
    xt = torch.from_numpy(np.ascontiguousarray(x.numpy().transpose(0, 1, 3, 2))).transpose(2, 3)
    assert not xt.is_contiguous()
    np.testing.assert_array_equal(ort_runtime.run_bound(session, inp, out, xt), want)


def test_run_bound_without_dlpack_binds_the_data_pointer(digits_onnx, monkeypatch):
    """Older onnxruntime builds lack ``OrtValue.from_dlpack``: the pointer path gives the same result."""
    import onnxruntime as ort
    import torch

    session = _session(digits_onnx)
    inp, out = session.get_inputs()[0].name, session.get_outputs()[0].name
    x = torch.rand(3, 3, 32, 32)
    want = session.run([out], {inp: x.numpy()})[0]
    monkeypatch.delattr(ort.OrtValue, "from_dlpack")
    np.testing.assert_array_equal(ort_runtime.run_bound(session, inp, out, x), want)


def test_conflicting_distributions_names_both_wheels(monkeypatch):
    versions = {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"}

    def fake_version(name):
        if name in versions:
            return versions[name]
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(ort_runtime.metadata, "version", fake_version)
    assert ort_runtime.installed_distributions() == ["onnxruntime", "onnxruntime-gpu"]
    message = ort_runtime.conflicting_distributions()
    assert message is not None and "onnxruntime and onnxruntime-gpu" in message and "GPU=1" in message
    del versions["onnxruntime"]
    assert ort_runtime.conflicting_distributions() is None


def test_this_environment_has_exactly_one_onnxruntime_wheel():
    """The Makefile's install step leaves one wheel (the CPU one on CI, onnxruntime-gpu with GPU=1)."""
    assert len(ort_runtime.installed_distributions()) == 1, ort_runtime.installed_distributions()


@pytest.mark.gpu
def test_run_bound_on_cuda_keeps_the_batch_on_the_device(digits_onnx):
    """With onnxruntime-gpu and a GPU: the bound CUDA run equals the CPU run (within fp32 kernels)."""
    import onnxruntime as ort
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA execution provider (make setup GPU=1)")
    gpu = ort.InferenceSession(str(digits_onnx), providers=["CUDAExecutionProvider"])
    cpu = _session(digits_onnx)
    inp, out = gpu.get_inputs()[0].name, gpu.get_outputs()[0].name
    x = torch.rand(16, 3, 32, 32, device="cuda")
    got = ort_runtime.run_bound(gpu, inp, out, x * 2.0 - 1.0)  # written by a torch kernel just before
    want = cpu.run([out], {inp: (x * 2.0 - 1.0).cpu().numpy()})[0]
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-3)


def test_onnx_model_runs_a_bound_tensor_like_a_host_array(digits_onnx):
    """The adapter's bound path (used for GPU batches) gives the host path's logits, padding included."""
    import torch

    from evalsuite.models import load_model
    from evalsuite.models.onnx_model import _pad_batch

    model = load_model(str(digits_onnx), device="cpu")
    assert model.io_binding is False  # CPU session: host arrays, no binding
    x = np.random.default_rng(1).random((4, 3, 32, 32), dtype=np.float32)
    arr = model.normalise(x)
    np.testing.assert_array_equal(model._run(torch.from_numpy(arr)), model._run(arr))
    padded_np, padded_t = _pad_batch(arr[:3], 5), _pad_batch(torch.from_numpy(arr[:3]), 5)
    assert padded_np.shape == tuple(padded_t.shape) == (5, 3, 32, 32)
    np.testing.assert_array_equal(padded_np, padded_t.numpy())
    assert not padded_np[3:].any()


@pytest.mark.gpu
def test_onnx_model_predicts_cuda_batches_in_place(digits_onnx):
    """On a GPU with onnxruntime-gpu, predict binds CUDA batches and matches the CPU model."""
    import onnxruntime as ort
    import torch

    from evalsuite.models import load_model

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA execution provider (make setup GPU=1)")
    gpu, cpu = load_model(str(digits_onnx), device="cuda"), load_model(str(digits_onnx), device="cpu")
    assert gpu.io_binding is True
    x = torch.rand(7, 3, 32, 32, device="cuda")
    np.testing.assert_allclose(gpu.predict(x), cpu.predict(x.cpu()), atol=1e-3, rtol=1e-3)


def test_tensorrt_is_opt_in_with_an_engine_cache(monkeypatch, tmp_path):
    from evalsuite.models.onnx_model import tensorrt_options

    monkeypatch.setenv("EVALSUITE_TRT_CACHE", str(tmp_path))
    monkeypatch.delenv("EVALSUITE_ORT_FP16", raising=False)
    opts = tensorrt_options(1)
    assert opts == {"device_id": 1, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(tmp_path),
                    "trt_fp16_enable": False}
    monkeypatch.setenv("EVALSUITE_ORT_FP16", "1")
    assert tensorrt_options(0)["trt_fp16_enable"] is True


def test_fp16_graph_keeps_float32_io_and_the_predictions(digits_onnx):
    """The float16 graph of ``EVALSUITE_ORT_FP16=1``: float32 in and out, float16 weights, the same
    top-1 and logits within float16 rounding of the float32 graph (run here on the CPU provider)."""
    import onnx
    import onnxruntime as ort

    from evalsuite.models.onnx_model import fp16_graph

    half = fp16_graph(digits_onnx)
    graph = onnx.load_from_string(half).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    s16 = ort.InferenceSession(half, providers=["CPUExecutionProvider"])
    s32 = _session(digits_onnx)
    x = np.random.default_rng(3).normal(size=(16, 3, 32, 32)).astype(np.float32)
    name = s32.get_inputs()[0].name
    a, b = s16.run(None, {name: x})[0], s32.run(None, {name: x})[0]
    assert a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=2e-2 * max(1.0, float(np.abs(b).max())))
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.9


def test_fp16_applies_to_gpu_sessions_only_and_falls_back_to_float32(digits_onnx, monkeypatch, caplog):
    from evalsuite.errors import ModelError
    from evalsuite.models import onnx_model

    monkeypatch.setenv("EVALSUITE_ORT_FP16", "1")
    session, _ = onnx_model.open_session(digits_onnx, "cpu")  # a CPU session is never converted
    assert session.evalsuite_precision == "float32"
    # a session meant for the GPU (provider list stubbed to the CPU one so it opens here)
    monkeypatch.setattr(onnx_model, "_providers_for", lambda device: (["CPUExecutionProvider"], "cuda:0"))
    session, _ = onnx_model.open_session(digits_onnx, "auto")
    assert session.evalsuite_precision == "float16"

    def broken(path):
        raise ModelError(f"{path}: cannot convert the graph to float16 (test)")

    monkeypatch.setattr(onnx_model, "fp16_graph", broken)
    with caplog.at_level("WARNING"):
        session, _ = onnx_model.open_session(digits_onnx, "auto")
    assert session.evalsuite_precision == "float32" and "running it in float32" in caplog.text
