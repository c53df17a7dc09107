"""Confidence intervals for extremes over groups: simultaneous (max-t) bootstrap intervals.

A disparity such as ``max - min`` over groups is an *extreme* of many estimates. Its plain
percentile bootstrap interval is biased upwards: when the groups are in truth equal, the
resampled ``max - min`` is always positive, so the interval never contains 0 and every gap
looks real. evalsuite therefore builds the interval of every extreme-type summary
(``difference``, ``ratio``, ``worst_group``, ``best_group``, the to-overall variants,
equalized odds and demographic parity) from *simultaneous* intervals of its components:

1. the components are the quantities the extreme is taken over (group values, pairwise
   group differences, group-minus-overall differences, per-class rate differences);
2. each component gets a standard error ``se_k`` (pairs of groups: ``sqrt(se_i^2 + se_j^2)``,
   exact because groups are resampled independently). For the metric summaries it is a
   *pooled* scale (:func:`evalsuite.stats.simultaneous.pooled_se`): one per-sample variance
   shared by the eligible groups, times ``1 / n_k`` for group values and ``1 / n_k - 1 / N``
   for gaps to the overall value. A group's own bootstrap standard error shrinks with its
   extreme estimate (``sqrt(p (1 - p) / n)`` is smallest for the group furthest from 1/2, the
   observed best or worst group), which made the band narrowest exactly where it decided the
   interval (84% coverage for the best of six groups of 40 at p = 0.8). The per-class rates of
   equalized odds and demographic parity are pooled the same way, per class over the groups,
   with ``1 / denominator`` (true samples of the class for TPR, the others for FPR, the group
   for the selection rate);
3. the critical value ``c`` is the 95% quantile over replicates of
   ``max_k |theta*_k - theta_hat_k| / se_k`` (the max-t statistic, on the same scale), widened by the t/z quantile
   ratio of the smallest group (:func:`evalsuite.stats.t_factor`), so all components lie in
   ``theta_hat_k +- c se_k`` together with ~95% probability;
4. the extreme then lies in the interval spanned by the same extreme of the lower and of the
   upper component bounds (``max |d|`` uses ``max(0, max(|d_hat| - c se))`` and
   ``max(|d_hat| + c se)``).

Step 4 is a deterministic consequence of step 3, so the interval covers the true extreme
whenever the component band covers all components -- including when the true gap is 0. It is
conservative (wider than needed) when one pair of groups is far apart from the rest.

The generic max-t pieces (critical value, t/z widening, max-t statistic, bootstrap standard
error, intervals of an extreme from a band) live in :mod:`evalsuite.stats.simultaneous`; this
module keeps the slice-specific band over pairwise group gaps (:class:`PairBand`).
"""

from __future__ import annotations

import math

import numpy as np

from evalsuite.stats import absmax_interval, max_abs_t, pair_index

PAIR_LIMIT = 2000  # pairwise components (pairs x classes) above which the group-wise band is used


