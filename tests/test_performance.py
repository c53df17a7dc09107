"""The performance suite: its timing protocol, quantile intervals, MAC counts, threads and a real run.

No test compares a duration with a fixed threshold. The protocol is checked on a fake clock
(exact samples) and on a model that sleeps a known time per call, whose measured latency minus
that of the same model without the sleep must recover the sleep within 15% of itself.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from evalsuite.errors import UsageError
from evalsuite.models.base import Model, ModelInfo
from evalsuite.perf.latency import TimingProtocol, latency_metrics, throughput_metric, time_calls
from evalsuite.stats import bootstrap_mean_ci
from evalsuite.stats.quantiles import quantile_ci, quantile_order_indices

SLEEP_S = 0.020


# ------------------------------------------------------------------------------ quantile intervals
def test_quantile_ci_of_the_median_of_ten_is_the_second_and_ninth_order_statistic():
    # Hand-computed: B ~ Binomial(10, 1/2); P(B <= 1) = 11/1024 <= 0.025 < P(B <= 2) = 56/1024, so the
    # interval is [x_(2), x_(9)] and covers the median with probability 1 - 2 * 11/1024 = 97.85%.
    x = np.array([7.0, 3.0, 9.0, 1.0, 5.0, 2.0, 8.0, 10.0, 4.0, 6.0])
    assert quantile_order_indices(10, 0.5) == (1, 8)
    assert quantile_ci(x, 0.5) == (2.0, 9.0)


@pytest.mark.parametrize("n", [10, 37, 100, 400, 2000])
@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_quantile_ci_matches_scipy_quantile_test(n, q):
    from scipy import stats

    x = np.random.default_rng(n).lognormal(size=n)
    ref = stats.quantile_test(x, q=0.0, p=q).confidence_interval(0.95)
    got = quantile_ci(x, q)
    for a, b in zip(got, (ref.low, ref.high), strict=True):
        assert (math.isnan(a) and math.isnan(b)) or a == b


def test_quantile_ci_end_that_needs_more_samples_is_absent_not_invented():
    x = np.arange(100.0)
    lo, hi = quantile_ci(x, 0.99)  # the upper end of a p99 needs 0.99**n <= 0.025: n >= 368
    assert math.isnan(hi) and not math.isnan(lo)
    assert not any(math.isnan(v) for v in quantile_ci(np.arange(368.0), 0.99))
    assert math.isnan(quantile_ci(np.arange(367.0), 0.99)[1])


# ------------------------------------------------------------------------------ timing protocol
class FakeClock:
    """perf_counter_ns stand-in: every call of the timed function advances it by the next step."""

    def __init__(self, steps_ns: list[int]) -> None:
        self.now = 0
        self.steps = list(steps_ns)
        self.calls = 0

    def __call__(self) -> int:
        return self.now

    def work(self, _x: object) -> None:
        self.calls += 1
        self.now += self.steps.pop(0) if self.steps else 1_000_000


def test_time_calls_discards_warmup_and_records_each_call_exactly():
    clock = FakeClock([5_000_000] * 3 + [1_000_000, 2_000_000, 3_000_000, 4_000_000])
    timing = time_calls(clock.work, ["a", "b"], TimingProtocol(warmup=3, min_iterations=4, min_seconds=0.0),
                        clock=clock)
    assert clock.calls == 7  # 3 warm-up calls (not recorded) + 4 timed
    assert timing.samples_ms.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert not timing.capped


def test_time_calls_runs_until_both_minimums_then_stops_at_the_wall_cap():
    clock = FakeClock([])  # every call takes 1 ms
    t = time_calls(clock.work, [0], TimingProtocol(warmup=0, min_iterations=5, min_seconds=0.02), clock=clock)
    assert t.n == 20 and not t.capped  # 5 calls are not 20 ms: the time minimum decides
    t = time_calls(clock.work, [0], TimingProtocol(warmup=0, min_iterations=1000, min_seconds=0.0, max_seconds=0.05),
                   clock=clock)
    assert t.n == 50 and t.capped  # max_seconds stops a slow model below min_iterations


def test_latency_and_throughput_leaves_hand_computed():
    from evalsuite.perf.latency import Timing

    s = np.array([10.0, 20.0, 30.0, 40.0])
    timing = Timing(s, warmup=0, wall_seconds=0.1, capped=False)
    lat = latency_metrics(timing, seed=3)
    assert lat["p50_ms"]["value"] == 25.0 and lat["p50_ms"]["direction"] == "lower" and lat["p50_ms"]["n"] == 4
    assert lat["mean_ms"]["ci"] == list(bootstrap_mean_ci(s, seed=3))
    thr = throughput_metric(timing, 8, seed=3)
    lo, hi = bootstrap_mean_ci(s, seed=3)
    assert thr["value"] == pytest.approx(8 * 1000 / 25.0)  # 320 images/s
    assert thr["ci"] == pytest.approx([8000 / hi, 8000 / lo]) and thr["direction"] == "higher"


class SleepModel(Model):
    """A model whose predict sleeps a known time per call (plus computing constant logits)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.device = "cpu"
        self.calls = 0
        self.info = ModelInfo(input_size=(8, 8), mean=(0.0,) * 3, std=(1.0,) * 3, class_names=("a", "b"),
                              format="sleep", source="sleep", sha256="0" * 64)

    def predict(self, x):
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return np.zeros((len(x), 2), dtype=np.float32)


