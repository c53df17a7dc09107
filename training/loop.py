"""The training loop: one :class:`Trainer` runs a :class:`~training.config.Recipe` end to end.

Per epoch: freeze/unfreeze, a deterministic batch order, augmentation, the recipe's loss
(standard, adversarial, AugMix-JSD, distillation), an optimiser step with the stateless
schedule, EMA; then validation (loss, accuracy, ECE, PGD robust accuracy), the per-epoch log
(``log.csv`` and ``log.json``), best-checkpoint bookkeeping, early stopping and an atomically
written ``checkpoint-last.pt``.

Resuming: every random draw of an epoch comes from generators seeded by (seed, epoch), the
learning rate is a function of the step, and the checkpoint holds the model, optimiser,
gradient-scaler, EMA and early-stopping state, so a run killed at any point and restarted with
the same recipe and ``--out`` continues from the last finished epoch and ends with the same
weights as an uninterrupted run (bit-identical on CPU; checked in the tests).

After training: the best (or last) weights, optional temperature scaling on the validation
split, ``model.safetensors`` + ``model.onnx`` (:mod:`training.export`), and ``evalsuite run`` on
the held-out test split with the recipe's suite and policy (:mod:`training.evaluate`), whose
scorecard is copied beside the model. ``summary.json`` records everything.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.errors import UsageError
from evalsuite.stats import softmax
from training.export import publish_mode

log = logging.getLogger(__name__)

LOG_FIELDS = (
    "epoch", "lr", "image_size", "unfrozen_groups", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
    "val_ece", "val_robust_accuracy", "seconds", "cpu_seconds", "best",
)
CHECKPOINT = "checkpoint-last.pt"
BEST = "best.safetensors"


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` produced."""

    out_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int | None
    stopped_early: bool
    temperature: float
    train_seconds: float
    paths: dict[str, Path] = field(default_factory=dict)
    final_val: dict[str, Any] = field(default_factory=dict)
    eval_exit_code: int | None = None
    eval_dir: Path | None = None
    resumed_from_epoch: int | None = None

    @property
    def exit_code(self) -> int:
        return 0 if self.eval_exit_code is None else int(self.eval_exit_code)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        publish_mode(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        publish_mode(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _to_tensor(images: np.ndarray, device: str, channels_last: bool) -> Any:
    """uint8 NHWC -> float NCHW in [0, 1] on ``device`` (:func:`evalsuite.tensors.to_tensor`), in the
    recipe's memory format."""
    import torch

    from evalsuite.tensors import to_tensor

    x = to_tensor(images, device)
    if channels_last:
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


def _relative(path: str | Path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _ece(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    from evalsuite.calibration import ece

    return float(ece(probs, labels, n_bins=n_bins))


class EarlyStopping:
    """Best-value tracking with patience; ``update`` returns True when the value improved."""

    def __init__(self, mode: str, patience: int | None, min_delta: float) -> None:
        self.mode = mode
        self.patience = patience
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, value: float, epoch: int) -> bool:
        if self.improved(value):
            self.best, self.best_epoch, self.bad_epochs = float(value), int(epoch), 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], int(state["bad_epochs"])


class Trainer:
    """Runs one recipe into ``out_dir`` (see the module docstring).

    ``callbacks`` are called as ``callback(trainer, row)`` after each epoch's checkpoint is
    written (tests use one to simulate a kill).
    """

    def __init__(
        self,
        recipe: Any,
        out_dir: str | Path,
        *,
        data: Any = None,
        callbacks: list[Callable[[Trainer, dict[str, Any]], None]] | None = None,
    ) -> None:
        self.recipe = recipe
        self.out = Path(out_dir)
        self.data = data
        self.callbacks = list(callbacks or [])
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------------------- set-up
    def _setup(self) -> None:
        import torch

        from evalsuite.compute import resolve_device
        from evalsuite.models.pixel import PixelSpaceModel
        from training.data import load_splits
        from training.ema import ModelEma
        from training.models import build_from_recipe
        from training.optim import FreezeController, build_optimizer

        r = self.recipe
        if r.threads:
            torch.set_num_threads(int(r.threads))
        self.device = resolve_device(r.device)
        if r.amp == "fp16" and self.device == "cpu":
            log.warning("amp=fp16 on CPU: autocast works but is slow; bf16 is the CPU choice")
        if self.data is None:
            self.data = load_splits(r.data, seed=r.seed)
        for split in (self.data.train, self.data.val):
            if split.in_memory and tuple(split.images([0]).shape[1:3]) != tuple(r.data.input_size):
                raise UsageError(
                    f"{split.name} images are {split.images([0]).shape[1:3]}, data.input_size is {r.data.input_size}"
                )
        torch.manual_seed(r.seed)
        self.network = build_from_recipe(r.model, self.data.num_classes).to(self.device)
        if r.channels_last:
            self.network = self.network.to(memory_format=torch.channels_last)
        self.model = PixelSpaceModel(self.network, r.model.mean, r.model.std).to(self.device)
        self.optimizer = build_optimizer(self.network, r.optim, r.finetune)
        self.base_lr = r.optim.effective_lr
        self.freezer = FreezeController(self.network, r.finetune)
        self.ema = ModelEma(self.network, r.ema.decay, r.ema.warmup) if r.ema.enabled else None
        self.eval_model = (
            PixelSpaceModel(self.ema.module, r.model.mean, r.model.std).to(self.device) if self.ema else self.model
        )
        self.amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[r.amp]
        dev_type = "cuda" if self.device.startswith("cuda") else "cpu"
        self.dev_type = dev_type
        self.scaler = torch.amp.GradScaler(dev_type, enabled=r.amp == "fp16")
        self.teacher = None
        if r.distill.teacher:
            from training.models import load_trained

            tnet, tmeta = load_trained(r.distill.teacher)
            if list(tmeta["class_names"]) != list(self.data.class_names):
                raise UsageError(
                    f"distill.teacher {r.distill.teacher} predicts classes {tmeta['class_names'][:5]}..., "
                    f"the training data has {self.data.class_names[:5]}..."
                )
            self.teacher = PixelSpaceModel(tnet, tmeta["mean"], tmeta["std"]).to(self.device).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        self.early = EarlyStopping(r.early_stopping.mode, r.early_stopping.patience, r.early_stopping.min_delta)
        self.steps_per_epoch = self._steps_per_epoch()
        self.step = 0
        self.start_epoch = 0
        self.finished = False
        self.stopped_early = False
        self.train_seconds = 0.0
        self.train_cpu_seconds = 0.0
        # Fixed validation subset for per-epoch robust accuracy (evenly spaced, same every epoch).
        n_val = len(self.data.val)
        k = min(r.adversarial.eval_samples, n_val)
        self.robust_idx = np.unique(np.linspace(0, n_val - 1, num=k).astype(np.int64)) if k else np.zeros(0, np.int64)

    def _steps_per_epoch(self) -> int:
        from training.data import num_batches

        return num_batches(len(self.data.train), self.recipe.optim.batch_size)

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.dev_type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------------------------ resume
    def _checkpoint_state(self) -> dict[str, Any]:
        return {
            "format": 1,
            "recipe_hash": self.recipe.training_hash(),
            "recipe": self.recipe.to_dict(),
            "epoch": self.start_epoch,
            "step": self.step,
            "finished": self.finished,
            "stopped_early": self.stopped_early,
            "train_seconds": self.train_seconds,
            "train_cpu_seconds": self.train_cpu_seconds,
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "early": self.early.state_dict(),
            "history": self.history,
            "class_names": list(self.data.class_names),
        }

    def _maybe_resume(self) -> int | None:
        import torch

        path = self.out / CHECKPOINT
        mode = self.recipe.resume
        if not path.exists():
            if mode == "must":
                raise UsageError(f"resume=must but {path} does not exist")
            return None
        if mode == "never":
            log.warning("resume=never: ignoring and overwriting %s", path)
            return None
        state = torch.load(str(path), map_location=self.device, weights_only=True)
        if state.get("recipe_hash") != self.recipe.training_hash():
            raise UsageError(
                f"{self.out} holds a run of a different recipe (hash {state.get('recipe_hash')} != "
                f"{self.recipe.training_hash()}); use another --out, or resume=never to start over"
            )
        if list(state["class_names"]) != list(self.data.class_names):
            raise UsageError(f"{self.out}: the checkpoint's classes differ from the data's; use another --out")
        self.network.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.early.load_state_dict(state["early"])
        self.history = list(state["history"])
        self.start_epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.finished = bool(state["finished"])
        self.stopped_early = bool(state["stopped_early"])
        self.train_seconds = float(state["train_seconds"])
        self.train_cpu_seconds = float(state.get("train_cpu_seconds", 0.0))
        log.info("resuming %s from epoch %d (step %d)", self.out, self.start_epoch, self.step)
        return self.start_epoch

    # ----------------------------------------------------------------------------------- one step
    def _loss(self, x: Any, y: Any, targets: Any, g: Any, epoch: int) -> tuple[Any, Any]:
        """(loss, logits used for train accuracy) for one batch."""
        import torch

        from training import adversarial as adv
        from training.augment import augmix, jsd_consistency
        from training.losses import aux_loss, distillation_loss, task_loss

        r = self.recipe
        a = r.adversarial
        eps = a.epsilon
        if a.epsilon_warmup_epochs > 0:
            eps = a.epsilon * min(1.0, (epoch + 1) / a.epsilon_warmup_epochs)
        jsd = None
        if r.augment.augmix.enabled:
            if r.augment.augmix.jsd_weight > 0:
                x1 = augmix(x, r.augment.augmix, g)
                x2 = augmix(x, r.augment.augmix, g)
                with self._autocast():
                    z = self.model(torch.cat([x, x1, x2]))
                z0, z1, z2 = torch.chunk(z, 3)
                jsd = r.augment.augmix.jsd_weight * jsd_consistency(z0, z1, z2)
                logits = z0
            else:
                x = augmix(x, r.augment.augmix, g)
        if a.method == "pgd":
            x = adv.pgd(self.model, x, y, epsilon=eps, step_size=a.step_size, steps=a.steps,
                        random_start=a.random_start, generator=g)
        elif a.method == "fgsm":
            x = adv.fgsm_random_start(self.model, x, y, epsilon=eps, alpha=a.fgsm_alpha * eps, generator=g,
                                      random_start=a.random_start)
        trades = None
        if a.method == "trades":
            x_adv = adv.trades_adversary(self.model, x, epsilon=eps, step_size=a.step_size, steps=a.steps, generator=g)
            with self._autocast():
                z = self.model(torch.cat([x, x_adv]))
            logits, z_adv = torch.chunk(z, 2)
            trades = a.trades_beta * adv.trades_kl(logits, z_adv)
        elif jsd is None:
            with self._autocast():
                logits = self.model(x)
        loss = task_loss(logits, targets, r.loss)
        if self.teacher is not None:
            with torch.no_grad():
                t_logits = self.teacher(x)
            loss = (1.0 - r.distill.alpha) * loss + r.distill.alpha * distillation_loss(
                logits, t_logits, r.distill.temperature
            )
        extra = aux_loss(logits, y, r.loss)
        for term in (extra, jsd, trades):
            if term is not None:
                loss = loss + term
        return loss, logits

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        import torch

        from evalsuite.progress import progress
        from training.augment import basic_augment, mix_batch, progressive_size, resize_batch
        from training.data import batches, epoch_generator, epoch_order
        from training.optim import lr_factor, set_lr

        r = self.recipe
        train = self.data.train
        unfrozen = self.freezer.apply(epoch)
        torch.manual_seed((r.seed * 1_000_003 + epoch) % (2**63 - 1))  # dropout / drop-path
        g = epoch_generator(r.seed, epoch)
        if self.device != "cpu":
            seed = int(torch.randint(0, 2**62, (1,), generator=g).item())
            g = torch.Generator(device=self.device)
            g.manual_seed(seed)
        order = epoch_order(train.labels, seed=r.seed, epoch=epoch, balanced=r.data.class_balanced)
        size = progressive_size(epoch, tuple(r.data.input_size), r.progressive)
        self.model.train()
        total_loss: Any = 0.0
        total_correct: Any = 0
        total_n = 0
        lr = self.base_lr
        for idx in progress(batches(order, r.optim.batch_size), total=self.steps_per_epoch,
                            desc=f"epoch {epoch + 1}/{r.schedule.epochs}", unit="batch"):
            factor = lr_factor(self.step, self.steps_per_epoch, r.schedule)
            lr = self.base_lr * factor
            set_lr(self.optimizer, self.base_lr, factor)
            x = _to_tensor(train.images(idx), self.device, r.channels_last)
            y = torch.as_tensor(train.labels[idx], device=self.device)
            x = basic_augment(x, r.augment, g)
            x = resize_batch(x, size)
            x, targets, _ = mix_batch(x, y, self.data.num_classes, r.augment, g, r.loss.label_smoothing)
            if r.channels_last:  # augmentation may have produced a plain contiguous tensor
                x = x.contiguous(memory_format=torch.channels_last)
            loss, logits = self._loss(x, y, targets, g, epoch)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if r.optim.grad_clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.network.parameters(), r.optim.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(self.network)
            self.step += 1
            # Accumulate on the device: no host synchronisation inside the epoch.
            n = len(y)
            total_loss = total_loss + loss.detach().float() * n
            total_correct = total_correct + (logits.detach().argmax(dim=1) == y).sum()
            total_n += n
        mean_loss = float(total_loss) / max(total_n, 1)
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"non-finite training loss in epoch {epoch + 1} (lower optim.lr or use amp=none)")
        return {
            "lr": lr,
            "image_size": f"{size[0]}x{size[1]}",
            "unfrozen_groups": unfrozen,
            "train_loss": mean_loss,
            "train_accuracy": int(total_correct) / max(total_n, 1),
        }

    # -------------------------------------------------------------------------------- validation
    def predict_logits(self, model: Any, split: Any, batch_size: int = 256) -> np.ndarray:
        """Float32 logits of ``model`` ([0, 1] input) on every image of ``split``."""
        import torch

        model.eval()
        out = []
        with torch.no_grad(), self._autocast():
            for start in range(0, len(split), batch_size):
                idx = np.arange(start, min(start + batch_size, len(split)))
                x = _to_tensor(split.images(idx), self.device, self.recipe.channels_last)
                out.append(model(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.data.num_classes), np.float32)

    def validate(self, model: Any, temperature: float = 1.0) -> dict[str, Any]:
        """Validation loss, accuracy, ECE and (when configured) PGD robust accuracy of ``model``."""
        import torch

        from training.adversarial import robust_accuracy

        r = self.recipe
        val = self.data.val
        logits = self.predict_logits(model, val) / float(temperature)
        probs = softmax(logits)
        labels = val.labels
        nll = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean()
        row = {
            "val_loss": float(nll),
            "val_accuracy": float((probs.argmax(1) == labels).mean()),
            "val_ece": _ece(probs, labels, r.calibration.ece_bins),
            "val_robust_accuracy": None,
        }
        if r.adversarial.eval_epsilon > 0 and len(self.robust_idx):
            x = _to_tensor(val.images(self.robust_idx), self.device, r.channels_last)
            y = torch.as_tensor(labels[self.robust_idx], device=self.device)
            row["val_robust_accuracy"] = robust_accuracy(
                model, x, y, epsilon=r.adversarial.eval_epsilon, steps=r.adversarial.eval_steps, seed=r.seed
            )
        return row

    # ---------------------------------------------------------------------------------- logging
    def _write_logs(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(LOG_FIELDS), extrasaction="ignore")
        w.writeheader()
        for row in self.history:
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in LOG_FIELDS})
        _atomic_write_text(self.out / "log.csv", buf.getvalue())
        doc = {"recipe": self.recipe.name, "recipe_hash": self.recipe.training_hash(), "epochs": self.history}
        _atomic_write_text(self.out / "log.json", json.dumps(doc, indent=2) + "\n")

    def _metadata(self) -> dict[str, Any]:
        r = self.recipe
        return {
            "model": {"name": r.model.name, "kwargs": dict(r.model.kwargs)},
            "class_names": list(self.data.class_names),
            "mean": list(r.model.mean),
            "std": list(r.model.std),
            "input_size": list(r.data.input_size),
            "resize": r.data.resize,
            "interpolation": r.data.interpolation,
            "recipe": r.name,
            "recipe_hash": r.training_hash(),
        }

    # -------------------------------------------------------------------------------------- fit
    def fit(self) -> TrainResult:
        """Train (or resume), export, evaluate; returns a :class:`TrainResult`."""
        import yaml

        from training.export import save_safetensors

        self._setup()
        self.out.mkdir(parents=True, exist_ok=True)
        resumed = self._maybe_resume()
        _atomic_write_text(self.out / "recipe.yaml", yaml.safe_dump(self.recipe.to_dict(), sort_keys=False))
        _atomic_write_text(self.out / "splits.json", json.dumps(self.data.record()) + "\n")
        r = self.recipe
        monitor = r.early_stopping.monitor
        epoch = self.start_epoch
        while not self.finished and epoch < r.schedule.epochs:
            t0 = time.perf_counter()
            c0 = time.process_time()
            row: dict[str, Any] = {"epoch": epoch + 1}
            row.update(self._train_epoch(epoch))
            row.update(self.validate(self.eval_model))
            improved = self.early.update(row.get(monitor), epoch + 1)
            row["best"] = improved
            if improved:
                save_safetensors(
                    (self.ema.module if self.ema else self.network).state_dict(), self.out / BEST, self._metadata()
                )
            row["seconds"] = round(time.perf_counter() - t0, 3)
            row["cpu_seconds"] = round(time.process_time() - c0, 3)
            self.train_seconds += row["seconds"]
            self.train_cpu_seconds += row["cpu_seconds"]
            self.history.append(row)
            self._log_row(row)
            epoch += 1
            self.start_epoch = epoch
            if self.early.should_stop:
                self.stopped_early = True
                log.info("early stopping after epoch %d: %s did not improve for %d epochs",
                         epoch, monitor, self.early.bad_epochs)
            if self.stopped_early or epoch >= r.schedule.epochs:
                self.finished = True
            self._write_logs()
            _atomic_torch_save(self._checkpoint_state(), self.out / CHECKPOINT)
            for cb in self.callbacks:
                cb(self, row)
            if self.stopped_early:
                break
        return self._finalize(resumed)

    def _log_row(self, row: dict[str, Any]) -> None:
        parts = [f"epoch {row['epoch']}/{self.recipe.schedule.epochs}", f"loss {row['train_loss']:.4f}",
                 f"acc {row['train_accuracy']:.2%}", f"val_acc {row['val_accuracy']:.2%}",
                 f"val_ece {row['val_ece']:.4f}"]
        if row.get("val_robust_accuracy") is not None:
            parts.append(f"robust {row['val_robust_accuracy']:.2%}")
        parts.append(f"lr {row['lr']:.2e} ({row['seconds']:.1f} s)")
        log.info(" ".join(parts))

    def _final_network(self) -> tuple[Any, str]:
        from training.models import read_checkpoint

        r = self.recipe
        net = self.ema.module if self.ema else self.network
        which = "ema" if self.ema else "last"
        best_path = self.out / BEST
        if r.early_stopping.restore_best and best_path.exists() and self.early.best_epoch is not None:
            state, _ = read_checkpoint(best_path)
            net.load_state_dict(state)
            which = f"best (epoch {self.early.best_epoch}, {r.early_stopping.monitor} = {self.early.best:.4f})"
        return net.eval(), which

    def _finalize(self, resumed: int | None) -> TrainResult:
        from evalsuite.models.pixel import PixelSpaceModel
        from training.evaluate import evaluate_exported
        from training.export import export_model

        r = self.recipe
        net, which = self._final_network()
        model = PixelSpaceModel(net, r.model.mean, r.model.std).to(self.device)
        temperature = 1.0
        fit_info: dict[str, Any] | None = None
        before = self.validate(model)
        after = before
        if r.calibration.temperature_scaling:
            from evalsuite.calibration import fit_temperature

            logits = self.predict_logits(model, self.data.val)
            fit = fit_temperature(logits, self.data.val.labels)
            fit_info = fit.to_dict()
            if fit.converged:
                temperature = float(fit.temperature)
                after = self.validate(model, temperature)
            else:
                log.warning("temperature scaling skipped (T = 1): %s", fit.message)
        paths = export_model(net, self.out, metadata=self._metadata(), temperature=temperature)
        log.info("exported %s weights (%s) to %s", which, f"T = {temperature:.4f}", paths.get("onnx"))
        result = TrainResult(
            out_dir=self.out,
            history=self.history,
            best_epoch=self.early.best_epoch,
            stopped_early=self.stopped_early,
            temperature=temperature,
            train_seconds=self.train_seconds,
            paths=paths,
            final_val={"weights": which, "before_temperature": before, "after_temperature": after,
                       "temperature_fit": fit_info},
            resumed_from_epoch=resumed,
        )
        if r.eval.enabled and not self.data.test_spec:
            log.info("no data.test: skipping the final evalsuite run")
        if r.eval.enabled and self.data.test_spec and "onnx" in paths:
            outcome = evaluate_exported(r, paths["onnx"], self.data.test_spec, self.out)
            if outcome is not None:
                result.eval_exit_code = outcome.exit_code
                result.eval_dir = outcome.out_dir
        self._write_summary(result)
        return result

    def _write_summary(self, result: TrainResult) -> None:
        doc = {
            "recipe": self.recipe.name,
            "recipe_hash": self.recipe.training_hash(),
            "device": self.device,
            "epochs_run": len(self.history),
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "train_seconds": round(result.train_seconds, 3),
            "train_cpu_seconds": round(self.train_cpu_seconds, 3),
            "torch_threads": _torch_threads(),
            "temperature": result.temperature,
            "final_val": result.final_val,
            "class_names": list(self.data.class_names),
            "splits": {"train": self.data.train.name, "val": self.data.val.name, "test": self.data.test_spec},
            # Relative to the output folder, so a copied or moved run stays self-describing.
            "paths": {k: _relative(v, self.out) for k, v in result.paths.items()},
            "eval": None if result.eval_dir is None else {"dir": _relative(result.eval_dir, self.out),
                                                          "exit_code": result.eval_exit_code},
        }
        _atomic_write_text(self.out / "summary.json", json.dumps(doc, indent=2, default=str) + "\n")


def train(recipe: Any, out_dir: str | Path, **kwargs: Any) -> TrainResult:
    """Run ``recipe`` into ``out_dir`` (``kwargs`` go to :class:`Trainer`)."""
    return Trainer(recipe, out_dir, **kwargs).fit()
