"""Condition identity: key and label derived from (suite, kind, parts), stored in params, read back
without parsing keys; one key-to-gate-path rule; older files and baselines without an identity."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from evalsuite.conditions import (
    IDENTITY_PARAM,
    CleanCondition,
    Condition,
    ConditionIdentity,
    condition_identity,
    condition_key,
    identity_from_key,
    measured_params,
    with_identity,
)
from evalsuite.errors import UsageError
from evalsuite.results import check_gate_paths, gate_path

BUILT_IN = [  # (identity, key, label): the keys every existing run folder uses
    (ConditionIdentity("clean", "clean"), "clean", "clean"),
    (ConditionIdentity("corruption", "corruption", ("fog", 3)), "corruption/fog/3", "fog 3"),
    (ConditionIdentity("device", "device", ("webcam-720p",)), "device/webcam-720p", "webcam-720p"),
    (ConditionIdentity("device", "device", ("op", "jpeg", 5)), "device/op/jpeg/5", "op jpeg 5"),
    (ConditionIdentity("adversarial", "attack", ("linf", "8_255")), "attack/linf/8_255", "linf 8_255"),
    (ConditionIdentity("adversarial", "attack", ("sanity", "linf_0p5")), "attack/sanity/linf_0p5", "sanity linf_0p5"),
]


class Noise(Condition):
    """A plug-in condition built the old way, from a bare key."""

    def apply(self, x, ctx):
        return x


@pytest.mark.parametrize(("ident", "key", "label"), BUILT_IN)
def test_identity_key_label_round_trip(ident, key, label):
    assert ident.key == key == condition_key(ident.kind, ident.parts)
    assert ident.label == label
    stored = json.loads(json.dumps(ident.to_params()))  # as in a predictions file / results.json
    assert ConditionIdentity.from_params(stored) == ident
    assert condition_identity(key, ident.suite, {"x": 1, IDENTITY_PARAM: stored}) == ident
    # the compatibility rule gives the same identity from the key alone (ints where severities are)
    assert identity_from_key(key, ident.suite) == ident
    assert condition_identity(key, ident.suite, {"x": 1}) == ident


def test_explicit_label_and_validation():
    ident = ConditionIdentity("adversarial", "attack", ("linf", "8_255"), label="L∞ ε=8/255")
    assert ident.key == "attack/linf/8_255" and ident.label == "L∞ ε=8/255"
    assert ConditionIdentity.from_params(ident.to_params()).label == "L∞ ε=8/255"
    for bad in (dict(suite="", kind="x"), dict(suite="s", kind="a/b"), dict(suite="s", kind="k", parts=("a/b",)),
                dict(suite="s", kind="k", parts=(True,)), dict(suite="s", kind="k", parts="fog"),
                dict(suite="s", kind="k", parts=(1.5,))):
        with pytest.raises(ValueError):
            ConditionIdentity(**bad)
    for raw in (None, [], {"suite": "s", "kind": "k", "parts": "fog"}, {"kind": "k", "parts": []}):
        with pytest.raises(ValueError):
            ConditionIdentity.from_params(raw)
    with pytest.raises(ValueError, match="names 'corruption/fog/3'"):
        condition_identity("corruption/fog/4", "corruption", {IDENTITY_PARAM: BUILT_IN[1][0].to_params()})


def test_conditions_carry_their_identity_in_params():
    clean = CleanCondition()
    assert clean.key == "clean" and clean.params == {IDENTITY_PARAM: BUILT_IN[0][0].to_params()}
    ident = BUILT_IN[3][0]
    from evalsuite.devices.condition import DeviceCondition, op_identity, op_key, profile_key

    dev = DeviceCondition(identity=op_identity("jpeg", 5), params={"operation": "jpeg", "severity": 5})
    assert dev.key == "device/op/jpeg/5" == op_key("jpeg", 5) and dev.suite == "device" and dev.identity == ident
    assert dev.params[IDENTITY_PARAM] == ident.to_params() and measured_params(dev.params) == {"operation": "jpeg",
                                                                                                 "severity": 5}
    assert profile_key("webcam-720p") == "device/webcam-720p"
    with pytest.raises(ValueError, match="differs from its identity"):
        DeviceCondition(key="device/other", identity=ident)
    with pytest.raises(ValueError, match="suite"):
        DeviceCondition(suite="corruption", identity=ident)
    plug = Noise(key="slow/2", suite="slow", params={"sigma": 0.2})  # plug-ins: identity from the key
    assert plug.identity == ConditionIdentity("slow", "slow", ("2",))
    assert plug.params == {"sigma": 0.2, IDENTITY_PARAM: plug.identity.to_params()}


def test_suites_build_keys_from_identities():
    from evalsuite.suites.corruption import CorruptionCondition
    from evalsuite.suites.device import DeviceSuite

    c = CorruptionCondition(name="fog", severity=3)
    assert c.key == "corruption/fog/3" and c.identity == BUILT_IN[1][0]
    assert measured_params(c.params) == {"name": "fog", "severity": 3, "backend": "torch"}
    conds = DeviceSuite({"profiles": ["webcam-720p"], "operations": ["jpeg"], "severities": [5]}).build_conditions()
    assert [x.key for x in conds] == ["device/webcam-720p", "device/op/jpeg/5"]
    assert [x.identity for x in conds] == [BUILT_IN[2][0], BUILT_IN[3][0]]


def test_gate_path_is_the_one_rule():
    assert gate_path("clean") == "clean"
    assert gate_path("corruption/fog/3") == "corruption.fog.3"
    assert gate_path("device/webcam-720p") == "device.webcam-720p"
    assert gate_path("attack/l2/0p5") == "attack.l2.0p5"
    check_gate_paths([k for _, k, _ in BUILT_IN])
    with pytest.raises(UsageError, match="share the gate path 'device.op.jpeg.5'"):
        check_gate_paths(["device/op/jpeg/5", "device/op.jpeg.5"])  # a profile named 'op.jpeg.5'


def test_plan_refuses_conditions_sharing_a_gate_path(digits_onnx, tmp_path):
    from evalsuite.api import plan_run
    from evalsuite.config import RunConfig

    prof = tmp_path / "op.jpeg.5.yaml"
    prof.write_text("name: op.jpeg.5\nchain: [{op: jpeg, severity: 5}]\n")
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"suites:\n  clean: {{}}\n  device: {{profiles_file: '{prof}', operations: [jpeg], severities: [5]}}\n")
    cfg = RunConfig(model=str(digits_onnx), data="builtin:digits:test", suite=str(suite), out_dir=str(tmp_path / "o"))
    with pytest.raises(UsageError, match="share the gate path"):
        plan_run(cfg)


def _old_identity(run_identity, key, params, index):
    """The resume hash as written before conditions carried an identity."""
    h = hashlib.sha256(json.dumps({"run": run_identity, "key": key, "params": params}, sort_keys=True,
                                  default=str).encode())
    h.update(np.ascontiguousarray(index, dtype=np.int64).tobytes())
    return h.hexdigest()


def test_resume_reuses_prediction_files_written_without_identity(tmp_path):
    from evalsuite.predictions import PredictionStore, identity
    from evalsuite.suites.corruption import CorruptionCondition

    run_id = {"model": "m", "data": "d", "seed": 1}
    old_params = {"name": "fog", "severity": 3, "backend": "torch"}
    index = np.arange(4)
    key = "corruption/fog/3"
    cond = CorruptionCondition(name="fog", severity=3)
    # the hash ignores the identity, so it equals the one older files carry
    assert identity(run_id, key, cond.params, index) == _old_identity(run_id, key, old_params, index)
    # an older file: meta params without the identity
    folder = tmp_path / "predictions"
    folder.mkdir()
    meta = {"key": key, "suite": "corruption", "params": old_params,
            "identity": _old_identity(run_id, key, old_params, index)}
    np.savez(folder / "corruption__fog__3.npz", meta=np.array(json.dumps(meta)), index=index,
             ids=np.array(["a", "b", "c", "d"]), labels=np.zeros(4, dtype=np.int64), logits=np.zeros((4, 3), np.float32))
    store = PredictionStore(folder, run_id)
    got = store.load(key, dict(cond.params), index)
    assert got is not None  # reused, not recomputed
    assert got.params == cond.params  # the identity is filled in once, on loading
    assert condition_identity(got.key, got.suite, got.params) == cond.identity
    # a file whose recorded identity names another key is damaged: recomputed
    bad = dict(meta, params=with_identity("corruption/fog/4", "corruption", old_params))
    np.savez(folder / "corruption__fog__3.npz", meta=np.array(json.dumps(bad)), index=index,
             ids=np.array(["a", "b", "c", "d"]), labels=np.zeros(4, dtype=np.int64), logits=np.zeros((4, 3), np.float32))
    assert store.load(key, dict(cond.params), index) is None


def test_baseline_without_identities_still_matches():
    from evalsuite.errors import PolicyError
    from evalsuite.gates import check_baseline_matches

    cond = CleanCondition()
    here = {"clean": dict(cond.params), "corruption/fog/3": with_identity("corruption/fog/3", "corruption", {"s": 3})}
    base = {"provenance": {"data_fingerprint": "fp"},
            "conditions": {"clean": {"params": {}}, "corruption/fog/3": {"params": {"s": 3}}}}
    assert check_baseline_matches(base, fingerprint="fp", conditions=here, allow_mismatch=False, origin="b") == []
    base["conditions"]["corruption/fog/3"]["params"] = {"s": 4}
    with pytest.raises(PolicyError, match="other parameters"):
        check_baseline_matches(base, fingerprint="fp", conditions=here, allow_mismatch=False, origin="b")
