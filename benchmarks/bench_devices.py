"""Device operations: evalsuite's batched ops vs the equivalent per-image OpenCV/Pillow/NumPy loop.

For every operation (at severity 3) both sides process the same natural images (crops of
scikit-image's bundled photographs) at ``--size`` pixels in one process with the same thread
budget (``--threads`` for torch, OpenCV and our pool). The reference is what one would write
per image: ``cv2.resize``/``cv2.filter2D``/``cv2.remap``/``cv2.cvtColor`` Bayer demosaicking,
Pillow's codecs, NumPy for pointwise maths and Poisson sampling, with the same sRGB
linearisation. The script checks that both sides compute the same thing (mean absolute
difference) and prints images/s and the ratio ours / reference (target: >= 1 for every op).
Both sides deliver a batch (the loop stacks its images into one ``N x H x W x 3`` array, as a
runner must before inference), so both pay for a fresh batch's memory.

It then times generating the whole default profile set against ONNX Runtime inference of the
demo's DigitsCNN (exported with ``evalsuite.models.export``) at 32 x 32 (the demo) and at
``--size``: generation should not be the bottleneck of a run (ratio >= 1); and it runs the
runner's own pipeline over the profiles and over clean conditions, to show how much generation
slows a run (it runs on the runner's producer thread, beside inference).

    python benchmarks/bench_devices.py                      # full: 224 px, batch 64, 3 repeats
    python benchmarks/bench_devices.py --size 64 --batch 8 --repeats 1 --name devices-smoke
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import write_result  # noqa: E402

SEVERITY = 3


# ----------------------------------------------------------------------------- data


def natural_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` random crops (resized to ``size``) of scikit-image's bundled colour photographs, uint8 NHWC."""
    import cv2
    from skimage import data

    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.immunohistochemistry(),
               data.colorwheel()[..., :3]]
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        img = sources[i % len(sources)]
        h, w = img.shape[:2]
        side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        out[i] = cv2.resize(np.ascontiguousarray(img[y : y + side, x : x + side]), (size, size), interpolation=cv2.INTER_AREA)
    return out


# ----------------------------------------------------------------------------- per-image references


def _dec(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / np.float32(12.92), ((v + np.float32(0.055)) / np.float32(1.055)) ** np.float32(2.4))


def _enc(lin: np.ndarray) -> np.ndarray:
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, lin * np.float32(12.92),
                    np.float32(1.055) * np.maximum(lin, 0.0031308) ** np.float32(1 / 2.4) - np.float32(0.055))


def _pil_codec(img: np.ndarray, fmt: str, **kw: Any) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buf, format=fmt, **kw)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0


