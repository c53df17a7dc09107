"""Recipe schema: YAML loading, dotted overrides, validation messages, bundled recipes."""

from __future__ import annotations

import pytest

from evalsuite.errors import UsageError
from training.config import (
    Recipe,
    apply_overrides,
    load_recipe,
    parse_override,
    recipe_from_dict,
    recipe_names,
)


def test_bundled_recipes_load_and_validate():
    names = recipe_names()
    assert {"standard", "adversarial", "calibration"} <= set(names)
    for name in names:
        r = load_recipe(name)
        assert isinstance(r, Recipe)
        assert r.name == name
        assert r.description.strip()


def test_overrides_are_dotted_and_yaml_typed():
    r = load_recipe("standard", ["optim.lr=0.01", "schedule.epochs=3", "augment.mixup_alpha=0.2",
                                 "data.input_size=[24, 24]", "adversarial.eval_epsilon=16/255", "model.checkpoint=null"])
    assert r.optim.lr == 0.01
    assert r.schedule.epochs == 3
    assert r.augment.mixup_alpha == 0.2
    assert r.data.input_size == [24, 24]
    assert r.adversarial.eval_epsilon == pytest.approx(16 / 255)
    assert r.model.checkpoint is None


def test_parse_override_rejects_malformed():
    assert parse_override("a.b=1") == (["a", "b"], 1)
    with pytest.raises(UsageError, match="section.key=value"):
        parse_override("optim.lr")
    with pytest.raises(UsageError, match="empty key"):
        parse_override("optim..lr=1")


def test_unknown_key_has_did_you_mean_and_full_path():
    with pytest.raises(UsageError, match=r"optim\.lrr.*did you mean 'lr'"):
        load_recipe("standard", ["optim.lrr=0.1"])
    with pytest.raises(UsageError, match=r"unknown recipe key 'augmnt'"):
        recipe_from_dict({"augmnt": {}})


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.name=adam", "adamw"),
        ("loss.aux=mdcaa", "mdca"),
        ("adversarial.method=pgdd", "pgd"),
        ("amp=fp8", "amp must be"),
        ("schedule.warmup_epochs=50", "warmup_epochs"),
        ("optim.lr=fast", "must be a number"),
        ("ema.enabled=maybe", "true or false"),
        ("early_stopping.monitor=val_robust_accuracy", "eval_epsilon"),
        ("model.kwargs={pretrained: true}", "never downloads"),
        ("augment.cutmix_alpha=1.0", "cannot be combined"),
    ],
)
def test_bad_values_are_usage_errors(override, message):
    overrides = [override]
    if "val_robust" in override:
        overrides.append("adversarial.eval_epsilon=0")
    if "cutmix" in override:
        overrides.append("adversarial.method=pgd")
    with pytest.raises(UsageError, match=message):
        load_recipe("standard", overrides)


def test_linear_lr_scaling_switch():
    r = load_recipe("standard", ["optim.lr=0.001", "optim.base_batch_size=64", "optim.batch_size=256"])
    assert r.optim.effective_lr == pytest.approx(0.004)
    r = load_recipe("standard", ["optim.lr=0.001", "optim.batch_size=256", "optim.scale_lr=false"])
    assert r.optim.effective_lr == pytest.approx(0.001)


def test_training_hash_ignores_eval_and_device_only():
    a = load_recipe("standard")
    b = load_recipe("standard", ["eval.enabled=false", "device=cpu", "threads=1"])
    c = load_recipe("standard", ["optim.lr=0.01"])
    assert a.training_hash() == b.training_hash()
    assert a.training_hash() != c.training_hash()


def test_recipe_file_and_relative_policy(tmp_path):
    pol = tmp_path / "gates.yaml"
    pol.write_text("version: 1\ngates: []\n")
    f = tmp_path / "mine.yaml"
    f.write_text("model: {name: digits_cnn}\neval: {policy: gates.yaml}\n")
    r = load_recipe(str(f))
    assert r.name == "mine"
    assert r.eval.policy == str(pol)
    with pytest.raises(UsageError, match="did you mean 'standard'"):
        load_recipe("standart")


def test_apply_overrides_creates_sections():
    assert apply_overrides({}, ["a.b.c=2"]) == {"a": {"b": {"c": 2}}}
    with pytest.raises(UsageError, match="not a section"):
        apply_overrides({"a": 1}, ["a.b=2"])


def test_list_entries_for_evalsuite_ls():
    from training import list_entries

    entries = dict(list_entries())
    assert {"standard", "adversarial", "calibration"} <= set(entries)
    assert all(desc for desc in entries.values())
    assert not any(name.startswith("policy-") for name in entries)


def test_bundled_policies_parse():
    from evalsuite.gates import load_policy

    for name in recipe_names():
        policy = load_recipe(name).eval.policy
        assert policy is not None and policy.endswith(f"policy-{name}.yaml")
        gates, origin = load_policy(policy)
        assert gates and origin == policy
