"""Attacks against references: FGSM by hand, PGD against torchattacks called directly, honest aggregation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_attacks_support import TorchModel, digits_test_dataset, mini_run, one_thread  # noqa: F401 - one_thread is autouse
from torch import nn

from evalsuite.attacks.engine import AttackEngine, attack_seed, margins
from evalsuite.attacks.runners import AttackSettings, expand_attacks, passes_per_sample, run_attack
from evalsuite.errors import UsageError


def _linear_model(seed: int = 0, n_classes: int = 3, in_features: int = 12) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, n_classes))
    return net.eval()


def _hand_ce_gradient(net: nn.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d CE(mean over batch) / dx for a linear model, in float64 numpy."""
    w = net[1].weight.detach().double().numpy()
    b = net[1].bias.detach().double().numpy()
    flat = x.reshape(len(x), -1).astype(np.float64)
    z = flat @ w.T + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return (p @ w / len(y)).reshape(x.shape)


def test_fgsm_matches_hand_computation_on_a_linear_model():
    net = _linear_model()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 2, 2, generator=g) * 0.6 + 0.2
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    grad = _hand_ce_gradient(net, x.numpy(), y.numpy())
    eps = 0.1
    expected = np.clip(x.numpy().astype(np.float64) + eps * np.sign(grad), 0, 1)
    adv = run_attack("fgsm", net, x, y, norm="linf", eps=eps, n_classes=3, seed=0)
    np.testing.assert_allclose(adv.numpy(), expected, atol=1e-6)
    # L2 form: one normalised-gradient step of length eps.
    eps2 = 0.3
    flat = grad.reshape(len(grad), -1)
    step = flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-10)
    expected2 = np.clip(x.numpy().reshape(len(x), -1) + eps2 * step, 0, 1).reshape(x.shape)
    adv2 = run_attack("fgsm", net, x, y, norm="l2", eps=eps2, n_classes=3, seed=0)
    np.testing.assert_allclose(adv2.numpy(), expected2, atol=1e-6)
    assert np.linalg.norm((adv2 - x).numpy().reshape(len(x), -1), axis=1).max() <= eps2 + 1e-6


def test_run_attack_is_seeded_and_leaves_global_rng_alone():
    net = _linear_model()
    x = torch.rand(4, 3, 2, 2, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 0])
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    one = AttackSettings(pgd_steps=1, pgd_step_factor=0.5)  # a short step: the random start shows
    a = run_attack("pgd", net, x, y, norm="linf", eps=0.05, n_classes=3, seed=7, settings=one)
    after = torch.rand(1)
    b = run_attack("pgd", net, x, y, norm="linf", eps=0.05, n_classes=3, seed=7, settings=one)
    c = run_attack("pgd", net, x, y, norm="linf", eps=0.05, n_classes=3, seed=8, settings=one)
    assert torch.equal(before, after)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_pgd_through_evalsuite_equals_torchattacks_called_directly(digits_model, tmp_path):
    """Same model, same seed: the suite's PGD robust accuracy equals torchattacks.PGD's, sample by sample."""
    import torchattacks

    from evalsuite.tensors import to_tensor

    model = TorchModel(digits_model)
    eps, steps, n, batch = 4 / 255, 10, 48, 16
    opts = {"attacks": ["pgd"], "n": n, "norms": ["linf"], "linf_eps": ["4/255"], "steps": steps, "sanity": False,
            "examples": 0, "attack_batch_size": batch}
    # The runner's batch (--batch-size) differs from the attacks' own: the attack batches are runs of
    # ``batch`` consecutive subset samples whatever it is.
    suite, conds, preds, out, ctx = mini_run(model, opts, tmp_path, batch_size=20)
    key = "attack/linf/4_255"
    p = preds[key]
    ours = (p.predicted == p.labels) & p.extras["clean_correct"]

    ds = digits_test_dataset()
    positions = conds[0].indices
    assert np.array_equal(p.index, positions)
    direct = np.zeros(len(positions), bool)
    for start in range(0, len(positions), batch):
        pos = positions[start : start + batch]
        x = to_tensor(ctx.image_source(pos), "cpu").contiguous()
        y = torch.as_tensor(ctx.labels[pos])
        clean = model.predict(x).argmax(1) == y.numpy()
        cc = np.flatnonzero(clean)
        torch.manual_seed(attack_seed(0, key, "pgd", [str(ds.ids[q]) for q in pos[cc]]))
        atk = torchattacks.PGD(digits_model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)
        adv = atk(x[cc], y[cc])
        direct[start + cc] = model.predict(adv).argmax(1) == y[cc].numpy()
    assert np.array_equal(ours, direct)
    assert out.metrics["linf"]["4_255"]["robust_accuracy"]["value"] == pytest.approx(direct.mean(), abs=0)
    assert 0 < direct.sum() < len(direct)  # the check compares something non-trivial


