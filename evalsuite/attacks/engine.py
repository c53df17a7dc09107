"""Run a threat model's attacks on a batch and keep, per sample, the worst case.

For one (norm, eps) the engine runs each attack in order on the samples still standing
(correctly classified and not yet broken), as AutoAttack does:

1. ``model.predict`` (onnxruntime for ONNX files) classifies the clean batch; misclassified
   samples are not robust and are not attacked. Clean logits and the clean-input gradient
   check are cached per sample (id and image checksum), so a run pays for them once, not once
   per threat model.
2. White-box attacks run through the differentiable module (the model's own torch module or
   the ONNX gradient bridge); query-only attacks (Square) run through ``model.predict`` itself.
3. Every returned example is checked against the budget and [0, 1]
   (:func:`evalsuite.attacks.threat.budget_status`); an example that breaks it is counted as a
   violation and never used.
4. Every valid example is re-predicted with ``model.predict``: a sample counts as broken only
   when the deployed model itself misclassifies it. The first confirmed adversarial example
   is kept; for samples nothing broke, the example with the smallest logit margin
   (true logit minus best other) is kept, so the stored batch is the per-sample worst case.

Diagnostics returned per sample (the runner stores them beside the predictions): perturbation
norms, violations, the attack that broke the sample, whether the margin gradient at the clean
input was zero or NaN, whether the bridge and the deployed model disagreed (only checked when
the differentiable module is a converted graph rather than the model itself), and the result of
the black-box (Square) check, and ``predict_logits``: ``model.predict`` on the returned batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evalsuite.attacks.runners import ATTACKS, AttackSettings, run_attack
from evalsuite.attacks.threat import budget_status, project
from evalsuite.seeding import sample_seed

log = logging.getLogger(__name__)

MISCLASSIFIED = "misclassified"
# Extra holding ``model.predict`` on the returned batch (computed anyway to confirm each
# adversarial example), so a runner can store it instead of predicting the same batch again.
PREDICT_LOGITS = "predict_logits"
SQUARE_CHECK = "square-check"


def attack_seed(seed: int, key: str, attack: str, ids: Sequence[Any]) -> int:
    """Seed of one attack on one batch: BLAKE2b of (run seed, condition key, attack, sample ids).

    torchattacks draws random starts for a whole batch from one generator (APGD/FAB/Square re-seed
    it themselves; Square draws each iteration's square once for the batch), so a sample's result
    depends on the batch it is in; the seed is keyed on that batch's ids (the samples still
    standing when the attack runs). Results are therefore a function of the batch composition:
    the adversarial suite fixes it with its own ``attack_batch_size`` (consecutive runs of the
    attacked subset), so ``--batch-size`` never changes them.
    """
    return sample_seed(seed, f"{key}\x1f{attack}", "\x1e".join(str(i) for i in ids))


def margins(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """True-class logit minus the largest other logit (negative = misclassified); NaN rows -> -inf."""
    z = np.asarray(logits, dtype=np.float64)
    n = len(z)
    rows = np.arange(n)
    true = z[rows, labels]
    other = z.copy()
    other[rows, labels] = -np.inf
    m = true - other.max(axis=1)
    return np.where(np.isfinite(m), m, -np.inf)


def predicted(logits: np.ndarray) -> np.ndarray:
    """argmax per row; rows with a non-finite logit get -1 (never correct)."""
    z = np.asarray(logits)
    finite = np.all(np.isfinite(z), axis=1)
    return np.where(finite, np.argmax(np.where(np.isfinite(z), z, -np.inf), axis=1), -1)


def query_module(predict: Callable[[Any], np.ndarray], device: Any) -> Any:
    """A torch module whose forward is ``predict`` (no gradients): for query-only attacks."""
    import torch
    from torch import nn

    class QueryModule(nn.Module):
        """Forwards batches to the deployed model (e.g. onnxruntime); gradients do not exist."""

        def __init__(self) -> None:
            super().__init__()
            # torchattacks reads the device from the first parameter.
            self.anchor = nn.Parameter(torch.empty(0, device=device), requires_grad=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                out = predict(x.detach())
            return torch.as_tensor(np.asarray(out, dtype=np.float32), device=x.device)

    return QueryModule().eval()


def autocast_module(module: Any, *, amp: bool, channels_last: bool) -> Any:
    """Wrap ``module`` to run under CUDA autocast (float16) and/or channels_last; float32 logits out."""
    if not amp and not channels_last:
        return module
    import torch
    from torch import nn

    if channels_last:
        module = module.to(memory_format=torch.channels_last)

    class Autocast(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if amp and x.is_cuda:
                with torch.autocast(device_type="cuda", dtype=torch.float16):
                    return self.inner(x).float()
            return self.inner(x)

    return Autocast(module).eval()


def margin_gradient_flags(module: Any, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: (gradient of the logit margin w.r.t. the input is all zero, has NaN/inf).

    The margin (true logit minus best other) is used rather than cross-entropy because a
    confidently correct sample has a cross-entropy gradient that underflows to exactly zero in
    float32; a zero *margin* gradient means the network is locally flat in its input, the
    signature of gradient masking (or of a broken bridge).
    """
    import torch

    if len(x) == 0:
        return np.zeros(0, bool), np.zeros(0, bool)
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = module(xg).float()
        rows = torch.arange(len(y), device=logits.device)
        true = logits[rows, y]
        other = logits.clone()
        other[rows, y] = -torch.inf
        margin = true - other.max(dim=1).values
        (grad,) = torch.autograd.grad(margin.sum(), xg, allow_unused=True)
    if grad is None:
        return np.ones(len(x), bool), np.zeros(len(x), bool)
    flat = grad.detach().flatten(1)
    bad = ~torch.isfinite(flat).all(dim=1)
    zero = (flat.abs().amax(dim=1) == 0) & ~bad
    return zero.cpu().numpy(), bad.cpu().numpy()


