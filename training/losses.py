"""Training losses: cross-entropy with soft / smoothed targets, focal loss (fixed or
sample-dependent gamma), auxiliary calibration losses (MDCA, DCA, MMCE) and distillation.

Every classification loss takes *soft* targets (``N x K``, rows summing to 1) so label
smoothing, mixup and cutmix compose with it; the auxiliary losses take hard labels (for a mixed
batch, the label with the larger weight).

- Focal loss (Lin et al. 2017), for soft targets ``-sum_k t_k (1 - p_k)^gamma log p_k``; with
  one-hot targets this is the usual ``-(1 - p_y)^gamma log p_y``. Calibration use: Mukhoti et al.
  2020, whose sample-dependent variant FLSD-53 takes gamma = 5 when ``p_y < 0.2`` and 3
  otherwise (gamma chosen from the detached probability, as in their code).
- MDCA (Hebbalaguppe et al. 2022): ``(1/K) sum_k |mean_i p_ik - mean_i 1[y_i = k]|`` per batch.
- DCA (Liang et al. 2020): ``|batch accuracy - mean confidence|``; accuracy carries no gradient.
  Matches ``netcal.regularization.DCAPenalty`` (which ignores its ``weight`` argument; here the
  weight is ``loss.aux_weight``).
- MMCE (Kumar et al. 2018), the weighted form ``MMCE_w`` with the Laplacian kernel
  ``exp(-|r - r'| / 0.4)``; matches ``netcal.regularization.MMCEPenalty``.
"""

from __future__ import annotations

from typing import Any

MMCE_KERNEL_WIDTH = 0.4


def soft_cross_entropy(logits: Any, targets: Any) -> Any:
    """Mean over the batch of ``-sum_k t_k log softmax(z)_k``."""
    import torch.nn.functional as F

    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def flsd53_gamma(p_true: Any) -> Any:
    """FLSD-53 per-sample gamma: 5 where the true-class probability is below 0.2, else 3."""
    import torch

    return torch.where(p_true < 0.2, torch.full_like(p_true, 5.0), torch.full_like(p_true, 3.0))


def focal_loss(logits: Any, targets: Any, gamma: float = 3.0, sample_dependent: bool = False) -> Any:
    """Focal loss for soft targets (see the module docstring); ``gamma=0`` is cross-entropy."""
    import torch.nn.functional as F

    logp = F.log_softmax(logits.float(), dim=1)
    p = logp.exp()
    if sample_dependent:
        hard = targets.argmax(dim=1, keepdim=True)
        g = flsd53_gamma(p.gather(1, hard).detach())  # N x 1
    else:
        g = gamma
    weight = (1.0 - p).clamp_min(0.0) ** g
    return -(targets * weight * logp).sum(dim=1).mean()


def mdca_loss(logits: Any, labels: Any) -> Any:
    """Multi-class difference in confidence and accuracy (Hebbalaguppe et al. 2022)."""
    import torch
    import torch.nn.functional as F

    p = F.softmax(logits.float(), dim=1)
    k = p.shape[1]
    freq = F.one_hot(labels, k).float().mean(dim=0)
    return torch.abs(p.mean(dim=0) - freq).mean()


def dca_loss(logits: Any, labels: Any) -> Any:
    """Difference between confidence and accuracy (Liang et al. 2020)."""
    import torch.nn.functional as F

    conf, pred = F.softmax(logits.float(), dim=1).max(dim=1)
    acc = (pred == labels).float().mean().detach()
    return (acc - conf.mean()).abs()


def mmce_loss(logits: Any, labels: Any) -> Any:
    """Weighted maximum mean calibration error MMCE_w (Kumar et al. 2018), Laplacian kernel."""
    import torch
    import torch.nn.functional as F

    conf, pred = F.softmax(logits.float(), dim=1).max(dim=1)
    conf = conf.clamp(1e-12, 1.0 - 1e-12)
    correct = pred == labels
    n_c = int(correct.sum())
    n_f = int(correct.numel() - n_c)
    kernel = torch.exp(-torch.abs(conf[:, None] - conf[None, :]) / MMCE_KERNEL_WIDTH)
    # Per-sample "calibration residual": (1 - r) for correct predictions, r for wrong ones.
    total = conf.new_zeros(())
    if n_f > 0:
        cf = conf[~correct]
        total = total + (cf[:, None] * cf[None, :] * kernel[~correct][:, ~correct]).sum() / (n_f * n_f)
    if n_c > 0:
        cc = 1.0 - conf[correct]
        total = total + (cc[:, None] * cc[None, :] * kernel[correct][:, correct]).sum() / (n_c * n_c)
    if n_c > 0 and n_f > 0:
        cc = 1.0 - conf[correct]
        cf = conf[~correct]
        total = total - 2.0 * (cc[:, None] * cf[None, :] * kernel[correct][:, ~correct]).sum() / (n_c * n_f)
    return torch.sqrt(total.clamp_min(0.0) + 1e-12)


AUX_LOSSES = {"mdca": mdca_loss, "dca": dca_loss, "mmce": mmce_loss}


def task_loss(logits: Any, targets: Any, loss_cfg: Any) -> Any:
    """The recipe's classification loss on soft targets (label smoothing already in ``targets``)."""
    if loss_cfg.name == "focal":
        return focal_loss(logits, targets, loss_cfg.focal_gamma, loss_cfg.focal_sample_dependent)
    return soft_cross_entropy(logits, targets)


def aux_loss(logits: Any, labels: Any, loss_cfg: Any) -> Any | None:
    """``aux_weight`` x the auxiliary calibration loss, or None when ``loss.aux`` is none."""
    if loss_cfg.aux == "none" or loss_cfg.aux_weight == 0:
        return None
    return loss_cfg.aux_weight * AUX_LOSSES[loss_cfg.aux](logits, labels)


def distillation_loss(student_logits: Any, teacher_logits: Any, temperature: float) -> Any:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` averaged over the batch (Hinton et al. 2015)."""
    import torch.nn.functional as F

    t = float(temperature)
    log_s = F.log_softmax(student_logits.float() / t, dim=1)
    p_t = F.softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_s, p_t, reduction="batchmean") * (t * t)
