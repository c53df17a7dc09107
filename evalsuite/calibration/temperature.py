"""Temperature scaling: one scalar ``T`` so that ``softmax(z / T)`` minimises the NLL.

The fit is ours, not netcal's (netcal's ``TemperatureScaling`` fits a multiplicative weight in
float32 with finite-difference gradients and has been reported to return uncalibrated outputs,
netcal issues #48 and #61; the tests keep it as a cross-check). We minimise

    NLL(T) = mean_i [ logsumexp(z_i / T) - z_{i, y_i} / T ]

over ``theta = log T`` (so ``T`` stays positive) with L-BFGS (SciPy's L-BFGS-B with the analytic
gradient and no box, so its first trial step is one unit of ``log T``; ``torch.optim.LBFGS`` would
do the same iterations but its first construction imports ``torch._dynamo``, seconds of start-up
for a one-parameter fit). Each evaluation is one streamed pass over the logits in float64
chunks (reused buffers), on the device the logits live on (CPU or CUDA), returning the value
and the analytic derivative

    d NLL / d theta = -(1/T) mean_i ( E_{softmax(z_i/T)}[z_i] - z_{i, y_i} ),

so no autograd graph over the ``N x C`` matrix is ever built and memory stays at two chunks. The
NLL is convex in ``s = 1/T`` with slope ``mean(mean_k z - z_y)`` at ``s = 0`` and slope tending to
``mean(max_k z - z_y) >= 0`` as ``s -> infinity``, so a finite positive minimiser exists exactly
when some label logit is below its row maximum (a misclassified sample) and the label logit beats
the row mean on average. Both conditions are checked exactly before optimising; otherwise the fit
returns ``temperature = nan`` with ``converged = False`` and says which case it is: constant
logits in every row (the NLL is ``log C`` whatever ``T``), every label logit strictly the row
maximum (every sample right), every label logit at the maximum with some tied, or label logits
at or below the row mean.

The interval on ``T`` is a robust (sandwich) Wald interval on ``log T``,
``Var = mean(g_i^2) / (n H^2)`` with per-sample gradients ``g_i`` and the curvature
``H = mean_i Var_{p_i}[z_i] / T^2``, not a bootstrap: refitting 1,000 times would cost 1,000 fits.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from evalsuite.calibration.metrics import CalibrationInputError, check_labels, check_matrix

log = logging.getLogger(__name__)

#: Fitted temperatures outside this range mean the fit did not find an interior optimum.
T_RANGE = (1e-4, 1e4)
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class TemperatureFit:
    """Result of :func:`fit_temperature` (NLLs on the fitting data, natural log)."""

    temperature: float
    nll_before: float
    nll_after: float
    n: int
    evaluations: int
    converged: bool
    message: str
    ci: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci"] = None if self.ci is None else [float(self.ci[0]), float(self.ci[1])]
        return d


class _Objective:
    """Streamed NLL and its derivative in ``s = 1/T`` over float64 chunks of ``z`` on its device."""

    def __init__(self, z: Any, y: Any, chunk_elements: int) -> None:
        import torch

        self.torch = torch
        self.z = z
        self.n, self.c = int(z.shape[0]), int(z.shape[1])
        self.rows = max(1, int(chunk_elements) // self.c)
        zmax = torch.empty(self.n, dtype=torch.float64, device=z.device)
        zy = torch.empty(self.n, dtype=torch.float64, device=z.device)
        finite = True
        slope0 = 0.0  # d NLL / ds at s = 0: mean over rows of (mean logit - label logit)
        for start in range(0, self.n, self.rows):
            blk = z[start : start + self.rows]
            zmax[start : start + self.rows] = blk.amax(dim=1).double()
            zy[start : start + self.rows] = blk.gather(1, y[start : start + self.rows, None])[:, 0].double()
            slope0 += float((blk.double().mean(dim=1) - zy[start : start + self.rows]).sum())
            finite = finite and bool(torch.isfinite(blk).all())
        if not finite:
            raise CalibrationInputError("logits contain NaN or infinite values; drop those rows before fitting")
        self.zmax, self.zy = zmax, zy
        #: every label logit is its row's maximum: the NLL falls for ever as T -> 0
        self.separable = bool(torch.all(zy >= zmax))
        #: the label logit is on average not above the row mean: the NLL is smallest at T -> infinity
        self.no_signal = self.n > 0 and slope0 / self.n >= 0.0
        self.evaluations = 0
        self._buffers: tuple[Any, Any] | None = None

    def __call__(self, s: float, per_sample: bool = False) -> tuple[float, float, Any]:
        """(mean NLL, d mean NLL / ds, extra) at ``s = 1/T``, all in float64.

        ``extra`` is None, or with ``per_sample`` the per-sample ``(a_i, v_i)``:
        ``a_i = E_p[z_i] - z_{i, y_i}`` (the gradient in ``s``) and ``v_i = Var_p[z_i]`` (its slope).
        """
        torch = self.torch
        self.evaluations += 1
        f64 = torch.float64
        f_sum = g_sum = 0.0
        a_all = v_all = None
        if per_sample:
            a_all = torch.empty(self.n, dtype=f64, device=self.z.device)
            v_all = torch.empty(self.n, dtype=f64, device=self.z.device)
        if self._buffers is None:
            # reused chunk buffers: fresh multi-megabyte tensors per op cost page faults, not arithmetic
            shape = (min(self.rows, self.n), self.c)
            self._buffers = (
                torch.empty(shape, dtype=f64, device=self.z.device),
                torch.empty(shape, dtype=f64, device=self.z.device),
            )
        dbuf, ebuf = self._buffers
        for start in range(0, self.n, self.rows):
            stop = min(start + self.rows, self.n)
            m = stop - start
            zmax, zy = self.zmax[start:stop], self.zy[start:stop]
            d, e = dbuf[:m], ebuf[:m]
            d.copy_(self.z[start:stop])  # the caller's logits are only read
            d.sub_(zmax[:, None])  # <= 0, so exp never overflows
            torch.mul(d, s, out=e)
            e.exp_()
            se = e.sum(dim=1)
            e.mul_(d)
            sed = e.sum(dim=1)
            f_i = s * (zmax - zy) + torch.log(se)  # logsumexp(s z) - s z_y
            mean_d = sed / se
            a_i = mean_d + (zmax - zy)  # E_p[z] - z_y
            f_sum += float(f_i.sum())
            g_sum += float(a_i.sum())
            if per_sample:
                e.mul_(d)
                a_all[start:stop] = a_i
                v_all[start:stop] = e.sum(dim=1) / se - mean_d**2  # Var_p[z]
        extra: Any = (a_all, v_all) if per_sample else None
        return f_sum / self.n, g_sum / self.n, extra


def _as_tensors(logits: Any, labels: Any) -> tuple[Any, Any]:
    import torch

    if isinstance(logits, torch.Tensor):
        z = logits.detach()
    else:
        arr = np.asarray(logits)
        if not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float64)
        z = torch.from_numpy(np.ascontiguousarray(arr))
    n, c = check_matrix(z, "logits")
    if isinstance(labels, torch.Tensor):
        y_np = labels.detach().cpu().numpy()
    else:
        y_np = np.asarray(labels)
    y_np = check_labels(y_np, n, c)
    y = torch.from_numpy(np.ascontiguousarray(y_np)).to(z.device)
    return z, y


def _default_chunk_elements(z: Any) -> int:
    """Elements per streamed chunk: 2**24 on CUDA (fewer, larger kernels), 2**20 on CPU (cache-sized)."""
    return (1 << 24) if z.device.type == "cuda" else (1 << 20)


def _degenerate_rows(obj: _Objective) -> tuple[int, int]:
    """(rows whose logits are all equal, rows whose label logit ties another class at the row
    maximum) in one pass; only the degenerate path pays for it."""
    constant = tied = 0
    for start in range(0, obj.n, obj.rows):
        blk = obj.z[start : start + obj.rows]
        zmax = obj.zmax[start : start + obj.rows]
        at_max = (blk.double() == zmax[:, None]).sum(dim=1)
        constant += int((at_max == obj.c).sum())
        tied += int(((at_max > 1) & (obj.zy[start : start + obj.rows] >= zmax)).sum())
    return constant, tied


def _no_optimum_message(obj: _Objective) -> str:
    """What is true of data without an interior NLL minimum: constant logits, every label at its
    row's maximum (strictly or tied), or label logits at or below the row mean on average."""
    constant, tied = _degenerate_rows(obj)
    if constant == obj.n:
        return (f"every calibration row's logits are constant (all {obj.c} classes score the same): the NLL is "
                f"log {obj.c} = {math.log(obj.c):.4g} at every temperature, so T is not determined; the model's "
                "outputs carry no class information")
    if obj.separable and tied == 0:
        return ("every calibration sample is classified correctly (its label logit is above every other logit): "
                "the NLL keeps falling as T -> 0, so there is no finite optimum; use more or harder calibration data")
    if obj.separable:
        return (f"no calibration sample has a class scoring above its label, but {tied} of {obj.n} rows tie the label "
                f"with another class at the maximum ({constant} of them with constant logits): the NLL keeps falling "
                "as T -> 0, so there is no finite optimum; use more or harder calibration data")
    return ("the label logit is on average at or below the mean logit: the NLL is smallest for uniform "
            "predictions (T -> infinity); the model or the label mapping looks wrong")


