"""What a finished training run leaves beside the model: safetensors weights and an ONNX file
that ``evalsuite run model.onnx`` loads without flags.

- ``model.safetensors``: the network's ``state_dict`` (normalised-input network, no temperature),
  with the training metadata (architecture, class names, mean/std, input size, temperature,
  recipe name and hash) as a JSON string under the safetensors metadata key
  ``evalsuite.training``, so :func:`training.models.load_trained` (distillation teachers,
  fine-tuning) can rebuild it.
- ``model.onnx``: the network with the fitted temperature *baked in* (logits divided by ``T``)
  and evalsuite's preprocessing metadata (:func:`evalsuite.models.export.export_onnx`), whose
  ``temperature`` field records that ``T`` (the evalsuite convention: a temperature already in
  the logits). Its ``extra.training_preprocessing`` records the pipeline the network was trained
  with (:func:`training_preprocessing`), which evalsuite's ``preprocessing`` suite compares with
  the preprocessing in force when the model is evaluated.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from training.models import CHECKPOINT_META_KEY


def temperature_scaled(network: Any, temperature: float) -> Any:
    """``network`` followed by division of the logits by ``temperature`` (identity when T = 1)."""
    from torch import nn

    class TemperatureScaled(nn.Module):
        def __init__(self, net: Any, t: float) -> None:
            super().__init__()
            self.net = net
            self.temperature = float(t)

        def forward(self, x: Any) -> Any:
            return self.net(x) / self.temperature

    if float(temperature) == 1.0:
        return network
    return TemperatureScaled(network, temperature)


def publish_mode(path: str | Path) -> None:
    """Give a file written through ``mkstemp`` (mode 0600) the usual permissions (0666 & ~umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def save_safetensors(state: dict[str, Any], path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write a state dict (contiguous CPU copies, shared storage broken) atomically with metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={CHECKPOINT_META_KEY: json.dumps(metadata, sort_keys=True)})
        publish_mode(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def export_model(
    network: Any,
    out_dir: str | Path,
    *,
    metadata: dict[str, Any],
    temperature: float = 1.0,
    onnx: bool = True,
) -> dict[str, Path]:
    """Write ``model.safetensors`` (and ``model.onnx``) for a trained network; returns the paths.

    ``metadata`` must hold ``class_names``, ``mean``, ``std`` and ``input_size``.
    """
    import copy

    from evalsuite.models.export import export_onnx
    from evalsuite.models.preprocess_variants import RECORD_KEY

    out = Path(out_dir)
    meta = dict(metadata)
    meta["temperature"] = float(temperature)
    paths = {"safetensors": save_safetensors(network.state_dict(), out / "model.safetensors", meta)}
    if onnx:
        net = copy.deepcopy(network).cpu().float().to(memory_format=_contiguous())
        paths["onnx"] = export_onnx(
            temperature_scaled(net, temperature).eval(),
            out / "model.onnx",
            input_size=meta["input_size"],
            mean=meta["mean"],
            std=meta["std"],
            class_names=meta["class_names"],
            resize=meta.get("resize"),
            interpolation=meta.get("interpolation", "bilinear"),
            temperature=float(temperature),
            extra={"trained_by": "evalsuite train", "recipe": meta.get("recipe"), "recipe_hash": meta.get("recipe_hash"),
                   "architecture": meta.get("model", {}).get("name"),
                   # the pipeline the network was trained with: the preprocessing suite compares it
                   # field by field with the preprocessing in force when the model is evaluated
                   RECORD_KEY: training_preprocessing(meta)},
        )
        publish_mode(paths["onnx"])
    return paths


def training_preprocessing(meta: dict[str, Any]) -> dict[str, Any]:
    """The training pipeline recorded in the exported model's metadata (``extra.training_preprocessing``):
    what the training data loader and the network's normalisation used (training feeds RGB)."""
    return {
        "input_size": [int(v) for v in meta["input_size"]],
        "resize": None if meta.get("resize") is None else int(meta["resize"]),
        "interpolation": str(meta.get("interpolation", "bilinear")),
        "mean": [float(v) for v in meta["mean"]],
        "std": [float(v) for v in meta["std"]],
        "channel_order": "RGB",
    }


def _contiguous() -> Any:
    import torch

    return torch.contiguous_format
