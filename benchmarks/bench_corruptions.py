"""Corruption engine vs imagecorruptions: speed, and the parity table of docs/corruptions.md.

Speed (default): both run in this process on the same 224 x 224 photographs. The reference
corrupts uint8 HWC images one at a time (``imagecorruptions.corrupt``, NumPy seeded before each
call, untimed); the engine corrupts float NCHW batches (``evalsuite.corruptions.corrupt``, its
per-sample seeding included). Timings are the minimum over ``--repeats`` interleaved rounds
(robust to other load on the machine). Reported: images/s per corruption (mean over
severities) for both and the ratio, the aggregate over the 15 x 5 ImageNet-C grid (total
time per image over all 75 cells), and the ratio against the PyPI 1.1.2 glass blur (its
pure-Python shuffle loop, reimplemented here because 1.1.2 cannot be installed beside the fork).

    python -m benchmarks.bench_corruptions                      # CPU, 15 corruptions x 5 severities
    python -m benchmarks.bench_corruptions --corruptions all    # the 19
    python -m benchmarks.bench_corruptions --device cuda        # engine images/s on the GPU (batch 256)
    python -m benchmarks.bench_corruptions --parity             # parity table (pixels, distribution, accuracy)
    python -m benchmarks.bench_corruptions --suite              # suite wall time vs max(generation, inference)
    python -m benchmarks.bench_corruptions --quick              # smoke run (2 images, 1 repeat, severity 3)

Results: ``benchmarks/results/corruptions-<mode>.json`` and ``.md`` with the machine described.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import write_result  # noqa: E402


def photographs(size: int, n: int) -> np.ndarray:
    """``n`` real photographs (scikit-image's bundled ones, cycled) at ``size`` x ``size``."""
    from PIL import Image
    from skimage import data

    srcs = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), np.asarray(Image.fromarray(data.camera()).convert("RGB"))]
    out = []
    for i in range(n):
        img = Image.fromarray(srcs[i % len(srcs)]).convert("RGB").resize((size, size), Image.BILINEAR)
        out.append(np.asarray(img)[:, ::-1] if (i // len(srcs)) % 2 else np.asarray(img))
    return np.ascontiguousarray(np.stack(out))


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def glass_blur_112(x: Any, severity: int) -> np.ndarray:
    """imagecorruptions 1.1.2's glass_blur: skimage blur, pure-Python shuffle loop, blur."""
    from skimage.filters import gaussian

    c = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)][severity - 1]
    x = np.uint8(gaussian(np.array(x) / 255.0, sigma=c[0], channel_axis=-1) * 255)
    shape = x.shape
    for _ in range(c[2]):
        for h in range(shape[0] - c[1], c[1], -1):
            for w in range(shape[1] - c[1], c[1], -1):
                dx, dy = np.random.randint(-c[1], c[1], size=(2,))
                h_prime, w_prime = h + dy, w + dx
                x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
    return np.clip(gaussian(x / 255.0, sigma=c[0], channel_axis=-1), 0, 1) * 255