def _no_optimum(obj: _Objective) -> TemperatureFit:
    """The unconverged fit for data whose NLL has no interior minimum (``obj.separable`` or
    ``obj.no_signal``; the NLL is convex in 1/T, so these are exactly those cases)."""
    f0 = obj(1.0)[0]
    message = _no_optimum_message(obj)
    log.warning("temperature fit: %s", message)
    return TemperatureFit(math.nan, f0, f0, obj.n, obj.evaluations, False, message, None)


class _BestTracking:
    """SciPy objective over ``theta = log T`` that remembers the first value and the best point seen.

    L-BFGS-B may end on a worse point than one it evaluated; the fit reports the best one.
    """

    def __init__(self, obj: _Objective) -> None:
        self.obj = obj
        self.f0: float | None = None
        self.theta = self.f = self.grad = math.nan

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        th = float(x[0])
        s = math.exp(-th)
        f, dfds, _ = self.obj(s)
        grad = -s * dfds
        if self.f0 is None or f < self.f:  # the first evaluation, or a better one
            if self.f0 is None:
                self.f0 = f
            self.theta, self.f, self.grad = th, f, grad
        return f, np.array([grad])


def _minimise(obj: _Objective, max_iter: int, tolerance_grad: float) -> tuple[_BestTracking, Any]:
    """Run L-BFGS-B from ``T = 1`` (see the module docstring); returns the tracker and SciPy's result."""
    from scipy.optimize import minimize

    track = _BestTracking(obj)
    res = minimize(
        track,
        x0=np.zeros(1),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": int(max_iter), "gtol": float(tolerance_grad), "ftol": 1e-13, "maxcor": 10},
    )
    return track, res