def make_reference(op: Any, size: int) -> Any:
    """A per-image function HxWx3 float32 -> HxWx3 float32 doing what ``op`` does."""
    import cv2

    from evalsuite.devices.kernels import line_half, line_kernel
    from evalsuite.devices.optics import vignetting_gain
    from evalsuite.devices.resample import target_size

    name = op.name
    if name == "resolution":
        hs, ws = target_size(size, size, op.scale)
        down = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}[op.down]
        return lambda im, rng: cv2.resize(cv2.resize(im, (ws, hs), interpolation=down), (size, size),
                                          interpolation=cv2.INTER_LINEAR)
    if name == "jpeg":
        return lambda im, rng: _pil_codec(im, "JPEG", quality=op.quality, subsampling=2)
    if name == "webp":
        return lambda im, rng: _pil_codec(im, "WEBP", quality=op.quality, method=op.method)
    if name == "sensor_noise":
        k = op.electrons_per_unit

        def noise(im: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            e = rng.poisson(_dec(im).astype(np.float64) * k) + rng.normal(0.0, op.read_noise, im.shape)
            return _enc((e / k).astype(np.float32))

        return noise
    if name == "exposure":
        return lambda im, rng: _enc(_dec(im) * np.float32(2.0**op.ev))
    if name == "tone_curve":
        def tone(im: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            u = im**np.float32(op.gamma)
            u = u + np.float32(op.contrast) * (u * u * (3 - 2 * u) - u)
            return np.clip(np.float32(op.black) + np.float32(op.white - op.black) * u, 0, 1)

        return tone
    if name == "white_balance":
        g = op.gains.astype(np.float32)
        return lambda im, rng: _enc(_dec(im) * g)
    if name == "vignetting":
        gain = vignetting_gain(size, size, op.fov, op.strength)[..., None]
        return lambda im, rng: _enc(_dec(im) * gain)
    if name == "lens_blur":
        kern = op.kernel(size, size)
        return lambda im, rng: _enc(cv2.filter2D(_dec(im), -1, kern, borderType=cv2.BORDER_REFLECT_101))
    if name == "chromatic_aberration":
        c = (size - 1) / 2.0
        grid = np.arange(size, dtype=np.float32)
        maps = {}
        for ch, a in ((0, op.red), (2, op.blue)):
            m1 = (c + (grid - c) / (1 + a)).astype(np.float32)
            maps[ch] = (np.tile(m1[None, :], (size, 1)), np.tile(m1[:, None], (1, size)))

        def ca(im: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            lin = _dec(im)
            out = lin.copy()
            for ch, (mx, my) in maps.items():
                out[..., ch] = cv2.remap(np.ascontiguousarray(lin[..., ch]), mx, my, cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_REPLICATE)
            return _enc(out)

        return ca
    if name == "bayer":
        hs, ws = target_size(size, size, 1.0 / op.pitch)

        def bayer(im: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            lin = cv2.resize(_dec(im), (ws, hs), interpolation=cv2.INTER_AREA)
            m = np.empty((hs, ws), np.float32)  # RGGB
            m[0::2, 0::2] = lin[0::2, 0::2, 0]
            m[0::2, 1::2] = lin[0::2, 1::2, 1]
            m[1::2, 0::2] = lin[1::2, 0::2, 1]
            m[1::2, 1::2] = lin[1::2, 1::2, 2]
            rgb = cv2.cvtColor(np.rint(m * 65535).astype(np.uint16), cv2.COLOR_BayerBG2RGB).astype(np.float32) / 65535
            return _enc(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR))

        return bayer
    if name == "bit_depth":
        levels = np.float32(2**op.bits - 1)
        return lambda im, rng: np.rint(im * levels) / levels
    if name == "motion_blur":
        length = op.length * size

        def motion(im: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            kern = line_kernel(length, float(rng.uniform(0, 360)), line_half(length))
            return _enc(cv2.filter2D(_dec(im), -1, kern, borderType=cv2.BORDER_REFLECT_101))

        return motion
    raise KeyError(name)


# ----------------------------------------------------------------------------- timing


def best_of(fn: Any, repeats: int) -> tuple[float, Any, float]:
    """(best wall seconds, last output, CPU seconds of that best run: all threads of the process)."""
    best, out, cpu = math.inf, None, math.inf
    for _ in range(repeats):
        c = time.process_time()
        t = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - t
        if wall < best:
            best, cpu = wall, time.process_time() - c
    return best, out, cpu


def bench_ops(images: np.ndarray, repeats: int, ops: list[str]) -> list[dict[str, Any]]:
    import torch

    from evalsuite.devices.ops import make_op

    n, size = images.shape[0], images.shape[1]
    # exactly as the runner makes batches: NCHW view of channels-last memory
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)
    per_image = [np.ascontiguousarray(im, dtype=np.float32) / 255.0 for im in images]
    ids = [f"bench/{i}" for i in range(n)]
    variants = [(name, {}) for name in ops]
    if "sensor_noise" in ops:
        variants.append(("sensor_noise", {"gaussian_above": 1e9}))
    rows = []
    for name, extra in variants:
        op = make_op(name, severity=SEVERITY, **extra)
        ref = make_reference(op, size)
        op(x[:2], ids=ids[:2])  # warm caches (kernels, maps)
        t_ours, y, c_ours = best_of(lambda op=op: op(x, ids=ids, seed=0), repeats)
        rng = np.random.default_rng(0)
        # the loop, like ours, delivers the batch a model consumes (so both sides pay for its memory)
        t_ref, ref_t, c_ref = best_of(lambda ref=ref, rng=rng: torch.from_numpy(
            np.stack([ref(im, rng) for im in per_image])).permute(0, 3, 1, 2), repeats)
        label = name + (" (exact Poisson)" if extra else "")
        rows.append({
            "operation": label,
            "params": op.describe(),
            "ours_img_s": n / t_ours,
            "reference_img_s": n / t_ref,
            "ratio": t_ref / t_ours,
            "ours_cpu_ms_per_img": 1e3 * c_ours / n,
            "reference_cpu_ms_per_img": 1e3 * c_ref / n,
            "cpu_ratio": c_ref / max(c_ours, 1e-9),
            "mean_abs_diff": float((y - ref_t).abs().mean()),
        })
        print(f"{label:30s} ours {n / t_ours:8.1f} img/s  per-image {n / t_ref:8.1f} img/s  ratio {t_ref / t_ours:5.2f}  "
              f"CPU ms/img {1e3 * c_ours / n:7.2f} vs {1e3 * c_ref / n:7.2f} (ratio {c_ref / max(c_ours, 1e-9):5.2f})  "
              f"mean |diff| {rows[-1]['mean_abs_diff']:.1e}", flush=True)
    return rows


def bench_profiles_vs_onnx(images: np.ndarray, repeats: int, threads: int) -> list[dict[str, Any]]:
    """Generation of every built-in profile vs ORT inference of the (untrained) DigitsCNN."""
    import cv2
    import onnxruntime as ort
    import torch

    from evalsuite.demo_model import DIGITS_MEAN, DIGITS_STD, build_digits_cnn
    from evalsuite.devices.base import apply_chain
    from evalsuite.devices.profiles import builtin_profiles
    from evalsuite.models.export import export_onnx

    rows = []
    net = build_digits_cnn().eval().network
    sizes = sorted({32, images.shape[1]})
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            imgs = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])
            x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(255.0)
            n = len(x)
            ids = [f"bench/{i}" for i in range(n)]
            path = export_onnx(net, Path(tmp) / f"digits{size}.onnx", input_size=(size, size), mean=DIGITS_MEAN,
                               std=DIGITS_STD, class_names=[str(i) for i in range(10)])
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            feed = np.ascontiguousarray((x.numpy() - 0.5) / 0.5, dtype=np.float32)
            sess.run(None, {"input": feed})
            t_ort, _, c_ort = best_of(lambda sess=sess, feed=feed: sess.run(None, {"input": feed}), repeats)
            profiles = list(builtin_profiles().values())
            apply_chain(profiles[0].ops, x[:2], ids=ids[:2])

            def generate(profiles: list = profiles, x: Any = x, ids: list = ids) -> None:
                for p in profiles:
                    apply_chain(p.ops, x, ids=ids, seed=0, key=f"device/{p.name}")

            t_gen, _, c_gen = best_of(generate, repeats)
            gen_rate = n * len(profiles) / t_gen
            ort_rate = n / t_ort
            cpu_gen = 1e3 * c_gen / (n * len(profiles))
            cpu_ort = 1e3 * c_ort / n
            rows.append({"size": size, "profiles": len(profiles), "generation_img_s": gen_rate, "onnx_img_s": ort_rate,
                         "ratio": gen_rate / ort_rate, "generation_cpu_ms_per_img": cpu_gen, "onnx_cpu_ms_per_img": cpu_ort,
                         "cpu_ratio": cpu_ort / max(cpu_gen, 1e-9)})
            print(f"{size:4d}px: profile generation {gen_rate:9.1f} img/s (all {len(profiles)} profiles), ONNX DigitsCNN "
                  f"{ort_rate:9.1f} img/s, ratio {gen_rate / ort_rate:5.2f}; CPU ms/img {cpu_gen:.3f} vs {cpu_ort:.3f} "
                  f"(ratio {cpu_ort / max(cpu_gen, 1e-9):5.2f})", flush=True)
    return rows


def bench_profiles_in_a_run(images: np.ndarray, repeats: int, copies: int = 8) -> list[dict[str, Any]]:
    """The runner's pipeline with the ONNX DigitsCNN: the six profile conditions (generation on
    the runner's producer thread, inference on the main thread) against six clean conditions
    over the same images (inference alone). Their ratio says how much generation slows a run:
    1.0 means it is fully hidden behind inference."""
    import cv2

    from evalsuite.conditions import CleanCondition
    from evalsuite.demo_model import DIGITS_MEAN, DIGITS_STD, build_digits_cnn
    from evalsuite.devices.condition import DeviceCondition, profile_key
    from evalsuite.devices.profiles import builtin_profiles
    from evalsuite.models import load_model
    from evalsuite.models.export import export_onnx
    from evalsuite.runner import run_condition

    rows = []
    net = build_digits_cnn().eval().network
    profiles = list(builtin_profiles().values())
    batch = len(images)
    with tempfile.TemporaryDirectory() as tmp:
        for size in sorted({32, images.shape[1]}):
            imgs = np.concatenate([np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA)
                                             for im in images])] * copies)
            n = len(imgs)

            class Source:  # the runner's ImageSource interface over images in memory
                valid = np.arange(n)

                def batches(self, idx: np.ndarray, bs: int, imgs: np.ndarray = imgs) -> Any:
                    for lo in range(0, len(idx), bs):
                        yield idx[lo : lo + bs], imgs[idx[lo : lo + bs]]

            ids = np.array([f"bench/{i}" for i in range(n)])
            labels = np.zeros(n, dtype=np.int64)
            path = export_onnx(net, Path(tmp) / f"run{size}.onnx", input_size=(size, size), mean=DIGITS_MEAN,
                               std=DIGITS_STD, class_names=[str(i) for i in range(10)])
            model = load_model(str(path), device="cpu")
            clean = [CleanCondition(key=f"clean/{i}") for i in range(len(profiles))]
            device = [DeviceCondition(key=profile_key(p.name), suite="device", ops=tuple(p.ops)) for p in profiles]

            def run(conditions: list, model: Any = model, ids: np.ndarray = ids, labels: np.ndarray = labels,
                    source: Any = Source()) -> None:
                for c in conditions:
                    run_condition(c, source=source, model=model, labels=labels, ids=ids, seed=0, device="cpu",
                                  batch_size=batch)

            run(clean[:1])
            run(device[:1])
            t_clean, _, _ = best_of(lambda clean=clean, run=run: run(clean), repeats)
            t_dev, _, _ = best_of(lambda device=device, run=run: run(device), repeats)
            m = n * len(profiles)
            rows.append({"size": size, "images": m, "inference_only_us_per_img": 1e6 * t_clean / m,
                         "with_generation_us_per_img": 1e6 * t_dev / m, "slowdown": t_dev / t_clean})
            print(f"{size:4d}px run of the {len(profiles)} profiles over {n} images: {1e6 * t_dev / m:.1f} us/img, "
                  f"inference alone {1e6 * t_clean / m:.1f} us/img (run x{t_dev / t_clean:.2f})", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1),
                    help="threads for torch, OpenCV, ONNX Runtime and our pool (default: min(4, cores))")
    ap.add_argument("--ops", default="all", help="comma-separated operations (default: all)")
    ap.add_argument("--skip-profiles", action="store_true", help="skip the profile-vs-ONNX comparison")
    ap.add_argument("--name", default=None, help="result name under benchmarks/results (default: devices-cpu-<size>)")
    args = ap.parse_args(argv)

    import cv2
    import torch

    from evalsuite.devices.ops import op_names

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    ops = op_names() if args.ops == "all" else [s.strip() for s in args.ops.split(",") if s.strip()]
    images = natural_images(args.batch, args.size)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"{args.batch} images at {args.size}x{args.size}, {args.threads} thread(s), best of {args.repeats}; "
          f"load average before: {load}", flush=True)
    op_rows = bench_ops(images, args.repeats, ops)
    prof_rows = [] if args.skip_profiles else bench_profiles_vs_onnx(images, args.repeats, args.threads)
    run_rows = [] if args.skip_profiles else bench_profiles_in_a_run(images, args.repeats)

    md = [f"Device operations at {args.size}x{args.size}, batch {args.batch}, {args.threads} thread(s), severity {SEVERITY}, "
          f"best of {args.repeats}. Load average before the run: {load}.", "",
          "Ratios above 1 mean evalsuite is faster. CPU ms/img counts every thread of the process (robust on a shared "
          "machine); random operations (sensor_noise, motion_blur) differ from the reference by their random draws, "
          "and the reference Bayer path rounds to 16 bits and uses OpenCV's own border handling.", "",
          "| operation | parameters | ours img/s | per-image loop img/s | ratio | ours CPU ms/img | loop CPU ms/img | CPU ratio "
          "| mean abs diff |", "|---|---|---|---|---|---|---|---|---|"]
    for r in op_rows:
        md.append(f"| {r['operation']} | `{r['params']}` | {r['ours_img_s']:.1f} | {r['reference_img_s']:.1f} | "
                  f"{r['ratio']:.2f} | {r['ours_cpu_ms_per_img']:.3f} | {r['reference_cpu_ms_per_img']:.3f} | "
                  f"{r['cpu_ratio']:.2f} | {r['mean_abs_diff']:.1e} |")
    if prof_rows:
        md += ["", "Generating the default profile set vs ONNX Runtime inference of the (untrained) demo DigitsCNN; "
               "img/s counts one profile applied to one image against one inference.", "",
               "| input size | profiles | generation img/s | ONNX img/s | ratio | generation CPU ms/img | ONNX CPU ms/img "
               "| CPU ratio |", "|---|---|---|---|---|---|---|---|"]
        for r in prof_rows:
            md.append(f"| {r['size']} | {r['profiles']} | {r['generation_img_s']:.1f} | {r['onnx_img_s']:.1f} | "
                      f"{r['ratio']:.2f} | {r['generation_cpu_ms_per_img']:.3f} | {r['onnx_cpu_ms_per_img']:.3f} | "
                      f"{r['cpu_ratio']:.2f} |")
    if run_rows:
        md += ["", "The runner's pipeline (generation on its producer thread, ONNX Runtime inference on the main "
               "thread): the six profile conditions against six clean conditions over the same images. "
               "Slowdown 1.0 means generation is fully hidden behind inference.", "",
               "| input size | images | run with generation us/img | inference alone us/img | slowdown |",
               "|---|---|---|---|---|"]
        for r in run_rows:
            md.append(f"| {r['size']} | {r['images']} | {r['with_generation_us_per_img']:.1f} | "
                      f"{r['inference_only_us_per_img']:.1f} | {r['slowdown']:.2f} |")
    name = args.name or f"devices-cpu-{args.size}"
    path = write_result(name, {"settings": vars(args), "load_average_before": load, "operations": op_rows,
                               "profiles_vs_onnx": prof_rows, "profiles_in_a_run": run_rows}, "\n".join(md))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
