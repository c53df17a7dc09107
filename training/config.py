"""The recipe schema: typed, validated dataclasses loaded from YAML with dotted ``key=value`` overrides.

A recipe is one YAML mapping whose sections mirror the dataclasses below (``data``, ``model``,
``optim``, ``schedule``, ``augment``, ``loss``, ``adversarial``, ...). Every switch of the
training recipe is a field here with a default that turns it off, so a recipe only names what
it uses. Unknown keys and bad values raise :class:`~evalsuite.errors.UsageError` with the full
dotted key and a did-you-mean hint, never a silent default.

Overrides from the command line are ``section.key=value`` (``optim.lr=0.01``,
``adversarial.method=trades``, ``augment.mixup_alpha=0.2``); the value is parsed as YAML, so
``8/255`` style fractions, lists (``[24, 32]``) and ``null`` work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from evalsuite.errors import UsageError
from evalsuite.options import build, to_plain
from evalsuite.registry import did_you_mean

RECIPE_PACKAGE = "training.recipes"


# --------------------------------------------------------------------------------------- sections
@dataclass
class DataConfig:
    """Where the images come from. Specs are whatever ``evalsuite run --data`` accepts.

    ``val`` may be ``null``: a stratified ``val_fraction`` of ``train`` is then held out (seeded).
    ``test`` is the held-out split ``evalsuite run`` evaluates at the end; it never influences
    training (no early stopping, no temperature fit on it).
    """

    train: str = "builtin:digits:train"
    val: str | None = "builtin:digits:val"
    test: str | None = "builtin:digits:test"
    val_fraction: float = 0.2
    input_size: list[int] = field(default_factory=lambda: [32, 32])
    resize: int | None = None
    interpolation: str = "bilinear"
    class_balanced: bool = False
    limit: int | None = None  # use at most this many training images (seeded stratified), for smoke runs
    workers: int | None = None

    def validate(self) -> None:
        if len(self.input_size) != 2 or min(self.input_size) < 8:
            raise UsageError(f"data.input_size must be [height, width] >= 8, got {self.input_size}")
        if not 0.0 < self.val_fraction < 1.0:
            raise UsageError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.interpolation not in ("bilinear", "bicubic", "nearest"):
            raise UsageError(f"data.interpolation must be bilinear, bicubic or nearest, got {self.interpolation!r}")
        if self.limit is not None and self.limit < 10:
            raise UsageError(f"data.limit must be >= 10, got {self.limit}")


@dataclass
class ModelConfig:
    """The network: ``digits_cnn``, ``timm:<name>`` or ``torchvision:<name>``, always randomly initialised.

    ``checkpoint`` is a local ``.safetensors`` / ``.pt`` state dict (or a training output folder)
    loaded after construction; nothing is ever downloaded. ``mean``/``std`` are the normalisation
    the network expects and travel into the ONNX metadata.
    """

    name: str = "digits_cnn"
    checkpoint: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])

    def validate(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise UsageError("model.mean and model.std must be 3 numbers each, std > 0")
        if "pretrained" in self.kwargs or "weights" in self.kwargs:
            raise UsageError(
                "model.kwargs may not set 'pretrained'/'weights': training never downloads weights; "
                "use model.checkpoint=<local file> to start from trained weights"
            )


@dataclass
class OptimConfig:
    """Optimiser. ``lr`` is the rate at ``base_batch_size``; the used rate scales linearly with batch size."""

    name: str = "adamw"  # adamw | sgd
    lr: float = 1e-3
    base_batch_size: int = 64
    batch_size: int = 64
    scale_lr: bool = True
    weight_decay: float = 0.05
    no_decay_bias_norm: bool = True
    momentum: float = 0.9
    nesterov: bool = True
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float | None = None

    def validate(self) -> None:
        if self.name not in ("adamw", "sgd"):
            raise UsageError(f"optim.name must be 'adamw' or 'sgd'{did_you_mean(self.name, ['adamw', 'sgd'])}")
        if self.lr <= 0 or self.batch_size < 1 or self.base_batch_size < 1:
            raise UsageError("optim.lr must be > 0 and optim.batch_size, optim.base_batch_size >= 1")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise UsageError("optim.weight_decay must be >= 0 and optim.momentum in [0, 1)")
        if len(self.betas) != 2:
            raise UsageError(f"optim.betas must be two numbers, got {self.betas}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise UsageError(f"optim.grad_clip must be > 0 or null, got {self.grad_clip}")

    @property
    def effective_lr(self) -> float:
        """The learning rate actually used: linear scaling rule (Goyal et al. 2017)."""
        if not self.scale_lr:
            return self.lr
        return self.lr * self.batch_size / self.base_batch_size


@dataclass
class ScheduleConfig:
    """Linear warmup, then cosine decay to ``min_lr_ratio``; optional SGDR warm restarts."""

    epochs: int = 10
    warmup_epochs: float = 0.0
    warmup_start_ratio: float = 0.0
    min_lr_ratio: float = 0.0
    kind: str = "cosine"  # cosine | constant
    restart_epochs: float | None = None  # first cycle length; null = one cosine over the whole run
    restart_mult: float = 1.0

    def validate(self) -> None:
        if self.epochs < 1:
            raise UsageError(f"schedule.epochs must be >= 1, got {self.epochs}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise UsageError(f"schedule.warmup_epochs must be in [0, epochs), got {self.warmup_epochs}")
        if self.kind not in ("cosine", "constant"):
            raise UsageError(f"schedule.kind must be 'cosine' or 'constant', got {self.kind!r}")
        if not 0 <= self.min_lr_ratio <= 1 or not 0 <= self.warmup_start_ratio <= 1:
            raise UsageError("schedule.min_lr_ratio and schedule.warmup_start_ratio must be in [0, 1]")
        if self.restart_epochs is not None and self.restart_epochs <= 0:
            raise UsageError(f"schedule.restart_epochs must be > 0 or null, got {self.restart_epochs}")
        if self.restart_mult < 1:
            raise UsageError(f"schedule.restart_mult must be >= 1, got {self.restart_mult}")


@dataclass
class AugMixConfig:
    """AugMix (Hendrycks et al. 2020): ``width`` chains of 1-3 ops mixed by Dirichlet/Beta weights.

    ``jsd_weight`` > 0 adds the Jensen-Shannon consistency loss over (clean, augmix, augmix)
    views (the paper uses 12); 0 trains on one AugMix view per image.
    """

    enabled: bool = False
    severity: int = 3
    width: int = 3
    depth: int = -1
    alpha: float = 1.0
    jsd_weight: float = 0.0

    def validate(self) -> None:
        if not 1 <= self.severity <= 10 or self.width < 1 or self.depth == 0 or self.depth < -1:
            raise UsageError("augment.augmix: severity in 1..10, width >= 1, depth -1 (random 1-3) or >= 1")
        if self.alpha <= 0 or self.jsd_weight < 0:
            raise UsageError("augment.augmix: alpha > 0 and jsd_weight >= 0")


@dataclass
class AugmentConfig:
    """Batch augmentation on the training images (all off unless set)."""

    random_shift: int = 0  # pad-and-crop by up to this many pixels (replicate padding)
    hflip: bool = False
    brightness: float = 0.0  # +-: additive jitter in [0, 1] pixel units
    contrast: float = 0.0  # +-: multiplicative jitter around 0.5
    noise_std: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    switch_prob: float = 0.5  # P(cutmix) when both mixup and cutmix are on
    augmix: AugMixConfig = field(default_factory=AugMixConfig)

    def validate(self) -> None:
        if self.random_shift < 0 or self.brightness < 0 or self.contrast < 0 or self.noise_std < 0:
            raise UsageError("augment: random_shift, brightness, contrast and noise_std must be >= 0")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise UsageError("augment.mixup_alpha and augment.cutmix_alpha must be >= 0")
        if not 0 <= self.mix_prob <= 1 or not 0 <= self.switch_prob <= 1:
            raise UsageError("augment.mix_prob and augment.switch_prob must be in [0, 1]")
        self.augmix.validate()


@dataclass
class ProgressiveConfig:
    """Progressive resizing: train at ``start_size`` growing linearly to the full input size."""

    enabled: bool = False
    start_size: int = 24
    end_epoch: int = 5  # first epoch (0-based) trained at full size
    step: int = 4  # sizes are rounded to multiples of this

    def validate(self) -> None:
        if self.enabled and (self.start_size < 8 or self.step < 1 or self.end_epoch < 1):
            raise UsageError("progressive: start_size >= 8, step >= 1, end_epoch >= 1")


@dataclass
class LossConfig:
    """Classification loss and the optional auxiliary calibration loss."""

    name: str = "ce"  # ce | focal
    label_smoothing: float = 0.0
    focal_gamma: float = 3.0
    focal_sample_dependent: bool = False  # FLSD-53: gamma 5 if p_true < 0.2 else 3 (Mukhoti et al. 2020)
    aux: str = "none"  # none | mdca | dca | mmce
    aux_weight: float = 1.0

    def validate(self) -> None:
        if self.name not in ("ce", "focal"):
            raise UsageError(f"loss.name must be 'ce' or 'focal'{did_you_mean(self.name, ['ce', 'focal'])}")
        if self.aux not in ("none", "mdca", "dca", "mmce"):
            raise UsageError(
                f"loss.aux must be none, mdca, dca or mmce{did_you_mean(self.aux, ['none', 'mdca', 'dca', 'mmce'])}"
            )
        if not 0 <= self.label_smoothing < 1 or self.focal_gamma < 0 or self.aux_weight < 0:
            raise UsageError("loss: label_smoothing in [0, 1), focal_gamma >= 0, aux_weight >= 0")


@dataclass
class AdversarialConfig:
    """Adversarial training in [0, 1] pixel space (L-infinity) and per-epoch PGD validation.

    ``method``: ``none`` | ``pgd`` (Madry et al. 2018) | ``trades`` (Zhang et al. 2019) |
    ``fgsm`` (fast FGSM with random start, Wong et al. 2020). ``eval_epsilon`` > 0 reports PGD
    robust accuracy on ``eval_samples`` validation images every epoch (also without
    adversarial training, to see the baseline).
    """

    method: str = "none"
    epsilon: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 7
    random_start: bool = True
    trades_beta: float = 6.0
    fgsm_alpha: float = 1.25  # fast FGSM step = fgsm_alpha * epsilon
    epsilon_warmup_epochs: int = 0  # ramp epsilon linearly from 0 over these epochs
    eval_epsilon: float = 0.0
    eval_steps: int = 10
    eval_samples: int = 200

    def validate(self) -> None:
        methods = ["none", "pgd", "trades", "fgsm"]
        if self.method not in methods:
            raise UsageError(f"adversarial.method must be one of {', '.join(methods)}{did_you_mean(self.method, methods)}")
        if not 0 <= self.epsilon <= 1 or not 0 <= self.eval_epsilon <= 1 or self.step_size <= 0:
            raise UsageError("adversarial: epsilon/eval_epsilon in [0, 1] (pixel scale), step_size > 0")
        if self.steps < 1 or self.eval_steps < 1 or self.eval_samples < 1 or self.epsilon_warmup_epochs < 0:
            raise UsageError("adversarial: steps, eval_steps, eval_samples >= 1; epsilon_warmup_epochs >= 0")
        if self.trades_beta < 0 or self.fgsm_alpha <= 0:
            raise UsageError("adversarial: trades_beta >= 0, fgsm_alpha > 0")


@dataclass
class EmaConfig:
    """Exponential moving average of weights (and BatchNorm buffers); used for validation/export."""

    enabled: bool = False
    decay: float = 0.999
    warmup: bool = True  # decay = min(decay, (1 + step) / (10 + step))

    def validate(self) -> None:
        if not 0 < self.decay < 1:
            raise UsageError(f"ema.decay must be in (0, 1), got {self.decay}")


@dataclass
class FinetuneConfig:
    """Freeze the backbone for ``freeze_epochs``, then unfreeze ``unfreeze_groups`` groups from the top,
    one every ``unfreeze_every`` epochs; the backbone learns at ``backbone_lr_mult`` x the head rate."""

    freeze_epochs: int = 0
    unfreeze_groups: int = 1
    unfreeze_every: int = 1
    backbone_lr_mult: float = 1.0

    def validate(self) -> None:
        if self.freeze_epochs < 0 or self.unfreeze_groups < 1 or self.unfreeze_every < 1:
            raise UsageError("finetune: freeze_epochs >= 0, unfreeze_groups >= 1, unfreeze_every >= 1")
        if self.backbone_lr_mult <= 0:
            raise UsageError(f"finetune.backbone_lr_mult must be > 0, got {self.backbone_lr_mult}")


@dataclass
class DistillConfig:
    """Knowledge distillation (Hinton et al. 2015) from a teacher trained by this module.

    ``teacher`` is a training output folder or its ``model.safetensors`` (the architecture is read
    from the checkpoint's metadata). Loss = (1 - alpha) * task loss + alpha * T^2 * KL(teacher_T || student_T).
    """

    teacher: str | None = None
    alpha: float = 0.5
    temperature: float = 4.0

    def validate(self) -> None:
        if not 0 <= self.alpha <= 1 or self.temperature <= 0:
            raise UsageError("distill: alpha in [0, 1], temperature > 0")


@dataclass
class EarlyStoppingConfig:
    """Keep the best checkpoint by ``monitor``; stop after ``patience`` epochs without improvement."""

    monitor: str = "val_accuracy"  # val_accuracy | val_loss | val_ece | val_robust_accuracy
    patience: int | None = None  # null: never stop early (best checkpoint is still kept)
    min_delta: float = 0.0
    restore_best: bool = True

    MONITORS = {"val_accuracy": "max", "val_loss": "min", "val_ece": "min", "val_robust_accuracy": "max"}

    def validate(self) -> None:
        if self.monitor not in self.MONITORS:
            names = sorted(self.MONITORS)
            raise UsageError(f"early_stopping.monitor must be one of {', '.join(names)}{did_you_mean(self.monitor, names)}")
        if self.patience is not None and self.patience < 1:
            raise UsageError(f"early_stopping.patience must be >= 1 or null, got {self.patience}")
        if self.min_delta < 0:
            raise UsageError("early_stopping.min_delta must be >= 0")

    @property
    def mode(self) -> str:
        return self.MONITORS[self.monitor]


@dataclass
class CalibrationConfig:
    """Post-hoc temperature scaling on the validation split; ``T`` is baked into the exported logits."""

    temperature_scaling: bool = False
    ece_bins: int = 15

    def validate(self) -> None:
        if self.ece_bins < 1:
            raise UsageError("calibration.ece_bins must be >= 1")


@dataclass
class EvalConfig:
    """The final ``evalsuite run`` on the held-out split (``data.test``)."""

    enabled: bool = True
    suite: str = "standard"
    policy: str | None = None
    batch_size: int = 64


@dataclass
class Recipe:
    """A whole training recipe. See ``docs/training.md`` for every switch."""

    name: str = "recipe"
    description: str = ""
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "none"  # none | bf16 | fp16 (autocast; fp16 uses a gradient scaler)
    channels_last: bool = False
    threads: int | None = None  # torch CPU threads (null: torch's default)
    resume: str = "auto"  # auto | never | must
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    progressive: ProgressiveConfig = field(default_factory=ProgressiveConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> None:
        if self.amp not in ("none", "bf16", "fp16"):
            raise UsageError(f"amp must be none, bf16 or fp16, got {self.amp!r}")
        if self.resume not in ("auto", "never", "must"):
            raise UsageError(f"resume must be auto, never or must, got {self.resume!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise UsageError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.threads is not None and self.threads < 1:
            raise UsageError("threads must be >= 1 or null")
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if hasattr(section, "validate"):
                section.validate()
        if self.early_stopping.monitor == "val_robust_accuracy" and self.adversarial.eval_epsilon <= 0:
            raise UsageError("early_stopping.monitor=val_robust_accuracy needs adversarial.eval_epsilon > 0")
        if (self.augment.mixup_alpha > 0 or self.augment.cutmix_alpha > 0) and self.adversarial.method != "none":
            raise UsageError("mixup/cutmix and adversarial training cannot be combined in one recipe")
        if self.augment.augmix.enabled and self.augment.augmix.jsd_weight > 0 and self.adversarial.method != "none":
            raise UsageError("AugMix's JSD loss and adversarial training cannot be combined in one recipe")

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def training_hash(self) -> str:
        """Hash of everything that changes the trained weights (resume refuses a different one)."""
        d = self.to_dict()
        for key in ("name", "description", "device", "threads", "resume", "eval"):
            d.pop(key, None)
        d["data"].pop("workers", None)
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------------------- loading
def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    return build(cls, data, prefix, what="recipe key")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'optim.lr=0.01'`` -> (``['optim', 'lr']``, ``0.01``); the value is parsed as YAML."""
    from evalsuite.safe_yaml import YamlError, safe_load

    if "=" not in text:
        raise UsageError(f"override {text!r} must look like section.key=value (e.g. optim.lr=0.01)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UsageError(f"override {text!r} has an empty key")
    try:
        value = safe_load(raw) if raw.strip() else None
    except YamlError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted ``key=value`` in a nested dict (later overrides win)."""
    out = json.loads(json.dumps(data, default=str))
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = {}
                node[part] = child
            if not isinstance(child, dict):
                raise UsageError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return out


def recipe_names() -> list[str]:
    """Recipes shipped in ``training/recipes`` (``policy-*.yaml`` beside them are their gate policies)."""
    return sorted(
        p.name[: -len(".yaml")]
        for p in resources.files(RECIPE_PACKAGE).iterdir()
        if p.name.endswith(".yaml") and not p.name.startswith("policy-")
    )


def _read_recipe_source(spec: str) -> tuple[dict[str, Any], str, Path | None]:
    """(mapping, origin for messages, folder that relative paths in the recipe refer to)."""
    import yaml

    if spec.endswith((".yaml", ".yml")) or "/" in spec or Path(spec).exists():
        from evalsuite.config import load_yaml_mapping

        return load_yaml_mapping(spec, what="recipe"), str(spec), Path(spec).resolve().parent
    names = recipe_names()
    if spec not in names:
        raise UsageError(f"unknown recipe {spec!r}{did_you_mean(spec, names)}; bundled recipes: {', '.join(names)}")
    res = resources.files(RECIPE_PACKAGE)
    text = res.joinpath(f"{spec}.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    folder = Path(str(res)) if Path(str(res)).is_dir() else None
    return data, f"recipe {spec}", folder


def recipe_from_dict(data: dict[str, Any], overrides: list[str] | None = None) -> Recipe:
    """Build and validate a :class:`Recipe` from a plain mapping plus dotted overrides."""
    merged = apply_overrides(data, list(overrides or []))
    recipe = _build(Recipe, merged)
    recipe.validate()
    return recipe


def load_recipe(spec: str, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe by bundled name (``standard``) or YAML path, apply overrides and validate."""
    data, origin, folder = _read_recipe_source(spec)
    if "name" not in data:
        data["name"] = Path(spec).stem if origin == str(spec) else spec
    try:
        recipe = recipe_from_dict(data, overrides)
    except UsageError as exc:
        raise UsageError(f"{origin}: {exc}") from None
    # A policy named relative to the recipe file (bundled recipes ship theirs beside them).
    pol = recipe.eval.policy
    if pol and not Path(pol).is_absolute() and not Path(pol).exists() and folder is not None:
        candidate = folder / pol
        if candidate.exists():
            recipe.eval.policy = str(candidate)
    return recipe