def _p50(model: SleepModel, protocol: TimingProtocol) -> float:
    x = np.zeros((1, 3, 8, 8), dtype=np.float32)
    return float(np.median(time_calls(model.predict, [x], protocol).samples_ms))


def test_injected_sleep_is_recovered_by_the_protocol():
    protocol = TimingProtocol(warmup=2, min_iterations=25, min_seconds=0.0)
    overhead = _p50(SleepModel(0.0), protocol)
    slept = _p50(SleepModel(SLEEP_S), protocol)
    # time.sleep may overshoot by a scheduler tick; the p50 of 25 calls minus the no-sleep p50
    # must still be the injected 20 ms within 15% of it (a check of the protocol, not a speed).
    assert abs((slept - overhead) - SLEEP_S * 1e3) <= 0.15 * SLEEP_S * 1e3


def _fake_run(model: Model, tmp_path: Path, n: int = 6, batch_size: int = 4):
    from evalsuite.predictions import Predictions, PredictionSet
    from evalsuite.suites.base import RunContext

    images = np.random.default_rng(0).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    ctx = RunContext(model=model, dataset=None, labels=np.zeros(n, dtype=np.int64), out_dir=tmp_path,
                     batch_size=batch_size, image_source=lambda idx: images[idx])
    p = Predictions(key="clean", suite="clean", params={}, index=np.arange(n), ids=np.arange(n).astype(str),
                    labels=np.zeros(n, dtype=np.int64), logits=np.zeros((n, 2), dtype=np.float32))
    return ctx, PredictionSet({"clean": p})


def test_suite_on_a_sleeping_model_recovers_latency_and_throughput(tmp_path):
    from evalsuite.suites.performance import PerformanceSuite

    suite = PerformanceSuite({"warmup": 1, "iterations": 15, "throughput_iterations": 15, "min_seconds": 0.0})
    model = SleepModel(SLEEP_S)
    ctx, preds = _fake_run(model, tmp_path, batch_size=4)
    out = suite.summarize(ctx, preds)
    m = out.metrics
    p50 = m["latency"]["batch1"]["p50_ms"]
    assert p50["n"] == 15 and p50["ci"][0] <= p50["value"] <= p50["ci"][1]
    assert abs(p50["value"] - SLEEP_S * 1e3) <= 0.15 * SLEEP_S * 1e3
    thr = m["throughput"]["images_per_s"]
    assert thr["batch_size"] == 4 and abs(thr["value"] - 4 / SLEEP_S) <= 0.15 * 4 / SLEEP_S
    assert model.calls == (1 + 15) * 2  # warm-up and timed calls of both measurements, nothing else
    # A model without a torch module or ONNX graph: no count, and the leaf says why.
    assert m["model"]["macs"]["value"] is None and "differentiable" in m["model"]["macs"]["reason"]
    assert m["memory"]["peak_rss_mb"]["value"] > 0 and "gpu_peak_mb" not in m["memory"]
    samples = json.loads((tmp_path / out.report["samples"]).read_text())
    assert len(samples["latency.batch1"]) == 15 and len(samples["throughput.batch4"]) == 15
    assert out.report["runtime"]["threads"] >= 1 and out.report["runtime"]["device"] == "cpu"


