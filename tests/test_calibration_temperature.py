"""Temperature scaling: recovery of a known temperature, optimality, netcal cross-check, edge cases.

netcal's ``TemperatureScaling`` (method 'mle') is a cross-check, not the fitter. What these tests
pin down about netcal 1.4.0 (see docs/calibration.md):
- fed float32 probabilities (what models emit) it returns its initial weight 1.0, i.e. T = 1 and
  uncalibrated outputs (its scipy minimize uses finite differences on a float32 loss);
- fed float64 probabilities its ``temperature`` property is the *inverse* temperature 1/T and it
  agrees with our fit.
Ours minimises the NLL itself, so on the fitting data its NLL can never be above netcal's.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from evalsuite.calibration.metrics import CalibrationInputError, nll_from_logits
from evalsuite.calibration.temperature import apply_temperature, fit_temperature, nll_at_temperature
from evalsuite.stats import softmax


def _calibrated_logits(rng: np.random.Generator, n: int, c: int, scale: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits z and labels drawn from softmax(z): z is perfectly calibrated by construction."""
    z = rng.normal(size=(n, c)) * scale
    cum = softmax(z).cumsum(axis=1)
    y = np.minimum((rng.random((n, 1)) > cum).sum(axis=1), c - 1)
    return z, y


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5, 4.0])
def test_recovers_known_temperature_within_two_percent(true_t):
    rng = np.random.default_rng(int(true_t * 10))
    z, y = _calibrated_logits(rng, 20000, 10)
    fit = fit_temperature((z * true_t).astype(np.float32), y)
    assert fit.converged, fit.message
    assert fit.temperature == pytest.approx(true_t, rel=0.02)
    assert fit.ci[0] < fit.temperature < fit.ci[1]
    assert fit.ci[0] <= true_t * 1.02 and fit.ci[1] >= true_t * 0.98
    assert fit.nll_after <= fit.nll_before + 1e-12


def test_fit_is_the_nll_minimum_and_matches_a_grid_search():
    rng = np.random.default_rng(1)
    z, y = _calibrated_logits(rng, 3000, 5)
    z = z * 1.7
    fit = fit_temperature(z, y)
    grid = np.linspace(fit.temperature * 0.9, fit.temperature * 1.1, 201)
    nlls = [nll_from_logits(z / t, y) for t in grid]
    assert fit.nll_after <= min(nlls) + 1e-12
    assert fit.nll_after == pytest.approx(nll_from_logits(z / fit.temperature, y), abs=1e-12)
    assert nll_at_temperature(z, y, fit.temperature) == pytest.approx(fit.nll_after, abs=1e-12)
    assert fit.nll_before == pytest.approx(nll_from_logits(z, y), abs=1e-12)
    # a neighbour on either side is worse
    for f in (0.99, 1.01):
        assert nll_from_logits(z / (fit.temperature * f), y) > fit.nll_after


def test_chunking_and_input_types_do_not_change_the_fit():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    z, y = _calibrated_logits(rng, 2000, 7)
    a = fit_temperature(z * 2, y)
    b = fit_temperature(z * 2, y, chunk_elements=7 * 13)  # many small chunks
    c = fit_temperature(torch.from_numpy(z * 2), torch.from_numpy(y))
    assert b.temperature == pytest.approx(a.temperature, rel=1e-9)
    assert c.temperature == pytest.approx(a.temperature, rel=1e-9)


def _netcal_fit(probs: np.ndarray, y: np.ndarray):
    from netcal.scaling import TemperatureScaling

    ts = TemperatureScaling()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts.fit(probs, y)
    return ts


