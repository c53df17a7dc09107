"""The calibration suite: metric paths, agreement with the public metrics, no leakage between the
calibration and held-out parts, worst-shift selection, options, and the scorecard section."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import evalsuite.calibration as cal
from evalsuite.calibration.split import stratified_split
from evalsuite.calibration.temperature import fit_temperature
from evalsuite.errors import UsageError
from evalsuite.results import _jsonable, resolve_metric
from evalsuite.stats import softmax
from evalsuite.suites.base import Predictions, PredictionSet, RunContext
from evalsuite.suites.calibration import CalibrationSuite, metric_keys

N, C = 300, 6


def _cond(rng, key, suite, ids, labels, scale, noise, rows=None):
    rows = np.arange(len(ids)) if rows is None else rows
    z = rng.normal(size=(len(rows), C)) * noise
    z[np.arange(len(rows)), labels[rows]] += 2.0
    return Predictions(key, suite, {}, rows, ids[rows], labels[rows], (z * scale).astype(np.float32))


@pytest.fixture(scope="module")
def run_and_preds(tmp_path_factory):
    rng = np.random.default_rng(0)
    ids = np.array([f"img/{i:04d}" for i in range(N)], dtype=object)
    labels = rng.integers(0, C, N)
    items = {"clean": _cond(rng, "clean", "clean", ids, labels, 2.5, 1.0)}
    for name in ("fog", "snow"):
        for sev in (1, 3, 5):
            key = f"corruption/{name}/{sev}"
            items[key] = _cond(rng, key, "corruption", ids, labels, 2.5, 1.0 + 0.4 * sev)
    items["device/phone-2019"] = _cond(rng, "device/phone-2019", "device", ids, labels, 2.5, 1.6)
    # an attack on a shuffled subset, with a key that contains a dot
    subset = rng.permutation(N)[:120]
    items["attack/l2/0.5"] = _cond(rng, "attack/l2/0.5", "adversarial", ids, labels, 4.0, 5.0, rows=subset)
    model = SimpleNamespace(info=SimpleNamespace(class_names=[str(i) for i in range(C)]))
    run = RunContext(model=model, dataset=SimpleNamespace(fingerprint="f"), labels=labels,
                     out_dir=Path(tmp_path_factory.mktemp("calrun")), seed=7)
    return run, PredictionSet(items)


@pytest.fixture(scope="module")
def output(run_and_preds):
    run, preds = run_and_preds
    return CalibrationSuite({"n_boot": 200}).summarize(run, preds)


def test_gate_paths_resolve(output):
    tree = {"calibration": output.metrics}
    for path in (
        "calibration.clean.ece",
        "calibration.clean.ece_after_temperature",
        "calibration.clean.nll",
        "calibration.clean.temperature",
        "calibration.corruption.fog.3.ece",
        "calibration.device.phone-2019.ece",
        "calibration.attack.l2.0.5.ece",
        "calibration.worst_shift.ece",
        "calibration.worst_attack.ece",
        "calibration.corruption.snow.5.ece_after_temperature",
    ):
        leaf = resolve_metric(tree, path)
        assert leaf is not None, path
        assert set(leaf) >= {"value", "n", "ci", "direction"}
    assert output.metrics["clean"]["ece"]["ci"] is not None
    json.dumps(_jsonable(output.metrics), allow_nan=False)
    json.dumps(_jsonable(output.report), allow_nan=False)


def test_values_equal_the_public_metrics(run_and_preds, output):
    _, preds = run_and_preds
    for key, mkey in (("clean", "clean"), ("corruption/fog/3", "corruption.fog.3"), ("attack/l2/0.5", "attack.l2.0.5")):
        p = preds[key]
        probs, y = softmax(p.logits), p.labels
        leaves = output.metrics[mkey]
        assert leaves["ece"]["value"] == pytest.approx(cal.ece(probs, y), abs=1e-12)
        assert leaves["adaptive_ece"]["value"] == pytest.approx(cal.adaptive_ece(probs, y), abs=1e-12)
        assert leaves["mce"]["value"] == pytest.approx(cal.mce(probs, y), abs=1e-12)
        assert leaves["classwise_ece"]["value"] == pytest.approx(cal.classwise_ece(probs, y), abs=1e-12)
        assert leaves["brier"]["value"] == pytest.approx(cal.brier(probs, y), abs=1e-12)
        assert leaves["nll"]["value"] == pytest.approx(cal.nll_from_logits(p.logits, y), abs=1e-12)
        assert leaves["aurc"]["value"] == pytest.approx(cal.aurc(probs, y), abs=1e-12)
        assert leaves["ece"]["n"] == len(y)
        lo, hi = leaves["ece"]["ci"]
        assert lo < hi


def test_temperature_uses_only_the_calibration_part(run_and_preds, output):
    run, preds = run_and_preds
    clean = preds.clean
    split = stratified_split(clean.ids, clean.labels, 0.5, run.seed)
    t = fit_temperature(clean.logits[split.calibration], clean.labels[split.calibration]).temperature
    leaf = output.metrics["clean"]["temperature"]
    assert leaf["value"] == pytest.approx(t, rel=1e-9)
    assert leaf["n"] == len(split.calibration)
    assert leaf["split"]["n_heldout"] == len(split.heldout) and leaf["split"]["seed"] == 7
    assert leaf["split"]["calibration_ids_sha256"] == split.ids_sha256
    held = split.heldout
    after = output.metrics["clean"]["ece_after_temperature"]
    before = output.metrics["clean"]["ece_before_temperature"]
    y = clean.labels[held]
    z = clean.logits.astype(np.float64)
    assert after["n"] == before["n"] == len(held)
    assert after["value"] == pytest.approx(cal.ece(softmax(z[held] / t), y), abs=1e-12)
    assert before["value"] == pytest.approx(cal.ece(softmax(z[held]), y), abs=1e-12)
    assert output.metrics["clean"]["nll_after_temperature"]["value"] == pytest.approx(
        cal.nll_from_logits(z[held] / t, y), abs=1e-12)
    # shifted conditions: the held-out sample ids only, whatever the row order
    att = preds["attack/l2/0.5"]
    rows = np.isin(att.ids.astype(str), clean.ids[held].astype(str))
    leaf = output.metrics["attack.l2.0.5"]["ece_after_temperature"]
    assert leaf["n"] == int(rows.sum())
    za = att.logits.astype(np.float64)[rows]
    assert leaf["value"] == pytest.approx(cal.ece(softmax(za / t), att.labels[rows]), abs=1e-12)
    assert output.checks and output.checks[0].metric == "calibration.clean.temperature_converged"
    assert output.metrics["clean"]["temperature_converged"]["value"] == 1.0


def test_split_is_stratified_seeded_and_order_free():
    rng = np.random.default_rng(1)
    ids = np.array([f"s{i}" for i in range(200)])
    y = rng.integers(0, 4, 200)
    a = stratified_split(ids, y, 0.5, seed=3)
    perm = rng.permutation(200)
    b = stratified_split(ids[perm], y[perm], 0.5, seed=3)
    assert set(ids[a.calibration]) == set(ids[perm][b.calibration])
    for c in range(4):
        n_c = int((y == c).sum())
        assert int((y[a.calibration] == c).sum()) == int(np.floor(0.5 * n_c + 0.5))
    assert set(ids[stratified_split(ids, y, 0.5, seed=4).calibration]) != set(ids[a.calibration])
    assert len(np.intersect1d(a.calibration, a.heldout)) == 0 and len(a.calibration) + len(a.heldout) == 200


def test_worst_shift_excludes_attacks_and_names_the_condition(output):
    cond_eces = {k: v["ece"]["value"] for k, v in output.metrics.items() if k.startswith(("corruption.", "device."))}
    worst = output.metrics["worst_shift"]["ece"]
    best_key = max(cond_eces, key=cond_eces.get)
    assert worst["value"] == cond_eces[best_key] and worst["metric_key"] == best_key
    assert worst["condition"] == best_key.replace(".", "/", 2) if best_key.startswith("corruption") else True
    assert output.metrics["worst_attack"]["ece"]["condition"] == "attack/l2/0.5"
    assert output.metrics["attack.l2.0.5"]["ece"]["value"] > worst["value"]  # would have dominated
    shift = output.report["shift"]
    assert shift["severities"] == [1, 3, 5] and shift["corruption_names"] == ["fog", "snow"]
    assert shift["devices"]["labels"] == ["phone-2019"]


def test_clean_only_run_has_an_empty_worst_shift(run_and_preds):
    run, preds = run_and_preds
    out = CalibrationSuite({"n_boot": 0, "classwise": False}).summarize(run, PredictionSet({"clean": preds.clean}))
    assert out.metrics["worst_shift"]["ece"]["value"] is None and out.metrics["worst_shift"]["ece"]["n"] == 0
    assert "worst_attack" not in out.metrics
    assert out.metrics["clean"]["ece"]["ci"] is None  # n_boot = 0
    assert "classwise_ece" not in out.metrics["clean"]


def test_metric_keys_are_gate_paths_and_ambiguity_is_refused():
    m = metric_keys(["clean", "corruption/fog/3", "device/op/jpeg/3", "attack/l2/0.5"])
    assert m == {"clean": "clean", "corruption/fog/3": "corruption.fog.3", "device/op/jpeg/3": "device.op.jpeg.3",
                 "attack/l2/0.5": "attack.l2.0.5"}
    with pytest.raises(UsageError, match="share the gate path 'a.b.c'"):
        metric_keys(["a/b.c", "a.b/c"])
    with pytest.raises(UsageError, match="shadow calibration.worst_shift"):
        metric_keys(["clean", "worst_shift"])


def test_summary_reads_recorded_identities_like_keys(run_and_preds, output):
    """Predictions carrying their identity (new runs) and bare keys (older files) summarise alike."""
    from dataclasses import replace

    from evalsuite.conditions import with_identity

    run, preds = run_and_preds
    stamped = PredictionSet({k: replace(p, params=with_identity(k, p.suite, p.params)) for k, p in preds.items()})
    assert stamped["corruption/fog/3"].params["condition"]["parts"] == ["fog", 3]
    again = CalibrationSuite({"n_boot": 200}).summarize(run, stamped)
    assert json.dumps(_jsonable(again.metrics), sort_keys=True) == json.dumps(_jsonable(output.metrics), sort_keys=True)
    assert json.dumps(_jsonable(again.report), sort_keys=True) == json.dumps(_jsonable(output.report), sort_keys=True)
    labels = {r["key"]: r["label"] for r in output.report["conditions"]}
    assert labels["corruption/fog/3"] == "fog 3" and labels["attack/l2/0.5"] == "l2 0.5" and labels["clean"] == "clean"


def test_nonfinite_rows_are_dropped_and_counted(run_and_preds):
    run, preds = run_and_preds
    clean = preds.clean
    logits = clean.logits.copy()
    logits[:5, 0] = np.nan
    bad = Predictions("clean", "clean", {}, clean.index, clean.ids, clean.labels, logits)
    out = CalibrationSuite({"n_boot": 0}).summarize(run, PredictionSet({"clean": bad}))
    assert out.metrics["clean"]["nonfinite_rows"]["value"] == 5
    assert out.metrics["clean"]["ece"]["n"] == N - 5
    assert out.metrics["clean"]["ece"]["value"] == pytest.approx(cal.ece(softmax(logits[5:]), clean.labels[5:]))


def test_failed_fit_gives_a_warn_check(run_and_preds):
    run, preds = run_and_preds
    clean = preds.clean
    perfect = np.eye(C, dtype=np.float32)[clean.labels] * 5  # every prediction right: no finite T
    p = Predictions("clean", "clean", {}, clean.index, clean.ids, clean.labels, perfect)
    out = CalibrationSuite({"n_boot": 0}).summarize(run, PredictionSet({"clean": p}))
    leaf = out.metrics["clean"]["temperature_converged"]
    assert leaf["value"] == 0.0 and "classified correctly" in leaf["message"]
    assert out.metrics["clean"]["temperature"]["value"] is None
    assert "ece_after_temperature" not in out.metrics["clean"]
    assert out.checks[0].severity == "warn" and out.checks[0].min == 1
    assert "no temperature" in out.report["temperature"]["skipped"]
    html = _render(out)
    assert "Temperature scaling skipped" in html and "Reliability before and after" not in html


@pytest.mark.parametrize(
    "options,message",
    [
        ({"n_bin": 10}, "did you mean 'n_bins'"),
        ({"n_bins": 0}, "n_bins must be an integer >= 1"),
        ({"calibration_fraction": 1.0}, "strictly between 0 and 1"),
        ({"calibration_data": " "}, "dataset spec string"),
        ({"calibration_data": [3]}, "calibration_data must be a string"),
        ({"classwise": "yes"}, "true or false"),
        ({"n_boot": -1}, "n_boot must be an integer >= 0"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(UsageError, match=message):
        CalibrationSuite(options)


def _render(output) -> str:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from evalsuite.report import svg
    from evalsuite.report.render import TEMPLATE_DIR, ci, fmt, pct

    env = Environment(loader=FileSystemLoader(str(TEMPLATE_DIR)), autoescape=select_autoescape(default=True,
                      default_for_string=True), trim_blocks=True, lstrip_blocks=True)
    report = json.loads(json.dumps(_jsonable(output.report)))
    metrics = json.loads(json.dumps(_jsonable(output.metrics)))
    return env.get_template("sections/calibration.html.j2").render(
        section=report, metrics=metrics, results={}, svg=svg, fmt=fmt, pct=pct, ci=ci, img=lambda p: "")


def test_section_template_renders_safely(output):
    from evalsuite.report.render import TEMPLATE_DIR

    text = (TEMPLATE_DIR / "sections" / "calibration.html.j2").read_text()
    for forbidden in ("|safe", "| safe", "Markup(", "autoescape false", "<script", "http://", "https://"):
        assert forbidden not in text
    html = _render(output)
    assert html.startswith("<h2>Calibration</h2>")
    for needle in ("Reliability before and after temperature scaling", "ECE by corruption severity",
                   "ECE per device profile", "Selective prediction", "attack/l2/0.5", "<svg"):
        assert needle in html
    assert html.count("<svg") >= 7
