"""Issue #21: attack results do not depend on ``--batch-size``.

torchattacks draws random starts per batch and its APGD/FAB/Square keep batch-wide state, so
the adversarial suite batches its subset by its own ``attack_batch_size`` (consecutive runs of
the subset), and the runner hands each attack condition those batches whatever ``--batch-size``
is. These tests run the suite through the real runner (:func:`test_attacks_support.mini_run`)
at several runner batch sizes and compare every stored array and every metric bit for bit; a
control shows that the attack batch itself does change results, so the comparison can fail.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_attacks_support import TorchModel, mini_run, one_thread  # noqa: F401 - one_thread is autouse

from evalsuite.errors import UsageError

# Smoke tier (FGSM + PGD-10) at two L-inf and one L2 budget, with the Square check and the large-eps
# sanity condition: 24 samples in attack batches of 10 (two full, one partial), so attack batch
# boundaries fall inside runner batches.
FAST = {"n": 24, "attack_batch_size": 10, "linf_eps": ["4/255", "8/255"], "l2_eps": [0.5], "blackbox_n": 4,
        "blackbox_queries": 40, "sanity_n": 8, "examples": 1}


def _run(model, options, tmp_path, batch_size):
    suite, conds, preds, out, _ = mini_run(model, dict(options), tmp_path / f"b{batch_size}", batch_size=batch_size)
    return conds, preds, out


def _assert_same(a, b) -> None:
    """Every condition's index, logits and per-sample extras, and the suite's metrics, bit for bit."""
    (conds_a, preds_a, out_a), (conds_b, preds_b, out_b) = a, b
    assert [c.key for c in conds_a] == [c.key for c in conds_b]
    for key, pa in preds_a.items():
        pb = preds_b[key]
        assert np.array_equal(pa.index, pb.index), key
        assert np.array_equal(pa.logits, pb.logits), key
        assert set(pa.extras) == set(pb.extras), key
        for name, va in pa.extras.items():
            assert np.array_equal(va, pb.extras[name]), (key, name)
    assert json.dumps(out_a.metrics, sort_keys=True, default=str) == json.dumps(out_b.metrics, sort_keys=True,
                                                                                  default=str)
    rows = ("rows", "curves", "sanity")
    assert json.dumps({k: out_a.report[k] for k in rows}, sort_keys=True, default=str) == \
        json.dumps({k: out_b.report[k] for k in rows}, sort_keys=True, default=str)


def test_attack_results_do_not_depend_on_the_runner_batch_size(digits_model, tmp_path):
    model = TorchModel(digits_model)
    ref = _run(model, FAST, tmp_path, 64)
    conds = ref[0]
    assert all(c.batch_size == 10 and c.params["attack_batch_size"] == 10 for c in conds)
    p = ref[1]["attack/linf/8_255"]
    assert 0 < ((p.predicted == p.labels) & p.extras["clean_correct"]).sum() < len(p)  # something to compare
    assert p.extras["blackbox_tried"].any()  # the Square check ran too
    for batch_size in (17, 1):
        _assert_same(ref, _run(model, FAST, tmp_path, batch_size))


def test_the_attack_batch_does_change_results(digits_model, tmp_path):
    """Control: with a different attack batch the PGD random starts differ, so the comparison above can fail."""
    model = TorchModel(digits_model)
    opts = {"n": 30, "attacks": ["pgd"], "norms": ["linf"], "linf_eps": ["4/255"], "sanity": False, "examples": 0}
    _, a, _ = _run(model, dict(opts, attack_batch_size=12), tmp_path / "a", 17)
    _, b, _ = _run(model, dict(opts, attack_batch_size=30), tmp_path / "b", 17)
    assert not np.array_equal(a["attack/linf/4_255"].logits, b["attack/linf/4_255"].logits)


def test_runner_batches_an_attack_condition_by_its_own_batch_size(digits_model, tmp_path, monkeypatch):
    """The runner hands ``apply`` the condition's batches: runs of ``attack_batch_size`` subset positions."""
    from evalsuite.suites.adversarial import AttackCondition

    model = TorchModel(digits_model)
    seen: list[list[str]] = []
    opts = {"n": 30, "attacks": ["fgsm"], "norms": ["linf"], "linf_eps": ["1/255"], "sanity": False, "examples": 0,
            "attack_batch_size": 12}
    original = AttackCondition.apply

    def spy(self, x, ctx):
        seen.append([str(i) for i in ctx.ids])
        return original(self, x, ctx)

    monkeypatch.setattr(AttackCondition, "apply", spy)
    _, preds, _ = _run(model, opts, tmp_path, 17)
    ids = [str(i) for i in preds["attack/linf/1_255"].ids]
    assert seen == [ids[0:12], ids[12:24], ids[24:30]]


@pytest.mark.parametrize("value", [0, -3])
def test_attack_batch_size_must_be_positive(value):
    from evalsuite.suites.adversarial import AdversarialSuite

    with pytest.raises(UsageError, match="attack_batch_size must be an integer >= 1"):
        AdversarialSuite({"attack_batch_size": value})


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_every_attack_is_batch_size_invariant(digits_model, tmp_path):
    """Every attack, both norms (cw-l2: L2 only), at runner batch sizes 64 and 7, with iterations cut to stay cheap."""
    from evalsuite.attacks.runners import ATTACKS

    model = TorchModel(digits_model)
    opts = {"attacks": sorted(ATTACKS), "n": 20, "attack_batch_size": 8, "linf_eps": ["8/255"], "l2_eps": [0.5],
            "steps": 5, "apgd_steps": 5, "targets": 3, "square_queries": 30, "sanity": False, "examples": 0}
    ref = _run(model, opts, tmp_path, 64)
    assert ref[0][0].params["attacks"] == sorted(a for a in ATTACKS if a != "cw-l2")
    assert ref[0][1].params["attacks"] == sorted(ATTACKS)
    _assert_same(ref, _run(model, opts, tmp_path, 7))
