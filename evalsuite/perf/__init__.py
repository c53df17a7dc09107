"""Performance measurement: the timing protocol, memory peaks, model size and MAC counts.

The ``performance`` suite (:mod:`evalsuite.suites.performance`) measures with these on the
model object that serves the run's predictions (the same runtime, session and device), so a
latency number is the latency of what was evaluated:

- :mod:`~evalsuite.perf.latency`: warm-up then timed calls until a minimum count and a minimum
  time are reached; per-call samples in ms; quantiles with order-statistic CIs, throughput with
  a bootstrap CI;
- :mod:`~evalsuite.perf.memory`: peak resident memory of the process and peak GPU memory;
- :mod:`~evalsuite.perf.macs`: parameters and multiply-accumulates, torch (``FlopCounterMode``)
  and ONNX (shape inference over Conv, ConvTranspose, Gemm and MatMul);
- :mod:`~evalsuite.perf.runtime`: the thread setting (``--target-threads``) and what runs the
  model (threads, execution providers, device).

Heavy imports (torch, onnx, onnxruntime) happen inside the functions that need them.
"""
