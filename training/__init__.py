"""evalsuite's training module: YAML recipes that produce models evalsuite can gate.

``evalsuite train RECIPE.yaml [--out DIR] [key=value ...]`` (or ``python -m training``) trains a
timm / torchvision / built-in network from random initialisation or a local checkpoint on data
read by evalsuite's own readers, with every practice of the recipe behind a config switch
(:mod:`training.config`): AdamW/SGD, linear LR scaling, warmup + cosine (warm restarts), label
smoothing, mixup/cutmix, progressive resizing, AMP, no decay on biases/norms, EMA, freezing and
gradual unfreezing, class-balanced sampling, early stopping, distillation, AugMix; adversarial
training (PGD-AT, TRADES, fast FGSM) and calibration-aware fine-tuning (focal/FLSD-53, MDCA,
DCA, MMCE, temperature scaling). Each run exports safetensors + ONNX with evalsuite metadata and
ends with ``evalsuite run`` on the held-out split. See ``docs/training.md``.
"""

from __future__ import annotations

__all__ = ["list_entries"]


def list_entries() -> list[tuple[str, str]]:
    """(name, description) of the bundled recipes, for ``evalsuite ls recipes``."""
    from training.config import load_recipe, recipe_names

    out = []
    for name in recipe_names():
        desc = " ".join(str(load_recipe(name).description).split())
        out.append((name, desc))
    return out
