"""Calibration speed at scale: ECE and the temperature fit on N x C predictions, ours vs netcal.

Both sides run in this process on the same synthetic predictions (over-confident logits: labels
drawn from softmax(z), logits handed over as 2.5 * z, so the NLL-optimal temperature is ~2.5):

- ECE (15 equal-width bins) of the float32 probabilities: ``evalsuite.calibration.ece`` vs
  ``netcal.metrics.ECE(15).measure``.
- Temperature fit: ``evalsuite.calibration.fit_temperature`` on the float32 logits (L-BFGS on
  log T, float64 streamed passes, no interval) vs ``netcal.scaling.TemperatureScaling().fit``
  on the probabilities. netcal gets float64 probabilities by default: given float32 it stops at
  its initial weight without fitting (T = 1, see tests/test_calibration_temperature.py), which
  would make its time meaningless; ``--netcal-dtype float32`` measures that anyway.
  Preparing the probabilities (softmax) is not timed for either side.

Memory at the full size (1,000,000 x 1,000): float32 logits 4 GB + float32 probabilities 4 GB +
float64 probabilities 8 GB for netcal, plus netcal's own float32 copies; ~22 GiB peak with netcal.
Use ``--skip-netcal`` on smaller machines.

    python benchmarks/bench_calibration.py                      # 1,000,000 x 1,000 (the claim)
    python benchmarks/bench_calibration.py --n 100000           # development size
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import write_result  # noqa: E402

TRUE_T = 2.5


def make_data(n: int, c: int, seed: int, chunk: int = 50_000) -> tuple[np.ndarray, np.ndarray]:
    """float32 over-confident logits (``TRUE_T * z``) and labels drawn from ``softmax(z)``."""
    rng = np.random.default_rng(seed)
    logits = np.empty((n, c), dtype=np.float32)
    labels = np.empty(n, dtype=np.int64)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        z = rng.standard_normal((m, c), dtype=np.float32) * np.float32(2.0)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        cum = np.cumsum(p, axis=1)
        u = rng.random((m, 1), dtype=np.float32) * cum[:, -1:]
        labels[start : start + m] = np.minimum((u > cum).sum(axis=1), c - 1)
        logits[start : start + m] = z * np.float32(TRUE_T)
    return logits, labels


def softmax_into(logits: np.ndarray, dtype: type, chunk: int = 50_000) -> np.ndarray:
    out = np.empty(logits.shape, dtype=dtype)
    for start in range(0, len(logits), chunk):
        z = logits[start : start + chunk].astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        out[start : start + chunk] = z
    return out


def timed(fn, repeats: int) -> tuple[list[float], list[float], object]:
    """(wall seconds, CPU seconds of this process, last result) per repeat."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return walls, cpus, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="samples (default 1,000,000)")
    ap.add_argument("--classes", type=int, default=1000, help="classes (default 1,000)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of the ECE (default 3)")
    ap.add_argument("--fit-repeats", type=int, default=1, help="timed repeats of each fit (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's default)")
    ap.add_argument("--skip-netcal", action="store_true", help="time evalsuite only")
    ap.add_argument("--netcal-dtype", choices=("float64", "float32"), default="float64",
                    help="probability dtype handed to netcal (default float64; float32 makes it skip fitting)")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from evalsuite.calibration import ece
    from evalsuite.calibration.temperature import fit_temperature, nll_at_temperature

    n, c = args.n, args.classes
    t0 = time.perf_counter()
    logits, labels = make_data(n, c, args.seed)
    probs32 = softmax_into(logits, np.float32)
    print(f"data {n:,} x {c:,}: generated in {time.perf_counter() - t0:.1f} s", flush=True)

    ece_times, ece_cpu, ece_value = timed(lambda: ece(probs32, labels), args.repeats)
    print(f"evalsuite ECE: {min(ece_times):.3f} s wall best of {args.repeats}, {min(ece_cpu):.3f} s CPU "
          f"(value {ece_value:.6f})", flush=True)
    fit_times, fit_cpu, fit = timed(lambda: fit_temperature(logits, labels, ci=False), args.fit_repeats)
    print(f"evalsuite fit: {min(fit_times):.2f} s wall, {min(fit_cpu):.2f} s CPU, T = {fit.temperature:.5f}, "
          f"{fit.evaluations} passes", flush=True)
    payload: dict = {
        "n": n,
        "classes": c,
        "true_temperature_of_generator": TRUE_T,
        "evalsuite": {
            "ece_seconds": ece_times,
            "ece_cpu_seconds": ece_cpu,
            "ece_best_seconds": min(ece_times),
            "ece_value": ece_value,
            "fit_seconds": fit_times,
            "fit_cpu_seconds": fit_cpu,
            "fit_best_seconds": min(fit_times),
            "temperature": fit.temperature,
            "passes": fit.evaluations,
            "nll_before": fit.nll_before,
            "nll_after": fit.nll_after,
        },
    }
    lines = [
        f"Command: `python benchmarks/bench_calibration.py {' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip(),
        "",
        f"Predictions: {n:,} x {c:,} (float32), generator temperature {TRUE_T}.",
        "",
        "| step | evalsuite | netcal 1.4 | netcal / evalsuite |",
        "|---|---|---|---|",
    ]
    if not args.skip_netcal:
        import warnings

        from netcal.metrics import ECE
        from netcal.scaling import TemperatureScaling

        nc_ece_times, nc_ece_cpu, nc_ece = timed(lambda: float(ECE(15).measure(probs32, labels)), args.repeats)
        print(f"netcal ECE: {min(nc_ece_times):.3f} s wall, {min(nc_ece_cpu):.3f} s CPU (value {nc_ece:.6f})", flush=True)
        nc_probs = probs32 if args.netcal_dtype == "float32" else softmax_into(logits, np.float64)
        del probs32
        gc.collect()

        def netcal_fit():
            ts = TemperatureScaling()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ts.fit(nc_probs, labels)
            return ts

        nc_fit_times, nc_fit_cpu, ts = timed(netcal_fit, args.fit_repeats)
        w = float(np.ravel(ts.temperature)[0])
        nc_t = 1.0 / w if w > 0 else float("nan")
        print(f"netcal fit ({args.netcal_dtype}): {min(nc_fit_times):.2f} s wall, {min(nc_fit_cpu):.2f} s CPU, "
              f"1/weight = {nc_t:.5f}", flush=True)
        del nc_probs
        gc.collect()
        nll_nc = nll_at_temperature(logits, labels, nc_t) if np.isfinite(nc_t) else float("nan")
        payload["netcal"] = {
            "probability_dtype": args.netcal_dtype,
            "ece_seconds": nc_ece_times,
            "ece_cpu_seconds": nc_ece_cpu,
            "ece_best_seconds": min(nc_ece_times),
            "ece_value": nc_ece,
            "fit_seconds": nc_fit_times,
            "fit_cpu_seconds": nc_fit_cpu,
            "fit_best_seconds": min(nc_fit_times),
            "weight": w,
            "temperature": nc_t,
            "nll_at_its_temperature": nll_nc,
        }
        r_ece = min(nc_ece_times) / min(ece_times)
        r_fit = min(nc_fit_times) / min(fit_times)
        r_ece_cpu = min(nc_ece_cpu) / min(ece_cpu)
        r_fit_cpu = min(nc_fit_cpu) / min(fit_cpu)
        payload["ratios"] = {"ece_netcal_over_evalsuite": r_ece, "fit_netcal_over_evalsuite": r_fit,
                             "ece_cpu_netcal_over_evalsuite": r_ece_cpu, "fit_cpu_netcal_over_evalsuite": r_fit_cpu,
                             "ece_abs_difference": abs(ece_value - nc_ece)}
        print(f"ratio netcal/evalsuite, wall (CPU): ECE {r_ece:.1f}x ({r_ece_cpu:.1f}x); "
              f"fit {r_fit:.2f}x ({r_fit_cpu:.2f}x)", flush=True)
        lines += [
            f"| ECE (15 bins), best of {args.repeats}, wall (CPU) | {min(ece_times):.3f} s ({min(ece_cpu):.3f} s) | "
            f"{min(nc_ece_times):.3f} s ({min(nc_ece_cpu):.3f} s) | {r_ece:.1f}x ({r_ece_cpu:.1f}x) |",
            f"| temperature fit, wall (CPU) | {min(fit_times):.2f} s ({min(fit_cpu):.2f} s), {fit.evaluations} passes | "
            f"{min(nc_fit_times):.2f} s ({min(nc_fit_cpu):.2f} s), {args.netcal_dtype} probabilities | "
            f"{r_fit:.2f}x ({r_fit_cpu:.2f}x) |",
            "",
            f"ECE values: evalsuite {ece_value:.8f}, netcal {nc_ece:.8f} (|diff| {abs(ece_value - nc_ece):.1e}).",
            f"Temperature: evalsuite {fit.temperature:.5f} (NLL {fit.nll_after:.6f}); netcal 1/weight {nc_t:.5f} "
            f"(NLL {nll_nc:.6f}); uncalibrated NLL {fit.nll_before:.6f}.",
        ]
    else:
        lines += [
            f"| ECE (15 bins), best of {args.repeats}, wall (CPU) | {min(ece_times):.3f} s ({min(ece_cpu):.3f} s) | skipped | |",
            f"| temperature fit, wall (CPU) | {min(fit_times):.2f} s ({min(fit_cpu):.2f} s), {fit.evaluations} passes | skipped | |",
        ]
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    payload["load_average_at_end"] = load
    lines += ["", f"torch threads: {torch.get_num_threads()}; load average at the end: {' '.join(load)} "
              "(wall times on a shared machine are inflated; CPU seconds are this process's own)."]
    name = f"calibration-{n}x{c}"
    path = write_result(name, payload, "\n".join(lines))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