@pytest.mark.parametrize("options, message", [
    ({"iterations": 0}, "iterations must be >= 1"),
    ({"latency_batch_sizes": []}, "latency_batch_sizes"),
    ({"latency_batch_sizes": [1, 1]}, "twice"),
    ({"max_seconds": 1.0, "min_seconds": 2.0}, "max_seconds"),
    ({"iteration": 5}, "did you mean"),
    ({"min_seconds": "soon"}, "min_seconds"),
])
def test_bad_options_are_one_line_usage_errors(options, message):
    from evalsuite.suites.performance import PerformanceSuite

    with pytest.raises(UsageError, match=message):
        PerformanceSuite(options)


# ------------------------------------------------------------------------------ MACs and parameters
def _mixed_net():
    import torch
    from torch import nn

    class Mixed(nn.Module):
        """Strided, grouped and transposed convolutions, a batched MatMul and a Linear."""

        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1, stride=2)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
            self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
            self.lin = nn.Linear(4 * 16, 10)
            self.w = nn.Parameter(torch.randn(16, 16))

        def forward(self, x):
            y = self.up(self.dw(self.a(x)))[:, :, :16, :16]
            y = torch.matmul(y, self.w).mean(dim=3).flatten(1)
            return self.lin(y)

    return Mixed().eval()


def _export(module, path: Path, size: int) -> Path:
    import torch

    from evalsuite.models.export import export_onnx

    n = module(torch.zeros(1, 3, size, size)).shape[1]
    return export_onnx(module, path, input_size=(size, size), mean=(0.0,) * 3, std=(1.0,) * 3,
                       class_names=[str(i) for i in range(n)])


def test_macs_of_one_convolution_hand_computed(tmp_path):
    from torch import nn

    from evalsuite.perf.macs import onnx_macs, torch_macs

    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten()).eval()
    expected = 8 * 32 * 32 * 3 * 3 * 3  # output elements x (Cin x k x k) = 221,184
    assert torch_macs(conv, (1, 3, 32, 32)) == expected
    assert onnx_macs(_export(conv, tmp_path / "conv.onnx", 32), (1, 3, 32, 32)) == (expected, {"Conv": expected})


def test_onnx_macs_and_parameters_equal_torch_for_conv_linear_nets(digits_model, digits_onnx, tmp_path):
    from evalsuite.perf.macs import onnx_macs, onnx_parameters, torch_macs, torch_parameters

    assert onnx_macs(digits_onnx, (1, 3, 32, 32))[0] == torch_macs(digits_model.network, (1, 3, 32, 32)) == 6_341_888
    mixed = _mixed_net()
    total, by_op = onnx_macs(_export(mixed, tmp_path / "mixed.onnx", 32), (1, 3, 32, 32))
    assert total == torch_macs(mixed, (1, 3, 32, 32))
    assert set(by_op) == {"Conv", "ConvTranspose", "MatMul", "Gemm"}
    assert onnx_parameters(tmp_path / "mixed.onnx") == torch_parameters(mixed)  # no BatchNorm: same weights


@pytest.mark.parametrize("name", ["test_resnet", "test_efficientnet", "test_vit"])
def test_onnx_macs_equal_torch_for_small_timm_models(name, tmp_path):
    import timm

    from evalsuite.perf.macs import onnx_macs, torch_macs

    kwargs = {"img_size": 64} if "vit" in name else {}
    net = timm.create_model(name, pretrained=False, **kwargs).eval()
    # test_vit: attention is counted on torch's math kernel (the fused CPU kernel would count zero).
    assert onnx_macs(_export(net, tmp_path / f"{name}.onnx", 64), (1, 3, 64, 64))[0] == torch_macs(net, (1, 3, 64, 64))



