"""Each temperature-fit case without a finite optimum says what is true of the data (issue #21)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evalsuite.calibration.temperature import fit_temperature, nll_at_temperature


def _unfitted(z: np.ndarray, y: np.ndarray):
    fit = fit_temperature(z, y)
    assert not fit.converged and math.isnan(fit.temperature) and fit.ci is None
    return fit


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constant_logits_say_the_nll_does_not_depend_on_temperature(dtype):
    z = np.repeat(np.array([[0.0], [2.5], [-1.0], [7.0]]), 5, axis=1).astype(dtype)  # every row constant
    y = np.array([0, 1, 2, 4])
    fit = _unfitted(z, y)
    assert "constant" in fit.message and "every temperature" in fit.message
    assert "classified correctly" not in fit.message
    assert fit.nll_before == pytest.approx(math.log(5), rel=1e-12)
    for t in (0.01, 1.0, 100.0):  # what the message claims
        assert nll_at_temperature(z, y, t) == pytest.approx(math.log(5), rel=1e-12)


def test_all_correct_says_so_and_the_nll_falls_towards_t_zero():
    z = np.array([[5.0, 0.0, 1.0], [0.0, 5.0, 1.0], [1.0, 2.0, 6.0]])
    y = np.array([0, 1, 2])
    fit = _unfitted(z, y)
    assert "every calibration sample is classified correctly" in fit.message and "T -> 0" in fit.message
    nlls = [nll_at_temperature(z, y, t) for t in (2.0, 1.0, 0.5, 0.1)]
    assert nlls == sorted(nlls, reverse=True) and len(set(nlls)) == 4


def test_label_tied_at_the_maximum_is_not_called_correct():
    """Label logits at their row maximum but tied with another class (one row fully constant)."""
    z = np.array([[5.0, 0.0, 1.0], [3.0, 3.0, 1.0], [2.0, 2.0, 2.0], [0.0, 1.0, 4.0]])
    y = np.array([0, 1, 1, 2])  # row 1: label 1 ties class 0 (argmax says 0); row 2: constant
    fit = _unfitted(z, y)
    assert "classified correctly" not in fit.message
    assert "2 of 4 rows tie the label" in fit.message and "1 of them with constant logits" in fit.message
    nlls = [nll_at_temperature(z, y, t) for t in (2.0, 1.0, 0.5, 0.1)]
    assert nlls == sorted(nlls, reverse=True) and len(set(nlls)) == 4  # still no finite optimum


def test_labels_on_low_logits_say_uniform_is_best():
    z = np.array([[5.0, 0.0], [0.0, 5.0], [4.0, 1.0], [1.0, 6.0]])
    y = np.array([1, 0, 1, 0])
    fit = _unfitted(z, y)
    assert "at or below the mean logit" in fit.message and "T -> infinity" in fit.message
    nlls = [nll_at_temperature(z, y, t) for t in (0.5, 1.0, 10.0, 1000.0)]
    assert nlls == sorted(nlls, reverse=True)
