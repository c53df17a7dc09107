"""Training throughput (images/s): a plain PyTorch loop next to ``training.loop.Trainer``.

Both sides train the same randomly initialised network on the same synthetic uint8 images
(converted to float on the device per batch, as a data loader would deliver them) with AdamW and
cross-entropy, in one process; the ratio ``trainer / plain`` is the overhead of the module's
machinery (schedule, augmentation hooks, EMA off, device-side metric accumulation).

CPU (default): ``timm:test_resnet`` at 32x32, the digits recipes' network.

    python benchmarks/bench_training.py                        # CPU, a few seconds per variant
    python benchmarks/bench_training.py --steps 3 --warmup 1   # smoke

GPU: a ResNet-50 (``timm:resnet50``, random init) at 224x224; variants fp32 NCHW and
channels_last + AMP (bf16 by default, ``--amp fp16`` for a gradient-scaled fp16 run):

    python benchmarks/bench_training.py --device cuda --model timm:resnet50 --size 224 --batch 128 --steps 30

Results (JSON + markdown, with cores, CPU model, GPU name, torch version) go to
``benchmarks/results/training-<device>-<model>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def machine(device: str) -> dict[str, Any]:
    """The shared machine description (benchmarks/machine.py) plus load average and CUDA version."""
    import torch

    from benchmarks.machine import describe_machine

    info = describe_machine()
    info["load_average"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain_loop(args: argparse.Namespace, images: np.ndarray, labels: np.ndarray, amp: str, channels_last: bool) -> float:
    """Reference: the textbook loop (no schedule, no augmentation), images/s over ``args.steps`` steps."""
    import contextlib

    import torch
    import torch.nn.functional as F

    from evalsuite.models.pixel import PixelSpaceModel
    from training.models import build_network

    torch.manual_seed(0)
    dev = args.device
    net = build_network(args.model, args.classes).to(dev)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    model = PixelSpaceModel(net, [0.5] * 3, [0.5] * 3).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    dev_type = "cuda" if dev.startswith("cuda") else "cpu"
    scaler = torch.amp.GradScaler(dev_type, enabled=amp == "fp16")
    x_u8 = torch.from_numpy(images)
    y_all = torch.from_numpy(labels)
    b = args.batch

    def step(i: int) -> None:
        s = (i * b) % len(y_all)
        x = x_u8[s : s + b].to(dev, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()
        y = y_all[s : s + b].to(dev, non_blocking=True)
        ctx = torch.autocast(dev_type, dtype=dtype) if dtype else contextlib.nullcontext()
        with ctx:
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for i in range(args.warmup):
        step(i)
    _sync(dev)
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(i)
    _sync(dev)
    return args.steps * b / (time.perf_counter() - t0)


# Extra recipe sections of the "with recipe extras" variants (trainer only; ratio still vs plain).
EXTRAS = {
    "standard-recipe extras": {"augment": {"random_shift": 3, "brightness": 0.1, "contrast": 0.2},
                               "loss": {"label_smoothing": 0.1}, "ema": {"enabled": True, "decay": 0.99}},
    "PGD-AT (5 steps)": {"adversarial": {"method": "pgd", "epsilon": 8 / 255, "step_size": 4 / 255, "steps": 5}},
}


def trainer_loop(
    args: argparse.Namespace, images: np.ndarray, labels: np.ndarray, amp: str, channels_last: bool,
    extra: dict[str, Any] | None = None,
) -> float:
    """Ours: ``Trainer._train_epoch`` (one epoch = ``steps`` batches) after ``warmup`` batches."""
    import tempfile

    import torch

    from training.config import recipe_from_dict
    from training.data import TrainData
    from training.loop import Trainer

    n = args.batch * args.steps
    val = min(len(labels), args.batch)
    recipe = recipe_from_dict({
        "name": "bench",
        "device": args.device,
        "amp": amp,
        "channels_last": channels_last,
        "data": {"input_size": [args.size, args.size]},
        "model": {"name": args.model},
        "optim": {"lr": 1e-3, "batch_size": args.batch, "base_batch_size": args.batch, "weight_decay": 0.05},
        "schedule": {"epochs": 2, "kind": "constant"},
        "eval": {"enabled": False},
        **(extra or {}),
    })
    data = TrainData.from_arrays(images[:n], labels[:n], images[:val], labels[:val])
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        t = Trainer(recipe, tmp, data=data)
        t._setup()
        if args.warmup:
            warm = TrainData.from_arrays(images[: args.batch * args.warmup], labels[: args.batch * args.warmup],
                                         images[:val], labels[:val])
            full = t.data
            t.data = warm
            t._train_epoch(0)
            t.data = full
        _sync(args.device)
        t0 = time.perf_counter()
        t._train_epoch(1)
        _sync(args.device)
        return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--model", default=None, help="default: timm:test_resnet (CPU), timm:resnet50 (CUDA)")
    p.add_argument("--size", type=int, default=None, help="image side (default: 32 on CPU, 224 on CUDA)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: 64 on CPU, 128 on CUDA)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--amp", default="bf16", choices=("bf16", "fp16"), help="AMP dtype of the GPU variant")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-extras", dest="extras", action="store_false",
                   help="skip the trainer variants with the standard recipe's extras and with PGD-AT")
    p.add_argument("--amp-variant", action="store_true",
                   help="also run the channels_last + AMP variant on CPU (it always runs on CUDA)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = args.device.startswith("cuda")
    if gpu and not torch.cuda.is_available():
        sys.stderr.write("--device cuda: no CUDA device visible\n")
        return 2
    args.model = args.model or ("timm:resnet50" if gpu else "timm:test_resnet")
    args.size = args.size or (224 if gpu else 32)
    args.batch = args.batch or (128 if gpu else 64)
    if gpu:
        torch.backends.cudnn.benchmark = True
    rng = np.random.default_rng(0)
    n = args.batch * max(args.steps, args.warmup)
    images = rng.integers(0, 256, (n, args.size, args.size, 3), dtype=np.uint8)
    labels = rng.integers(0, args.classes, n).astype(np.int64)
    variants = [("fp32", "none", False)]
    if gpu or args.amp_variant:
        variants.append((f"channels_last+{args.amp}", args.amp, True))
    rows = []
    for name, amp, cl in variants:
        plain = plain_loop(args, images, labels, amp, cl)
        ours = trainer_loop(args, images, labels, amp, cl)
        rows.append({"variant": name, "plain_images_per_s": round(plain, 1), "trainer_images_per_s": round(ours, 1),
                     "trainer_over_plain": round(ours / plain, 3)})
        print(f"{name:>24}: plain {plain:9.1f} img/s   trainer {ours:9.1f} img/s   ratio {ours / plain:.3f}", flush=True)
        if name == "fp32" and args.extras:
            for extra_name, extra in EXTRAS.items():
                e = trainer_loop(args, images, labels, amp, cl, extra)
                rows.append({"variant": f"fp32 + {extra_name}", "plain_images_per_s": round(plain, 1),
                             "trainer_images_per_s": round(e, 1), "trainer_over_plain": round(e / plain, 3)})
                print(f"{extra_name:>24}: trainer {e:9.1f} img/s   ratio to plain {e / plain:.3f}", flush=True)
    amp_rows = [r for r in rows if r["variant"].startswith("channels_last")]
    if amp_rows:
        speedup = amp_rows[0]["trainer_images_per_s"] / rows[0]["trainer_images_per_s"]
        print(f"channels_last + AMP speed-up over fp32 (trainer): {speedup:.2f}x")
    doc = {
        "benchmark": "training throughput",
        "machine": machine(args.device),
        "settings": {k: getattr(args, k) for k in ("device", "model", "size", "batch", "steps", "warmup", "classes", "amp")},
        "results": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"training-{'cuda' if gpu else 'cpu'}-{args.model.replace(':', '_')}"
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    m = doc["machine"]
    desc = (f"{m['cores']} cores, {m['cpu']}" + (f", {m['gpu']} (CUDA {m['cuda']})" if "gpu" in m else "")
            + f", torch {m['torch']} ({m['torch_threads']} CPU threads), load average {m['load_average']}")
    md = [f"# Training throughput: {args.model} at {args.size}x{args.size}, batch {args.batch}, {args.device}", "",
          f"Machine: {desc}.", "",
          "`plain`: textbook loop (forward, CE, backward, AdamW). `trainer`: `training.loop.Trainer._train_epoch` "
          "with the same network and data; the extras rows add the recipe's features (trainer only).", "",
          "| variant | plain img/s | trainer img/s | trainer/plain |",
          "| --- | --- | --- | --- |"]
    md += [f"| {r['variant']} | {r['plain_images_per_s']} | {r['trainer_images_per_s']} | {r['trainer_over_plain']} |" for r in rows]
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
