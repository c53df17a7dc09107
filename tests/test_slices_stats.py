"""The slice audit on the shared statistics layer (evalsuite.stats): NLL, predictions, confidence
bins, count resampling, and the ``n_bins`` option (defaulting to the calibration suite's)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from evalsuite.errors import UsageError
from evalsuite.slices.audit import audit_groups
from evalsuite.slices.metrics import DEFAULT_N_BINS, RowStats
from evalsuite.slices.reference import compare_with_metricframe, textbook_ece
from evalsuite.stats import per_sample_nll, predicted_labels, resample_counts, softmax, width_bins
from evalsuite.suites.base import Predictions, PredictionSet, RunContext
from evalsuite.suites.slices import SliceSuite


def _logits(n: int = 600, c: int = 5, seed: int = 0, scale: float = 2.0, boost: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    z = (rng.normal(size=(n, c)) * scale).astype(np.float32)
    z[np.arange(n), y] += boost
    return y, z


def test_row_stats_use_the_shared_nll_prediction_and_bins():
    y, z = _logits()
    z[3, 1] = np.nan
    z[7, 0] = np.inf
    z[11] = -np.inf
    rows = RowStats.from_logits(y, z)
    finite = np.all(np.isfinite(z), axis=1)
    # prediction and correctness: stats.predicted_labels (non-finite rows predict -1, never correct)
    assert np.array_equal(rows.pred, predicted_labels(z.astype(np.float64)))
    assert np.array_equal(rows.finite, finite)
    assert not rows.correct[~finite].any()
    # NLL: bitwise stats.per_sample_nll on the finite rows (and the old inline log-sum-exp form)
    assert np.array_equal(rows.nll[finite], per_sample_nll(z[finite], y[finite]))
    zf = z[finite].astype(np.float64)
    m = zf.max(axis=1)
    s = np.exp(zf - m[:, None]).sum(axis=1)
    assert np.array_equal(rows.nll[finite], m + np.log(s) - zf[np.arange(len(zf)), y[finite]])
    assert np.all(rows.nll[~finite] == 0.0)
    # confidence bins: stats.width_bins, for 15 bins the old floor(conf * 15) rule exactly
    assert rows.n_bins == DEFAULT_N_BINS == 15
    assert np.array_equal(rows.bin[finite], width_bins(rows.conf[finite], 15))
    assert np.array_equal(rows.bin[finite], np.minimum(np.floor(rows.conf[finite] * 15), 14).astype(np.int64))
    assert np.all(rows.bin[~finite] == 15)


def test_fifteen_width_bins_equal_the_floor_rule_on_edges():
    edges = np.arange(16) / 15.0
    v = np.concatenate([edges, np.nextafter(edges, -1.0), np.nextafter(edges, 2.0), np.linspace(0, 1, 10001)])
    v = np.clip(v, 0.0, 1.0)
    assert np.array_equal(width_bins(v, 15), np.minimum(np.floor(v * 15), 14).astype(np.int64))


def test_resample_counts_is_the_row_bootstrap_stream():
    n, m = 37, 11
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    idx = a.integers(0, n, size=(m, n))
    flat = (np.arange(m, dtype=np.int64)[:, None] * n + idx).ravel()
    old = np.bincount(flat, minlength=m * n).reshape(m, n).astype(np.float64)
    assert np.array_equal(resample_counts(b, n, m), old)
    assert a.integers(0, 1 << 30) == b.integers(0, 1 << 30)  # the generators stay in step


@pytest.mark.parametrize("n_bins", [1, 7, 10, 15, 20])
def test_ece_with_n_bins_matches_the_textbook_reference(n_bins):
    y, z = _logits(n=900, seed=n_bins)
    z[::50] = np.round(z[::50] * 2) / 2  # ties and round confidences
    codes = np.arange(len(y)) % 3
    rows = RowStats.from_logits(y, z, n_bins=n_bins)
    a = audit_groups(rows, codes, ["a", "b", "c"], min_group_size=1, n_boot=0)
    assert a.n_bins == n_bins
    p = softmax(z)
    pred = p.argmax(axis=1)
    conf = p[np.arange(len(y)), pred]
    for k in range(3):
        sel = codes == k
        assert a.est["g.ece"][k] == pytest.approx(textbook_ece(y[sel], pred[sel], conf[sel], n_bins), abs=1e-12)
    assert a.est["o.ece"] == pytest.approx(textbook_ece(y, pred, conf, n_bins), abs=1e-12)
    res = compare_with_metricframe(a, y, p, np.array(["a", "b", "c"], dtype=object)[codes])
    assert res["max_abs_diff"] <= 1e-9


def test_bootstrap_with_other_bin_counts_runs_both_methods():
    y, z = _logits(n=400, seed=3)
    codes = np.arange(len(y)) % 2
    for n_bins in (4, 15):
        rows = RowStats.from_logits(y, z, n_bins=n_bins)
        for method in ("rows", "counts"):
            a = audit_groups(rows, codes, ["x", "y"], min_group_size=1, n_boot=50, seed=1, method=method)
            assert a.method == method
            lo, hi = a.ci["o.ece"]
            assert 0.0 <= lo <= hi <= 1.0


def test_n_bins_option_and_its_errors():
    assert SliceSuite().n_bins == 15
    assert SliceSuite({"n_bins": 10}).n_bins == 10
    assert SliceSuite({"n_bins": None}).n_bins == 15
    for bad in (0, -3, 2.5, True, "ten"):
        with pytest.raises(UsageError, match="n_bins must be an integer"):
            SliceSuite({"n_bins": bad})
    with pytest.raises(UsageError):
        RowStats.from_logits(np.zeros(2, dtype=int), np.zeros((2, 3)), n_bins=0)


def test_n_bins_defaults_to_the_calibration_suite():
    from evalsuite.suites.calibration import CalibrationSuite

    s = SliceSuite()
    s.link_suites([CalibrationSuite({"n_bins": 10}), s])
    assert s.n_bins == 10
    s = SliceSuite()
    s.link_suites([s])  # no calibration suite in the run
    assert s.n_bins == 15
    own = SliceSuite({"n_bins": 20})
    own.link_suites([CalibrationSuite({"n_bins": 10}), own])  # its own option wins
    assert own.n_bins == 20


def test_build_suites_links_the_calibration_bins():
    from evalsuite.api import build_suites
    from evalsuite.config import RunConfig

    suites, options = build_suites(RunConfig(model="m", data="d", suite_overrides={"calibration": {"n_bins": 12}}))
    slices = next(s for s in suites if s.name == "slices")
    assert slices.n_bins == 12
    assert options["slices"] == {}  # the recorded options (and the config hash) are unchanged
    suites, _ = build_suites(RunConfig(model="m", data="d"))
    assert next(s for s in suites if s.name == "slices").n_bins == 15


def test_suite_reports_and_uses_n_bins():
    from evalsuite.data.base import Dataset

    n = 300
    y, z = _logits(n=n, c=4, seed=9, scale=1.0, boost=1.0)  # under- and over-confident bins: ECE depends on n_bins
    region = np.array(["north", "south", "east"], dtype=object)[np.arange(n) % 3]
    ds = Dataset(name="synthetic", ids=np.array([f"s{i}" for i in range(n)], dtype=object), labels=y,
                 columns={"region": region}, fingerprint="x", loader=lambda i: np.zeros((4, 4, 3), np.uint8),
                 class_names=["a", "b", "c", "d"])
    preds = PredictionSet({"clean": Predictions("clean", "clean", {}, np.arange(n), ds.ids, y, z)})
    run = RunContext(model=types.SimpleNamespace(info=types.SimpleNamespace(class_names=("a", "b", "c", "d"))),
                     dataset=ds, labels=y, out_dir=None, seed=0)
    outs = {b: SliceSuite({"n_boot": 0, "n_bins": b, "fairlearn_check": True}).summarize(run, preds) for b in (5, 15)}
    for b, out in outs.items():
        assert out.report["n_bins"] == b
        assert out.report["columns"][0]["fairlearn_check"]["ok"] is True
        p = softmax(z)
        pred = p.argmax(axis=1)
        ece = textbook_ece(y, pred, p[np.arange(n), pred], b)
        assert out.metrics["region"]["ece"]["overall"]["value"] == pytest.approx(ece, abs=1e-12)
    assert outs[5].metrics["region"]["ece"]["overall"]["value"] != outs[15].metrics["region"]["ece"]["overall"]["value"]
