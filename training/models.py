"""Networks by name, always randomly initialised; trained weights only from local checkpoints.

Names:

- ``digits_cnn`` -- the small residual CNN of :mod:`evalsuite.demo_model` (kwarg ``width``);
- ``timm:<name>`` -- :func:`timm.create_model` with ``pretrained=False`` (any timm architecture;
  ``timm:test_resnet``, ``timm:resnet10t`` and ``timm:resnet50`` are useful sizes);
- ``torchvision:<name>`` -- :func:`torchvision.models.get_model` with ``weights=None``.

A network here takes *normalised* input (``(x - mean) / std``), which is what gets exported;
:class:`~evalsuite.models.pixel.PixelSpaceModel` wraps it for [0, 1] pixels where attacks need it.

``model.checkpoint`` (a ``.safetensors`` file, a ``.pt``/``.pth`` state dict, or a training
output folder) is loaded after construction. A classifier head whose shape differs from the
checkpoint's (fine-tuning to new classes) is re-initialised and logged; any other missing or
unexpected key is a :class:`~evalsuite.errors.ModelError`, never a silent partial load.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from evalsuite.errors import ModelError, UsageError
from evalsuite.registry import did_you_mean

log = logging.getLogger(__name__)

CHECKPOINT_META_KEY = "evalsuite.training"


def build_network(name: str, num_classes: int, kwargs: dict[str, Any] | None = None) -> Any:
    """A randomly initialised ``nn.Module`` mapping normalised NCHW input to ``num_classes`` logits."""
    kwargs = dict(kwargs or {})
    if "pretrained" in kwargs or "weights" in kwargs:
        raise UsageError("model kwargs may not set 'pretrained'/'weights': weights come from model.checkpoint only")
    if name == "digits_cnn":
        from evalsuite.demo_model import build_digits_cnn

        unknown = sorted(set(kwargs) - {"width"})
        if unknown:
            raise UsageError(f"digits_cnn accepts only the kwarg 'width', got {', '.join(unknown)}")
        return build_digits_cnn(num_classes=num_classes, **kwargs).network
    if name.startswith("timm:"):
        import timm

        arch = name[len("timm:") :]
        if not timm.is_model(arch):
            raise UsageError(f"unknown timm model {arch!r}{did_you_mean(arch, timm.list_models())}")
        try:
            return timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs)
        except TypeError as exc:
            raise UsageError(f"timm model {arch!r} rejected model.kwargs {kwargs}: {exc}") from None
    if name.startswith("torchvision:"):
        import torchvision

        arch = name[len("torchvision:") :]
        available = torchvision.models.list_models()
        if arch not in available:
            raise UsageError(f"unknown torchvision model {arch!r}{did_you_mean(arch, available)}")
        try:
            return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"torchvision model {arch!r} rejected model.kwargs {kwargs}: {exc}") from None
    raise UsageError(
        f"unknown model {name!r}{did_you_mean(name, ['digits_cnn'])}; "
        "use digits_cnn, timm:<architecture> or torchvision:<architecture>"
    )


def classifier_module_names(network: Any) -> list[str]:
    """Qualified names of the modules forming the classifier head (the last Linear by default)."""
    from torch import nn

    if hasattr(network, "get_classifier"):  # timm
        head = network.get_classifier()
        for name, mod in network.named_modules():
            if mod is head:
                return [name]
    for attr in ("head", "fc", "classifier", "heads"):
        if isinstance(getattr(network, attr, None), nn.Module):
            return [attr]
    last = None
    for name, mod in network.named_modules():
        if isinstance(mod, nn.Linear):
            last = name
    if last is None:
        raise ModelError("cannot find the classifier head (no Linear layer)")
    return [last]


def split_head_backbone(network: Any) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """(head parameters, backbone parameters) as (name, parameter) lists in definition order."""
    heads = classifier_module_names(network)
    head, backbone = [], []
    for name, p in network.named_parameters():
        if any(name == h or name.startswith(h + ".") for h in heads):
            head.append((name, p))
        else:
            backbone.append((name, p))
    if not head:
        raise ModelError("the classifier head has no parameters")
    return head, backbone


def _resolve_checkpoint_path(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "model.safetensors"
    if not p.exists():
        raise ModelError(f"checkpoint not found: {p}")
    return p


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state dict of CPU tensors, training metadata or {}) from a local file or output folder."""
    import torch

    p = _resolve_checkpoint_path(path)
    meta: dict[str, Any] = {}
    if p.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            state = load_file(str(p))
            with safe_open(str(p), framework="pt") as f:
                raw = (f.metadata() or {}).get(CHECKPOINT_META_KEY)
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types
            raise ModelError(f"cannot read safetensors checkpoint {p}: {exc}") from None
        if raw:
            meta = json.loads(raw)
        return state, meta
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot read checkpoint {p}: {exc}") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelError(f"checkpoint {p} does not hold a state dict")
    return obj, meta


def load_weights(network: Any, path: str | Path) -> list[str]:
    """Load a checkpoint into ``network``; returns the re-initialised head keys (shape mismatch)."""
    state, _ = read_checkpoint(path)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    own = network.state_dict()
    heads = classifier_module_names(network)
    reinit: list[str] = []
    for key in list(state):
        if key in own and tuple(state[key].shape) != tuple(own[key].shape):
            if any(key == h or key.startswith(h + ".") for h in heads):
                reinit.append(key)
                del state[key]
            else:
                raise ModelError(
                    f"checkpoint {path}: {key} has shape {tuple(state[key].shape)}, "
                    f"the model expects {tuple(own[key].shape)}"
                )
    missing, unexpected = network.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in reinit]
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ModelError(f"checkpoint {path} does not fit the model ({what}); check model.name")
    if reinit:
        log.info("checkpoint %s: classifier %s re-initialised (different number of classes)", path, reinit)
    return reinit


def build_from_recipe(model_cfg: Any, num_classes: int) -> Any:
    """The recipe's network, with ``model.checkpoint`` loaded if given."""
    net = build_network(model_cfg.name, num_classes, model_cfg.kwargs)
    if model_cfg.checkpoint:
        load_weights(net, model_cfg.checkpoint)
    return net


def load_trained(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """A network trained by this module (architecture from the checkpoint metadata), eval mode."""
    state, meta = read_checkpoint(path)
    if not meta or "model" not in meta:
        raise ModelError(f"{path} carries no training metadata; it was not written by `evalsuite train`")
    net = build_network(meta["model"]["name"], len(meta["class_names"]), meta["model"].get("kwargs") or {})
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(f"{path} does not fit {meta['model']['name']} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return net.eval(), meta