def _top2(a: np.ndarray, largest: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index of the best and the best and second-best values along axis 0 (NaN ignored)."""
    fill = -np.inf if largest else np.inf
    f = np.where(np.isnan(a), fill, a)
    order = np.argsort(-f if largest else f, axis=0, kind="stable")
    first = np.take_along_axis(f, order[:1], axis=0)[0]
    second = np.take_along_axis(f, order[1:2], axis=0)[0] if a.shape[0] > 1 else np.full(a.shape[1:], fill)
    return order[0], first, second


class PairBand:
    """Simultaneous band for the largest absolute gap between groups (optionally per class).

    ``values`` are the point estimates ``(G,)`` or ``(G, C)``; ``se`` the per-group bootstrap
    standard errors of the same shape. Two constructions, both valid (they cover every
    pairwise gap at once with ~95% probability):

    - *pairwise* (when ``pairs x classes <= PAIR_LIMIT``): the max-t statistic over every
      pairwise difference, each with ``se_ij = sqrt(se_i^2 + se_j^2)`` (groups are resampled
      independently);
    - *group-wise* (many groups or classes): the max-t statistic over the groups themselves;
      every gap then lies within ``d_ij +- c (se_i + se_j)``. Cost is linear in the number of
      groups; the band is somewhat wider.

    Feed replicate arrays to :meth:`t` for the max-t statistic per replicate (per class with
    ``per_class=True``), take its 95% quantile ``c`` (:func:`evalsuite.stats.critical_value`) and call
    :meth:`interval`.
    """

    def __init__(self, values: np.ndarray, se: np.ndarray, pairwise: bool | None = None) -> None:
        self.values = np.asarray(values, dtype=np.float64)
        self.group_se = np.where(np.isnan(self.values), 0.0, np.asarray(se, dtype=np.float64))
        g = self.values.shape[0]
        n_cls = int(np.prod(self.values.shape[1:])) if self.values.ndim > 1 else 1
        self.pairwise = (g * (g - 1) // 2) * n_cls <= PAIR_LIMIT if pairwise is None else pairwise
        if self.pairwise:
            self.i, self.j = pair_index(g)
            self.diff = self.values[self.i] - self.values[self.j]
            self.se = np.sqrt(self.group_se[self.i] ** 2 + self.group_se[self.j] ** 2)
            self.se = np.where(np.isnan(self.diff), 0.0, self.se)

    def t(self, reps: np.ndarray, per_class: bool = False, undefined_is_extreme: bool = False) -> np.ndarray:
        """Max-t per replicate of ``reps`` ``(R, G[, C])``: ``(R,)`` or ``(R, C)`` with ``per_class``.

        A replicate component that is undefined (``NaN``) where the point is defined is skipped,
        or counts as infinitely far with ``undefined_is_extreme`` (used on log scale, where a
        resampled value of 0 means the ratio is unbounded).
        """
        err = reps - self.values
        if self.pairwise:
            d, point, se = err[:, self.i] - err[:, self.j], self.diff, self.se
        else:
            d, point, se = err, self.values, self.group_se
        if undefined_is_extreme:
            d = np.where(np.isnan(d) & ~np.isnan(point), np.inf, d)
        if per_class and d.ndim == 3:
            return max_abs_t(d, se, axis=1)
        return max_abs_t(d.reshape(d.shape[0], -1), se.reshape(-1), axis=1)

    def interval(self, c: float, cls: int | None = None) -> tuple[float, float]:
        """Interval of the largest absolute gap (over all classes, or of class ``cls``)."""
        if self.pairwise:
            if cls is None:
                return absmax_interval(self.diff.ravel(), self.se.ravel(), c)
            return absmax_interval(self.diff[:, cls], self.se[:, cls], c)
        v = self.values if self.values.ndim > 1 else self.values[:, None]
        se = self.group_se if self.group_se.ndim > 1 else self.group_se[:, None]
        if cls is not None:
            v, se = v[:, cls : cls + 1], se[:, cls : cls + 1]
        lo, hi = _gap_bounds(v + c * se, v - c * se)
        hi = hi[np.isfinite(hi)]
        lo = lo[np.isfinite(lo)]
        if hi.size == 0:
            return math.nan, math.nan
        return max(0.0, float(lo.max()) if lo.size else 0.0), float(hi.max())

    def class_intervals(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)``, each ``(C,)``: the interval of class ``k``'s largest absolute gap at
        its own critical value ``c[k]`` for every class at once.

        Elementwise the same arithmetic as ``interval(float(c[k]), cls=k)`` (so the same numbers),
        without a Python loop over the classes.
        """
        c = np.asarray(c, dtype=np.float64)
        if self.pairwise:
            a = np.abs(self.diff)
            lo = _nanmax0(a - c * self.se)
            hi = _nanmax0(a + c * self.se)
            return np.where(np.isfinite(lo), np.where(lo > 0.0, lo, 0.0), lo), hi
        lo, hi = _gap_bounds(self.values + c * self.group_se, self.values - c * self.group_se)
        ok = np.isfinite(hi)
        lower = np.where(np.isfinite(lo), np.where(lo > 0.0, lo, 0.0), 0.0)
        return np.where(ok, lower, math.nan), np.where(ok, hi, math.nan)


def _gap_bounds(upper_b: np.ndarray, lower_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, ``(max over i != j of L_i - U_j, max over i != j of U_i - L_j)`` of groups' upper
    and lower bounds (rows), from each column's top two instead of all pairs: the raw ends of
    the largest gap's interval (the lower end before clipping at 0)."""
    iu, u1, u2 = _top2(upper_b, largest=True)
    il, l1, l2 = _top2(lower_b, largest=False)
    hi = np.where(iu != il, u1 - l1, np.fmax(u1 - l2, u2 - l1))
    jl, m1, m2 = _top2(lower_b, largest=True)
    ju, n1, n2 = _top2(upper_b, largest=False)
    lo = np.where(jl != ju, m1 - n1, np.fmax(m1 - n2, m2 - n1))
    return lo, hi


def _nanmax0(a: np.ndarray) -> np.ndarray:
    """Max over axis 0 ignoring NaN (infinities kept); NaN where a column is all NaN."""
    out = np.where(np.isnan(a), -np.inf, a).max(axis=0)
    return np.where(np.all(np.isnan(a), axis=0), math.nan, out)
