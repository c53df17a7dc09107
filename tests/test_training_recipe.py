"""Every switch of the training recipe: the function against a reference or a hand-computed case,
and the switch taking effect inside the training loop (tiny synthetic data, one or two steps)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.testing import make_trainer, tiny_data, tiny_recipe

torch.set_num_threads(1)


# ---------------------------------------------------------------------------- optimiser switches
def test_adamw_and_sgd_switch(tmp_path):
    t = make_trainer(tmp_path, optim={"name": "adamw"})
    assert isinstance(t.optimizer, torch.optim.AdamW)
    t = make_trainer(tmp_path, optim={"name": "sgd", "momentum": 0.9, "nesterov": True})
    assert isinstance(t.optimizer, torch.optim.SGD)
    assert all(g["momentum"] == 0.9 and g["nesterov"] for g in t.optimizer.param_groups)


def test_no_decay_on_bias_and_norm_switch():
    from training.models import build_network
    from training.optim import param_groups

    net = build_network("timm:test_resnet", 4)
    on = param_groups(net, tiny_recipe(optim={"weight_decay": 0.1}).optim, tiny_recipe().finetune)
    decayed = {id(p) for g in on if g["weight_decay"] > 0 for p in g["params"]}
    names = dict(net.named_parameters())
    for name, p in names.items():
        is_1d = p.ndim <= 1
        assert (id(p) in decayed) != is_1d, name  # biases and norm affine params are exactly the 1-D ones
    off = param_groups(net, tiny_recipe(optim={"weight_decay": 0.1, "no_decay_bias_norm": False}).optim,
                       tiny_recipe().finetune)
    assert all(g["weight_decay"] == 0.1 for g in off)
    assert sum(len(g["params"]) for g in off) == len(names)


def test_linear_lr_scaling_reaches_the_optimizer(tmp_path):
    t = make_trainer(tmp_path, optim={"lr": 0.01, "base_batch_size": 6, "batch_size": 12},
                     schedule={"kind": "constant", "epochs": 1})
    t._train_epoch(0)
    assert all(g["lr"] == pytest.approx(0.02) for g in t.optimizer.param_groups)


def test_warmup_then_cosine_matches_closed_form():
    from training.optim import lr_factor

    cfg = tiny_recipe(schedule={"epochs": 10, "warmup_epochs": 2, "warmup_start_ratio": 0.1, "min_lr_ratio": 0.05}).schedule
    spe = 5
    assert lr_factor(0, spe, cfg) == pytest.approx(0.1)
    assert lr_factor(5, spe, cfg) == pytest.approx(0.1 + 0.9 * 5 / 10)
    for step in (10, 20, 33, 49):
        t = (step - 10) / 40
        assert lr_factor(step, spe, cfg) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def test_cosine_matches_torch_scheduler_and_warm_restarts():
    from training.optim import lr_factor

    p = torch.nn.Parameter(torch.zeros(1))
    # Plain cosine == CosineAnnealingLR.
    opt = torch.optim.SGD([p], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40, eta_min=0.0)
    cfg = tiny_recipe(schedule={"epochs": 10}).schedule
    for step in range(40):
        assert lr_factor(step, 4, cfg) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-9)
        opt.step()
        sched.step()
    # SGDR == CosineAnnealingWarmRestarts(T_0, T_mult).
    opt = torch.optim.SGD([p], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=8, T_mult=2, eta_min=0.0)
    cfg = tiny_recipe(schedule={"epochs": 14, "restart_epochs": 2, "restart_mult": 2}).schedule
    for step in range(56):
        assert lr_factor(step, 4, cfg) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-9), step
        opt.step()
        sched.step()


# ------------------------------------------------------------------------------- target switches
def test_label_smoothing_matches_torch_cross_entropy(tmp_path):
    from training.augment import one_hot
    from training.losses import soft_cross_entropy

    z = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 5
    ours = soft_cross_entropy(z, one_hot(y, 5, 0.1))
    assert float(ours) == pytest.approx(float(F.cross_entropy(z, y, label_smoothing=0.1)), rel=1e-6)
    # In the loop: the same batch gives a different loss with smoothing on.
    losses = []
    for ls in (0.0, 0.2):
        t = make_trainer(tmp_path, loss={"label_smoothing": ls})
        y3 = torch.tensor([0, 1, 2])
        x = torch.rand(3, 3, 16, 16)
        loss, _ = t._loss(x, y3, one_hot(y3, 3, t.recipe.loss.label_smoothing), torch.Generator(), 0)
        losses.append(float(loss.detach()))
    assert losses[0] != pytest.approx(losses[1])


def test_cutmix_labels_equal_pasted_area():
    from training.augment import mix_batch

    cfg = tiny_recipe(augment={"cutmix_alpha": 1.0}).augment
    n, k = 6, 6
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 20, 20).clone()
    y = torch.arange(n)
    for seed in range(5):
        xm, t, info = mix_batch(x, y, k, cfg, torch.Generator().manual_seed(seed))
        assert info["mode"] == "cutmix"
        for i in range(n):
            own = float((xm[i, 0] == i).float().mean())
            j = int(info["perm"][i])
            if j == i:
                continue
            assert t[i, i] == pytest.approx(own, abs=1e-6)  # label weight == fraction of own pixels
            assert t[i, j] == pytest.approx(1 - own, abs=1e-6)
            assert float(t[i].sum()) == pytest.approx(1.0)


def test_mixup_mixes_images_and_labels_with_the_same_lambda():
    from training.augment import mix_batch

    cfg = tiny_recipe(augment={"mixup_alpha": 0.4}).augment
    x = torch.rand(5, 3, 8, 8)
    y = torch.arange(5)
    xm, t, info = mix_batch(x, y, 5, cfg, torch.Generator().manual_seed(1), smoothing=0.0)
    lam, perm = info["lam"], info["perm"]
    assert info["mode"] == "mixup"
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x[perm])
    for i in range(5):
        if int(perm[i]) != i:
            assert t[i, i] == pytest.approx(lam) and t[i, int(perm[i])] == pytest.approx(1 - lam)
    # mix_prob=0 disables the switch.
    cfg0 = tiny_recipe(augment={"mixup_alpha": 0.4, "mix_prob": 0.0}).augment
    xs, _, info0 = mix_batch(x, y, 5, cfg0, torch.Generator().manual_seed(1))
    assert info0["mode"] == "none" and torch.equal(xs, x)


def test_class_balanced_sampling_switch():
    from training.data import epoch_order

    labels = np.array([0] * 90 + [1] * 10)
    plain = epoch_order(labels, seed=0, epoch=0, balanced=False)
    assert sorted(plain.tolist()) == list(range(100))
    counts = np.zeros(2)
    for epoch in range(20):
        counts += np.bincount(labels[epoch_order(labels, seed=0, epoch=epoch, balanced=True)], minlength=2)
    frac = counts[1] / counts.sum()
    assert 0.45 < frac < 0.55  # the 10% class is drawn half of the time


def test_class_balanced_switch_in_loop(tmp_path):
    from training.data import TrainData

    base = tiny_data(n_train=60)
    labels = base.train.labels.copy()
    labels[labels == 2] = 0  # classes 0 (40 images) and 1 (20 images); class 2 only in val
    labels[0] = 2  # keep class 2 present once
    data = TrainData.from_arrays(base.train._images, labels, base.val._images, base.val.labels)
    seen = {}
    for balanced in (False, True):
        t = make_trainer(tmp_path, train_data=data, data={"input_size": [16, 16], "class_balanced": balanced},
                         schedule={"epochs": 1})
        drawn = []
        original = t.data.train.images

        def spy(idx, _orig=original, _drawn=drawn, _labels=t.data.train.labels):
            _drawn.extend(_labels[idx].tolist())
            return _orig(idx)

        t.data.train.images = spy
        t._train_epoch(0)
        seen[balanced] = np.bincount(drawn, minlength=3) / len(drawn)
    assert seen[False][0] > 0.6  # natural frequencies: class 0 is two thirds of the data
    assert abs(seen[True][0] - seen[True][1]) < 0.25 and seen[True][2] > 0.1  # balanced draws


# ---------------------------------------------------------------------------- size / precision
def test_progressive_resizing_schedule_and_loop(tmp_path):
    from training.augment import progressive_size

    cfg = tiny_recipe(progressive={"enabled": True, "start_size": 16, "end_epoch": 4, "step": 4}).progressive
    assert [progressive_size(e, (32, 32), cfg) for e in range(6)] == [(16, 16), (20, 20), (24, 24), (28, 28), (32, 32), (32, 32)]
    off = tiny_recipe().progressive
    assert progressive_size(0, (32, 32), off) == (32, 32)
    t = make_trainer(tmp_path, progressive={"enabled": True, "start_size": 8, "end_epoch": 2, "step": 4})
    seen = []
    t.model.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape[-2:])))
    row = t._train_epoch(0)
    assert row["image_size"] == "8x8" and set(seen) == {(8, 8)}


@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_mixed_precision_switch(tmp_path, amp, dtype):
    t = make_trainer(tmp_path, amp=amp, schedule={"epochs": 1})
    seen = []
    conv = next(m for m in t.network.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    t._train_epoch(0)
    assert seen and set(seen) == {dtype}
    assert all(p.dtype == torch.float32 for p in t.network.parameters())  # master weights stay fp32
    assert t.scaler.is_enabled() == (amp == "fp16")


def test_channels_last_switch(tmp_path):
    t = make_trainer(tmp_path, channels_last=True, schedule={"epochs": 1})
    conv = next(m for m in t.network.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    t._train_epoch(0)


# -------------------------------------------------------------------------------- weights / EMA
def test_ema_matches_torch_swa_utils():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from training.ema import ModelEma

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    ours = ModelEma(net, decay=0.9, warmup=False)
    ref = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    # AveragedModel copies on its first update; ours blends with the identical initial copy.
    ours.update(net)
    ref.update_parameters(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(4):
        loss = net(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ours.update(net)
        ref.update_parameters(net)
    for (name, a), b in zip(ours.module.state_dict().items(), ref.module.state_dict().values(), strict=True):
        if a.dtype.is_floating_point:
            torch.testing.assert_close(a, b, msg=name)


def test_ema_warmup_and_loop_switch(tmp_path):
    from training.ema import ModelEma

    ema = ModelEma(torch.nn.Linear(2, 2), decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(0.1)
    t = make_trainer(tmp_path, ema={"enabled": True, "decay": 0.5}, schedule={"epochs": 1})
    assert t.eval_model is not t.model
    t._train_epoch(0)
    assert t.ema.updates == t.step == 3
    w_net = next(t.network.parameters())
    w_ema = next(t.ema.module.parameters())
    assert not torch.equal(w_net, w_ema)


def test_freeze_then_gradual_unfreeze_with_lower_backbone_lr(tmp_path):
    from training.models import split_head_backbone
    from training.optim import FreezeController

    t = make_trainer(tmp_path, finetune={"freeze_epochs": 1, "unfreeze_groups": 2, "unfreeze_every": 1,
                                         "backbone_lr_mult": 0.1}, schedule={"epochs": 3, "kind": "constant"})
    ctl: FreezeController = t.freezer
    assert [ctl.unfrozen_groups(e) for e in range(4)] == [0, 1, 2, 2]
    head, backbone = split_head_backbone(t.network)
    before = {n: p.detach().clone() for n, p in t.network.named_parameters()}
    t._train_epoch(0)  # head only
    changed = {n for n, p in t.network.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {n for n, _ in head}
    ctl.apply(1)
    trainable = [n for n, p in backbone if p.requires_grad]
    assert trainable and trainable == [n for n, _ in backbone][-len(trainable):]  # top group first
    assert len(trainable) < len(backbone)
    ctl.apply(2)
    assert all(p.requires_grad for _, p in backbone)
    lrs = {g["name"]: g["lr"] for g in t.optimizer.param_groups}
    assert lrs["backbone"] == pytest.approx(0.1 * lrs["head"])


# ----------------------------------------------------------------------------- early stopping
def test_early_stopping_unit():
    from training.loop import EarlyStopping

    es = EarlyStopping("max", patience=2, min_delta=0.01)
    assert es.update(0.5, 1)
    assert not es.update(0.505, 2)  # within min_delta
    assert not es.should_stop
    assert not es.update(0.4, 3)
    assert es.should_stop and es.best_epoch == 1
    lo = EarlyStopping("min", patience=None, min_delta=0.0)
    assert lo.update(1.0, 1) and lo.update(0.5, 2) and not lo.update(0.7, 3) and not lo.should_stop


def test_early_stopping_in_loop_restores_best(tmp_path):
    from training.loop import Trainer

    # A frozen learning rate (lr tiny, constant) keeps val accuracy flat: patience 1 stops at epoch 2.
    r = tiny_recipe(optim={"lr": 1e-12}, schedule={"epochs": 6, "kind": "constant"},
                    early_stopping={"monitor": "val_loss", "patience": 1, "min_delta": 0.5})
    res = Trainer(r, tmp_path / "es", data=tiny_data()).fit()
    assert res.stopped_early and len(res.history) == 2
    assert res.best_epoch == 1
    assert "best (epoch 1" in res.final_val["weights"]
    assert (tmp_path / "es" / "best.safetensors").exists()


# ------------------------------------------------------------------------------------- losses
def test_focal_loss_reduces_to_ce_and_matches_hand_case():
    from training.augment import one_hot
    from training.losses import flsd53_gamma, focal_loss

    z = torch.tensor([[2.0, 0.0, -1.0], [0.1, 0.3, 0.2]])
    y = torch.tensor([0, 2])
    t = one_hot(y, 3)
    assert float(focal_loss(z, t, gamma=0.0)) == pytest.approx(float(F.cross_entropy(z, y)), rel=1e-6)
    p = F.softmax(z, 1)
    py = p[torch.arange(2), y]
    hand = (-(1 - py) ** 2 * torch.log(py)).mean()
    assert float(focal_loss(z, t, gamma=2.0)) == pytest.approx(float(hand), rel=1e-6)
    # FLSD-53: gamma 5 below p = 0.2, 3 above.
    assert flsd53_gamma(torch.tensor([0.1, 0.19, 0.2, 0.9])).tolist() == [5.0, 5.0, 3.0, 3.0]
    z2 = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    y2 = torch.tensor([0, 0])  # p_y ~0.91 (gamma 3) and ~0.045 (gamma 5)
    p2 = F.softmax(z2, 1)[torch.arange(2), y2]
    hand2 = (-(1 - p2) ** torch.tensor([3.0, 5.0]) * torch.log(p2)).mean()
    assert float(focal_loss(z2, one_hot(y2, 3), sample_dependent=True)) == pytest.approx(float(hand2), rel=1e-6)


def test_mdca_hand_computed():
    from training.losses import mdca_loss

    z = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]]))
    y = torch.tensor([0, 0])
    # mean probs (0.4, 0.4, 0.2) vs label frequencies (1, 0, 0) -> (0.6 + 0.4 + 0.2) / 3
    assert float(mdca_loss(z, y)) == pytest.approx(0.4, rel=1e-6)


@pytest.mark.parametrize("name", ["dca", "mmce"])
def test_dca_and_mmce_match_netcal(name):
    from netcal.regularization import DCAPenalty, MMCEPenalty

    from training.losses import dca_loss, mmce_loss

    g = torch.Generator().manual_seed(3)
    z = torch.randn(40, 5, generator=g) * 2
    y = torch.randint(0, 5, (40,), generator=g)
    ours = {"dca": dca_loss, "mmce": mmce_loss}[name](z, y)
    ref = {"dca": DCAPenalty(), "mmce": MMCEPenalty()}[name](z, y)
    assert float(ours) == pytest.approx(float(ref), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("aux", ["mdca", "dca", "mmce"])
def test_aux_calibration_loss_switch_in_loop(tmp_path, aux):
    from training.augment import one_hot
    from training.losses import AUX_LOSSES

    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    base = make_trainer(tmp_path, loss={"aux": "none"})
    with_aux = make_trainer(tmp_path, loss={"aux": aux, "aux_weight": 2.0})
    l0, _ = base._loss(x, y, one_hot(y, 3), torch.Generator(), 0)
    l1, logits = with_aux._loss(x, y, one_hot(y, 3), torch.Generator(), 0)
    assert float((l1 - l0).detach()) == pytest.approx(2.0 * float(AUX_LOSSES[aux](logits.detach(), y)), rel=1e-4, abs=1e-6)


def test_focal_switch_in_loop(tmp_path):
    from training.augment import one_hot
    from training.losses import focal_loss

    t = make_trainer(tmp_path, loss={"name": "focal", "focal_sample_dependent": True})
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    loss, logits = t._loss(x, y, one_hot(y, 3), torch.Generator(), 0)
    expect = focal_loss(logits.detach(), one_hot(y, 3), sample_dependent=True)
    assert float(loss.detach()) == pytest.approx(float(expect), rel=1e-5)


# ------------------------------------------------------------------------------- distillation
def test_distillation_loss_and_switch(tmp_path):
    from training.augment import one_hot
    from training.export import export_model
    from training.losses import distillation_loss, soft_cross_entropy
    from training.models import build_network

    s = torch.tensor([[1.0, 0.0, -1.0]])
    t = torch.tensor([[0.0, 2.0, 0.0]])
    ps, pt = F.softmax(s / 2, 1), F.softmax(t / 2, 1)
    hand = 4 * float((pt * (pt.log() - ps.log())).sum())
    assert float(distillation_loss(s, t, 2.0)) == pytest.approx(hand, rel=1e-6)
    assert float(distillation_loss(t, t, 3.0)) == pytest.approx(0.0, abs=1e-7)

    torch.manual_seed(1)
    teacher = build_network("digits_cnn", 3, {"width": 4})
    meta = {"model": {"name": "digits_cnn", "kwargs": {"width": 4}}, "class_names": ["0", "1", "2"],
            "mean": [0.5] * 3, "std": [0.5] * 3, "input_size": [16, 16]}
    export_model(teacher, tmp_path / "teacher", metadata=meta, onnx=False)
    tr = make_trainer(tmp_path, distill={"teacher": str(tmp_path / "teacher"), "alpha": 0.25, "temperature": 2.0})
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    loss, logits = tr._loss(x, y, one_hot(y, 3), torch.Generator(), 0)
    with torch.no_grad():
        tl = tr.teacher(x)
    expect = 0.75 * soft_cross_entropy(logits, one_hot(y, 3)) + 0.25 * distillation_loss(logits, tl, 2.0)
    assert float(loss.detach()) == pytest.approx(float(expect.detach()), rel=1e-5)


# ------------------------------------------------------------------------------------- AugMix
def test_augmix_pixel_ops_match_torchvision():
    from torchvision.transforms.v2 import functional as TF

    from training.augment import autocontrast, equalize, posterize, solarize

    g = torch.Generator().manual_seed(0)
    u8 = (torch.rand(4, 3, 12, 12, generator=g) * 200 + 20).to(torch.uint8)
    x = u8.float() / 255
    torch.testing.assert_close(equalize(x), TF.equalize(u8).float() / 255)
    torch.testing.assert_close(posterize(x, torch.tensor([2, 2, 2, 2])), TF.posterize(u8, 2).float() / 255)
    torch.testing.assert_close(solarize(x, torch.tensor([128] * 4)), TF.solarize(u8, 128).float() / 255)
    ref = TF.autocontrast(u8).float() / 255
    assert (autocontrast(x) - ref).abs().max() <= 1.0 / 255 + 1e-6  # torchvision rounds to uint8


def test_augmix_geometric_ops_are_exact_on_the_grid():
    from training.augment import AUGMIX_OPS, _apply_ops

    x = torch.rand(2, 3, 9, 9, generator=torch.Generator().manual_seed(0))
    # translate_x by floor(level * 9 / 3 / 10) = 3 pixels (level 10): a shift with black fill.
    op = torch.tensor([AUGMIX_OPS.index("translate_x")] * 2)
    out = _apply_ops(x, op, torch.tensor([10.0, 10.0]), torch.tensor([1.0, -1.0]))
    torch.testing.assert_close(out[0, :, :, :6], x[0, :, :, 3:])
    assert float(out[0, :, :, 6:].abs().max()) == 0.0
    torch.testing.assert_close(out[1, :, :, 3:], x[1, :, :, :6])
    # rotate by floor(level * 3) = 90 degrees: torch.rot90 on a square image.
    op = torch.tensor([AUGMIX_OPS.index("rotate")])
    out = _apply_ops(x[:1], op, torch.tensor([30.0]), torch.tensor([1.0]))
    assert any(torch.allclose(out[0], torch.rot90(x[0], k, dims=(1, 2)), atol=1e-5) for k in (1, 3))


def test_augmix_is_a_convex_mix_per_image():
    from training.augment import augmix, autocontrast

    cfg = tiny_recipe(augment={"augmix": {"enabled": True, "width": 2, "depth": 1}}).augment.augmix
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.2
    out, params = augmix(x, cfg, torch.Generator().manual_seed(1), ops=("autocontrast",), return_params=True)
    m = params["m"].view(5, 1, 1, 1)
    torch.testing.assert_close(out, (1 - m) * x + m * autocontrast(x))  # Dirichlet weights sum to 1
    assert torch.allclose(params["w"].sum(1), torch.ones(5))
    full = augmix(x, cfg, torch.Generator().manual_seed(2))
    assert full.shape == x.shape and float(full.min()) >= 0 and float(full.max()) <= 1
    again = augmix(x, cfg, torch.Generator().manual_seed(2))
    torch.testing.assert_close(full, again)


def test_jsd_consistency_hand_computed():
    from training.augment import jsd_consistency

    g = torch.Generator().manual_seed(0)
    zs = [torch.randn(4, 3, generator=g) for _ in range(3)]
    ps = [F.softmax(z, 1).double().numpy() for z in zs]
    mix = sum(ps) / 3
    hand = np.mean([np.sum(p * (np.log(p) - np.log(mix))) / 4 for p in ps]) * 3 / 3
    assert float(jsd_consistency(*zs)) == pytest.approx(hand, rel=1e-5)
    assert float(jsd_consistency(zs[0], zs[0], zs[0])) == pytest.approx(0.0, abs=1e-7)


def test_augmix_jsd_switch_in_loop(tmp_path):
    t = make_trainer(tmp_path, augment={"augmix": {"enabled": True, "jsd_weight": 12.0}}, schedule={"epochs": 1})
    batch_sizes = []
    t.model.register_forward_pre_hook(lambda m, a: batch_sizes.append(a[0].shape[0]))
    t._train_epoch(0)
    assert batch_sizes and all(b == 36 for b in batch_sizes)  # clean + two AugMix views of 12 images


# --------------------------------------------------------------------------------- augment basic
def test_random_shift_is_a_translation_with_replicated_border():
    from training.augment import random_shift

    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    out = random_shift(x, 2, torch.Generator().manual_seed(0))
    pad = F.pad(x, (2, 2, 2, 2), mode="replicate")
    for i in range(2):
        assert any(torch.equal(out[i], pad[i, :, a : a + 6, b : b + 6]) for a in range(5) for b in range(5))
