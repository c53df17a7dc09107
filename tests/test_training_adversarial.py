"""Adversarial training: our PGD / FGSM against torchattacks, TRADES by hand, and the switches in the loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.testing import make_trainer

torch.set_num_threads(1)


def _model():
    from evalsuite.models.pixel import PixelSpaceModel
    from training.models import build_network

    torch.manual_seed(0)
    return PixelSpaceModel(build_network("digits_cnn", 3, {"width": 4}), [0.5] * 3, [0.5] * 3).eval()


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 3, 16, 16, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])


def test_pgd_equals_torchattacks_pgd():
    import torchattacks

    from training.adversarial import pgd

    model = _model()
    x, y = _batch()
    eps, alpha, steps = 8 / 255, 2 / 255, 5
    ours = pgd(model, x, y, epsilon=eps, step_size=alpha, steps=steps, random_start=False)
    ref = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    assert float((ours - x).abs().max()) <= eps + 1e-6


def test_fgsm_without_random_start_equals_torchattacks_fgsm():
    import torchattacks

    from training.adversarial import fgsm_random_start

    model = _model()
    x, y = _batch()
    eps = 8 / 255
    ours = fgsm_random_start(model, x, y, epsilon=eps, alpha=eps, random_start=False)
    ref = torchattacks.FGSM(model, eps=eps)(x, y)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_fgsm_random_start_stays_in_the_ball_and_uses_the_generator():
    from training.adversarial import fgsm_random_start

    model = _model()
    x, y = _batch()
    eps = 8 / 255
    a = fgsm_random_start(model, x, y, epsilon=eps, alpha=1.25 * eps, generator=torch.Generator().manual_seed(1))
    b = fgsm_random_start(model, x, y, epsilon=eps, alpha=1.25 * eps, generator=torch.Generator().manual_seed(1))
    c = fgsm_random_start(model, x, y, epsilon=eps, alpha=1.25 * eps, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float((a - x).abs().max()) <= eps + 1e-6 and float(a.min()) >= 0 and float(a.max()) <= 1


def test_trades_adversary_raises_kl_and_loss_is_hand_formula():
    from training.adversarial import trades_adversary, trades_kl

    model = _model()
    x, _ = _batch()
    eps = 8 / 255
    adv = trades_adversary(model, x, epsilon=eps, step_size=2 / 255, steps=5, generator=torch.Generator().manual_seed(0))
    assert float((adv - x).abs().max()) <= eps + 1e-6
    with torch.no_grad():
        zn, za = model(x), model(adv)
        z_noise = model((x + 0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1))
    kl = float(trades_kl(zn, za))
    assert kl > float(trades_kl(zn, z_noise))  # the inner maximisation increased the divergence
    pn, pa = F.softmax(zn, 1), F.softmax(za, 1)
    hand = float((pn * (pn.log() - pa.log())).sum(1).mean())
    assert kl == pytest.approx(hand, rel=1e-4)


def test_robust_accuracy_is_below_clean_for_a_random_model():
    from training.adversarial import robust_accuracy

    model = _model()
    x, y = _batch()
    clean = float((model(x).argmax(1) == y).float().mean())
    rob = robust_accuracy(model, x, y, epsilon=0.3, steps=5)
    assert 0.0 <= rob <= clean


@pytest.mark.parametrize("method", ["pgd", "trades", "fgsm"])
def test_adversarial_method_switch_in_loop(tmp_path, method):
    from training.augment import one_hot

    t = make_trainer(tmp_path, adversarial={"method": method, "epsilon": 0.1, "steps": 2, "step_size": 0.05,
                                            "eval_epsilon": 0.1, "eval_steps": 2, "eval_samples": 6})
    x, y = _batch()
    inputs = []
    hook = t.model.register_forward_pre_hook(lambda m, a: inputs.append(a[0].detach().clone()))
    loss, _ = t._loss(x, y, one_hot(y, 3), torch.Generator().manual_seed(0), 0)
    hook.remove()
    last = inputs[-1]
    if method == "trades":
        assert last.shape[0] == 12  # clean and adversarial batches in one forward
        last = last[6:]
    delta = (last - x).abs().max()
    assert 0 < float(delta) <= 0.1 + 1e-6  # the model trained on perturbed images within epsilon
    row = t.validate(t.eval_model)
    assert row["val_robust_accuracy"] is not None and 0 <= row["val_robust_accuracy"] <= 1


def test_epsilon_warmup_ramps_the_budget(tmp_path):
    from training.augment import one_hot

    t = make_trainer(tmp_path, adversarial={"method": "fgsm", "epsilon": 0.2, "epsilon_warmup_epochs": 4})
    x, y = _batch()
    seen = []
    t.model.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    t._loss(x, y, one_hot(y, 3), torch.Generator().manual_seed(0), 0)
    assert float((seen[-1] - x).abs().max()) <= 0.05 + 1e-6  # epoch 0 of 4: a quarter of epsilon
