"""The adversarial suite end to end through the real runner: metrics, gate paths, sanity gates, scorecard."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_attacks_support import TorchModel, mini_run, one_thread, single_thread  # noqa: F401 - one_thread is autouse
from torch import nn

from evalsuite.gates import PASS, WARN, evaluate

SMALL = {"n": 40, "blackbox_n": 8, "blackbox_queries": 60, "sanity_n": 12, "examples": 2}


@pytest.fixture(scope="module")
def smoke_run(digits_model, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("adv_smoke")
    with single_thread():
        return mini_run(TorchModel(digits_model), dict(SMALL), out_dir, batch_size=32) + (out_dir,)


def _outcomes(out) -> dict[str, str]:
    results = {"metrics": {"adversarial": out.metrics}, "checks": [c.to_record() for c in out.checks]}
    return {o.gate.metric: o.status for o in evaluate(results, [])}


def test_smoke_conditions_subset_and_gate_paths(smoke_run):
    suite, conds, preds, out, ctx, _ = smoke_run
    keys = [c.key for c in conds]
    assert keys == ["attack/linf/1_255", "attack/linf/2_255", "attack/linf/4_255", "attack/linf/8_255",
                    "attack/l2/0p25", "attack/l2/0p5", "attack/sanity/linf_0p5"]
    assert all(c.uses_model for c in conds)
    subset = conds[0].indices
    assert len(subset) == 40 and all(np.array_equal(c.indices, subset) for c in conds[:-1])
    assert set(conds[-1].indices) <= set(subset) and len(conds[-1].indices) == 12
    # seeded and stratified: every class present, proportional to the data
    counts = np.bincount(ctx.labels[subset], minlength=10)
    expected = 40 * np.bincount(ctx.labels, minlength=10) / len(ctx.labels)
    assert np.all(np.abs(counts - expected) <= 1)
    for key in keys[:-1]:
        assert len(preds[key]) == 40 and np.array_equal(preds[key].index, subset)
    m = out.metrics
    for norm, eps_key in (("linf", "8_255"), ("linf", "1_255"), ("l2", "0p5"), ("l2", "0p25")):
        node = m[norm][eps_key]
        assert {"robust_accuracy", "clean_accuracy", "attack_success_rate", "mean_linf", "mean_l2", "violations"} <= set(node)
        assert node["robust_accuracy"]["n"] == 40 and node["robust_accuracy"]["ci"] is not None
    worst = min(m[n][k]["robust_accuracy"]["value"] for n in ("linf", "l2") for k in m[n])
    assert m["worst"]["robust_accuracy"]["value"] == worst
    assert m["violations"]["value"] == 0
    status = _outcomes(out)
    assert status["adversarial.violations"] == PASS
    assert status["adversarial.sanity.monotone"] == PASS
    assert status["adversarial.sanity.bad_gradient_fraction"] == PASS
    assert status["adversarial.sanity.large_eps_robust_accuracy"] == PASS
    assert "adversarial.white_box" not in status  # only gated when black-box only


def test_smoke_numbers_are_per_sample_worst_case(smoke_run, digits_model):
    suite, conds, preds, out, ctx, _ = smoke_run
    from evalsuite.tensors import to_tensor

    subset = conds[0].indices
    x = to_tensor(ctx.image_source(subset), "cpu")
    clean_correct = TorchModel(digits_model).predict(x).argmax(1) == ctx.labels[subset]
    assert out.metrics["clean_accuracy"]["value"] == pytest.approx(clean_correct.mean(), abs=0)
    prev = None
    for key in ("attack/linf/1_255", "attack/linf/2_255", "attack/linf/4_255", "attack/linf/8_255"):
        p = preds[key]
        robust = p.predicted == p.labels
        assert np.array_equal(p.extras["clean_correct"], clean_correct)
        assert not np.any(robust & ~clean_correct)  # robust implies clean-correct
        # the engine's confirming predict() on the returned batch is stored as the logits (no rerun)
        assert "predict_logits" not in p.extras and p.logits.shape == (len(subset), 10)
        assert np.all(p.extras["linf"] <= p.params["eps"] + 1e-6)
        broken = clean_correct & ~robust
        assert set(p.extras["attack"][broken]) <= {"fgsm", "pgd"}
        assert np.all(p.extras["attack"][~clean_correct] == "misclassified")
        node = out.metrics["linf"][p.params["eps_key"]]
        assert node["robust_accuracy"]["value"] == pytest.approx(robust.mean(), abs=0)
        assert node["attack_success_rate"]["value"] == pytest.approx(broken.sum() / clean_correct.sum(), abs=1e-12)
        if broken.any():
            assert node["mean_linf"]["value"] == pytest.approx(p.extras["linf"][broken].mean(), rel=1e-12)
        if prev is not None:
            assert robust.mean() <= prev
        prev = robust.mean()
    assert prev < out.metrics["clean_accuracy"]["value"]  # 8/255 breaks a digits CNN


def test_report_curves_examples_and_scorecard_section(smoke_run):
    import json

    suite, conds, preds, out, ctx, out_dir = smoke_run
    json.dumps({"metrics": out.metrics, "checks": [c.to_record() for c in out.checks], "report": out.report,
                "params": [c.params for c in conds]}, allow_nan=False)  # results.json material
    r = out.report
    assert r["mode"] == "white-box" and r["tier"] == "smoke"
    assert [p[2] for p in r["curves"]["linf"]["points"]] == ["clean", "1/255", "2/255", "4/255", "8/255"]
    assert r["estimate"]["forward_backward_passes"] > 0 and r["estimate"]["seconds"] > 0
    assert r["examples"], "a digits CNN at 8/255 yields example pairs"
    for e in r["examples"]:
        for k in ("clean", "adversarial", "perturbation"):
            assert (out_dir / e[k]).is_file() and (out_dir / e[k]).read_bytes()[:4] == b"\x89PNG"
        assert e["adv_pred"] != e["label"]
    html = _render_section(out, out_dir)
    assert "Adversarial robustness" in html and "8/255" in html and "data:image/png;base64," in html
    assert "<svg" in html and "Sanity checks" in html


def _render_section(out, base_dir) -> str:
    import base64
    from pathlib import Path

    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from evalsuite.report import render, svg

    env = Environment(loader=FileSystemLoader(str(Path(render.__file__).parent / "templates")),
                      autoescape=select_autoescape(default=True, default_for_string=True))

    def img(path):
        return "data:image/png;base64," + base64.b64encode((Path(base_dir) / path).read_bytes()).decode() if path else ""

    tpl = env.get_template("sections/adversarial.html.j2")
    return tpl.render(section=out.report, metrics=out.metrics, results={}, svg=svg, img=img, fmt=render.fmt,
                      pct=render.pct, ci=render.ci)


def test_summary_without_in_memory_examples_regenerates_them(smoke_run, digits_model, tmp_path):
    """After --resume the conditions never ran in this process: examples are recomputed, numbers come from disk."""
    from evalsuite.suites.adversarial import AdversarialSuite
    from evalsuite.suites.base import PredictionSet

    suite, conds, preds, out, ctx, _ = smoke_run
    fresh = AdversarialSuite(dict(SMALL))
    ctx.out_dir = tmp_path
    fresh.conditions(ctx)
    again = fresh.summarize(ctx, PredictionSet(preds))
    assert again.metrics["linf"] == out.metrics["linf"]
    assert again.report["examples"] and all(e["adv_pred"] != e["label"] for e in again.report["examples"])
    # the same pairs and byte-identical PNGs as the run that attacked in this process
    assert again.report["examples"] == out.report["examples"]
    first_dir = smoke_run[-1]
    for ex in out.report["examples"]:
        for kind in ("clean", "adversarial", "perturbation"):
            assert (tmp_path / ex[kind]).read_bytes() == (first_dir / ex[kind]).read_bytes()


class _Quantised(nn.Module):
    """Rounds its input to 4 grey levels before the network: zero gradients everywhere (masking)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.round(x * 3) / 3)


