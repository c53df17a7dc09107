"""Slice audit speed: evalsuite's vectorised audit vs fairlearn's MetricFrame, side by side.

Setting (the issue's): 10^6 predictions x 10 classes, 5 slice columns of 10 groups each (one of
them numeric, quantile-binned into 10 bins), the full audit including the stratified bootstrap
(1,000 replicates, every interval). Target: under 10 s on CPU.

MetricFrame computes point estimates of the same metrics (accuracy, error rate, macro recall,
ECE, NLL and per-class TPR/FPR/selection rate: 35 metric functions for 10 classes). With all
35 functions it takes minutes per column at 10^6 rows, so it is timed on ``--mf-rows`` rows of
``--mf-columns`` columns and scaled linearly to all rows and columns (marked as an estimate);
MetricFrame with accuracy alone (the issue's "about 5 s") is timed on all rows; its own
bootstrap is timed with ``--mf-boot`` replicates and scaled. The audit's point estimates are
checked against MetricFrame's on the ``--mf-rows`` subsample of the first column.

    python benchmarks/bench_slices.py                 # full run (10^6 rows)
    python benchmarks/bench_slices.py --n 100000      # quick check while developing
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import write_result  # noqa: E402


def make_data(n: int, n_classes: int, n_columns: int, n_groups: int, seed: int = 0):
    """Synthetic predictions whose accuracy depends on class and on the first column's group."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    columns: dict[str, np.ndarray] = {}
    for k in range(n_columns - 1):
        w = rng.dirichlet(np.full(n_groups, 3.0))  # unequal group sizes
        columns[f"col{k}"] = np.array([f"g{j}" for j in range(n_groups)], dtype=object)[rng.choice(n_groups, n, p=w)]
    columns["numeric"] = rng.gamma(2.0, 1.0, n)
    g0 = np.searchsorted(np.array([f"g{j}" for j in range(n_groups)]), columns["col0"])
    logits = rng.normal(size=(n, n_classes)).astype(np.float32)
    logits[np.arange(n), y] += (1.5 + 0.15 * g0 + 0.05 * y).astype(np.float32)
    return y, logits, columns


def run_ours(y, logits, columns, n_boot: int, n_groups: int) -> dict:
    from evalsuite.slices.audit import audit_groups
    from evalsuite.slices.columns import prepare_column
    from evalsuite.slices.metrics import RowStats

    t0, c0 = time.perf_counter(), time.process_time()
    rows = RowStats.from_logits(y, logits)
    audits = {}
    methods = {}
    for k, (name, values) in enumerate(columns.items()):
        col = prepare_column(name, values, numeric_bins=n_groups, max_groups=max(50, n_groups + 1))
        a = audit_groups(rows, col.codes, col.groups, n_boot=n_boot, seed=k)
        audits[name] = (col, a)
        methods[name] = a.method
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "audits": audits, "methods": methods}


