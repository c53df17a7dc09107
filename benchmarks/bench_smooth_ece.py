"""Smooth ECE under the bootstrap: relplot 1.0.3's ``smECE`` per resample vs evalsuite's vectorised replicates.

One calibrated sample of ``n`` (confidence ``Beta(5, 1.5)``, correctness Bernoulli), ``n_boot``
replicates with the bandwidth searched on each, as ``calibration_leaves`` does. relplot is timed on
``--relplot-reps`` explicit resamples and scaled to ``n_boot``; the first of them is checked against
evalsuite's replicate. Writes ``benchmarks/results/smooth-ece-<n>.{json,md}``.

    python benchmarks/bench_smooth_ece.py            # n = 10,000, 1,000 replicates
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import write_result  # noqa: E402
from evalsuite.stats import count_blocks  # noqa: E402
from evalsuite.stats.smooth_ece import smooth_ece_weighted  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--relplot-reps", type=int, default=50)
    args = ap.parse_args(argv)
    import relplot

    rng = np.random.default_rng(0)
    f = rng.beta(5.0, 1.5, args.n)
    y = (rng.random(args.n) < f).astype(np.float64)
    t0 = time.perf_counter()
    ours = np.concatenate([smooth_ece_weighted(f, y, w)[0] for w in count_blocks(args.n, args.n_boot, 1)])
    t_ours = time.perf_counter() - t0
    draws = np.random.default_rng(1)
    t0 = time.perf_counter()
    ref = [relplot.smECE(f[idx], y[idx]) for idx in (draws.integers(0, args.n, args.n) for _ in range(args.relplot_reps))]
    t_ref = (time.perf_counter() - t0) * args.n_boot / args.relplot_reps
    diff = float(np.max(np.abs(np.array(ref) - ours[: args.relplot_reps])))
    md = (f"| n | replicates | evalsuite (s) | relplot, scaled (s) | speed-up | max abs diff |\n|---|---|---|---|---|---|\n"
          f"| {args.n:,} | {args.n_boot} | {t_ours:.2f} | {t_ref:.1f} | {t_ref / t_ours:.0f}x | {diff:.1e} |")
    print(md)
    write_result(f"smooth-ece-{args.n}", {"n": args.n, "n_boot": args.n_boot, "evalsuite_s": t_ours,
                                          "relplot_s_scaled": t_ref, "max_abs_diff": diff}, md)


if __name__ == "__main__":
    main()