def bench_speed(args: argparse.Namespace) -> dict[str, Any]:
    import imagecorruptions
    import torch

    from evalsuite.corruptions import BENCHMARK, NAMES, corrupt

    if args.threads:
        torch.set_num_threads(args.threads)
    names = list(NAMES) if args.corruptions == "all" else list(BENCHMARK) if args.corruptions == "benchmark" else args.corruptions.split(",")
    sevs = [int(s) for s in args.severities.split(",")]
    imgs = photographs(args.size, args.images)
    device = torch.device(args.device)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(255.0).to(device).contiguous()
    ids = [f"img{i}" for i in range(len(imgs))]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    rows = []
    load_before = _load()
    for name in names:
        ref_t, eng_t = [], []
        for sev in sevs:
            corrupt(x[:2], name, sev, seed=0, ids=ids[:2])  # warm-up: caches, textures, numba
            imagecorruptions.corrupt(imgs[0], corruption_name=name, severity=sev)
            best_ref, best_eng = float("inf"), float("inf")
            for rep in range(args.repeats):
                t_ref = 0.0
                for k in range(min(len(imgs), args.ref_images)):
                    np.random.seed(1000 * rep + k)
                    t0 = time.perf_counter()
                    imagecorruptions.corrupt(imgs[k], corruption_name=name, severity=sev)
                    t_ref += time.perf_counter() - t0
                best_ref = min(best_ref, t_ref / min(len(imgs), args.ref_images))
                sync()
                t0 = time.perf_counter()
                corrupt(x, name, sev, seed=rep, ids=ids)
                sync()
                best_eng = min(best_eng, (time.perf_counter() - t0) / len(imgs))
            ref_t.append(best_ref)
            eng_t.append(best_eng)
        row = {
            "corruption": name,
            "reference_ms": 1000 * float(np.mean(ref_t)),
            "engine_ms": 1000 * float(np.mean(eng_t)),
            "reference_ips": 1.0 / float(np.mean(ref_t)),
            "engine_ips": 1.0 / float(np.mean(eng_t)),
            "ratio": float(np.mean(ref_t) / np.mean(eng_t)),
            "per_severity": {str(s): {"reference_ms": 1000 * a, "engine_ms": 1000 * b} for s, a, b in zip(sevs, ref_t, eng_t, strict=True)},
        }
        rows.append(row)
        print(f"{name:18s} ref {row['reference_ips']:8.1f} img/s  ours {row['engine_ips']:9.1f} img/s  x{row['ratio']:6.1f}", flush=True)
    bench = [r for r in rows if r["corruption"] in BENCHMARK]
    agg = None
    if bench:
        ref_total = sum(r["reference_ms"] for r in bench) * len(sevs)
        eng_total = sum(r["engine_ms"] for r in bench) * len(sevs)
        agg = {"cells": len(bench) * len(sevs), "reference_ms_per_image": ref_total, "engine_ms_per_image": eng_total,
               "ratio": ref_total / eng_total}
        print(f"aggregate over {agg['cells']} cells: reference {ref_total:.1f} ms/image, engine {eng_total:.1f} ms/image, x{agg['ratio']:.1f}")
    glass112 = None
    if "glass_blur" in names and args.glass_112:
        t112 = []
        for sev in sevs:
            np.random.seed(sev)
            t0 = time.perf_counter()
            glass_blur_112(imgs[0], sev)
            t112.append(time.perf_counter() - t0)
        eng = next(r for r in rows if r["corruption"] == "glass_blur")
        glass112 = {"ms": 1000 * float(np.mean(t112)), "ratio": float(np.mean(t112)) * 1000 / eng["engine_ms"]}
        print(f"glass_blur vs PyPI 1.1.2 pure-Python loop: {glass112['ms']:.0f} ms/image, engine x{glass112['ratio']:.0f}")
    return {
        "mode": "speed",
        "device": str(device),
        "size": args.size,
        "images": len(imgs),
        "reference_images": min(len(imgs), args.ref_images),
        "severities": sevs,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "load_average": {"before": load_before, "after": _load()},
        "rows": rows,
        "aggregate_15x5": agg,
        "glass_blur_vs_1_1_2": glass112,
    }