def run_metricframe(y, probs, groups: np.ndarray, n_boot: int | None = None, accuracy_only: bool = False) -> float:
    import warnings

    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import accuracy_score

    from evalsuite.slices.reference import metric_frame

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if accuracy_only:
            MetricFrame(metrics={"accuracy": accuracy_score}, y_true=y, y_pred=probs.argmax(1), sensitive_features=groups,
                        **({"n_boot": n_boot, "ci_quantiles": [0.025, 0.975], "random_state": 0} if n_boot else {}))
        else:
            mf = metric_frame(y, probs, groups)
            mf.difference(), mf.ratio(), mf.group_min(), mf.group_max()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--columns", type=int, default=5)
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--mf-columns", type=int, default=1, help="columns MetricFrame is timed on (scaled to all)")
    ap.add_argument("--mf-rows", type=int, default=100_000, help="rows the full-metric MetricFrame is timed on (scaled)")
    ap.add_argument("--mf-boot", type=int, default=2, help="MetricFrame bootstrap replicates timed (scaled to --n-boot)")
    ap.add_argument("--name", default=None, help="result file stem (default slices-<n>)")
    args = ap.parse_args()

    from evalsuite.slices.reference import compare_with_metricframe
    from evalsuite.suites.base import softmax

    y, logits, columns = make_data(args.n, args.classes, args.columns, args.groups)
    ours = run_ours(y, logits, columns, args.n_boot, args.groups)
    point = run_ours(y, logits, columns, 0, args.groups)
    print(f"evalsuite audit, {args.columns} columns, n_boot={args.n_boot}: {ours['wall_s']:.2f} s wall, "
          f"{ours['cpu_s']:.2f} s CPU (bootstrap method: {sorted(set(ours['methods'].values()))})")
    print(f"evalsuite point estimates only: {point['wall_s']:.2f} s wall")

    probs = softmax(logits)
    names = list(columns)[: args.mf_columns]
    sub = np.arange(min(args.mf_rows, args.n))
    scale = args.n / len(sub)
    mf_times = []
    for name in names:
        col, _ = ours["audits"][name]
        groups = np.asarray(col.groups, dtype=object)[col.codes]
        mf_times.append(run_metricframe(y[sub], probs[sub], groups[sub]))
    mf_point = float(np.mean(mf_times)) * args.columns * scale
    col0, _ = ours["audits"][names[0]]
    g0 = np.asarray(col0.groups, dtype=object)[col0.codes]
    mf_acc = run_metricframe(y, probs, g0, accuracy_only=True)
    mf_acc_boot = run_metricframe(y, probs, g0, n_boot=args.mf_boot, accuracy_only=True)
    per_rep = max(mf_acc_boot - mf_acc, 0.0) / args.mf_boot
    mf_boot_est = mf_point * (1 + args.n_boot)  # fairlearn recomputes every metric on each resample
    from evalsuite.slices.audit import audit_groups
    from evalsuite.slices.metrics import RowStats

    a_sub = audit_groups(RowStats.from_logits(y[sub], logits[sub]), col0.codes[sub], col0.groups, n_boot=0)
    check = compare_with_metricframe(a_sub, y[sub], probs[sub], g0[sub])
    scaled = args.mf_columns < args.columns or len(sub) < args.n
    print(f"MetricFrame, same metrics, point estimates: {mf_point:.2f} s for {args.columns} columns "
          f"({f'estimate: measured on {len(sub):,} rows x {args.mf_columns} column(s), scaled' if scaled else 'measured'})")
    print(f"MetricFrame, accuracy only, one column: {mf_acc:.2f} s; its bootstrap: {per_rep:.3f} s per replicate")
    print(f"MetricFrame with bootstrap (estimate: point time x {args.n_boot + 1}): {mf_boot_est:.0f} s")
    print(f"ratio MetricFrame / evalsuite, point estimates: {mf_point / point['wall_s']:.1f}x; "
          f"full audit with bootstrap vs MetricFrame point estimates only: {mf_point / ours['wall_s']:.2f}x; "
          f"vs MetricFrame with bootstrap (estimate): {mf_boot_est / ours['wall_s']:.0f}x")
    print(f"largest difference from MetricFrame over {check['compared']} numbers: {check['max_abs_diff']:.2e}")
    target = 10.0
    print(f"target: full audit under {target:.0f} s CPU -> {'met' if ours['cpu_s'] < target else 'NOT met'} "
          f"(wall time depends on other load on the machine)")

    payload = {
        "setting": {"n": args.n, "classes": args.classes, "columns": args.columns, "groups": args.groups,
                    "n_boot": args.n_boot},
        "command": "python benchmarks/bench_slices.py " + " ".join(sys.argv[1:]),
        "evalsuite": {"audit_wall_s": round(ours["wall_s"], 3), "audit_cpu_s": round(ours["cpu_s"], 3),
                      "point_only_wall_s": round(point["wall_s"], 3), "bootstrap_methods": ours["methods"]},
        "metricframe": {"point_estimates_s": round(mf_point, 3), "point_columns_measured": args.mf_columns,
                        "point_rows_measured": int(len(sub)), "point_is_estimate": bool(scaled),
                        "accuracy_only_one_column_s": round(mf_acc, 3),
                        "accuracy_only_bootstrap_per_replicate_s": round(per_rep, 4),
                        "with_bootstrap_estimate_s": round(mf_boot_est, 1)},
        "ratios": {"point_metricframe_over_evalsuite": round(mf_point / point["wall_s"], 2),
                   "metricframe_point_over_evalsuite_full_audit": round(mf_point / ours["wall_s"], 2),
                   "metricframe_bootstrap_estimate_over_evalsuite": round(mf_boot_est / ours["wall_s"], 1)},
        "parity": {"max_abs_diff": check["max_abs_diff"], "compared": check["compared"], "worst": check["worst"]},
        "target_s": target,
        "target_met_cpu": ours["cpu_s"] < target,
    }
    md = "\n".join([
        f"# Slice audit benchmark ({args.n:,} predictions, {args.classes} classes, {args.columns} columns x {args.groups} groups, "
        f"{args.n_boot} bootstrap replicates)",
        "",
        "| What | Seconds |",
        "|---|---|",
        f"| evalsuite full audit incl. bootstrap (wall / CPU) | {ours['wall_s']:.2f} / {ours['cpu_s']:.2f} |",
        f"| evalsuite point estimates only | {point['wall_s']:.2f} |",
        f"| MetricFrame point estimates, same metrics, {args.columns} columns"
        f"{f' (estimate: {len(sub):,} rows x {args.mf_columns} column(s) measured, scaled)' if scaled else ''} | {mf_point:.2f} |",
        f"| MetricFrame accuracy only, one column | {mf_acc:.2f} |",
        f"| MetricFrame with its bootstrap, {args.n_boot} replicates (estimate: point time x {args.n_boot + 1}) | {mf_boot_est:.0f} |",
        f"| MetricFrame's bootstrap, accuracy only, per replicate (measured, {args.mf_boot} replicates) | {per_rep:.2f} |",
        "",
        f"Ratio MetricFrame / evalsuite on point estimates: {mf_point / point['wall_s']:.1f}x. "
        f"Full evalsuite audit (with bootstrap) is {mf_point / ours['wall_s']:.2f}x the speed of MetricFrame's point estimates alone.",
        f"Parity (on the {len(sub):,}-row subsample of the first column): largest difference from MetricFrame "
        f"{check['max_abs_diff']:.2e} over {check['compared']} numbers.",
        f"Target (< {target:.0f} s CPU for the full audit): {'met' if ours['cpu_s'] < target else 'NOT met'}.",
        "",
        f"Command: `{payload['command']}`",
    ])
    path = write_result(args.name or f"slices-{args.n}", payload, md)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
