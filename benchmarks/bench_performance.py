"""Overhead of the performance suite's measurement vs a plain timing loop of the same runtime.

Both sides call the same model object (``model.predict``, onnxruntime underneath, the session
evalsuite serves predictions with) on the same batch the same number of times, interleaved in
rounds so that a machine busy with something else slows both alike. The plain loop is one
``time.perf_counter`` around ``N`` calls; ours is :func:`evalsuite.perf.latency.time_calls`
(a ``perf_counter_ns`` pair around every call) followed by the suite's summary. Reported:

- *reported / plain*: the throughput the suite reports over the plain loop's (does the suite's
  number describe the runtime as a plain loop sees it?);
- *harness / plain*: ours including its own loop and bookkeeping (wall time of ``time_calls``)
  over the plain loop: the measurement's own overhead. Target >= 0.95 for both;
- the plain loop over ``session.run`` on pre-normalised arrays, for reference (the runtime
  without evalsuite's normalisation in ``predict``).

    python benchmarks/bench_performance.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import RESULTS_DIR, write_result  # noqa: E402


def _models(tmp: Path, quick: bool) -> list[tuple[str, Path, int]]:
    import timm

    from evalsuite.demo_model import DIGITS_MEAN, DIGITS_STD, build_digits_cnn
    from evalsuite.models.export import export_onnx

    digits = build_digits_cnn().eval()
    out = [("digits-cnn 32x32", export_onnx(digits.network, tmp / "digits.onnx", input_size=(32, 32), mean=DIGITS_MEAN,
                                            std=DIGITS_STD, class_names=[str(i) for i in range(10)]), 32)]
    size = 112 if quick else 224
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=1000).eval()
    out.append((f"resnet18 {size}x{size}", export_onnx(resnet, tmp / "resnet18.onnx", input_size=(size, size),
                                                      mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                                                      class_names=[str(i) for i in range(1000)]), size))
    return out


def _bench(name: str, path: Path, size: int, batch: int, calls: int, rounds: int) -> dict:
    from evalsuite.models import load_model
    from evalsuite.perf.latency import TimingProtocol, throughput_metric, time_calls
    from evalsuite.tensors import to_tensor

    model = load_model(str(path), device="cpu")
    images = np.random.default_rng(0).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    x = to_tensor(images, "cpu")  # what the runner hands predict
    arr = model.normalise(x)
    sess, inp = model.session, model.input_name
    protocol = TimingProtocol(warmup=0, min_iterations=calls, min_seconds=0.0, max_iterations=calls)

    def plain() -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            model.predict(x)
        return calls * batch / (time.perf_counter() - t0)

    def plain_session() -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            sess.run(None, {inp: arr})
        return calls * batch / (time.perf_counter() - t0)

    def ours() -> tuple[float, float]:
        t0 = time.perf_counter()
        timing = time_calls(model.predict, [x], protocol)
        leaf = throughput_metric(timing, batch)
        wall = time.perf_counter() - t0
        return leaf["value"], calls * batch / wall

    for _ in range(3):  # warm-up of both paths
        model.predict(x)
        sess.run(None, {inp: arr})
    p, s, reported, harness = [], [], [], []
    for _ in range(rounds):
        p.append(plain())
        r, h = ours()
        reported.append(r)
        harness.append(h)
        s.append(plain_session())
    med = statistics.median
    row = {"model": name, "batch": batch, "calls": calls, "rounds": rounds,
           "threads": int(model.session.get_session_options().intra_op_num_threads),
           "plain_img_s": med(p), "reported_img_s": med(reported), "harness_img_s": med(harness),
           "plain_session_img_s": med(s)}
    row["reported_over_plain"] = row["reported_img_s"] / row["plain_img_s"]
    row["harness_over_plain"] = row["harness_img_s"] / row["plain_img_s"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a loaded 2-core machine)")
    args = ap.parse_args()
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, size in _models(Path(tmp), args.quick):
            small = size <= 32
            for batch in (1, 64):
                if small:
                    calls = 2000 if batch == 1 else 100
                else:
                    calls = (20 if args.quick else 40) if batch == 1 else (3 if args.quick else 6)
                rows.append(_bench(name, path, size, batch, calls, rounds=5 if args.quick else 7))
                print(rows[-1], flush=True)
    lines = ["| model | batch | calls x rounds | threads | plain img/s | reported img/s | reported / plain | "
             "harness img/s | harness / plain | plain session.run img/s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {r['calls']} x {r['rounds']} | {r['threads']} | {r['plain_img_s']:.1f} | "
                     f"{r['reported_img_s']:.1f} | {r['reported_over_plain']:.3f} | {r['harness_img_s']:.1f} | "
                     f"{r['harness_over_plain']:.3f} | {r['plain_session_img_s']:.1f} |")
    table = "\n".join(lines)
    note = ("Medians over interleaved rounds. *reported*: the throughput the performance suite reports "
            "(batch / mean per-call time from `time_calls`); *harness*: calls x batch / wall time of `time_calls` "
            "itself; target >= 0.95 for both. `python benchmarks/bench_performance.py" + (" --quick" if args.quick else "") + "`.")
    load = f"Load average (1 min) {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after the run."
    write_result("performance", {"rows": rows, "quick": args.quick, "load_before": load_before,
                                 "load_after": os.getloadavg()}, f"{table}\n\n{note} {load}")
    text = (RESULTS_DIR / "performance.md").read_text()
    (RESULTS_DIR / "performance.txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
