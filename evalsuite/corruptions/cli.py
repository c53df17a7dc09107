"""``evalsuite corrupt``: write corrupted copies of an image or a folder of images.

    evalsuite corrupt INPUT --corruption fog --severity 3 --out DIR [--seed 0]

Every image is decoded as ``evalsuite run`` decodes it (EXIF orientation applied; grayscale
repeated into three channels and an alpha channel dropped, as ``PIL.Image.convert("RGB")``
does -- each such conversion is logged), corrupted with the same per-sample seeding as a run
(the sample id is the path relative to INPUT, or the file name for a single file) and saved as
PNG (lossless, so what is written is exactly the corrupted image). One corruption and one
severity write ``DIR/<relative path>.png``; several write ``DIR/<corruption>/<severity>/...``.

DIR may not be INPUT, lie inside it or contain it (a later run over INPUT would pick the
copies up as data, or a copy would replace an original); existing files are kept unless
``--overwrite`` is given, and both are checked before the first image is corrupted. Each file
is written atomically, so an interrupted call leaves whole images only.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def register(subparsers: Any) -> None:
    """Add the ``corrupt`` sub-command."""
    p = subparsers.add_parser(
        "corrupt",
        help="write corrupted copies of an image or a folder (ImageNet-C corruptions)",
        description=(
            "Write corrupted copies of an image or of every image under a folder, as PNG. "
            "Corruptions: see `evalsuite ls corruptions`."
        ),
    )
    p.add_argument("input", help="an image file or a folder of images (searched recursively)")
    p.add_argument(
        "--corruption",
        required=True,
        help="corruption name, a comma-separated list, or a subset: all, benchmark, held_out, noise, blur, weather, digital",
    )
    p.add_argument("--severity", default="3", help="severity 1-5, or a comma-separated list (default: 3)")
    p.add_argument("--out", required=True, help="output folder (created if missing; not INPUT, inside it or around it)")
    p.add_argument("--overwrite", action="store_true", help="replace images already in --out (default: refuse)")
    p.add_argument("--max-image-pixels", type=int, metavar="N", default=None,
                   help="refuse images whose header declares more pixels (default: 64000000)")
    p.add_argument("--seed", type=int, default=0, help="run seed (default: 0); same seed and id = same corruption as a run")
    p.add_argument("--backend", choices=("torch", "reference"), default="torch", help="corruption engine (default: torch)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:k] for the torch engine (default: cpu)")
    p.set_defaults(func=run_corrupt)


def _list_inputs(root: Path) -> list[tuple[Path, str]]:
    """(file, sample id) pairs: the file name for a file, relative POSIX paths under a folder."""
    from evalsuite.data import IMAGE_EXTENSIONS
    from evalsuite.errors import UsageError

    if root.is_file():
        return [(root, root.name)]
    if not root.is_dir():
        raise UsageError(f"input not found: {root}")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.name.lower().endswith(IMAGE_EXTENSIONS)
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise UsageError(f"no images found under {root} (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    return [(f, f.relative_to(root).as_posix()) for f in files]


def _plan_outputs(
    inputs: list[tuple[Path, str]], input_arg: Path, out_root: Path, names: list[str], sevs: list[int], overwrite: bool
) -> dict[tuple[str, str, int], Path]:
    """Destination of every (sample id, corruption, severity), refused up front when unsafe."""
    from evalsuite.data.guards import is_within
    from evalsuite.errors import UsageError

    src = os.path.realpath(input_arg)
    out = os.path.realpath(out_root)
    if input_arg.is_dir() and (is_within(out, src) or is_within(src, out)):
        where = "is" if out == src else ("lies inside" if is_within(out, src) else "contains")
        raise UsageError(
            f"--out {out_root} {where} the input folder {input_arg}: choose a folder apart from the input"
        )
    originals = {os.path.realpath(p) for p, _ in inputs}
    single = len(names) == 1 and len(sevs) == 1
    plan: dict[tuple[str, str, int], Path] = {}
    for _, sample_id in inputs:
        rel = Path(sample_id).with_suffix(".png")
        for name in names:
            for sev in sevs:
                plan[(sample_id, name, sev)] = out_root / rel if single else out_root / name / str(sev) / rel
    clobbered = [d for d in plan.values() if os.path.realpath(d) in originals]
    if clobbered:
        raise UsageError(f"--out {out_root} would overwrite the input image {clobbered[0]}: choose another folder")
    existing = [d for d in plan.values() if os.path.lexists(d)]
    if existing and not overwrite:
        raise UsageError(
            f"--out {out_root} already holds {len(existing)} of the {len(plan)} image(s) to write "
            f"(first: {existing[0]}); pass --overwrite to replace them"
        )
    return plan


def _resolve_corruptions(text: str) -> list[str]:
    from evalsuite.corruptions import CORRUPTIONS, FAMILIES, corruption_names

    out: list[str] = []
    for t in _names(text):
        if t in ("all", "benchmark", "held_out") or t in FAMILIES:
            out.extend(corruption_names(t))
        else:
            CORRUPTIONS.get(t)  # UsageError with did-you-mean for unknown names
            out.append(t)
    return list(dict.fromkeys(out))


def _resolve_severities(text: str) -> list[int]:
    from evalsuite.corruptions._engine import check_severity
    from evalsuite.errors import UsageError

    sevs = []
    for t in _names(text):
        try:
            v = int(t)
        except ValueError:
            raise UsageError(f"severity must be an integer from 1 to 5, got {t!r}") from None
        sevs.append(check_severity(v))
    if not sevs:
        raise UsageError("--severity needs at least one value from 1 to 5")
    return list(dict.fromkeys(sevs))


def run_corrupt(args: argparse.Namespace) -> int:
    """Handler of ``evalsuite corrupt``; returns the exit code (EvalsuiteError for user mistakes)."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    from evalsuite.atomic_io import atomic_write_bytes
    from evalsuite.data import decode_image
    from evalsuite.errors import UsageError

    names = _resolve_corruptions(args.corruption)
    sevs = _resolve_severities(str(args.severity))
    if args.backend == "reference":
        from evalsuite.corruptions.reference import corrupt
    else:
        from evalsuite.corruptions import corrupt
    device = str(args.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine")
    try:
        torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device must be cpu or cuda[:k], got {device!r}") from None
    from evalsuite.data.guards import DEFAULT_MAX_IMAGE_PIXELS, check_max_image_pixels

    limit = getattr(args, "max_image_pixels", None)
    max_pixels = DEFAULT_MAX_IMAGE_PIXELS if limit is None else check_max_image_pixels(limit)
    inputs = _list_inputs(Path(args.input))
    out_root = Path(args.out)
    plan = _plan_outputs(inputs, Path(args.input), out_root, names, sevs, bool(args.overwrite))
    written = 0
    for path, sample_id in inputs:
        image = decode_image(path, max_pixels=max_pixels)
        with Image.open(path) as im:
            mode = im.mode
        if mode != "RGB":
            log.info("%s: %s image converted to RGB (grayscale repeated, alpha dropped)", path, mode)
        x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).to(device).float().div_(255.0)
        for name in names:
            for sev in sevs:
                try:
                    y = corrupt(x, name, sev, seed=args.seed, ids=[sample_id])
                except UsageError as exc:
                    raise UsageError(f"{path}: {exc}") from None
                arr = torch.round(y * 255.0).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
                buf = io.BytesIO()
                Image.fromarray(arr).save(buf, format="PNG")
                atomic_write_bytes(plan[(sample_id, name, sev)], buf.getvalue())
                written += 1
    log.info("wrote %d image(s) under %s", written, out_root)
    print(f"wrote {written} corrupted image(s) under {out_root}")  # noqa: T201 - CLI output
    return 0
