"""Command-line argument types and flag groups shared by ``evalsuite`` and its plug-in sub-commands.

:mod:`evalsuite.cli` and the sub-commands that live with their feature
(:mod:`evalsuite.calibration.cli`, ...) both import from here, so a plug-in never reaches into
the main CLI module (which loads the plug-ins) for a helper. Nothing heavy is imported at module
level, so ``evalsuite --help`` stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any


def csv_floats(text: str) -> list[float]:
    """``R,G,B`` -> a list of floats (argparse type)."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def size(text: str) -> list[int]:
    """``N``, ``H,W`` or ``HxW`` -> ``[H, W]`` with positive sizes (argparse type)."""
    parts = text.lower().replace("x", ",").split(",")
    try:
        vals = [int(p) for p in parts if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or H,W, got {text!r}") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected N or H,W with positive sizes, got {text!r}")
    return vals


def class_names(text: str) -> list[str]:
    """``A,B,...`` or ``@FILE`` (one name per line): the user asked for the file; metadata never can.

    Read when the command runs (not by argparse), so a bad file is the usual one-line exit 2.
    """
    if text.startswith("@"):
        from evalsuite.models.metadata import read_class_names_file

        return read_class_names_file(text[1:])
    return [x.strip() for x in text.split(",") if x.strip()]


def positive_int(text: str) -> int:
    """A positive integer (argparse type)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """The model preprocessing flags (override what the model file says) and ``--device``."""
    g = p.add_argument_group("model preprocessing (override what the model file says)")
    g.add_argument("--checkpoint", help="weights for timm:<name> models (.safetensors or a plain state dict)")
    g.add_argument("--input-size", type=size, metavar="H,W", help="model input size, e.g. 224 or 224,224")
    g.add_argument("--resize", type=positive_int, metavar="N", help="resize shorter side to N, then centre-crop to --input-size")
    g.add_argument("--interpolation", choices=("bilinear", "bicubic", "nearest"), help="resize interpolation")
    g.add_argument("--mean", type=csv_floats, metavar="R,G,B", help="per-channel mean applied to [0,1] RGB")
    g.add_argument("--std", type=csv_floats, metavar="R,G,B", help="per-channel std applied to [0,1] RGB")
    g.add_argument("--class-names", metavar="A,B,...|@FILE", help="class names in logit order")
    g.add_argument("--channel-order", choices=("RGB", "BGR"), help="channel order the network expects")
    g.add_argument("--outputs", choices=("logits", "probabilities"),
                   help="what the model outputs; probabilities are scored as log-probabilities")
    g.add_argument("--layout", type=str.upper, choices=("NCHW", "NHWC"), metavar="nchw|nhwc",
                   help="the network's input layout, when its input shape reads both ways (default: from the shape)")
    # ``--output`` unless the command already uses it (calibrate: the output file); --model-output always
    names = ["--model-output"] if "--output" in p._option_string_actions else ["--output", "--model-output"]
    g.add_argument(*names, dest="output_name", metavar="NAME",
                   help="the ONNX output holding the logits (default: the first; inspect lists them)")
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)")


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The model flags given on the command line, as ``load_model`` overrides (``@FILE`` names read)."""
    keys = ("input_size", "resize", "interpolation", "mean", "std", "class_names", "channel_order", "outputs")
    out = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    for key, dest in (("layout", "layout"), ("output", "output_name")):
        if getattr(args, dest, None) is not None:
            out[key] = getattr(args, dest)
    if isinstance(out.get("class_names"), str):
        out["class_names"] = class_names(out["class_names"])
    return out
