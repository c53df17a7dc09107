"""Harness overhead of the clean condition: evalsuite vs a plain onnxruntime loop.

Both sides start from the same images already decoded and preprocessed in memory, so what is
measured is evalsuite's own cost per batch (uint8 -> float tensor, condition, normalisation,
prediction bookkeeping) against ``session.run`` over arrays that were normalised beforehand.
Target: evalsuite >= 0.9x the plain loop's images/s at batch 64 on CPU.

    python benchmarks/bench_clean.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import write_result  # noqa: E402


def _make_models(tmp: Path, quick: bool) -> list[tuple[str, Path, tuple[int, int], int]]:
    import timm

    from evalsuite.demo_model import DIGITS_MEAN, DIGITS_STD, build_digits_cnn
    from evalsuite.models.export import export_onnx

    digits = build_digits_cnn().eval()
    out = [("digits-cnn 32x32", export_onnx(digits.network, tmp / "digits.onnx", input_size=(32, 32), mean=DIGITS_MEAN,
                                            std=DIGITS_STD, class_names=[str(i) for i in range(10)]), (32, 32), 4096)]
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=1000).eval()
    out.append(("resnet18 224x224", export_onnx(resnet, tmp / "resnet18.onnx", input_size=(224, 224), mean=(0.485, 0.456, 0.406),
                                                std=(0.229, 0.224, 0.225), class_names=[str(i) for i in range(1000)]),
                (224, 224), 128 if quick else 384))
    return out


def _bench(name: str, path: Path, size: tuple[int, int], n: int, batch: int, repeats: int) -> dict:
    import onnxruntime as ort

    from evalsuite.conditions import CleanCondition
    from evalsuite.data.base import Dataset
    from evalsuite.models import load_model
    from evalsuite.runner import ImageSource, run_condition

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size[0], size[1], 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    ds = Dataset(name="bench", ids=np.array([str(i) for i in range(n)], dtype=object), labels=labels, columns={},
                 fingerprint="bench", loader=lambda i: images[i], class_names=None)
    model = load_model(str(path), device="cpu")
    source = ImageSource(ds, model.info, batch_size=batch, workers=None, skip_bad=False, cache_limit_mb=8192)
    source.scan()
    mean = np.array(model.info.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.array(model.info.std, np.float32).reshape(1, 3, 1, 1)
    pre = ((images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0) - mean) / std
    # The plain loop gets a session with evalsuite's own options (threads, no spinning), so the
    # ratio measures the harness and not a session setting; the default session is shown too.
    sess = model.session
    inp = sess.get_inputs()[0].name
    default_sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def plain_default() -> None:
        for s in range(0, n, batch):
            default_sess.run(None, {inp: pre[s : s + batch]})

    def plain() -> None:
        for s in range(0, n, batch):
            sess.run(None, {inp: pre[s : s + batch]})

    def ours() -> None:
        run_condition(CleanCondition(), source=source, model=model, labels=labels, ids=ds.ids, seed=0, device="cpu", batch_size=batch)

    plain()
    ours()  # warm-up
    plain_default()
    t_plain, t_ours, t_default = [], [], []
    for _ in range(repeats):  # interleave so drift hits both sides equally
        for fn, acc in ((plain, t_plain), (ours, t_ours), (plain_default, t_default)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    plain_ips, ours_ips = n / min(t_plain), n / min(t_ours)
    return {"model": name, "images": n, "batch": batch, "plain_images_per_s": round(plain_ips, 1),
            "evalsuite_images_per_s": round(ours_ips, 1), "ratio": round(ours_ips / plain_ips, 3),
            "plain_default_session_images_per_s": round(n / min(t_default), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats (smoke run)")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, size, n in _make_models(Path(tmp), args.quick):
            row = _bench(name, path, size, n, args.batch, repeats)
            rows.append(row)
            print(f"{row['model']:>18}: plain {row['plain_images_per_s']:>9.1f} img/s  evalsuite "
                  f"{row['evalsuite_images_per_s']:>9.1f} img/s  ratio {row['ratio']:.3f}  "
                  f"(plain with a default session: {row['plain_default_session_images_per_s']:.1f} img/s)")
    md = ["| model | images | batch | plain img/s | evalsuite img/s | ratio | plain, default session img/s |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {r['model']} | {r['images']} | {r['batch']} | {r['plain_images_per_s']} | {r['evalsuite_images_per_s']} | "
           f"{r['ratio']} | {r['plain_default_session_images_per_s']} |" for r in rows]
    if not args.quick:
        write_result("clean-cpu", {"rows": rows, "command": "python benchmarks/bench_clean.py"}, "\n".join(md))


if __name__ == "__main__":
    main()
