"""SliceSuite: options, gate paths on every condition, attack subsets, degradation lines, report."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from evalsuite.conditions import ConditionIdentity, identity_from_key
from evalsuite.errors import UsageError
from evalsuite.suites.base import Predictions, PredictionSet, RunContext
from evalsuite.suites.slices import SliceSuite, condition_family


def _dataset(n: int = 240, seed: int = 0):
    from evalsuite.data.base import Dataset

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 12, 16, 3), dtype=np.uint8)
    images[: n // 2] //= 3  # darker half
    region = np.array(["north", "south", "east"], dtype=object)[np.arange(n) % 3]
    score = rng.normal(size=n)
    score[5] = np.nan
    return Dataset(
        name="synthetic",
        ids=np.array([f"s{i}" for i in range(n)], dtype=object),
        labels=rng.integers(0, 4, n),
        columns={"region": region, "score": score},
        fingerprint="x",
        loader=lambda i: images[i],
        class_names=["a", "b", "c", "d"],
    )


def _preds(ds, key: str, suite: str, idx: np.ndarray, acc_by_region: dict[str, float], seed: int) -> Predictions:
    rng = np.random.default_rng(seed)
    y = ds.labels[idx].astype(np.int64)
    acc = np.array([acc_by_region[r] for r in ds.columns["region"][idx]])
    ok = rng.random(len(idx)) < acc
    logits = rng.normal(size=(len(idx), 4)).astype(np.float32)
    logits[np.arange(len(idx)), np.where(ok, y, (y + 1) % 4)] += 4.0
    return Predictions(key, suite, {}, idx, ds.ids[idx], y, logits)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    ds = _dataset()
    n = len(ds)
    allrows = np.arange(n)
    items = {
        "clean": _preds(ds, "clean", "clean", allrows, {"north": 0.95, "south": 0.95, "east": 0.95}, 1),
        "corruption/fog/3": _preds(ds, "corruption/fog/3", "corruption", allrows,
                                   {"north": 0.9, "south": 0.9, "east": 0.35}, 2),
        "device/webcam": _preds(ds, "device/webcam", "device", allrows, {"north": 0.9, "south": 0.85, "east": 0.9}, 3),
    }
    sub = np.arange(0, n, 2)  # attack covers every other sample only
    items["attack/linf/8_255"] = _preds(ds, "attack/linf/8_255", "adversarial", sub,
                                        {"north": 0.2, "south": 0.3, "east": 0.3}, 4)
    items["attack/sanity/linf_0.5"] = _preds(ds, "attack/sanity/linf_0.5", "adversarial", sub[:20],
                                             {"north": 0.0, "south": 0.0, "east": 0.0}, 5)
    run = RunContext(
        model=types.SimpleNamespace(info=types.SimpleNamespace(class_names=("a", "b", "c", "d"))),
        dataset=ds, labels=ds.labels, out_dir=tmp_path_factory.mktemp("slices"), seed=0,
    )
    return ds, run, PredictionSet(items)


@pytest.fixture(scope="module")
def output(setting):
    _, run, preds = setting
    suite = SliceSuite({"derived": ["brightness", "resolution"], "intersections": [["region", "brightness"]],
                        "n_boot": 300})
    return suite.summarize(run, preds)


def test_suite_contract():
    s = SliceSuite()
    assert s.name == "slices" and s.stage == "analysis" and s.conditions(None) == []


def test_gate_paths_on_clean_and_every_condition(output):
    from evalsuite.results import resolve_metric

    m = {"slices": output.metrics}
    for path in (
        "slices.region.accuracy.difference",
        "slices.region.accuracy.ratio",
        "slices.region.accuracy.worst_group",
        "slices.region.ece.difference",
        "slices.region.equalized_odds_difference",
        "slices.region.equalized_odds_by_class.c",
        "slices.region.demographic_parity_difference.max",
        "slices.score.accuracy.by_group.(missing)",
        "slices.derived.brightness.accuracy.worst_group",
        "slices.region&brightness.accuracy.difference",
        "slices.corruption.fog.3.region.accuracy.difference",
        "slices.corruption.fog.3.derived.brightness.accuracy.worst_group",
        "slices.device.webcam.region.nll.ratio",
        "slices.attack.linf.8_255.region.accuracy.worst_group",
    ):
        leaf = resolve_metric(m, path)
        assert leaf is not None, path
        assert set(leaf) >= {"value", "n", "ci", "direction"}
    assert "attack.sanity.linf_0.5" not in output.metrics  # excluded by default
    worst = resolve_metric(m, "slices.corruption.fog.3.region.accuracy.worst_group")
    assert worst["group"] == "east" and worst["direction"] == "higher"
    diff = resolve_metric(m, "slices.corruption.fog.3.region.accuracy.difference")
    assert diff["direction"] == "lower" and diff["ci"][0] > 0.3
    # per-condition trees keep by_group for accuracy only
    assert "by_group" in output.metrics["corruption.fog.3"]["region"]["accuracy"]
    assert "by_group" not in output.metrics["corruption.fog.3"]["region"]["nll"]
    json.dumps(output.metrics)  # JSON-serialisable (no NaN objects, numpy scalars)


def test_equalized_odds_by_class_is_a_declared_gate_path(output):
    from evalsuite.metric_specs import match_specs
    from evalsuite.results import resolve_metric

    specs = SliceSuite().metric_specs(None, [])
    m = {"slices": output.metrics}
    worst = resolve_metric(m, "slices.region.equalized_odds_difference")
    for cname in ("a", "b", "c", "d"):
        path = f"slices.region.equalized_odds_by_class.{cname}"
        assert match_specs(path, specs), path
        leaf = resolve_metric(m, path)
        assert leaf["direction"] == "lower" and leaf["value"] <= worst["value"] + 1e-12
        assert leaf["value"] == pytest.approx(max(leaf["tpr_difference"], leaf["fpr_difference"]))
    assert resolve_metric(m, f"slices.region.equalized_odds_by_class.{worst['class']}")["value"] == worst["value"]
    assert "equalized_odds_by_class" not in output.metrics["corruption.fog.3"]["region"]  # clean only


def test_attack_subset_is_mapped_by_dataset_position(setting, output):
    ds, _, preds = setting
    sub = preds["attack/linf/8_255"].index
    by_group = output.metrics["attack.linf.8_255"]["region"]["accuracy"]["by_group"]
    expected = {r: int(np.sum(ds.columns["region"][sub] == r)) for r in ("east", "north", "south")}
    assert {g: leaf["n"] for g, leaf in by_group.items()} == expected
    p = preds["attack/linf/8_255"]
    correct = (p.logits.argmax(1) == p.labels)
    for g in expected:
        m = ds.columns["region"][sub] == g
        assert by_group[g]["value"] == pytest.approx(correct[m].mean())


def test_degradation_lines_name_the_group_and_condition(output):
    lines = output.report["degradation"]
    fog = [d for d in lines if d["column"] == "region" and d["condition"] == "corruption/fog/3"]
    assert fog and fog[0]["group"] == "east"
    assert "degrades most for region = east under corruption/fog/3" in fog[0]["text"]
    assert fog[0]["drop_lo"] is not None and fog[0]["drop"] > fog[0]["overall_drop"]


def test_builtin_checks_and_report_data(output):
    checks = {c.metric: c.to_record() for c in output.checks}
    c = checks["slices.region.accuracy.difference"]
    assert c["severity"] == "warn" and c["bound"] == "ci_lower" and c["max"] == pytest.approx(0.10)
    cols = {c["name"]: c for c in output.report["columns"]}
    assert cols["score"]["kind"] == "numeric" and len(cols["score"]["edges"]) == 5
    assert cols["brightness"]["source"] == "derived"
    assert cols["region"]["fairlearn_check"]["ok"] is True
    assert cols["region"]["heatmap"]["cols"][0] == "clean"
    assert cols["resolution"]["clean"]["notes"]  # one group only: no disparity, said so


def test_template_renders_and_escapes(setting):
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from evalsuite.report import svg
    from evalsuite.report.render import TEMPLATE_DIR, ci, fmt, pct

    ds, run, preds = setting
    ds2 = ds.subset(np.arange(len(ds)))
    ds2.columns["region"] = np.where(ds2.columns["region"] == "east", "<script>x</script>", ds2.columns["region"])
    run2 = RunContext(model=run.model, dataset=ds2, labels=run.labels, out_dir=run.out_dir, seed=0)
    out = SliceSuite({"columns": ["region"], "n_boot": 100}).summarize(run2, preds)
    env = Environment(loader=FileSystemLoader(str(TEMPLATE_DIR)),
                      autoescape=select_autoescape(default=True, default_for_string=True), trim_blocks=True, lstrip_blocks=True)
    html = env.get_template("sections/slices.html.j2").render(
        section=json.loads(json.dumps(out.report)), metrics=out.metrics, results={}, svg=svg, img=lambda p: "",
        fmt=fmt, pct=pct, ci=ci)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<h2>" in html and "Equalized-odds difference" in html and "degrades most" in html


def test_small_group_warning_visible_in_report(setting):
    ds, run, preds = setting
    out = SliceSuite({"columns": ["region"], "min_group_size": 81, "n_boot": 50}).summarize(run, preds)
    clean = out.report["columns"][0]["clean"]
    assert {g["group"] for g in clean["small_groups"]} == {"east", "north", "south"} - {
        g["group"] for g in clean["groups"] if g["n"] >= 81}
    assert out.metrics["region"]["accuracy"]["by_group"]["east"]["eligible"] is False


def test_derived_auto_only_without_metadata(setting, tmp_path):
    ds, run, preds = setting
    out = SliceSuite({"n_boot": 0, "conditions": ["clean"], "fairlearn_check": False}).summarize(run, preds)
    assert "derived" not in out.metrics
    out2 = SliceSuite({"n_boot": 0, "columns": [], "conditions": ["clean"], "fairlearn_check": False}).summarize(run, preds)
    assert set(out2.metrics["derived"]) == {"brightness", "contrast", "colourfulness", "sharpness", "resolution", "aspect"}
    assert out2.metrics["derived"]["brightness"]["accuracy"]["difference"]["ci"] is None  # n_boot 0


def test_condition_patterns(setting):
    _, run, preds = setting
    suite = SliceSuite({"conditions": ["corruption/*", "nope/*"], "n_boot": 0, "columns": ["region"]})
    keys, notes = suite.select_conditions(preds)
    assert keys == ["clean", "corruption/fog/3"]
    assert notes and "nope/*" in notes[0]


def test_option_errors_are_precise(setting):
    _, run, preds = setting
    with pytest.raises(UsageError, match="did you mean 'min_group_size'"):
        SliceSuite({"min_groupsize": 10})
    with pytest.raises(UsageError, match="min_group_size must be an integer"):
        SliceSuite({"min_group_size": "ten"})
    with pytest.raises(UsageError, match="pair"):
        SliceSuite({"intersections": [["region"]]})
    with pytest.raises(UsageError, match="derived"):
        SliceSuite({"derived": "sometimes"})
    with pytest.raises(UsageError, match="did you mean 'region'"):
        SliceSuite({"columns": ["regoin"]}).summarize(run, preds)
    with pytest.raises(UsageError, match="intersection names unknown column"):
        SliceSuite({"intersections": [["region", "camera"]], "n_boot": 0}).summarize(run, preds)


def test_condition_families_come_from_the_identity():
    assert condition_family(ConditionIdentity("corruption", "corruption", ("fog", 3))) == "corruption s3"
    assert condition_family(ConditionIdentity("device", "device", ("webcam-720p",))) == "device webcam-720p"
    assert condition_family(ConditionIdentity("device", "device", ("op", "jpeg", 3))) == "device op/jpeg/3"
    assert condition_family(ConditionIdentity("adversarial", "attack", ("linf", "8_255"))) == "attack linf 8_255"
    assert condition_family(ConditionIdentity("clean", "clean")) == "clean"
    # predictions that predate identities: the same families from their keys
    assert condition_family(identity_from_key("corruption/fog/3", "corruption")) == "corruption s3"
    assert condition_family(identity_from_key("attack/l2/0p5", "adversarial")) == "attack l2 0p5"


def test_suite_on_builtin_digits_columns():
    from evalsuite.data.builtin import load_digits_dataset

    ds = load_digits_dataset("test")
    n = len(ds)
    rng = np.random.default_rng(0)
    y = ds.labels.astype(np.int64)
    logits = rng.normal(size=(n, 10)).astype(np.float32)
    logits[np.arange(n), y] += 3.0
    preds = PredictionSet({"clean": Predictions("clean", "clean", {}, np.arange(n), ds.ids, y, logits)})
    run = RunContext(model=types.SimpleNamespace(info=types.SimpleNamespace(class_names=tuple("0123456789"))),
                     dataset=ds, labels=y, out_dir=None, seed=0)
    out = SliceSuite({"n_boot": 200, "fairlearn_check": False}).summarize(run, preds)
    assert set(out.metrics) == {"ink_density", "horizontal_position"}
    groups = out.metrics["ink_density"]["accuracy"]["by_group"]
    assert set(groups) == {"low", "mid", "high"} and all(g["eligible"] for g in groups.values())