def test_sanity_gates_flag_gradient_masking(digits_model, tmp_path):
    model = TorchModel(_Quantised(digits_model))
    opts = {"n": 24, "linf_eps": ["8/255", "32/255"], "norms": ["linf"], "blackbox_n": 24, "blackbox_queries": 150,
            "sanity_n": 12, "examples": 0}
    _, _, preds, out, _ = mini_run(model, opts, tmp_path, batch_size=24)
    san = out.metrics["sanity"]
    assert san["bad_gradient_fraction"]["value"] == 1.0
    status = _outcomes(out)
    assert status["adversarial.sanity.bad_gradient_fraction"] == WARN
    # FGSM/PGD see no gradient; the query-only Square check breaks what they could not
    assert san["blackbox_only_successes"]["value"] > 0
    assert status["adversarial.sanity.blackbox_only_successes"] == WARN
    desc = {c.metric: c.description for c in out.checks}
    assert "gradient masking" in desc["adversarial.sanity.bad_gradient_fraction"]
    assert "gradient masking" in desc["adversarial.sanity.blackbox_only_successes"]


def test_apgd_ce_through_evalsuite_equals_torchattacks_called_directly(digits_model, tmp_path):
    import torchattacks

    from evalsuite.attacks.engine import attack_seed
    from evalsuite.tensors import to_tensor

    model = TorchModel(digits_model)
    opts = {"attacks": ["apgd-ce"], "apgd_steps": 10, "n": 32, "norms": ["l2"], "l2_eps": [0.5], "sanity": False,
            "examples": 0}
    _, conds, preds, out, ctx = mini_run(model, opts, tmp_path, batch_size=32)
    key = "attack/l2/0p5"
    p = preds[key]
    pos = conds[0].indices
    x = to_tensor(ctx.image_source(pos), "cpu").contiguous()
    y = torch.as_tensor(ctx.labels[pos])
    cc = np.flatnonzero(model.predict(x).argmax(1) == y.numpy())
    seed = attack_seed(0, key, "apgd-ce", [str(ctx.dataset.ids[q]) for q in pos[cc]])
    torch.manual_seed(seed)
    atk = torchattacks.APGD(digits_model, norm="L2", eps=0.5, steps=10, n_restarts=1, seed=seed, loss="ce")
    adv = atk(x[cc], y[cc])
    direct = np.zeros(len(pos), bool)
    direct[cc] = model.predict(adv).argmax(1) == y[cc].numpy()
    assert np.array_equal((p.predicted == p.labels) & p.extras["clean_correct"], direct)
    assert out.metrics["l2"]["0p5"]["robust_accuracy"]["value"] == pytest.approx(direct.mean(), abs=0)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_standard_and_full_tiers_run_and_full_is_at_least_as_strong(digits_model, tmp_path):
    model = TorchModel(digits_model)
    base = {"n": 16, "norms": ["linf", "l2"], "linf_eps": ["4/255"], "l2_eps": [0.5], "examples": 0,
            "blackbox_n": 8, "blackbox_queries": 1000, "sanity_n": 8}
    _, conds_s, preds_s, out_s, _ = mini_run(model, dict(base, tier="standard"), tmp_path / "s", batch_size=16)
    assert conds_s[0].params["attacks"] == ["apgd-ce", "apgd-t"]
    assert conds_s[0].params["settings"]["apgd_steps"] == 100 and conds_s[0].params["settings"]["targets"] == 9
    _, conds_f, preds_f, out_f, _ = mini_run(model, dict(base, tier="full", square_queries=1000), tmp_path / "f",
                                             batch_size=16)
    assert conds_f[0].params["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    for out in (out_s, out_f):
        assert out.metrics["violations"]["value"] == 0
    for norm, k in (("linf", "4_255"), ("l2", "0p5")):
        assert out_f.metrics[norm][k]["robust_accuracy"]["value"] <= out_s.metrics[norm][k]["robust_accuracy"]["value"]
        assert out_s.metrics[norm][k]["robust_accuracy"]["value"] < out_s.metrics["clean_accuracy"]["value"]