def test_torch_model_counts_its_own_module_and_file(digits_model, tmp_path):
    import torch

    from evalsuite.models.torch_models import TorchModel
    from evalsuite.perf.macs import torch_parameters
    from evalsuite.suites.performance import model_metrics

    info = ModelInfo(input_size=(32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, class_names=tuple("0123456789"),
                     format="torchscript", source=str(tmp_path / "missing.pt"), sha256="0" * 64)
    model = TorchModel(digits_model, info, "cpu")
    leaves, counted = model_metrics(model, True)
    assert leaves["macs"]["value"] == 6_341_888 and "FlopCounterMode" in counted["method"]
    assert leaves["parameters"]["value"] == torch_parameters(digits_model.network)  # mean/std are buffers
    assert leaves["file_mb"]["value"] is None and leaves["file_mb"]["n"] == 0  # no such file: no size
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.trace(digits_model.network.eval(), torch.zeros(1, 3, 32, 32)), str(path))
    model.info = ModelInfo(**{**model.info.__dict__, "source": str(path)})
    assert model_metrics(model, False)[0]["file_mb"]["bytes"] == path.stat().st_size


# ------------------------------------------------------------------------------ threads
def test_target_threads_builds_a_separate_session_with_the_same_predictions(digits_onnx):
    import torch

    from evalsuite.models import load_model
    from evalsuite.perf.runtime import describe_runtime, measurement_model, onnx_threads, torch_threads

    model = load_model(str(digits_onnx), device="cpu")
    serving = onnx_threads(model.session)
    twin = measurement_model(model, 1)
    assert twin is not model and twin.session is not model.session
    assert onnx_threads(twin.session) == 1 and onnx_threads(model.session) == serving  # serving untouched
    assert describe_runtime(twin, 1)["threads"] == 1 and describe_runtime(twin, 1)["providers"] == ["CPUExecutionProvider"]
    x = np.random.default_rng(0).random((5, 3, 32, 32), dtype=np.float32)
    np.testing.assert_array_equal(twin.predict(x), model.predict(x))
    assert measurement_model(model, None) is model
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_target_threads_is_validated_and_recorded():
    from evalsuite.config import RunConfig

    with pytest.raises(UsageError, match="--target-threads must be >= 1"):
        RunConfig(model="m.onnx", data="d", target_threads=0)
    assert RunConfig(model="m.onnx", data="d", target_threads=2).target_threads == 2


# ------------------------------------------------------------------------------ presets
def test_performance_is_opt_in_for_standard_and_on_in_full():
    from evalsuite.config import load_suite_spec
    from evalsuite.suites import SUITES

    names = SUITES.names()
    assert "performance" not in load_suite_spec("standard", names)
    assert "performance" in load_suite_spec("full", names)
    both = load_suite_spec("standard,performance", names)
    assert "performance" in both and set(load_suite_spec("standard", names)) < set(both)


# ------------------------------------------------------------------------------ a real run
@pytest.fixture(scope="module")
def perf_run(digits_onnx, tmp_path_factory):
    from evalsuite.cli import main

    tmp = tmp_path_factory.mktemp("perf")
    suite = tmp / "suite.yaml"
    suite.write_text("suites:\n  clean: {}\n  performance: {iterations: 30, throughput_iterations: 5, min_seconds: 0.05}\n")
    policy = tmp / "loose.yaml"
    policy.write_text("version: 1\ngates:\n  - metric: performance.latency.batch1.p95_ms\n    max: 1000000000\n"
                      "  - metric: performance.throughput.images_per_s\n    min: 0.000001\n    bound: ci_lower\n")
    out = tmp / "run"
    code = main(["run", str(digits_onnx), "--data", "builtin:digits", "--limit", "60", "--suite", str(suite),
                 "--policy", str(policy), "--target-threads", "1", "--out", str(out)])
    return code, out, suite, tmp


