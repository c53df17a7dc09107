"""Attacks: PGD-10 through evalsuite vs torchattacks called directly, and what each tier costs.

1. PGD-10 throughput (L-inf, eps 8/255) on the same model and the same batch, in one process:
   the reference is ``torchattacks.PGD(model, eps, alpha, steps=10)(x, y)`` followed by the one
   forward that tells which samples it broke (robust accuracy needs it); ours is what an attack
   condition runs per batch (``AttackEngine.attack_batch``: clean prediction, the PGD run
   through :func:`evalsuite.attacks.runners.run_attack`, budget checks, the confirming
   ``predict`` on the adversarial batch, worst-case selection). The ratio against the attack
   alone is printed too. The batch holds only samples
   the model classifies correctly, so both sides attack every sample. Ours is timed per
   condition after the first (clean logits and the gradient check are cached per sample for
   the whole run; the first condition's extra cost is printed too). Target: ratio >= 0.95.
2. Cost of each tier on the demo model (DigitsCNN, builtin:digits at 32 x 32): one L-inf
   condition (``--tier-eps``, default 2/255) per tier on ``--tier-n`` samples; passes counted with a forward hook
   (forward with autograd = forward+backward) next to the suite's upper-bound estimate.
3. ``--device cuda``: PGD-10 images/s on a ResNet-50-sized timm model (``resnet50``, random
   init, nothing downloaded) at 224 x 224 with AMP (float16 autocast) and channels_last, both
   sides on the same wrapped module.

    python benchmarks/bench_attacks.py                                   # CPU, demo model (full)
    python benchmarks/bench_attacks.py --batch 32 --repeats 1 --tier-n 4 --tiers smoke --name attacks-smoke
    python benchmarks/bench_attacks.py --device cuda --batch 128          # GPU, ResNet-50-sized
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

EPS = 8 / 255
STEPS = 10


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time_pair(ref: Any, ours: Any, repeats: int, device: str) -> dict[str, float]:
    """Interleaved timing (ref, ours, ref, ours, ...) after one warm-up each, so both see the same load.

    Returns the best wall and CPU seconds of each side and the median of the per-round wall ratios.
    """
    ref()
    ours()
    _sync(device)
    best = {"ref_wall": float("inf"), "ref_cpu": float("inf"), "ours_wall": float("inf"), "ours_cpu": float("inf")}
    ratios = []
    for _ in range(repeats):
        walls = {}
        for side, fn in (("ref", ref), ("ours", ours)):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            _sync(device)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            walls[side] = wall
            best[f"{side}_wall"] = min(best[f"{side}_wall"], wall)
            best[f"{side}_cpu"] = min(best[f"{side}_cpu"], cpu)
        ratios.append(walls["ref"] / walls["ours"])
    best["median_round_ratio"] = float(np.median(ratios))
    return best


class _Counter:
    """Counts sample-forwards of a module, split into with-autograd (forward+backward) and without."""

    def __init__(self, module: Any) -> None:
        self.fb = 0
        self.f = 0
        module.register_forward_pre_hook(self._hook)

    def _hook(self, module: Any, args: Any) -> None:
        import torch

        x = args[0]
        if torch.is_grad_enabled() and getattr(x, "requires_grad", False):
            self.fb += int(x.shape[0])
        else:
            self.f += int(x.shape[0])


def demo_model_and_batch(n: int, seed: int = 0) -> tuple[Any, Any, Any]:
    """The demo DigitsCNN trained as the demo trains it, and ``n`` test images it classifies correctly."""
    import torch

    from evalsuite.data.builtin import digits_arrays
    from evalsuite.demo_model import train_digits_cnn

    images, labels, _, splits = digits_arrays()
    tr, te = splits["train"], splits["test"]
    model = train_digits_cnn(images[tr], labels[tr], epochs=6, seed=seed)
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.from_numpy(images[te]).permute(0, 3, 1, 2).float().div(255).contiguous()
    y = torch.from_numpy(labels[te])
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    x, y = x[ok], y[ok]
    reps = -(-n // len(x))
    return model, x.repeat(reps, 1, 1, 1)[:n].contiguous(), y.repeat(reps)[:n]


def cuda_model_and_batch(n: int, size: int) -> tuple[Any, Any, Any]:
    import timm
    import torch

    from evalsuite.models.pixel import PixelSpaceModel

    net = timm.create_model("resnet50", pretrained=False, num_classes=1000).eval()
    model = PixelSpaceModel(net, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)).eval().cuda()
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.rand(n, 3, size, size, device="cuda", generator=g)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        y = model(x).argmax(1)  # random init: its own (AMP) predictions are its "labels", all correct
    return model, x, y


def pgd_throughput(model: Any, x: Any, y: Any, *, repeats: int, device: str, amp: bool, channels_last: bool,
                   n_classes: int) -> dict[str, Any]:
    import torch
    import torchattacks

    from evalsuite.attacks.engine import AttackEngine, autocast_module
    from evalsuite.attacks.runners import AttackSettings

    wrapped = autocast_module(model, amp=amp, channels_last=channels_last)

    def predict(t: Any) -> np.ndarray:
        with torch.no_grad():
            return wrapped(t).float().cpu().numpy()

    engine = AttackEngine(predict, model, n_classes=n_classes, device=device, settings=AttackSettings(pgd_steps=STEPS),
                          amp=amp, channels_last=channels_last, check_agreement=False)
    ids = [f"s{i}" for i in range(len(x))]
    alpha = 2.5 * EPS / STEPS

    def attack_only() -> Any:
        torch.manual_seed(0)
        return torchattacks.PGD(wrapped, eps=EPS, alpha=alpha, steps=STEPS, random_start=True)(x, y)

    def reference() -> None:  # the attack and the forward that tells which samples it broke
        predict(attack_only())

    def ours() -> None:  # returns the worst-case batch and predict() on it (extras["predict_logits"])
        engine.attack_batch(x, y, ids, norm="linf", eps=EPS, attacks=["pgd"], seed=0, key="attack/linf/8_255")

    c0, t0 = time.process_time(), time.perf_counter()
    ours()  # first condition: fills the per-sample caches
    _sync(device)
    first = (time.perf_counter() - t0, time.process_time() - c0)
    t = _time_pair(reference, ours, repeats, device)
    a = _time_pair(attack_only, ours, repeats, device)
    ref_wall, ref_cpu, our_wall, our_cpu = t["ref_wall"], t["ref_cpu"], t["ours_wall"], t["ours_cpu"]
    n = len(x)
    return {
        "batch": n,
        "median_round_ratio": t["median_round_ratio"],
        "attack_only_img_s": n / a["ref_wall"],
        "attack_only_ratio": a["ref_wall"] / a["ours_wall"],
        "attack_only_cpu_ratio": a["ref_cpu"] / a["ours_cpu"] if a["ours_cpu"] > 0 else None,
        "reference_img_s": n / ref_wall,
        "ours_img_s": n / our_wall,
        "ratio": ref_wall / our_wall,
        "reference_cpu_ms_per_img": 1000 * ref_cpu / n,
        "ours_cpu_ms_per_img": 1000 * our_cpu / n,
        "cpu_ratio": ref_cpu / our_cpu if our_cpu > 0 else None,
        "ours_first_condition_img_s": n / first[0],
    }


def tier_costs(model: Any, x: Any, y: Any, tiers: list[str], device: str, eps: float) -> list[dict[str, Any]]:
    import torch

    from evalsuite.attacks.engine import AttackEngine
    from evalsuite.attacks.runners import TIERS, AttackSettings, passes_per_sample

    rows = []
    for tier in tiers:
        counter_module = _Wrap(model)
        counter = _Counter(counter_module)
        queries = {"n": 0}

        def predict(t: Any, _q: dict[str, int] = queries) -> np.ndarray:
            _q["n"] += int(t.shape[0])
            with torch.no_grad():
                return model(t).float().cpu().numpy()

        settings = AttackSettings(square_queries=5000)
        engine = AttackEngine(predict, counter_module, n_classes=10, device=device, settings=settings,
                              check_agreement=False)
        attacks = list(TIERS[tier])
        bb = np.ones(len(x), bool) if tier != "full" else None
        c0, t0 = time.process_time(), time.perf_counter()
        res = engine.attack_batch(x, y, [f"s{i}" for i in range(len(x))], norm="linf", eps=eps, attacks=attacks,
                                  seed=0, key="attack/linf/tier", blackbox_mask=bb,
                                  blackbox_queries=300 if tier == "smoke" else 5000)
        _sync(device)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        fb_bound = sum(passes_per_sample(a, settings, 10)[0] for a in attacks) * len(x)
        f_bound = sum(passes_per_sample(a, settings, 10)[1] for a in attacks) * len(x)
        robust = float(np.mean(np.argmax(predict(res.x_adv), 1) == y.numpy()))
        rows.append({
            "tier": tier, "attacks": attacks, "n": len(x), "seconds": wall, "cpu_seconds": cpu,
            "forward_backward_sample_passes": counter.fb, "forward_sample_passes_module": counter.f,
            "predict_sample_passes": queries["n"],
            "upper_bound_forward_backward": fb_bound, "upper_bound_forward": f_bound,
            "robust_accuracy": robust,
        })
        print(f"tier {tier:8s} n={len(x)}: {wall:8.1f} s wall, {cpu:8.1f} s CPU, fwd+bwd {counter.fb} "
              f"(bound {fb_bound}), module fwd {counter.f}, predict {queries['n']}, robust {robust:.3f}")
    return rows


def _Wrap(model: Any) -> Any:  # noqa: N802 - a factory that reads like a class
    from torch import nn

    class Wrap(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    return Wrap(model).eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu (demo model) or cuda (ResNet-50-sized timm model)")
    ap.add_argument("--batch", type=int, default=None, help="images per PGD batch (cpu: 256, cuda: 128)")
    ap.add_argument("--size", type=int, default=224, help="input size on cuda")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--tiers", default="smoke,standard,full", help="comma list; empty to skip the tier costs")
    ap.add_argument("--tier-n", type=int, default=32, help="samples per tier cost run (cpu)")
    ap.add_argument("--tier-eps", type=float, default=2 / 255, help="L-inf eps of the tier cost runs")
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="cuda default: on")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="cuda default: on")
    ap.add_argument("--name", default=None, help="result file stem (default attacks-<device>)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here", file=sys.stderr)
        return 2
    amp = cuda if args.amp is None else args.amp
    channels_last = cuda if args.channels_last is None else args.channels_last
    batch = args.batch or (128 if cuda else 256)
    load = os.getloadavg()
    if cuda:
        model, x, y = cuda_model_and_batch(batch, args.size)
        n_classes, what = 1000, f"timm resnet50 (random init) at {args.size}x{args.size}"
    else:
        model, x, y = demo_model_and_batch(max(batch, args.tier_n))
        x, y = x.to(args.device), y.to(args.device)
        n_classes, what = 10, "demo DigitsCNN at 32x32"
    xb, yb = x[:batch], y[:batch]
    pgd = pgd_throughput(model, xb, yb, repeats=args.repeats, device=args.device, amp=amp,
                         channels_last=channels_last, n_classes=n_classes)
    print(f"PGD-10 on {what}, batch {batch}, amp={amp}, channels_last={channels_last}: torchattacks + verdict "
          f"{pgd['reference_img_s']:.1f} img/s, evalsuite {pgd['ours_img_s']:.1f} img/s, ratio {pgd['ratio']:.3f} "
          f"(median per round {pgd['median_round_ratio']:.3f}, CPU {pgd['cpu_ratio']:.3f}); attack alone "
          f"{pgd['attack_only_img_s']:.1f} img/s, ratio {pgd['attack_only_ratio']:.3f} "
          f"(CPU {pgd['attack_only_cpu_ratio']:.3f}); first condition {pgd['ours_first_condition_img_s']:.1f} img/s")
    tiers = [t for t in args.tiers.split(",") if t] if not cuda else []
    rows = tier_costs(model, x[: args.tier_n], y[: args.tier_n], tiers, args.device, args.tier_eps) if tiers else []

    name = args.name or f"attacks-{'cuda' if cuda else 'cpu'}"
    md = [
        f"PGD-10 (L-inf 8/255, random start) on {what}, batch {batch}, {args.threads} torch thread(s), "
        f"amp={amp}, channels_last={channels_last}, best of {args.repeats}. Load average before the run: {load}.",
        "",
        "| side | img/s | CPU ms/img |",
        "|---|---|---|",
        f"| torchattacks.PGD called directly + one forward to classify its output | {pgd['reference_img_s']:.1f} | "
        f"{pgd['reference_cpu_ms_per_img']:.2f} |",
        f"| torchattacks.PGD alone (no verdict) | {pgd['attack_only_img_s']:.1f} | |",
        f"| evalsuite attack condition (per condition after the first) | {pgd['ours_img_s']:.1f} | "
        f"{pgd['ours_cpu_ms_per_img']:.2f} |",
        f"| evalsuite, first condition of a run (fills per-sample caches) | {pgd['ours_first_condition_img_s']:.1f} | |",
        "",
        f"Ratio evalsuite / (torchattacks + verdict): **{pgd['ratio']:.3f}** (best wall of each side), "
        f"{pgd['median_round_ratio']:.3f} (median of interleaved rounds), {pgd['cpu_ratio']:.3f} (CPU time); "
        "target >= 0.95. Against the attack alone, with no forward to see what it broke: "
        f"{pgd['attack_only_ratio']:.3f} (CPU {pgd['attack_only_cpu_ratio']:.3f}). evalsuite's condition returns "
        "`predict` on the adversarial batch as `extras['predict_logits']`; a runner that stores it instead of "
        "predicting the batch again pays nothing more than the reference.",
    ]
    if rows:
        md += [
            "",
            f"Cost of one condition (L-inf eps {args.tier_eps * 255:g}/255) per tier on {args.tier_n} correctly "
            "classified demo images; "
            "passes are sample-passes counted by a hook; bounds assume no sample is ever broken. Smoke and "
            "standard include the Square check on every sample (300 / 5000 queries).",
            "",
            "| tier | attacks | seconds | CPU s | fwd+bwd | bound fwd+bwd | predict calls (samples) | robust acc |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            md.append(f"| {r['tier']} | {', '.join(r['attacks'])} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
                      f"{r['forward_backward_sample_passes']} | {r['upper_bound_forward_backward']} | "
                      f"{r['predict_sample_passes']} | {r['robust_accuracy']:.3f} |")
    path = write_result(name, {"pgd10": pgd, "tiers": rows, "model": what, "amp": amp, "channels_last": channels_last,
                               "threads": args.threads, "load_average": load, "argv": sys.argv[1:]},
                        "\n".join(md))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
