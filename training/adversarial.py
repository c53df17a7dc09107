"""L-infinity adversarial examples for training and validation, in [0, 1] pixel space.

``model`` is always a module taking [0, 1] RGB (a :class:`~evalsuite.models.pixel.PixelSpaceModel`
around the network), so ``epsilon`` means the same thing as in ``evalsuite run``'s attack suite.

- :func:`pgd` -- projected gradient descent on the cross-entropy (Madry et al. 2018); with
  ``random_start=False`` it is step-for-step ``torchattacks.PGD`` (checked in the tests).
- :func:`fgsm_random_start` -- "fast is better than free" (Wong et al. 2020): a uniform random
  start in the epsilon ball, one signed-gradient step of ``alpha = 1.25 * epsilon``, projection.
- :func:`trades_adversary` / :func:`trades_loss` -- TRADES (Zhang et al. 2019): the adversary
  maximises ``KL(p(x) || p(x'))`` from ``x + 0.001 N(0, 1)``; the loss is
  ``CE(f(x), y) + beta * KL(p(x) || p(x'))``.

Adversaries are generated with the model in eval mode (BatchNorm uses running statistics and
is not updated by attack steps, as in the TRADES reference code) and in float32.
"""

from __future__ import annotations

from typing import Any


def _eval_mode(model: Any) -> bool:
    was = model.training
    model.eval()
    return was


def pgd(
    model: Any,
    x: Any,
    y: Any,
    *,
    epsilon: float,
    step_size: float,
    steps: int,
    random_start: bool = True,
    generator: Any = None,
) -> Any:
    """PGD-L-infinity adversarial examples maximising the cross-entropy of ``model``."""
    import torch
    import torch.nn.functional as F

    was = _eval_mode(model)
    try:
        x = x.detach()
        adv = x.clone()
        if random_start:
            noise = torch.rand(x.shape, generator=generator, device=generator.device if generator else x.device)
            adv = (adv + (noise.to(x.device) * 2 - 1) * epsilon).clamp(0, 1)
        for _ in range(steps):
            adv.requires_grad_(True)
            with torch.enable_grad():
                loss = F.cross_entropy(model(adv).float(), y)
                (grad,) = torch.autograd.grad(loss, adv)
            adv = adv.detach() + step_size * grad.sign()
            delta = torch.clamp(adv - x, -epsilon, epsilon)
            adv = torch.clamp(x + delta, 0, 1).detach()
        return adv
    finally:
        model.train(was)


def fgsm_random_start(
    model: Any, x: Any, y: Any, *, epsilon: float, alpha: float, generator: Any = None, random_start: bool = True
) -> Any:
    """Fast FGSM with a uniform random start (Wong et al. 2020)."""
    import torch
    import torch.nn.functional as F

    was = _eval_mode(model)
    try:
        x = x.detach()
        if random_start:
            noise = torch.rand(x.shape, generator=generator, device=generator.device if generator else x.device)
            delta = (noise.to(x.device) * 2 - 1) * epsilon
        else:
            delta = torch.zeros_like(x)
        delta = torch.clamp(x + delta, 0, 1) - x
        delta.requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(x + delta).float(), y)
            (grad,) = torch.autograd.grad(loss, delta)
        delta = torch.clamp(delta.detach() + alpha * grad.sign(), -epsilon, epsilon)
        return torch.clamp(x + delta, 0, 1).detach()
    finally:
        model.train(was)


def trades_adversary(
    model: Any, x: Any, *, epsilon: float, step_size: float, steps: int, generator: Any = None
) -> Any:
    """The TRADES inner maximisation of ``KL(p(x) || p(x'))`` over the epsilon ball."""
    import torch
    import torch.nn.functional as F

    was = _eval_mode(model)
    try:
        x = x.detach()
        with torch.no_grad():
            p_nat = F.softmax(model(x).float(), dim=1)
        noise = torch.randn(x.shape, generator=generator, device=generator.device if generator else x.device)
        adv = (x + 0.001 * noise.to(x.device)).clamp(0, 1)
        for _ in range(steps):
            adv.requires_grad_(True)
            with torch.enable_grad():
                kl = F.kl_div(F.log_softmax(model(adv).float(), dim=1), p_nat, reduction="sum")
                (grad,) = torch.autograd.grad(kl, adv)
            adv = adv.detach() + step_size * grad.sign()
            adv = torch.min(torch.max(adv, x - epsilon), x + epsilon).clamp(0, 1).detach()
        return adv
    finally:
        model.train(was)


def trades_kl(logits_nat: Any, logits_adv: Any) -> Any:
    """``KL(p(x) || p(x'))`` averaged over the batch (the TRADES regulariser, gradient to both)."""
    import torch.nn.functional as F

    return F.kl_div(F.log_softmax(logits_adv.float(), dim=1), F.softmax(logits_nat.float(), dim=1), reduction="batchmean")


def robust_accuracy(
    model: Any,
    images: Any,
    labels: Any,
    *,
    epsilon: float,
    steps: int,
    batch_size: int = 256,
    seed: int = 0,
) -> float:
    """Accuracy under PGD (random start, step ``2.5 * epsilon / steps``, Madry et al.'s rule)."""
    import torch

    if len(labels) == 0:
        return float("nan")
    device = images.device
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    correct = 0
    for start in range(0, len(labels), batch_size):
        xb = images[start : start + batch_size]
        yb = labels[start : start + batch_size]
        adv = pgd(model, xb, yb, epsilon=epsilon, step_size=2.5 * epsilon / steps, steps=steps, generator=g)
        with torch.no_grad():
            was = _eval_mode(model)
            correct += int((model(adv).argmax(dim=1) == yb).sum())
            model.train(was)
    return correct / len(labels)