def speed_markdown(res: dict[str, Any]) -> str:
    lines = [
        f"Corruption speed at {res['size']} x {res['size']} on {res['device']} (torch threads {res['torch_threads']}, "
        f"min of {res['repeats']} rounds; load average {res['load_average']['before']} -> {res['load_average']['after']}).",
        "",
        "| corruption | reference img/s | engine img/s | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in res["rows"]:
        lines.append(f"| {r['corruption']} | {r['reference_ips']:.1f} | {r['engine_ips']:.1f} | {r['ratio']:.1f}x |")
    if res["aggregate_15x5"]:
        a = res["aggregate_15x5"]
        lines += ["", f"Aggregate over {a['cells']} cells: reference {a['reference_ms_per_image']:.0f} ms/image, "
                      f"engine {a['engine_ms_per_image']:.1f} ms/image: **{a['ratio']:.1f}x**."]
    if res["glass_blur_vs_1_1_2"]:
        g = res["glass_blur_vs_1_1_2"]
        lines.append(f"glass_blur against PyPI 1.1.2's pure-Python loop ({g['ms']:.0f} ms/image): **{g['ratio']:.0f}x**.")
    return "\n".join(lines)


def bench_parity(args: argparse.Namespace) -> dict[str, Any]:
    """Pixel parity (replayed draws) at 224, distribution parity of the sampler, digits accuracy parity."""
    import torch

    from evalsuite.corruptions import NAMES, corrupt, get_corruption
    from evalsuite.corruptions.parity import (
        benchmark_seed,
        distribution_parity,
        matched_batch,
        matched_parity,
    )
    from evalsuite.corruptions.reference import corrupt_image, load_reference

    torch.set_num_threads(args.threads or torch.get_num_threads())
    names = list(NAMES) if args.corruptions in ("all", "benchmark") else args.corruptions.split(",")
    sevs = [int(s) for s in args.severities.split(",")]
    photos = photographs(args.size, 3)
    small = photographs(96, 3)
    from evalsuite.data.builtin import digits_arrays
    from evalsuite.demo_model import train_digits_cnn

    images, labels, _, splits = digits_arrays()
    model = train_digits_cnn(images[splits["train"]], labels[splits["train"]], epochs=6, seed=0)
    te = splits["test"]
    dimgs, dlabs = images[te], labels[te]

    def acc(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            xb = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float() / 255
            return (model(xb).argmax(1).numpy() == dlabs).astype(np.float64)

    rows = []
    for name in names:
        random = get_corruption(name).random
        for sev in sevs:
            pix = [matched_parity(img, name, sev, seed=77 + 10 * sev + k) for k, img in enumerate(photos)]
            row: dict[str, Any] = {
                "corruption": name,
                "severity": sev,
                "random": random,
                "mad": float(np.mean([p.mad for p in pix])),
                "max_abs": int(max(p.max_abs for p in pix)),
                "exact": float(np.mean([p.frac_exact for p in pix])),
            }
            seeds = [int(i) * 31 + sev for i in range(len(te))]
            ref_acc = acc(np.stack([corrupt_image(im, name, sev, s) for im, s in zip(dimgs, seeds, strict=True)]))
            row["acc_reference"] = float(ref_acc.mean())
            row["acc_matched"] = float(acc(matched_batch(dimgs, name, sev, seeds)).mean())
            if random:
                many = {"frost": 25, "snow": 5, "fog": 5, "spatter": 5}.get(name, 1)  # one draw changes the whole image
                d = distribution_parity(small, name, sev, list(range(args.dist_seeds * many)))
                row["mean_rel"], row["std_rel"] = d["mean_rel"], d["std_rel"]
                r_all, o_all = [], []
                for rep in range(args.acc_seeds):
                    rs = [benchmark_seed(name, int(i) * 131 + 17 * rep + sev) for i in range(len(te))]
                    r_all.append(acc(np.stack([corrupt_image(im, name, sev, s) for im, s in zip(dimgs, rs, strict=True)])))
                    xb = torch.from_numpy(np.ascontiguousarray(dimgs)).permute(0, 3, 1, 2).float() / 255
                    y = corrupt(xb, name, sev, seed=1000 + rep)
                    o_all.append(acc(torch.round(y * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()))
                diff = np.concatenate(o_all) - np.concatenate(r_all)
                row["acc_own_reference"] = float(np.concatenate(r_all).mean())
                row["acc_own_engine"] = float(np.concatenate(o_all).mean())
                row["acc_own_diff"] = float(diff.mean())
                row["acc_own_se"] = float(diff.std(ddof=1) / np.sqrt(len(diff)))
            rows.append(row)
            print(
                f"{name:18s} {sev} mad {row['mad']:.4f} max {row['max_abs']} acc ref {row['acc_reference']:.3f} "
                f"matched {row['acc_matched']:.3f}"
                + (f" | mean {row['mean_rel']:.3f} std {row['std_rel']:.3f} own-acc diff {row['acc_own_diff']:+.3f}"
                   f" (se {row['acc_own_se']:.3f})" if random else ""),
                flush=True,
            )
    info = load_reference()
    return {"mode": "parity", "size": args.size, "reference": {"distribution": info.distribution, "version": info.version,
            "shims": list(info.shims)}, "rows": rows}


def parity_markdown(res: dict[str, Any]) -> str:
    lines = [
        f"Parity with {res['reference']['distribution']} {res['reference']['version']}: pixels on three {res['size']} px "
        "photographs with the reference's own random draws replayed (MAD in 0-255 units, max abs, share of identical "
        "values); sampler distribution at 96 px (largest relative gap of per-channel perturbation mean / std, relative "
        "to the reference's std); digits CNN accuracy on the test split (360 images) under the reference, under the "
        "engine with replayed draws, and with each side's own sampler (pooled over seeds; difference and its standard error).",
        "",
        "| corruption | sev | MAD | max | identical | mean gap | std gap | acc ref | acc engine (replayed) | own samplers: ref / engine (diff, se) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in res["rows"]:
        own = (f"{r['acc_own_reference']:.3f} / {r['acc_own_engine']:.3f} ({r['acc_own_diff']:+.3f}, {r['acc_own_se']:.3f})"
               if r["random"] else "deterministic")
        dist = (f"{100 * r['mean_rel']:.1f}% | {100 * r['std_rel']:.1f}%" if r["random"] else "- | -")
        lines.append(f"| {r['corruption']} | {r['severity']} | {r['mad']:.4f} | {r['max_abs']} | {100 * r['exact']:.2f}% | {dist} | "
                     f"{r['acc_reference']:.3f} | {r['acc_matched']:.3f} | {own} |")
    return "\n".join(lines)


def bench_suite(args: argparse.Namespace) -> dict[str, Any]:
    """Wall time of the corruption conditions in a run vs generation alone and inference alone (demo data)."""
    import tempfile

    import torch

    from evalsuite.corruptions import corrupt
    from evalsuite.data.builtin import digits_arrays
    from evalsuite.demo_model import DIGITS_MEAN, DIGITS_STD, train_digits_cnn
    from evalsuite.models import load_model
    from evalsuite.models.export import export_onnx
    from evalsuite.suites.corruption import CorruptionSuite

    try:
        from evalsuite import api  # noqa: F401
        from evalsuite.config import RunConfig
    except ImportError as exc:  # pragma: no cover - depends on the lead's API landing
        raise SystemExit(f"--suite needs evalsuite.api ({exc})") from None
    import yaml

    if args.threads:
        torch.set_num_threads(args.threads)
    images, labels, _, splits = digits_arrays()
    net = train_digits_cnn(images[splits["train"]], labels[splits["train"]], epochs=6, seed=0)
    tmp = Path(tempfile.mkdtemp())
    onnx_path = export_onnx(net.network, tmp / "digits.onnx", input_size=(32, 32), mean=DIGITS_MEAN, std=DIGITS_STD,
                            class_names=[str(i) for i in range(10)])
    opts = {"preset": args.suite_preset}
    suite = CorruptionSuite(opts)
    te = splits["test"]
    x = torch.from_numpy(np.ascontiguousarray(images[te])).permute(0, 3, 1, 2).float() / 255
    ids = [f"digits/{i:04d}" for i in te]
    pairs = [(n, s) for n in suite.names for s in suite.severities]
    bs = args.batch_size
    t0 = time.perf_counter()
    outs = [[corrupt(x[i : i + bs], n, s, seed=0, ids=ids[i : i + bs]) for i in range(0, len(te), bs)] for n, s in pairs]
    generation = time.perf_counter() - t0
    model = load_model(str(onnx_path), device="cpu")
    t0 = time.perf_counter()
    for batches in outs:
        for b in batches:
            model.predict(b)
    inference = time.perf_counter() - t0
    from evalsuite.suites import SUITES

    if "corruption" not in SUITES:  # until the suite registry lists it
        SUITES.register("corruption", "evalsuite.suites.corruption:CorruptionSuite", "ImageNet-C corruptions")
    spec = tmp / "suite.yaml"
    spec.write_text(yaml.safe_dump({"suites": {"clean": {}, "corruption": opts}}))
    from evalsuite.api import run

    outcome = run(RunConfig(model=str(onnx_path), data="builtin:digits:test", suite=str(spec), out_dir=str(tmp / "run"),
                            batch_size=bs, device="cpu", progress=False))
    cond = outcome.results["conditions"]
    wall = sum(v["seconds"] for k, v in cond.items() if k.startswith("corruption/"))
    ratio = wall / max(generation, inference)
    print(f"generation {generation:.2f}s inference {inference:.2f}s suite conditions {wall:.2f}s: {ratio:.2f} x max")
    return {"mode": "suite", "preset": args.suite_preset, "conditions": len(pairs), "images": len(te), "batch_size": bs,
            "torch_threads": torch.get_num_threads(),
            "generation_s": generation, "inference_s": inference, "suite_conditions_s": wall, "ratio_to_max": ratio,
            "load_average": _load()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corruptions", default="benchmark", help="benchmark (15), all (19) or a comma-separated list")
    p.add_argument("--severities", default="1,2,3,4,5")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--images", type=int, default=16, help="engine batch (the reference uses --ref-images of them)")
    p.add_argument("--ref-images", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-glass-112", dest="glass_112", action="store_false", help="skip the slow 1.1.2 glass_blur timing")
    p.add_argument("--parity", action="store_true", help="write the parity table instead of timing")
    p.add_argument("--dist-seeds", type=int, default=24)
    p.add_argument("--acc-seeds", type=int, default=10)
    p.add_argument("--suite", action="store_true", help="time the suite's conditions on the demo against generation and inference")
    p.add_argument("--suite-preset", default="fast")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--quick", action="store_true", help="smoke run: 2 images, 1 repeat, severity 3")
    p.add_argument("--out", default=None, help="result name suffix (default: the mode and device)")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.ref_images, args.repeats, args.severities = 2, 2, 1, "3"
        args.dist_seeds, args.acc_seeds = 2, 1
    if args.device.startswith("cuda"):
        args.images = max(args.images, 256) if not args.quick else args.images
        args.ref_images = min(args.ref_images, 4)
    if args.parity:
        res = bench_parity(args)
        name = args.out or "corruptions-parity"
        print(write_result(name, res, parity_markdown(res)))
    elif args.suite:
        res = bench_suite(args)
        md = (f"Corruption suite on the demo (builtin:digits test split, {res['images']} images, {res['conditions']} conditions, "
              f"batch {res['batch_size']}, torch threads {res['torch_threads']}, load average {res['load_average']}): generation alone {res['generation_s']:.2f} s, inference alone {res['inference_s']:.2f} s, "
              f"the suite's conditions in a run {res['suite_conditions_s']:.2f} s = **{res['ratio_to_max']:.2f} x max(generation, inference)**.")
        print(write_result(args.out or "corruptions-suite", res, md))
    else:
        res = bench_speed(args)
        name = args.out or f"corruptions-{'cuda' if args.device.startswith('cuda') else 'cpu'}"
        print(write_result(name, res, speed_markdown(res)))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("CI", "1")
    raise SystemExit(main())