def test_run_writes_declared_metrics_runtime_and_scorecard(perf_run, digits_onnx):
    from evalsuite.api import plan_run
    from evalsuite.config import RunConfig
    from evalsuite.metric_specs import match_specs
    from evalsuite.results import iter_metric_paths

    code, out, suite, _ = perf_run
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    perf = results["metrics"]["performance"]
    assert perf["latency"]["batch1"]["p95_ms"]["n"] >= 30 and perf["latency"]["batch1"]["p95_ms"]["threads"] == 1
    assert perf["model"]["macs"]["value"] == 6_341_888 and perf["model"]["file_mb"]["bytes"] == digits_onnx.stat().st_size
    assert results["provenance"]["target_threads"] == 1
    assert results["report"]["performance"]["runtime"]["providers"] == ["CPUExecutionProvider"]
    # Both directions of the declarations, on this run.
    specs = [s for s in plan_run(RunConfig(model=str(digits_onnx), data="builtin:digits", limit=60, suite=str(suite),
                                           out_dir=str(out.parent / "unused"))).specs
             if s.pattern.startswith("performance.")]
    written = [(p, leaf) for p, leaf in iter_metric_paths(results["metrics"]) if p.startswith("performance.")]
    for path, leaf in written:
        matched = match_specs(path, specs)
        assert matched and (leaf.get("ci") is None or any(s.ci for s in matched)), path
    assert all(any(s.matches(p) for p, _ in written) for s in specs)
    html = (out / "scorecard.html").read_text()
    assert "<h2>Performance</h2>" in html and "CPUExecutionProvider" in html and "Not drawn" not in html


def test_policy_gates_on_latency_pass_and_fail(perf_run):
    from evalsuite.cli import main

    code, out, _, tmp = perf_run
    assert code == 0  # the loose policy of the run passed
    tight = tmp / "tight.yaml"
    tight.write_text("version: 1\ngates:\n  - metric: performance.latency.batch1.p95_ms\n    max: 0.000000001\n")
    assert main(["gate", str(out), "--policy", str(tight), "--out", str(tmp / "regate")]) == 1
    gates = json.loads((tmp / "regate" / "gates.json").read_text())
    assert gates["verdict"] == "FAIL"
    assert any(o["gate"]["metric"] == "performance.latency.batch1.p95_ms" and o["status"] == "FAIL"
               for o in gates["outcomes"])


def test_misspelt_performance_metric_is_refused_before_predictions(digits_onnx, tmp_path, capsys):
    from evalsuite.cli import main

    policy = tmp_path / "typo.yaml"
    policy.write_text("version: 1\ngates:\n  - metric: performance.latency.batch1.p95\n    max: 10\n")
    assert main(["run", str(digits_onnx), "--data", "builtin:digits", "--limit", "20", "--suite", "quick,performance",
                 "--policy", str(policy), "--out", str(tmp_path / "run")]) == 2
    assert "p95_ms" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ GPU
@pytest.mark.gpu
def test_gpu_memory_and_latency_of_a_torch_model_on_cuda(digits_model, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from evalsuite.models.torch_models import TorchModel
    from evalsuite.suites.performance import PerformanceSuite

    info = ModelInfo(input_size=(8, 8), mean=(0.5,) * 3, std=(0.5,) * 3, class_names=tuple("0123456789"),
                     format="torch-test", source="digits", sha256="0" * 64)
    module = __import__("copy").deepcopy(digits_model).to("cuda").eval()
    model = TorchModel(module, info, "cuda")
    ctx, preds = _fake_run(model, tmp_path, batch_size=8)
    ctx.device = "cuda"
    suite = PerformanceSuite({"warmup": 2, "iterations": 20, "throughput_iterations": 5, "min_seconds": 0.0})
    specs = [s.pattern for s in suite.metric_specs(ctx, [])]
    assert "performance.memory.gpu_peak_mb" in specs
    m = suite.summarize(ctx, preds).metrics
    assert m["memory"]["gpu_peak_mb"]["value"] > 0 and "max_memory_allocated" in m["memory"]["gpu_peak_mb"]["method"]
    assert m["model"]["macs"]["value"] > 0 and m["latency"]["batch1"]["p50_ms"]["value"] > 0