def test_netcal_cross_check_float64_agrees_and_ours_is_never_worse():
    rng = np.random.default_rng(3)
    z, y = _calibrated_logits(rng, 5000, 10, scale=3.0)
    zh, yh = _calibrated_logits(rng, 5000, 10, scale=3.0)
    z, zh = z * 4.0, zh * 4.0
    fit = fit_temperature(z, y)
    ts = _netcal_fit(softmax(z), y)
    netcal_t = 1.0 / float(np.ravel(ts.temperature)[0])  # netcal's "temperature" multiplies the logits
    assert netcal_t == pytest.approx(fit.temperature, rel=0.01)
    # on the fitting data ours is the minimiser
    assert nll_at_temperature(z, y, fit.temperature) <= nll_at_temperature(z, y, netcal_t) + 1e-12
    # held out, both are close; netcal's transform is softmax(z / netcal_t) computed in float32
    ours_h = nll_at_temperature(zh, yh, fit.temperature)
    out = ts.transform(softmax(zh))
    netcal_h = float(-np.log(np.clip(out[np.arange(len(yh)), yh], 1e-300, 1.0)).mean())
    assert netcal_h == pytest.approx(nll_at_temperature(zh, yh, netcal_t), abs=1e-3)
    assert ours_h == pytest.approx(netcal_h, abs=1e-3)


def test_netcal_float32_probabilities_stay_uncalibrated_ours_improves_heldout():
    """The documented netcal failure: float32 input -> weight 1.0 (T = 1), held-out NLL not improved."""
    rng = np.random.default_rng(4)
    z, y = _calibrated_logits(rng, 5000, 10, scale=3.0)
    zh, yh = _calibrated_logits(rng, 5000, 10, scale=3.0)
    z, zh = (z * 4.0).astype(np.float32), (zh * 4.0).astype(np.float32)
    ts = _netcal_fit(softmax(z).astype(np.float32), y)
    assert float(np.ravel(ts.temperature)[0]) == pytest.approx(1.0, abs=1e-6)
    out = ts.transform(softmax(zh).astype(np.float32))
    netcal_h = float(-np.log(np.clip(out[np.arange(len(yh)), yh].astype(np.float64), 1e-300, 1.0)).mean())
    fit = fit_temperature(z, y)
    ours_h = nll_at_temperature(zh, yh, fit.temperature)
    assert fit.temperature == pytest.approx(4.0, rel=0.03)
    assert ours_h < netcal_h - 0.1


def test_no_finite_optimum_is_reported_not_fitted():
    z = np.array([[5.0, 0.0], [0.0, 5.0], [4.0, 1.0], [1.0, 6.0]])
    y = np.array([0, 1, 0, 1])  # all right: NLL keeps falling as T -> 0
    fit = fit_temperature(z, y)
    assert not fit.converged and np.isnan(fit.temperature) and fit.ci is None
    assert "classified correctly" in fit.message
    assert [nll_from_logits(z / t, y) for t in (1.0, 0.5, 0.1)] == sorted(
        [nll_from_logits(z / t, y) for t in (1.0, 0.5, 0.1)], reverse=True
    )
    anti = fit_temperature(z, np.array([1, 0, 1, 0]))  # labels on the low logits: uniform is best
    assert not anti.converged and "uniform" in anti.message
    one_wrong = fit_temperature(z, np.array([0, 1, 0, 0]))  # one mistake: finite optimum exists
    assert one_wrong.converged and 0.01 < one_wrong.temperature < 100


def test_caller_arrays_are_not_modified():
    rng = np.random.default_rng(5)
    z, y = _calibrated_logits(rng, 500, 4)
    for arr in (z.copy(), z.astype(np.float32)):
        before = arr.copy()
        fit_temperature(arr, y)
        nll_at_temperature(arr, y, 2.0)
        assert np.array_equal(arr, before)


def test_bad_input():
    with pytest.raises(CalibrationInputError, match="NaN"):
        fit_temperature(np.array([[np.nan, 1.0], [0.0, 1.0]]), np.array([0, 1]))
    with pytest.raises(CalibrationInputError, match="labels"):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(CalibrationInputError, match="empty"):
        fit_temperature(np.zeros((0, 2)), np.zeros(0, dtype=int))


def test_apply_temperature_keeps_dtype():
    z = np.array([[1.0, 2.0]], dtype=np.float32)
    out = apply_temperature(z, 2.0)
    assert out.dtype == np.float32 and np.allclose(out, [[0.5, 1.0]])
