"""Export a torch classifier to ONNX with the metadata ``evalsuite run`` needs.

The preprocessing facts travel inside the file as ``metadata_props`` under the key
``evalsuite.preprocessing`` (a JSON object), so ``evalsuite run model.onnx`` needs no flags.
The same JSON object is the format of a sidecar ``<model>.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalsuite.atomic_io import atomic_path

METADATA_KEY = "evalsuite.preprocessing"


def preprocessing_dict(
    *,
    input_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    class_names: Sequence[str],
    resize: int | None = None,
    interpolation: str = "bilinear",
    channel_order: str = "RGB",
    temperature: float = 1.0,
    extra: dict[str, Any] | None = None,
    layout: str | None = None,
    channels: int | None = None,
    output: str | None = None,
) -> dict[str, Any]:
    """The JSON object stored in ``metadata_props`` / sidecar files.

    ``layout`` (``NCHW`` | ``NHWC``), ``channels`` (1 | 3) and ``output`` (the output holding the
    logits) are written only when given: by default evalsuite reads layout and channels off the
    input shape and takes the first output, and files without them stay as they were.
    """
    d: dict[str, Any] = {
        "input_size": [int(input_size[0]), int(input_size[1])],
        "resize": None if resize is None else int(resize),
        "interpolation": interpolation,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "channel_order": channel_order,
        "class_names": [str(c) for c in class_names],
        "temperature": float(temperature),
    }
    if layout is not None:
        d["layout"] = str(layout).upper()
    if channels is not None:
        d["channels"] = int(channels)
    if output is not None:
        d["output"] = str(output)
    if extra:
        d["extra"] = dict(extra)
    return d


def write_metadata(onnx_path: str | Path, metadata: dict[str, Any]) -> None:
    """Set (replace) evalsuite's metadata on an existing ONNX file, atomically."""
    import onnx

    path = Path(onnx_path)
    model = onnx.load(str(path))
    set_metadata_prop(model, metadata)
    save_onnx_atomic(model, path)


def set_metadata_prop(model: Any, metadata: dict[str, Any]) -> None:
    """Replace evalsuite's ``metadata_props`` entry of an in-memory ONNX ``ModelProto``."""
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(metadata, sort_keys=True)


def save_onnx_atomic(model: Any, path: str | Path) -> None:
    """Write an ``onnx.ModelProto`` so that readers never see a half-written file."""
    import onnx

    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


def export_onnx(
    module: Any,
    path: str | Path,
    *,
    input_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    class_names: Sequence[str],
    resize: int | None = None,
    interpolation: str = "bilinear",
    temperature: float = 1.0,
    opset: int = 18,
    extra: dict[str, Any] | None = None,
    layout: str = "NCHW",
    channels: int = 3,
) -> Path:
    """Export ``module`` to ONNX with evalsuite metadata; returns the written path.

    ``module`` is the network as deployed: it takes ``(x - mean) / std`` of RGB in [0, 1]
    (the usual convention), and ``mean``/``std`` are recorded so evalsuite applies them. For a
    :class:`~evalsuite.models.pixel.PixelSpaceModel` pass its ``.network``. The batch dimension
    is dynamic. ``layout="NHWC"`` / ``channels=1``: ``module`` takes ``N x H x W x C`` / one
    (luma) channel; the input shape says so and evalsuite reads it from there.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    module = module.eval().cpu()
    h, w, c = int(input_size[0]), int(input_size[1]), int(channels)
    dummy = torch.rand(2, h, w, c) if str(layout).upper() == "NHWC" else torch.rand(2, c, h, w)
    try:
        with atomic_path(path, suffix=".onnx") as tmp, torch.no_grad():
            torch.onnx.export(
                module,
                (dummy,),
                str(tmp),
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
            write_metadata(
                tmp,
                preprocessing_dict(
                    input_size=input_size,
                    mean=mean,
                    std=std,
                    class_names=class_names,
                    resize=resize,
                    interpolation=interpolation,
                    temperature=temperature,
                    extra=extra,
                ),
            )
    finally:
        module.train(was_training)
    return path
