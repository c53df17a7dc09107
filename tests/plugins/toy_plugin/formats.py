"""Toy model format: a linear classifier in a ``.lin`` file (``numpy.savez``: W, b, class_names)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from evalsuite.errors import ModelError
from evalsuite.models import Model, ModelFormat, ModelInfo, register_model_format


class LinearModel(Model):
    def __init__(self, path: Path, w: np.ndarray, b: np.ndarray, info: ModelInfo) -> None:
        self.path, self.w, self.b, self.info, self.device = path, w, b, info, "cpu"

    def predict(self, x):
        x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        return (x.reshape(len(x), -1).astype(np.float32) @ self.w.T + self.b).astype(np.float32)


@register_model_format
class LinearFormat(ModelFormat):
    name = "toy-linear"
    label = "<file>.lin"
    description = "linear classifier saved with numpy.savez (toy plug-in)"
    expected = "a toy .lin file"
    suffixes = (".lin",)

    def load(self, spec, *, device, checkpoint, overrides):
        path = Path(spec).expanduser()
        try:
            with np.load(path, allow_pickle=False) as z:  # data only: never unpickle a model file
                w, b, names = z["W"].astype(np.float32), z["b"].astype(np.float32), [str(n) for n in z["class_names"]]
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"{spec}: not a toy .lin file ({exc})") from None
        side = int(round((w.shape[1] / 3) ** 0.5))
        info = ModelInfo(input_size=(side, side), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                         class_names=tuple(names), format=self.name, source=spec,
                         sha256=hashlib.sha256(path.read_bytes()).hexdigest(), metadata_source="file")
        return LinearModel(path, w, b, info)

    def inspect(self, spec, *, device, checkpoint, overrides):
        model = self.load(spec, device=device, checkpoint=checkpoint, overrides=overrides)
        return {"format": self.name, "source": spec, "info": model.info.to_dict(), "problems": []}
