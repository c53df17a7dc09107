"""Power at a 1-point true accuracy drop: the paired comparison against the unpaired one, same n.

Two models whose per-sample correctness is correlated as real model pairs are: the reference is
right on 90% of samples, the candidate on 89% (one point worse) and the two agree on 97% of
samples (the discordant 3% split 2% broken, 1% fixed). Each simulated run draws ``n`` samples
(the four cells of the pair table, multinomial) and asks each check whether it detects that the
candidate is worse:

- paired CI: the upper end of the 95% paired bootstrap CI of candidate minus reference accuracy
  is below 0 (:func:`evalsuite.stats.paired.paired_bootstrap`, what ``compare.<c>.accuracy_diff``
  with ``bound: ci_upper`` / ``max: 0`` gates);
- McNemar: exact McNemar p < 0.05 with more broken than fixed samples
  (:func:`evalsuite.stats.paired.mcnemar_pvalue`);
- unpaired CI: the two accuracies as two independent samples of ``n`` (what a ``max_drop`` against a
  stored baseline effectively compares; :func:`evalsuite.stats.binomial_difference_ci`), the upper
  end of the 95% CI of the difference below 0.

Seeded; writes ``benchmarks/results/paired_power.txt`` (with the machine line) and ``.json``.

    python benchmarks/bench_paired_power.py                 # n = 500, 1000, 2000, 5000; 400 runs each
    python benchmarks/bench_paired_power.py --reps 100      # quicker, noisier
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import RESULTS_DIR  # noqa: E402
from evalsuite.machine import describe_machine  # noqa: E402
from evalsuite.stats import binomial_difference_ci  # noqa: E402
from evalsuite.stats.paired import mcnemar_pvalue, paired_bootstrap  # noqa: E402

REFERENCE_ACCURACY = 0.90
DROP = 0.01
AGREEMENT = 0.97


def cells(p_ref: float = REFERENCE_ACCURACY, drop: float = DROP, agreement: float = AGREEMENT) -> np.ndarray:
    """Probabilities of (both right, broken, fixed, both wrong) for the stated pair of models."""
    discordant = 1.0 - agreement
    broken = (discordant + drop) / 2.0
    fixed = (discordant - drop) / 2.0
    both_right = p_ref - broken
    return np.array([both_right, broken, fixed, 1.0 - both_right - broken - fixed])


def one_run(rng: np.random.Generator, n: int, p: np.ndarray, n_boot: int, seed: int) -> tuple[bool, bool, bool]:
    """(paired CI detects, McNemar detects, unpaired CI detects) on one simulated run of ``n`` samples."""
    both, broken, fixed, _ = rng.multinomial(n, p)
    cand = np.zeros(n)
    ref = np.zeros(n)
    ref[:both + broken] = 1.0  # both right, then broken (reference right, candidate wrong)
    cand[:both] = 1.0
    cand[both + broken : both + broken + fixed] = 1.0  # fixed: candidate right, reference wrong
    paired_hi = paired_bootstrap(cand, ref, n_boot=n_boot, seed=seed).ci("accuracy_diff")[1]
    mcn = mcnemar_pvalue(int(fixed), int(broken)) < 0.05 and broken > fixed
    # unpaired: the reference's accuracy measured on an independent sample of n (a stored baseline)
    ref_other = (rng.random(n) < p[0] + p[1]).astype(np.float64)
    unpaired_hi = binomial_difference_ci(cand, ref_other, n_boot=n_boot, seed=seed)[1]
    return paired_hi < 0, bool(mcn), unpaired_hi < 0


def simulate(ns: list[int], reps: int, n_boot: int, seed: int) -> list[dict[str, float]]:
    p = cells()
    rows = []
    for n in ns:
        rng = np.random.default_rng([seed, n])
        hits = np.array([one_run(rng, n, p, n_boot, seed + r) for r in range(reps)], dtype=float)
        rate = hits.mean(axis=0)
        se = np.sqrt(rate * (1 - rate) / reps)
        rows.append({"n": n, "paired_ci": rate[0], "mcnemar": rate[1], "unpaired_ci": rate[2],
                     "se_paired_ci": se[0], "se_mcnemar": se[1], "se_unpaired_ci": se[2]})
    return rows


def table(rows: list[dict[str, float]], reps: int, n_boot: int, seed: int) -> str:
    p = cells()
    var_unpaired = (REFERENCE_ACCURACY - DROP) * (1 - REFERENCE_ACCURACY + DROP) + REFERENCE_ACCURACY * (1 - REFERENCE_ACCURACY)
    var_paired = (p[1] + p[2]) - (p[1] - p[2]) ** 2
    lines = [
        f"Power to detect a {DROP * 100:.0f}-point accuracy drop (reference {REFERENCE_ACCURACY:.0%}, candidate "
        f"{REFERENCE_ACCURACY - DROP:.0%}, agreement {AGREEMENT:.0%}: {p[1]:.1%} broken, {p[2]:.1%} fixed), "
        f"{reps} simulated runs per n, {n_boot} bootstrap replicates, seed {seed}; detection = the 95% CI of "
        "candidate minus reference lies below 0 (McNemar: p < 0.05 with broken > fixed).",
        "",
        "| n | paired CI | McNemar (exact) | unpaired CI (max_drop vs a stored baseline) |",
        "|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['paired_ci']:.1%} ± {r['se_paired_ci']:.1%} | {r['mcnemar']:.1%} ± "
                     f"{r['se_mcnemar']:.1%} | {r['unpaired_ci']:.1%} ± {r['se_unpaired_ci']:.1%} |")
    lines += ["", f"Variance of the difference per sample: paired {var_paired:.4f}, unpaired {var_unpaired:.4f}: the "
                  f"unpaired check needs about {var_unpaired / var_paired:.1f}x the samples for the same precision."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[500, 1000, 2000, 5000])
    ap.add_argument("--reps", type=int, default=400)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = simulate(args.n, args.reps, args.n_boot, args.seed)
    text = table(rows, args.reps, args.n_boot, args.seed)
    print(text)
    seconds = time.perf_counter() - t0
    print(f"\n{seconds:.1f} s")
    if not args.no_save:
        m = describe_machine()
        gpu = f", {m['gpu']}" if m.get("gpu") else ""
        header = f"Machine: {m['cpu']}, {m['cores']} cores, {m.get('memory_gib')} GiB{gpu}, torch {m.get('torch')}"
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        (RESULTS_DIR / "paired_power.txt").write_text(f"{header}\n\n{text}\n")
        doc = {"benchmark": "paired_power", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": m,
               "args": vars(args), "cells": cells().tolist(), "rows": rows, "seconds": round(seconds, 1)}
        (RESULTS_DIR / "paired_power.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
