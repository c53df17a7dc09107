"""The counter-based Poisson-Gaussian sampler of ``sensor_noise`` (evalsuite.devices._noise).

Distributions are checked against SciPy (chi-square for Poisson counts at means on both sides
of the inversion/PTRS switch, Kolmogorov-Smirnov and moments for the ziggurat normal), the
numba kernel against its NumPy twin, and determinism across batch splits, threads, memory
layouts and backends. Every draw is seeded, so these tests are deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from evalsuite.devices import _noise
from evalsuite.devices.base import apply_chain
from evalsuite.devices.ops import make_op


def _electrons(lam: float, n: int, seed: int, backend: str = "numba") -> tuple[np.ndarray, float]:
    """``n`` exact Poisson draws of mean about ``lam`` (no read noise), as integers, and the exact mean.

    The signal is small (1e-3) so clipping at white never happens; the mean the kernel sees is
    ``float32(1e-3) * k``."""
    side = int(math.ceil(math.sqrt(n / 3)))
    x = np.float32(1e-3)
    k = lam / float(x)
    img = np.full((side, side, 3), x, dtype=np.float32)
    key = int(_noise.seed_keys([seed])[0])
    if backend == "numba":
        out = np.empty((1, side, side, 3), dtype=np.float32)
        _noise.noise_batch(img[None], np.array([key], dtype=np.uint64), out, k, 0.0, 1e9, 0, 1)
        out = out[0]
    else:
        out = _noise.noise_numpy(img, key, k, 0.0, 1e9)
    e = out.astype(np.float64).ravel() * k
    counts = np.round(e)
    np.testing.assert_allclose(e, counts, atol=1e-3 + 1e-6 * lam)  # whole electrons
    return counts[:n], float(x) * k


def _chi_square_pvalue(counts: np.ndarray, lam: float) -> float:
    """Chi-square goodness of fit to Poisson(lam); neighbouring values pooled so every bin expects >= 20."""
    n = len(counts)
    lo, hi = int(stats.poisson.ppf(1e-9, lam)), int(stats.poisson.isf(1e-9, lam)) + 1
    cuts, acc = [], 0.0
    for v in range(lo, hi):
        acc += stats.poisson.pmf(v, lam)
        if acc * n >= 20:
            cuts.append(v + 1)  # a bin ends before v + 1
            acc = 0.0
    inner = np.array(cuts[:-1], dtype=np.float64)  # the last bin runs to infinity, the first from 0
    observed = np.bincount(np.searchsorted(inner, counts, side="right"), minlength=len(inner) + 1)
    probs = np.diff(np.concatenate([[0.0], stats.poisson.cdf(inner - 1, lam), [1.0]]))
    assert len(observed) == len(probs) >= 2
    return float(stats.chisquare(observed, probs * n).pvalue)


@pytest.mark.parametrize("lam", [0.05, 0.7, 3.0, 9.5, 10.0, 14.0, 19.9, 45.0, 300.0, 5000.0])
def test_poisson_draws_follow_scipy(lam):
    counts, mean = _electrons(lam, 150_000, seed=int(lam * 1000))
    assert _chi_square_pvalue(counts, mean) > 1e-4
    se = math.sqrt(mean / len(counts))
    assert counts.mean() == pytest.approx(mean, abs=5 * se)
    assert counts.var() == pytest.approx(mean, rel=6 * math.sqrt(2.0 / len(counts)) + 5 / len(counts) / max(mean, 1e-9))


@pytest.mark.parametrize("lam", [2.0, 12.0, 150.0])
def test_numpy_twin_draws_the_same_counts(lam):
    a, _ = _electrons(lam, 30_000, seed=3, backend="numba")
    b, _ = _electrons(lam, 30_000, seed=3, backend="numpy")
    # same algorithm and words; only a libm ulp at a CDF boundary could ever flip a count
    assert float((a != b).mean()) < 1e-4


def test_ziggurat_tables_have_equal_layers():
    x = _noise.ZIG_W * 2.0**52
    f = np.exp(-0.5 * x[1:] ** 2)
    areas = x[1:] * (np.concatenate([[1.0], f[:-1]]) - f)  # layer i: width x_i, height f(x_(i-1)) - f(x_i)
    np.testing.assert_allclose(areas[:-1], _noise.ZIG_V, rtol=1e-8)
    tail = _noise.ZIG_R * math.exp(-0.5 * _noise.ZIG_R**2) + math.sqrt(math.pi / 2) * math.erfc(_noise.ZIG_R / math.sqrt(2))
    assert tail == pytest.approx(_noise.ZIG_V, rel=1e-9)  # the base strip with its tail


def test_normal_draws_follow_the_standard_normal():
    z = _noise.normal_np(_noise.pixel_states_np(2024, 1_000_000))
    assert stats.kstest(z, "norm").pvalue > 1e-4
    assert z.mean() == pytest.approx(0.0, abs=5e-3)
    assert z.var() == pytest.approx(1.0, abs=5e-3)
    assert stats.kurtosis(z) == pytest.approx(0.0, abs=0.03)
    beyond = float((np.abs(z) > _noise.ZIG_R).mean())  # the tail algorithm
    assert beyond == pytest.approx(2 * stats.norm.sf(_noise.ZIG_R), rel=0.15)
    wedge = float((np.abs(z) > 3.0).mean())
    assert wedge == pytest.approx(2 * stats.norm.sf(3.0), rel=0.06)


def test_read_noise_through_the_operation_is_normal():
    # k = 1e6 electrons per unit, everything above gaussian_above: e = lam + sqrt(lam + rn^2) z
    op = make_op("sensor_noise", iso=100, full_well=1e6, read_noise=1000.0, gaussian_above=0.0)
    img = np.full((200, 200, 3), 0.5, dtype=np.float32)
    out = op.apply_numpy(img, op.sample(9, (200, 200)))
    z = (out.astype(np.float64) * 1e6 - 5e5) / math.sqrt(5e5 + 1e6)
    assert stats.kstest(z.ravel(), "norm").pvalue > 1e-4
    # and the NumPy twin gives the same image
    twin = _noise.noise_numpy(img, int(_noise.seed_keys([9])[0]), 1e6, 1000.0, 0.0)
    np.testing.assert_array_equal(out, twin)


def test_numba_kernel_matches_numpy_twin_on_an_image():
    rng = np.random.default_rng(0)
    img = (rng.random((37, 29, 3)) ** 2).astype(np.float32)
    op = make_op("sensor_noise", iso=6400, exposure_ev=-1, full_well=9000, read_noise=2.5)  # k = 70: mostly exact Poisson
    out = op.apply_numpy(img, {"seed": 77})
    twin = _noise.noise_numpy(img, int(_noise.seed_keys([77])[0]), op.electrons_per_unit, 2.5, op.gaussian_above)
    assert float((out != twin).mean()) < 1e-3
    np.testing.assert_allclose(out, twin, atol=2.0 / op.electrons_per_unit)


def test_draws_are_independent_of_batch_threads_layout_and_backend():
    op = make_op("sensor_noise", iso=3200, read_noise=2.0)
    rng = np.random.default_rng(1)
    lin = torch.from_numpy((rng.random((7, 3, 20, 24)) ** 2).astype(np.float32))
    ps = [op.sample(s, (20, 24)) for s in range(100, 107)]
    whole = op.apply_torch(lin, ps)
    parts = torch.cat([op.apply_torch(lin[:3], ps[:3]), op.apply_torch(lin[3:], ps[3:])])
    assert torch.equal(whole, parts)
    assert torch.equal(whole, op.apply_torch(lin.contiguous(memory_format=torch.channels_last), ps))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = op.apply_torch(lin, ps)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(whole, single)
    for i in range(7):  # the per-image NumPy path draws the same numbers
        img = lin[i].permute(1, 2, 0).contiguous().numpy()
        np.testing.assert_array_equal(op.apply_numpy(img, ps[i]), whole[i].permute(1, 2, 0).numpy())
    # through a chain: identical results for the same (seed, key, id), different for other ids
    x = torch.rand(4, 3, 16, 16)
    a = apply_chain([op], x, ids=list("abcd"), seed=3, key="device/k")
    b = apply_chain([op], x[[2, 0, 3, 1]], ids=list("cadb"), seed=3, key="device/k")
    assert torch.equal(a[[2, 0, 3, 1]], b)
    assert not torch.equal(a, apply_chain([op], x, ids=list("abce"), seed=3, key="device/k"))


def test_rng_version_is_part_of_the_condition_identity():
    op = make_op("sensor_noise")
    assert op.config()["rng"] == _noise.RNG_VERSION
    assert op.config()["op"] == "sensor_noise"
    from evalsuite.devices.profiles import builtin_profiles

    chain = builtin_profiles()["cctv-night"].config()["chain"]
    assert any(step.get("rng") == _noise.RNG_VERSION for step in chain)