def _convergence(track: _BestTracking, res: Any, tolerance_grad: float) -> tuple[float, bool, str]:
    """(``T`` at the best point, whether it is a usable optimum, the message saying so or why not).

    Converged means a small gradient at the best point and ``T`` inside :data:`T_RANGE`.
    """
    temperature = math.exp(track.theta)
    g_best, f_best = track.grad, track.f
    converged = abs(g_best) <= max(10 * tolerance_grad, 1e-7 * max(1.0, abs(f_best)))
    message = (
        "converged"
        if converged
        else f"stopped with |dNLL/dlogT| = {abs(g_best):.3g} after {track.obj.evaluations} passes ({res.message})"
    )
    if not (T_RANGE[0] <= temperature <= T_RANGE[1]):
        converged = False
        message = f"temperature {temperature:.4g} outside [{T_RANGE[0]:g}, {T_RANGE[1]:g}]: no usable optimum"
    return temperature, converged, message


def fit_temperature(
    logits: Any,
    labels: Any,
    *,
    max_iter: int = 100,
    tolerance_grad: float = 1e-7,
    chunk_elements: int | None = None,
    ci: bool = True,
) -> TemperatureFit:
    """Fit ``T`` minimising the mean NLL of ``softmax(logits / T)`` on (``logits``, ``labels``).

    Args:
        logits: ``N x C`` float logits, NumPy or torch (CPU or CUDA; the passes run where the
            tensor lives; the input is read in chunks, never copied whole, never modified).
        labels: ``N`` integer class indices.
        max_iter: L-BFGS iterations (each costs one or a few passes over the logits).
        tolerance_grad: L-BFGS stops when ``|d NLL / d log T|`` falls below this.
        chunk_elements: elements per chunk (default 2**20 on CPU, 2**24 on CUDA).
        ci: also compute the sandwich 95% interval on ``T`` (one extra pass).

    Returns:
        :class:`TemperatureFit`; ``converged`` is False (with a ``message``) when there is no finite
        optimum, the search stopped without a small gradient, or ``T`` left ``T_RANGE``.
    """
    z, y = _as_tensors(logits, labels)
    if chunk_elements is None:
        chunk_elements = _default_chunk_elements(z)
    obj = _Objective(z, y, chunk_elements)
    if obj.separable or obj.no_signal:
        return _no_optimum(obj)
    track, res = _minimise(obj, max_iter, tolerance_grad)
    temperature, converged, message = _convergence(track, res, tolerance_grad)
    interval = _sandwich_ci(obj, track.theta) if ci and converged else None
    if not converged:
        log.warning("temperature fit: %s", message)
    return TemperatureFit(
        temperature=temperature,
        nll_before=float(track.f0),
        nll_after=float(track.f),
        n=obj.n,
        evaluations=obj.evaluations,
        converged=bool(converged),
        message=message,
        ci=interval,
    )


def _sandwich_ci(obj: _Objective, theta: float) -> tuple[float, float] | None:
    """Robust 95% Wald interval on ``log T`` mapped back to ``T`` (see the module docstring)."""
    s = math.exp(-theta)
    _, _, extra = obj(s, per_sample=True)
    a, v = extra
    g = (-s * a).double()
    hess = float((s * s * v).mean())
    if not hess > 0:
        return None
    se = math.sqrt(float((g * g).mean()) / obj.n) / hess
    return (math.exp(theta - _Z95 * se), math.exp(theta + _Z95 * se))


def nll_at_temperature(logits: Any, labels: Any, temperature: float) -> float:
    """Mean NLL of ``softmax(logits / temperature)`` (streamed, float64)."""
    z, y = _as_tensors(logits, labels)
    obj = _Objective(z, y, _default_chunk_elements(z))
    return obj(1.0 / float(temperature))[0]


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``logits / temperature`` in the logits' dtype (what the baked model computes)."""
    z = np.asarray(logits)
    return (z / np.asarray(temperature, dtype=z.dtype)).astype(z.dtype, copy=False)