@dataclass
class BatchResult:
    """The worst-case batch and its per-sample diagnostics."""

    x_adv: Any
    extras: dict[str, np.ndarray]
    examples: list[dict[str, Any]] = field(default_factory=list)


class _WorstCase:
    """Per-sample worst case of one batch over the attacks run so far, and what each attack did."""

    def __init__(self, x: Any, y: Any, clean_logits: np.ndarray) -> None:
        n = len(x)
        self.x, self.y = x, y
        self.y_np = y.cpu().numpy()
        self.clean_pred = predicted(clean_logits)
        self.clean_correct = self.clean_pred == self.y_np
        self.best = x.clone()
        self.best_margin = margins(clean_logits, self.y_np)
        self.best_logits = np.array(clean_logits, dtype=np.float32, copy=True)
        self.best_linf = np.zeros(n, np.float64)
        self.best_l2 = np.zeros(n, np.float64)
        self.broken = np.zeros(n, bool)
        self.chosen = np.array(["" if c else MISCLASSIFIED for c in self.clean_correct], dtype=object)
        self.violation = np.zeros(n, np.int32)
        self.nonfinite = np.zeros(n, np.int32)
        self.disagree = np.zeros(n, bool)
        self.grad_zero = np.zeros(n, bool)
        self.grad_nan = np.zeros(n, bool)
        self.bb_tried = np.zeros(n, bool)
        self.bb_success = np.zeros(n, bool)

    def keep(self, idx: np.ndarray, adv: Any, logits: np.ndarray, status: dict[str, Any], valid: np.ndarray,
             ok: np.ndarray) -> None:
        """Take attack outputs for rows ``idx`` that break the model or lower its margin."""
        import torch

        m = margins(logits, self.y_np[idx])
        improve = ok | (valid & (m < self.best_margin[idx]))
        take = idx[improve]
        if len(take):
            sel = np.flatnonzero(improve)
            self.best[torch.as_tensor(take, device=self.x.device)] = adv[torch.as_tensor(sel, device=self.x.device)]
            self.best_margin[take] = m[improve]
            self.best_logits[take] = logits[sel]
            self.best_linf[take] = status["linf"].cpu().numpy()[sel]
            self.best_l2[take] = status["l2"].cpu().numpy()[sel]
        self.broken[idx[ok]] = True

    def examples(self, ids: Sequence[Any], k: int) -> list[dict[str, Any]]:
        """The first ``k`` broken samples as (clean, adversarial) pairs."""
        return [{"id": str(ids[i]), "row": int(i), "clean": self.x[i].cpu().numpy(),
                 "adversarial": self.best[i].cpu().numpy(), "attack": str(self.chosen[i])}
                for i in np.flatnonzero(self.broken)[: max(0, k)]]

    def extras(self) -> dict[str, np.ndarray]:
        """Per-sample arrays stored beside the predictions."""
        return {
            "linf": self.best_linf,
            "l2": self.best_l2,
            "violation": self.violation,
            "nonfinite": self.nonfinite,
            "attack": np.asarray(self.chosen, dtype=str),
            "clean_correct": self.clean_correct,
            "clean_pred": self.clean_pred.astype(np.int64),
            "grad_zero": self.grad_zero,
            "grad_nan": self.grad_nan,
            "bridge_disagree": self.disagree,
            "blackbox_tried": self.bb_tried,
            "blackbox_success": self.bb_success,
            PREDICT_LOGITS: self.best_logits,
        }


