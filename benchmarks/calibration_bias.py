"""Bias of each ECE estimator on a perfectly calibrated model (the truth is 0), for docs/calibration.md.

Each replication draws ``n`` top-label confidences ``f ~ Beta(5, 1.5)`` (mean 0.77, a typical
confident classifier) and correctness ``y ~ Bernoulli(f)``: perfectly calibrated, so every
calibration error is 0 and an estimator's mean over replications is its bias. Estimators: the
15-bin equal-width ECE, the 15-bin equal-mass (adaptive) ECE, the equal-mass sweep ECE (Roelofs
et al. 2022), the debiased L2 ECE (Kumar et al. 2019, 15 equal-mass bins; its unclipped squared
estimate is shown too) and the smooth ECE (Błasiok & Nakkiran 2023). Writes
``benchmarks/results/calibration-bias.{json,md}``.

    python benchmarks/calibration_bias.py                   # n = 200, 1,000, 10,000
    python benchmarks/calibration_bias.py --reps 100        # quicker, noisier
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import write_result  # noqa: E402
from evalsuite.stats.binning import (  # noqa: E402
    debiased_l2_from_sums,
    debiased_squared_ce_from_sums,
    ece_from_sums,
    edge_bins,
    mass_edges,
    width_bins,
)
from evalsuite.stats.smooth_ece import smooth_ece  # noqa: E402
from evalsuite.stats.sweep_ece import sweep_ece  # noqa: E402

ESTIMATORS = ("ece_15", "adaptive_ece_15", "sweep_ece", "debiased_l2_ece", "debiased_squared", "smooth_ece")


def _sums(bins: np.ndarray, f: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[np.ndarray, ...]:
    return tuple(np.bincount(bins, weights=v, minlength=n_bins) for v in (np.ones_like(f), f, y))


def estimates(f: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """Every estimator on one sample of (confidence, correctness)."""
    width = _sums(width_bins(f, n_bins), f, y, n_bins)
    mass = _sums(edge_bins(f, mass_edges(f, n_bins)), f, y, n_bins)
    return {
        "ece_15": float(ece_from_sums(*width)),
        "adaptive_ece_15": float(ece_from_sums(*mass)),
        "sweep_ece": sweep_ece(f, y)[0],
        "debiased_l2_ece": float(debiased_l2_from_sums(*mass)),
        "debiased_squared": float(debiased_squared_ce_from_sums(*mass)),
        "smooth_ece": smooth_ece(f, y)[0],
    }


def simulate(n: int, reps: int, seed: int) -> dict[str, dict[str, float]]:
    """Mean (the bias) and standard error of each estimator over ``reps`` calibrated samples of size ``n``."""
    rng = np.random.default_rng([seed, n])
    rows = []
    for _ in range(reps):
        f = rng.beta(5.0, 1.5, n)
        y = (rng.random(n) < f).astype(np.float64)
        rows.append(estimates(f, y))
    out = {}
    for name in ESTIMATORS:
        v = np.array([r[name] for r in rows])
        out[name] = {"mean": float(v.mean()), "se": float(v.std(ddof=1) / np.sqrt(len(v)))}
    return out


def table(results: dict[int, dict[str, dict[str, float]]], reps: dict[int, int]) -> str:
    """Markdown: one row per n, mean (standard error) of each estimator."""
    head = "| n | replications | " + " | ".join(ESTIMATORS) + " |"
    lines = [head, "|" + "---|" * (len(ESTIMATORS) + 2)]
    for n, res in results.items():
        cells = [f"{res[k]['mean']:.4f} ({res[k]['se']:.4f})" for k in ESTIMATORS]
        lines.append(f"| {n:,} | {reps[n]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200,1000,10000")
    ap.add_argument("--reps", type=int, default=1000, help="replications at n <= 1000 (a fifth of it above)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    reps = {n: args.reps if n <= 1000 else max(args.reps // 5, 10) for n in sizes}
    results = {n: simulate(n, reps[n], args.seed) for n in sizes}
    md = table(results, reps)
    print(md)
    write_result("calibration-bias", {"sizes": sizes, "reps": reps, "seed": args.seed,
                                      "results": {str(n): r for n, r in results.items()}}, md)


if __name__ == "__main__":
    main()
