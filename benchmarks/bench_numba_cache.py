"""First-call cost of the numba kernels in a fresh process: cold disk cache vs warm.

Every ``evalsuite run`` is a new process. Kernels compiled with ``cache=True`` are compiled once
per machine and loaded from numba's disk cache afterwards; kernels built as closures
(``cache=False``) are compiled again in every process. For each kernel-backed operation this
script starts two fresh processes sharing one empty ``NUMBA_CACHE_DIR``: the first pays any
compile, the second shows what every later run pays. Each process times the operation's first
call and its second (steady) call on the same batch; "first-call overhead" is first - steady.

    python benchmarks/bench_numba_cache.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import write_result  # noqa: E402

CORRUPTIONS = ("zoom_blur", "elastic_transform", "pixelate", "fog", "shot_noise", "gaussian_blur", "jpeg_compression")

PROBE = r"""
import json, sys, time
import torch
torch.set_num_threads(2)
what, name = sys.argv[1], sys.argv[2]
g = torch.Generator().manual_seed(0)
x = torch.rand(8, 3, 64, 64, generator=g)
ids = [str(i) for i in range(8)]
if what == "corruption":
    from evalsuite.corruptions import corrupt
    call = lambda: corrupt(x, name, 3, seed=0, ids=ids)
else:
    from evalsuite.devices.base import apply_chain
    from evalsuite.devices.ops import make_op
    op = make_op(name)
    call = lambda: apply_chain([op], x, ids=ids, seed=0, key="device/bench")
t0 = time.perf_counter(); call(); first = time.perf_counter() - t0
t0 = time.perf_counter(); call(); steady = time.perf_counter() - t0
print(json.dumps({"first": first, "steady": steady}))
"""


def _probe(what: str, name: str, cache_dir: str) -> dict[str, float]:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir, "CI": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE, what, name], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    rows = []
    targets = [("corruption", c) for c in CORRUPTIONS] + [("device", "sensor_noise")]
    for what, name in targets:
        with tempfile.TemporaryDirectory() as cache:
            cold = _probe(what, name, cache)
            warm = _probe(what, name, cache)
        row = {
            "operation": f"{what}:{name}",
            "cold_first_s": cold["first"],
            "cold_overhead_s": cold["first"] - cold["steady"],
            "warm_first_s": warm["first"],
            "warm_overhead_s": warm["first"] - warm["steady"],
            "steady_s": warm["steady"],
        }
        rows.append(row)
        print(  # noqa: T201 - benchmark output
            f"{row['operation']:<32} cold first {row['cold_first_s']:6.3f} s (overhead {row['cold_overhead_s']:6.3f})"
            f"  warm first {row['warm_first_s']:6.3f} s (overhead {row['warm_overhead_s']:6.3f})"
            f"  steady {row['steady_s']:6.3f} s"
        )
    total_cold = sum(r["cold_overhead_s"] for r in rows)
    total_warm = sum(r["warm_overhead_s"] for r in rows)
    print(f"total first-call overhead: cold cache {total_cold:.2f} s, warm cache {total_warm:.2f} s")  # noqa: T201
    md = ["| operation | cold first (s) | cold overhead (s) | warm first (s) | warm overhead (s) | steady (s) |",
          "|---|---|---|---|---|---|"]
    md += [f"| {r['operation']} | {r['cold_first_s']:.3f} | {r['cold_overhead_s']:.3f} | {r['warm_first_s']:.3f} | "
           f"{r['warm_overhead_s']:.3f} | {r['steady_s']:.3f} |" for r in rows]
    md.append(f"\nTotal first-call overhead: cold cache {total_cold:.2f} s, warm cache {total_warm:.2f} s.")
    write_result("numba-cache", {"batch": [8, 3, 64, 64], "rows": rows, "total_cold_s": total_cold,
                                 "total_warm_s": total_warm}, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