class AttackEngine:
    """Runs attacks on batches for one model (see the module docstring).

    ``predict``: the deployed model's ``predict`` (numpy logits); ``module``: differentiable
    torch module in [0, 1] pixel space, or None for black-box only; ``device``: where batches live.
    """

    def __init__(
        self,
        predict: Callable[[Any], np.ndarray],
        module: Any,
        *,
        n_classes: int,
        device: Any = "cpu",
        settings: AttackSettings | None = None,
        amp: bool = False,
        channels_last: bool = False,
        check_agreement: bool = True,
    ) -> None:
        self.predict = predict
        self.module = None if module is None else autocast_module(module, amp=amp, channels_last=channels_last)
        self.n_classes = int(n_classes)
        self.device = device
        self.settings = settings or AttackSettings()
        self.check_agreement = check_agreement
        self._query = query_module(predict, device)
        # Per-sample facts about the clean input that every threat model shares (keyed by sample
        # id and a checksum of the image): computed once per run, not once per condition.
        self._clean_cache: dict[tuple[str, float, float], np.ndarray] = {}
        self._grad_cache: dict[tuple[str, float, float], tuple[bool, bool]] = {}

    @property
    def whitebox(self) -> bool:
        return self.module is not None

    def _predict(self, x: Any) -> np.ndarray:
        import torch

        with torch.no_grad():
            return np.asarray(self.predict(x.detach()), dtype=np.float32)

    @staticmethod
    def _sample_keys(x: Any, ids: Sequence[Any]) -> list[tuple[str, float, float]]:
        import torch

        with torch.no_grad():
            flat = x.detach().flatten(1)
            sums = torch.stack([flat.sum(dim=1, dtype=torch.float64),
                                flat.square().sum(dim=1, dtype=torch.float64)], dim=1).cpu().numpy()
        return [(str(i), float(a), float(b)) for i, (a, b) in zip(ids, sums, strict=True)]

    def _clean_logits(self, x: Any, keys: list[tuple[str, float, float]]) -> np.ndarray:
        missing = [i for i, k in enumerate(keys) if k not in self._clean_cache]
        if missing:
            logits = self._predict(x[missing] if len(missing) < len(keys) else x)
            for j, i in enumerate(missing):
                self._clean_cache[keys[i]] = logits[j]
        return np.stack([self._clean_cache[k] for k in keys]) if keys else np.zeros((0, self.n_classes), np.float32)

    def _gradient_flags(self, x: Any, y: Any, idx: np.ndarray, keys: list[tuple[str, float, float]]
                        ) -> tuple[np.ndarray, np.ndarray]:
        missing = np.array([i for i in idx if keys[i] not in self._grad_cache], dtype=np.int64)
        if len(missing):
            z, b = margin_gradient_flags(self.module, x[missing], y[missing])
            for j, i in enumerate(missing):
                self._grad_cache[keys[i]] = (bool(z[j]), bool(b[j]))
        flags = [self._grad_cache[keys[i]] for i in idx]
        return np.array([f[0] for f in flags], bool), np.array([f[1] for f in flags], bool)

    def attack_batch(
        self,
        x: Any,
        y: Any,
        ids: Sequence[Any],
        *,
        norm: str,
        eps: float,
        attacks: Sequence[str],
        seed: int,
        key: str,
        blackbox_mask: np.ndarray | None = None,
        blackbox_queries: int = 1000,
        keep_examples: int = 0,
        settings: AttackSettings | None = None,
    ) -> BatchResult:
        """Attack one batch (float NCHW in [0, 1], labels ``y``) and return the worst case per sample.

        ``attacks`` run in order (white-box ones first; skipped without a differentiable
        module), each on the samples still standing. ``blackbox_mask`` marks samples for the
        Square check (run after the white-box attacks with ``blackbox_queries`` queries) when
        the attack list has no Square of its own. ``keep_examples`` broken samples are returned
        as example pairs.
        """
        import torch

        settings = settings or self.settings
        x = x.detach().contiguous()  # torchattacks uses .view() on inputs and gradients
        y = torch.as_tensor(y, device=x.device).long()
        keys = self._sample_keys(x, ids)
        w = _WorstCase(x, y, self._clean_logits(x, keys))
        if self.whitebox and w.clean_correct.any():
            idx = np.flatnonzero(w.clean_correct)
            w.grad_zero[idx], w.grad_nan[idx] = self._gradient_flags(x, y, idx, keys)

        def run(name: str, label: str, idx: np.ndarray, settings: AttackSettings) -> None:
            self._run_attack(w, name, label, idx, settings, ids=ids, norm=norm, eps=eps, seed=seed, key=key)

        order = [a for a in attacks if ATTACKS[a].whitebox] + [a for a in attacks if not ATTACKS[a].whitebox]
        for name in order:
            if not ATTACKS[name].whitebox or self.whitebox:
                idx = np.flatnonzero(w.clean_correct & ~w.broken)
                if name == "square" and self.whitebox:
                    w.bb_tried[w.clean_correct] = True
                if len(idx):
                    run(name, name, idx, settings)
        if blackbox_mask is not None and self.whitebox and "square" not in order:
            checked = w.clean_correct & np.asarray(blackbox_mask, bool)
            w.bb_tried[checked] = True
            idx = np.flatnonzero(checked & ~w.broken)
            if len(idx):
                from dataclasses import replace

                run("square", SQUARE_CHECK, idx, replace(settings, square_queries=int(blackbox_queries)))
        return BatchResult(w.best.detach(), w.extras(), w.examples(ids, keep_examples))

    def _run_attack(
        self, w: _WorstCase, name: str, label: str, idx: np.ndarray, settings: AttackSettings, *,
        ids: Sequence[Any], norm: str, eps: float, seed: int, key: str,
    ) -> None:
        """Run attack ``name`` (recorded as ``label``) on rows ``idx`` and keep what beats the worst case so far."""
        import torch

        info = ATTACKS[name]
        target = self.module if info.whitebox else self._query
        xs, ys = w.x[idx], w.y[idx]
        s = attack_seed(seed, key, label, [ids[i] for i in idx])
        adv = run_attack(name, target, xs, ys, norm=norm, eps=eps, n_classes=self.n_classes, seed=s, settings=settings)
        if name == "cw-l2":
            adv = project(xs, adv, norm, eps)
        status = budget_status(xs, adv, norm, eps)
        valid = status["valid"].cpu().numpy()
        finite = status["finite"].cpu().numpy()
        w.violation[idx] += (~valid & finite).astype(np.int32)
        w.nonfinite[idx] += (~finite).astype(np.int32)
        if (~valid & finite).any():
            log.warning("%s at %s eps=%.5g returned %d example(s) outside the threat model (not used)",
                        name, norm, eps, int((~valid & finite).sum()))
        if not valid.all():
            vmask = torch.as_tensor(valid, device=w.x.device).view(-1, *([1] * (w.x.dim() - 1)))
            adv = torch.where(vmask, torch.nan_to_num(adv), xs)
        logits = self._predict(adv)
        ok = valid & (predicted(logits) != w.y_np[idx])
        if info.whitebox and self.check_agreement:
            with torch.no_grad():
                mod_pred = predicted(self.module(adv).float().cpu().numpy())
            w.disagree[idx] |= valid & (mod_pred != w.y_np[idx]) & ~ok
        w.keep(idx, adv, logits, status, valid, ok)
        w.chosen[idx[ok]] = label
        if label == SQUARE_CHECK or (name == "square" and self.whitebox):
            w.bb_success[idx[ok]] = True
