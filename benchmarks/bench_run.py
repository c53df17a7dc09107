"""End-to-end `evalsuite run` against raw inference of the same model over the same work (#20 item 5).

Side by side in one process, for each model (timm, random weights, exported to ONNX with
``torch.onnx.export(..., dynamo=False)`` through :func:`evalsuite.models.export.export_onnx`):

- **end to end**: ``evalsuite.api.run`` on a folder of N real photographs (crops of
  scikit-image's and scikit-learn's sample images, written as PNG) with a suite file: every
  step a user waits for (plan and probe, decoding, perturbations, predictions, summaries,
  bootstrap intervals, thumbnails, scorecard);
- **raw inference**: the model's own onnxruntime session (evalsuite's session options) run over
  the same number of condition-images (the sum of every stored prediction file's rows) in the
  same batch size, on arrays decoded, resized and normalised beforehand; the better of two
  timings right after the end-to-end run.

Suites: ``all`` is the full corruption preset (clean + 19 corruptions x 5 severities); ``standard``
is the standard preset without the adversarial suite (clean, the fast corruption set and the
device suite on their CI-sized subset, calibration and slices): attacks take gradient steps, which
have no raw-inference counterpart, and are measured in ``benchmarks/bench_attacks.py``.

Targets (#20): on a GPU, end-to-end throughput >= 0.8x raw inference; on a CPU, the standard tier
<= 1.3x the time of its inference alone. The ratio printed is end-to-end time / raw time
(throughput ratio = its inverse); the per-suite seconds (``provenance.suite_seconds``) say which
stage dominates.

    python benchmarks/bench_run.py [--models resnet18,resnet50] [--images 8] [--suite all,standard]
                                   [--device auto] [--batch-size 32] [--out benchmarks/results/run.txt]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import RESULTS_DIR, write_result  # noqa: E402

SUITES = {
    "all": "suites:\n  clean: {}\n  corruption: {preset: all}\n",
    "standard": ("suites:\n  clean: {}\n  corruption: {ci_half_width: 0.02}\n  device: {ci_half_width: 0.02}\n"
                 "  calibration: {}\n  slices: {}\n"),
}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def photographs() -> list[np.ndarray]:
    """Real RGB photographs bundled with scikit-image and scikit-learn (no download)."""
    import skimage.data as sk
    from sklearn.datasets import load_sample_images

    out = [sk.astronaut(), sk.chelsea(), sk.coffee(), sk.rocket(), sk.immunohistochemistry(), sk.hubble_deep_field(),
           sk.stereo_motorcycle()[0], *load_sample_images().images]
    return [np.ascontiguousarray(a[..., :3]) for a in out]


def write_folder(folder: Path, n: int, seed: int = 0) -> None:
    """N seeded crops (256-400 px squares) of the photographs as PNGs in class folders ``0``..``9``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = photographs()
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(rng.integers(256, min(h, w, 400) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        cls = folder / str(i % 10)
        cls.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo[y : y + side, x : x + side]).save(cls / f"img{i:04d}.png")


def export(name: str, folder: Path) -> Path:
    import timm
    import torch

    from evalsuite.models.export import export_onnx

    torch.manual_seed(0)
    net = timm.create_model(name, pretrained=False, num_classes=1000).eval()
    return export_onnx(net, folder / f"{name}.onnx", input_size=(224, 224), resize=256, mean=IMAGENET_MEAN,
                       std=IMAGENET_STD, class_names=[str(i) for i in range(1000)])


def condition_images(run: Path) -> int:
    """Rows of every stored prediction file of a finished run (the condition-images predicted)."""
    total = 0
    for f in sorted((run / "predictions").glob("*.npz")):
        with np.load(f, allow_pickle=False) as z:
            total += int(len(z["index"]))
    return total


def end_to_end(model: Path, data: Path, suite: str, out: Path, device: str, batch: int) -> dict[str, Any]:
    from evalsuite.api import run
    from evalsuite.config import RunConfig

    suite_file = out.parent / f"{suite}.yaml"
    suite_file.write_text(SUITES[suite])
    config = RunConfig(model=str(model), data=str(data), suite=str(suite_file), out_dir=str(out), device=device,
                       batch_size=batch, progress=False)
    t0 = time.perf_counter()
    run(config)
    seconds = time.perf_counter() - t0
    prov = json.loads((out / "results.json").read_text())["provenance"]
    return {"seconds": seconds, "condition_images": condition_images(out), "suite_seconds": prov.get("suite_seconds"),
            "device": prov.get("device")}


def raw_inputs(model_path: Path, data: Path, device: str, batch: int) -> tuple[Any, np.ndarray]:
    """The model (evalsuite's onnxruntime session) and its clean inputs, normalised float32 NCHW."""
    from evalsuite.data import open_dataset
    from evalsuite.models import load_model
    from evalsuite.runner import ImageSource

    model = load_model(str(model_path), device=device)
    ds = open_dataset(str(data))
    source = ImageSource(ds, model.info, batch_size=batch, workers=None, skip_bad=False, cache_limit_mb=4096)
    source.scan()
    images = source.get(source.valid)
    mean = np.array(model.info.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.array(model.info.std, np.float32).reshape(1, 3, 1, 1)
    x = ((images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0) - mean) / std
    return model, np.ascontiguousarray(x)


def raw_inference(model: Any, x: np.ndarray, total: int, batch: int) -> float:
    """Seconds for ``session.run`` over ``total`` rows of ``x`` (cycled) in batches of ``batch``."""
    sess = model.session
    name = sess.get_inputs()[0].name
    sess.run(None, {name: x[: min(batch, len(x))]})  # warm-up
    reps = int(np.ceil(total / len(x)))
    rows = np.concatenate([x] * reps)[:total]
    t0 = time.perf_counter()
    for s in range(0, total, batch):
        sess.run(None, {name: rows[s : s + batch]})
    return time.perf_counter() - t0


def bench(name: str, suites: list[str], n: int, device: str, batch: int, tmp: Path) -> list[dict[str, Any]]:
    data = tmp / f"photos{n}"
    if not data.exists():
        write_folder(data, n)
    model_path = export(name, tmp)
    warm = tmp / "photos1"
    if not warm.exists():
        write_folder(warm, 1, seed=1)
    rows = []
    for suite in suites:
        # Warm-up on one image: imports, numba's disk cache, onnxruntime's kernels (not timed).
        end_to_end(model_path, warm, suite, tmp / f"warm-{name}-{suite}", device, batch)
        model, x = raw_inputs(model_path, data, device, batch)
        e2e = end_to_end(model_path, data, suite, tmp / f"run-{name}-{suite}", device, batch)
        total = e2e["condition_images"]  # the work to match: rows of every stored prediction file
        raw = min(raw_inference(model, x, total, batch) for _ in range(2))
        row = {"model": name, "suite": suite, "images": n, "batch": batch, "device": e2e["device"],
               "condition_images": total, "end_to_end_s": round(e2e["seconds"], 2), "raw_inference_s": round(raw, 2),
               "time_ratio": round(e2e["seconds"] / raw, 2), "throughput_ratio": round(raw / e2e["seconds"], 3),
               "end_to_end_images_per_s": round(total / e2e["seconds"], 2), "raw_images_per_s": round(total / raw, 2),
               "suite_seconds": e2e["suite_seconds"]}
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def format_row(r: dict[str, Any]) -> str:
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in (r["suite_seconds"] or {}).items())
    return (f"{r['model']:>9} {r['suite']:>8} N={r['images']:<4} {r['condition_images']:>6} condition-images: "
            f"end-to-end {r['end_to_end_s']:>8.1f} s ({r['end_to_end_images_per_s']:.1f}/s), raw inference "
            f"{r['raw_inference_s']:>7.1f} s ({r['raw_images_per_s']:.1f}/s); time ratio {r['time_ratio']:.2f}x, "
            f"throughput ratio {r['throughput_ratio']:.3f}  [per suite: {parts}]")


def machine_line() -> str:
    from evalsuite.machine import describe_machine

    m = describe_machine()
    gpu = f", {m['gpu']}" if m.get("gpu") else ""
    return (f"Machine: {m['cpu']}, {m['cores']} cores, {m.get('memory_gib')} GiB{gpu}, torch {m.get('torch')}, "
            f"onnxruntime {m.get('onnxruntime')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,resnet50", help="timm model names, comma-separated")
    parser.add_argument("--images", type=int, default=8, help="photographs in the data folder (N)")
    parser.add_argument("--suite", default="all,standard", help="comma-separated: all (full corruption preset), standard")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default=str(RESULTS_DIR / "run.txt"), help="text record (machine line + rows)")
    args = parser.parse_args()
    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    for s in suites:
        if s not in SUITES:
            parser.error(f"unknown --suite {s!r}; choose from {', '.join(SUITES)}")
    head = machine_line()
    print(head, flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            rows += bench(name, suites, args.images, args.device, args.batch_size, Path(tmp))
    command = "python benchmarks/bench_run.py " + " ".join(sys.argv[1:])
    text = "\n".join([head, f"Command: {command.strip()}", "", *(format_row(r) for r in rows)]) + "\n"
    Path(args.out).write_text(text)
    if Path(args.out).resolve().parent == RESULTS_DIR:  # the published record: run.txt beside run.json
        write_result(Path(args.out).stem, {"rows": rows, "command": command.strip()})


if __name__ == "__main__":
    main()
