"""Coverage of the slice audit's simultaneous intervals for extreme summaries, by simulation.

Setting: ``groups`` groups of ``n`` samples each, every sample correct with probability ``p`` (no
true gap), so the truth of every accuracy summary is known: ``difference`` 0, ``ratio`` 1,
``worst_group`` = ``best_group`` = ``p``, ``difference_to_overall`` 0, ``ratio_to_overall`` 1.
Each draw's intervals come from :func:`evalsuite.slices.audit.summary_intervals`, the function
:func:`evalsuite.slices.audit.audit_groups` builds every summary interval with (same small-group
t/z widening), fed with bootstrap replicates of the law the audit's stratified bootstrap gives a
group accuracy (see :func:`draw_intervals`). ``--own-se`` gives the construction before the
pooled scale, each component studentized on its own standard error.

Coverage is a share of ``draws`` independent draws; its Monte-Carlo standard error is
``sqrt(cov (1 - cov) / draws)`` (0.49 points at 95% and 2,000 draws).

    .venv/bin/python benchmarks/slices_coverage.py                  # the grid, 2,000 draws per cell
    .venv/bin/python benchmarks/slices_coverage.py --own-se         # before: own standard errors
    .venv/bin/python benchmarks/slices_coverage.py --draws 500      # quicker
    .venv/bin/python benchmarks/slices_coverage.py --parity --draws 500 --n-boot 500   # equalized odds, parity
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SUMMARIES = ("difference", "ratio", "worst_group", "best_group", "difference_to_overall", "ratio_to_overall")
GRID_GROUPS = (2, 6)
GRID_N = (40, 200)
GRID_P = (0.5, 0.8, 0.9)
LEVEL = 0.95


def rows_with_accuracy(rng: np.random.Generator, p: np.ndarray, n_classes: int = 2):
    """Rows (uniform true class) that are correct with probability ``p`` (per row); a wrong row
    predicts one of the other classes uniformly."""
    from evalsuite.slices.metrics import RowStats

    n = len(p)
    y = rng.integers(0, n_classes, n)
    ok = rng.random(n) < p
    logits = rng.normal(size=(n, n_classes))
    target = np.where(ok, y, (y + 1 + rng.integers(0, n_classes - 1, n)) % n_classes)
    logits[np.arange(n), target] = logits.max(axis=1) + 0.05 + rng.exponential(1.5, n)  # the target wins
    return RowStats.from_logits(y, logits)


def truths(ps: np.ndarray) -> dict[str, float]:
    """True value of every accuracy summary for group accuracies ``ps`` (equal group sizes)."""
    overall = float(np.mean(ps))
    hi, lo = float(np.max(ps)), float(np.min(ps))
    return {
        "difference": hi - lo,
        "ratio": lo / hi,
        "worst_group": lo,
        "best_group": hi,
        "difference_to_overall": float(np.max(np.abs(ps - overall))),
        "ratio_to_overall": float(np.min(np.minimum(ps / overall, overall / ps))),
    }


def draw_intervals(ps: list[float], n: int, draws: int, n_boot: int, seed: int):
    """Yield, for each of ``draws`` independent draws, the audit's accuracy-summary intervals.

    ``ps`` are the true group accuracies (``n`` samples each). A draw's group accuracy is
    ``Binomial(n, p) / n``; its bootstrap replicates are ``Binomial(n, p_hat) / n`` -- exactly the
    law of a group accuracy under the audit's stratified row bootstrap (resampling ``n`` rows of
    which a share ``p_hat`` is correct), drawn directly because it is ~100x cheaper than the
    replicate engine (``tests/test_slices_coverage.py`` checks both facts this rests on)."""
    from evalsuite.slices.audit import summary_intervals
    from evalsuite.stats import t_factor

    g = len(ps)
    rng = np.random.default_rng(seed)
    widen = t_factor(n, LEVEL)
    eligible = np.ones(g, dtype=bool)
    sizes = np.full(g, n)
    p = np.asarray(ps, dtype=np.float64)
    for _ in range(draws):
        vh = rng.binomial(n, p) / n
        v = rng.binomial(n, vh, size=(n_boot, g)) / n
        # equal group sizes: the overall accuracy is the mean of the group accuracies
        yield summary_intervals(v, v.mean(axis=1), vh, float(vh.mean()), eligible, "higher", LEVEL, widen,
                                sizes=sizes)


def own_se_construction() -> None:
    """Switch the audit back to the construction before the pooled scale (each component
    studentized on its own bootstrap standard error), for the *before* figure."""
    import evalsuite.slices.audit as audit

    audit.pooled_se = lambda se, factor, axis=None: np.asarray(se, dtype=np.float64)


def coverage(ps: list[float], n: int, draws: int, n_boot: int, seed: int) -> dict[str, dict]:
    """Per summary: coverage, Monte-Carlo standard error and the misses below / above the interval."""
    truth = truths(np.asarray(ps, dtype=np.float64))
    below = dict.fromkeys(SUMMARIES, 0)
    above = dict.fromkeys(SUMMARIES, 0)
    for iv in draw_intervals(ps, n, draws, n_boot, seed):
        for k in SUMMARIES:
            lo, hi = iv[k]
            # intervals are clipped to the summary's range in the audit; a truth inside the range is
            # covered by the clipped interval exactly when it is covered by the unclipped one
            below[k] += int(truth[k] < lo - 1e-12)
            above[k] += int(truth[k] > hi + 1e-12)
    out = {}
    for k in SUMMARIES:
        cov = 1.0 - (below[k] + above[k]) / draws
        out[k] = {"coverage": cov, "mc_se": math.sqrt(cov * (1.0 - cov) / draws), "truth_below": below[k] / draws,
                  "truth_above": above[k] / draws}
    return out


def parity_coverage(groups: int, n: int, p: float, n_classes: int, draws: int, n_boot: int, seed: int) -> dict[str, dict]:
    """Coverage of the equalized-odds and demographic-parity intervals (max over classes) with no
    true gap, each draw a full :func:`evalsuite.slices.audit.audit_groups` run (rows correct with
    probability ``p`` whatever their class or group, classes uniform: every rate is equal across
    groups, so both truths are 0 and an interval covers when its lower end is 0)."""
    from evalsuite.slices.audit import audit_groups

    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(groups), n)
    names = [str(k) for k in range(groups)]
    hits = {"equalized_odds_difference": 0, "demographic_parity_difference": 0}
    for d in range(draws):
        rows = rows_with_accuracy(rng, np.full(groups * n, p), n_classes)
        a = audit_groups(rows, codes, names, n_boot=n_boot, seed=seed + 1 + d, min_group_size=1)
        hits["equalized_odds_difference"] += int(a.ci["eod"][0] <= 1e-12)
        hits["demographic_parity_difference"] += int(a.ci["dp"][0] <= 1e-12)
    return {k: {"coverage": v / draws, "mc_se": math.sqrt(v / draws * (1 - v / draws) / draws)} for k, v in hits.items()}


def cell_seed(groups: int, n: int, p: float) -> int:
    """A fixed seed per grid cell, so every cell is reproducible on its own."""
    return 1000 * groups + n + int(round(100 * p))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--parity", action="store_true",
                    help="equalized odds and demographic parity instead (full audits: 6 groups of 40, p = 0.8)")
    ap.add_argument("--own-se", action="store_true",
                    help="the construction before the pooled scale (own standard errors), for the before figure")
    ap.add_argument("--name", default=None, help="results file stem under benchmarks/results/ "
                    "(default slices-coverage, or slices-coverage-own-se with --own-se)")
    args = ap.parse_args(argv)
    if args.own_se:
        own_se_construction()
    if args.parity:
        for n_classes in (2, 3):
            res = parity_coverage(6, 40, 0.8, n_classes, args.draws, args.n_boot, 7 + n_classes)
            print(f"6 groups x 40, p = 0.8, {n_classes} classes, {args.draws} draws: "
                  + ", ".join(f"{k} {100 * v['coverage']:.1f} (s.e. {100 * v['mc_se']:.1f})" for k, v in res.items()))
        return
    name = args.name or ("slices-coverage-own-se" if args.own_se else "slices-coverage")
    from benchmarks.machine import write_result

    cells = []
    t0 = time.perf_counter()
    for groups in GRID_GROUPS:
        for n in GRID_N:
            for p in GRID_P:
                res = coverage([p] * groups, n, args.draws, args.n_boot, cell_seed(groups, n, p))
                cells.append({"groups": groups, "n": n, "p": p, "coverage": res})
                print(f"groups={groups} n={n} p={p}: " + ", ".join(f"{k} {100 * v['coverage']:.1f}" for k, v in res.items()),
                      flush=True)
    lines = ["| groups | n per group | p | " + " | ".join(SUMMARIES) + " |", "|---" * (3 + len(SUMMARIES)) + "|"]
    for c in cells:
        lines.append(f"| {c['groups']} | {c['n']} | {c['p']} | "
                     + " | ".join(f"{100 * c['coverage'][k]['coverage']:.1f}" for k in SUMMARIES) + " |")
    worst = min(c["coverage"][k]["coverage"] for c in cells for k in SUMMARIES)
    mc = math.sqrt(0.95 * 0.05 / args.draws)
    what = "before the fix: own standard errors" if args.own_se else "pooled scale"
    md = (f"Coverage (%) of 95% simultaneous intervals ({what}), no true gap, {args.draws} draws per cell, "
          f"{args.n_boot} bootstrap replicates; Monte-Carlo s.e. {100 * mc:.2f} points at 95%.\n\n"
          + "\n".join(lines) + f"\n\nLowest: {100 * worst:.1f}%.")
    write_result(name, {"draws": args.draws, "n_boot": args.n_boot, "level": LEVEL, "own_se": args.own_se, "cells": cells,
                             "seconds": time.perf_counter() - t0}, md)
    print(md)


if __name__ == "__main__":
    main()