class _Threshold(nn.Module):
    """Two classes: logit_1 = 100 * (mean(x) - 0.5); class 1 when the image is bright."""

    def forward(self, x):
        m = x.flatten(1).mean(dim=1)
        return torch.stack([torch.zeros_like(m), 100 * (m - 0.5)], dim=1)


def test_engine_keeps_first_success_worst_margin_and_rejects_out_of_budget(monkeypatch):
    """Per-sample worst case over attacks; an out-of-budget example is counted and never used."""
    import evalsuite.attacks.engine as engine_mod

    net = _Threshold()
    eps = 0.05
    values = torch.tensor([0.46, 0.47, 0.40, 0.48, 0.30, 0.60])  # sample 5 is misclassified (bright, label 0)
    x = values.view(-1, 1, 1, 1).expand(-1, 3, 2, 2).contiguous()
    y = torch.zeros(6, dtype=torch.long)

    def fake(name, module, xs, ys, **kw):
        d = torch.zeros_like(xs)
        if name == "fgsm":  # +eps everywhere: breaks 0.46, 0.47, 0.48; 0.40 and 0.30 move closer
            d += eps
        elif name == "pgd":  # over budget on every sample it sees
            d += 3 * eps
        return (xs + d).clamp(0, 1)

    monkeypatch.setattr(engine_mod, "run_attack", fake)
    model = TorchModel(net)
    eng = AttackEngine(model.predict, net, n_classes=2)
    res = eng.attack_batch(x, y, [f"s{i}" for i in range(6)], norm="linf", eps=eps, attacks=["fgsm", "pgd"], seed=0,
                           key="attack/linf/t")
    ex = res.extras
    assert ex["clean_correct"].tolist() == [True, True, True, True, True, False]
    assert ex["attack"].tolist() == ["fgsm", "fgsm", "", "fgsm", "", "misclassified"]
    # pgd only ran on the two survivors; both outputs were out of budget -> counted, not used
    assert ex["violation"].tolist() == [0, 0, 1, 0, 1, 0]
    # survivors keep fgsm's in-budget example (smaller margin than clean), not the clean image
    assert torch.allclose(res.x_adv[2], x[2] + eps) and torch.allclose(res.x_adv[4], x[4] + eps)
    assert torch.equal(res.x_adv[5], x[5])
    assert ex["linf"][[0, 1, 2, 3, 4]] == pytest.approx([eps] * 5, abs=1e-6)
    final = margins(model.predict(res.x_adv), y.numpy())
    assert (final[[0, 1, 3]] < 0).all() and (final[[2, 4]] > 0).all()


def test_violations_fail_the_builtin_gate(digits_model, tmp_path, monkeypatch):
    import evalsuite.attacks.engine as engine_mod
    from evalsuite.gates import FAIL, evaluate

    def overshoot(name, module, xs, ys, *, eps, **kw):
        return (xs + 2 * eps * torch.sign(torch.randn_like(xs))).clamp(0, 1)

    monkeypatch.setattr(engine_mod, "run_attack", overshoot)
    opts = {"attacks": ["fgsm"], "n": 16, "norms": ["linf"], "linf_eps": ["8/255"], "sanity": False, "examples": 0}
    _, _, preds, out, _ = mini_run(TorchModel(digits_model), opts, tmp_path, batch_size=16)
    p = preds["attack/linf/8_255"]
    assert out.metrics["violations"]["value"] == int(p.extras["clean_correct"].sum()) > 0
    # nothing out of budget was used: every stored input is the clean image
    assert np.all(p.extras["linf"] == 0)
    assert out.metrics["linf"]["8_255"]["robust_accuracy"]["value"] == out.metrics["clean_accuracy"]["value"]
    outcomes = evaluate({"metrics": {"adversarial": out.metrics}, "checks": [c.to_record() for c in out.checks]}, [])
    status = {o.gate.metric: o.status for o in outcomes}
    assert status["adversarial.violations"] == FAIL


def test_attack_names_tiers_and_costs():
    assert expand_attacks(["autoattack", "pgd"]) == ["apgd-ce", "apgd-t", "fab-t", "square", "pgd"]
    with pytest.raises(UsageError, match="did you mean 'apgd-ce'"):
        expand_attacks(["apgd-c"])
    s = AttackSettings()
    assert passes_per_sample("apgd-t", s, 10) == (9 * 101, 10)
    assert passes_per_sample("apgd-t", s, 5) == (4 * 101, 5)  # at most n_classes - 1 targets
    assert passes_per_sample("square", s, 10) == (0, 5002)
    from evalsuite.attacks import list_entries

    names = [n for n, _ in list_entries()]
    for n in ("fgsm", "pgd", "apgd-ce", "apgd-t", "fab-t", "square", "cw-l2", "autoattack", "tier:smoke",
              "tier:standard", "tier:full"):
        assert n in names


def test_torchattacks_objects_use_paper_parameters():
    from evalsuite.attacks.runners import build_attack

    net = _linear_model(n_classes=10)
    s = AttackSettings()
    apgd = build_attack("apgd-ce", net, norm="linf", eps=8 / 255, n_classes=10, seed=1, settings=s)
    apgdt = build_attack("apgd-t", net, norm="l2", eps=0.5, n_classes=1000, seed=1, settings=s)
    fab = build_attack("fab-t", net, norm="linf", eps=8 / 255, n_classes=1000, seed=1, settings=s)
    sq = build_attack("square", net, norm="linf", eps=8 / 255, n_classes=10, seed=1, settings=s)
    assert (apgd.steps, apgd.n_restarts, apgd.loss, apgd.norm) == (100, 1, "ce", "Linf")
    assert (apgdt.steps, apgdt.n_target_classes, apgdt.norm) == (100, 9, "L2")
    assert (fab.steps, fab.n_target_classes, fab.multi_targeted) == (100, 9, True)
    assert (sq.n_queries, sq.p_init, sq.loss) == (5000, 0.8, "margin")


@pytest.mark.parametrize(
    "opts,match",
    [
        ({"tier": "smok"}, "did you mean 'smoke'"),
        ({"n": 0}, "positive integer"),
        ({"norms": ["linf", "l3"]}, "unknown norm"),
        ({"linf_eps": ["8/255", "x"]}, "not a number"),
        ({"steps": 0}, "steps"),
        ({"bridge_tolerance": -1}, "bridge_tolerance"),
        ({"sanity": "yes"}, "true or false"),
        ({"attack": ["pgd"]}, "did you mean 'attacks'"),
    ],
)
def test_suite_options_are_validated(opts, match):
    from evalsuite.suites.adversarial import AdversarialSuite

    with pytest.raises(UsageError, match=match):
        AdversarialSuite(opts)


def _direct(name: str, model: nn.Module, norm: str, eps: float, seed: int, s: AttackSettings):
    """The documented torchattacks call for ``name``, written out independently of evalsuite."""
    import torchattacks

    tnorm = {"linf": "Linf", "l2": "L2"}[norm]
    if name == "apgd-ce":
        return torchattacks.APGD(model, norm=tnorm, eps=eps, steps=s.apgd_steps, n_restarts=1, seed=seed, loss="ce")
    if name == "apgd-t":
        atk = torchattacks.APGDT(model, norm=tnorm, eps=eps, steps=s.apgd_steps, n_restarts=1, seed=seed, n_classes=5)
        atk.n_target_classes = min(s.targets, 4)
        return atk
    if name == "fab-t":
        atk = torchattacks.FAB(model, norm=tnorm, eps=eps, steps=s.fab_steps, n_restarts=1, seed=seed,
                               multi_targeted=True, n_classes=5)
        atk.n_target_classes = min(s.targets, 4)
        return atk
    if name == "square":
        return torchattacks.Square(model, norm=tnorm, eps=eps, n_queries=s.square_queries, p_init=0.8, seed=seed)
    if name == "cw-l2":
        return torchattacks.CW(model, c=1, kappa=0, steps=s.cw_steps, lr=0.01)
    raise AssertionError(name)


@pytest.mark.parametrize("name,norm", [("apgd-ce", "linf"), ("apgd-t", "l2"), ("fab-t", "linf"), ("square", "l2"),
                                       ("cw-l2", "l2")])
def test_run_attack_is_the_documented_torchattacks_call(name, norm):
    from evalsuite.attacks.engine import query_module

    net = _linear_model(n_classes=5, in_features=3 * 8 * 8)  # Square's L2 start needs >= 5 x 5 pixels
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    y = net(x).argmax(1)
    s = AttackSettings(apgd_steps=8, fab_steps=4, square_queries=30, cw_steps=10, targets=3)
    eps = 0.05 if norm == "linf" else 0.3
    target = query_module(lambda t: net(t).detach().numpy(), "cpu") if name == "square" else net
    ours = run_attack(name, target, x, y, norm=norm, eps=eps, n_classes=5, seed=11, settings=s)
    torch.manual_seed(11)
    ref = _direct(name, net, norm, eps, 11, s)(x, y)
    assert torch.equal(ours, ref.detach())


def test_cw_outputs_are_projected_onto_the_l2_ball():
    net = _linear_model(n_classes=3)
    x = torch.rand(6, 3, 2, 2, generator=torch.Generator().manual_seed(2)) * 0.5 + 0.25
    y = net(x).argmax(1)
    eng = AttackEngine(TorchModel(net).predict, net, n_classes=3, settings=AttackSettings(cw_steps=50))
    res = eng.attack_batch(x, y, [f"c{i}" for i in range(6)], norm="l2", eps=0.02, attacks=["cw-l2"], seed=0,
                           key="attack/l2/0p02")
    assert np.all(res.extras["l2"] <= 0.02 * (1 + 1e-5) + 1e-6) and np.all(res.extras["violation"] == 0)
