"""One slice audit: group metrics, disparities and bootstrap CIs for one column on one condition.

:func:`audit_groups` is the whole computation (vectorised, see :mod:`evalsuite.slices.metrics`
and :mod:`evalsuite.slices.bootstrap`); :func:`audit_metrics` turns its result into the
metric-leaf tree that lands in ``results.json`` and :func:`audit_report` into the scorecard's
table data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evalsuite.errors import DataError, UsageError
from evalsuite.slices.bootstrap import replicates
from evalsuite.slices.intervals import PAIR_LIMIT, PairBand
from evalsuite.slices.metrics import (
    DEFAULT_N_BINS,
    METRICS,
    SUMMARY_DIRECTIONS,
    ClassMap,
    GroupStats,
    RowStats,
    equalized_odds,
    metrics_from_stats,
    nanargext,
    nanmax,
    point_stats,
    rate_differences,
    summaries,
)
from evalsuite.stats import (
    CI_LEVEL,
    absmax_interval,
    bca_interval,
    bootstrap_se,
    critical_value,
    extreme_interval,
    max_abs_t,
    mean_acceleration,
    metric,
    percentiles,
    t_factor,
)
from evalsuite.stats.simultaneous import pooled_se

DEFAULT_MIN_GROUP_SIZE = 30
DEFAULT_N_BOOT = 1000
CLASS_DETAIL_LIMIT = 20  # per-class rates by group (and their CIs) only up to this many classes
RATES = ("tpr", "fpr", "selection_rate")
CONDITION_SUMMARIES = ("difference", "ratio", "worst_group")
RATE_STORE_LIMIT = 10_000_000  # replicate x group x class values kept in memory per rate, all rates together


@dataclass
class GroupAudit:
    """Point estimates and 95% percentile CIs of one audit (arrays indexed by group code).

    ``est[key]`` holds the point estimate and ``ci[key]`` the ``(2, ...)`` interval for keys
    ``g.<metric>`` (per group), ``o.<metric>`` (overall), ``s.<metric>.<summary>``,
    ``eod``/``eod.class`` (with its parts ``eod.tpr``/``eod.fpr``, point estimates only),
    ``dp``/``dp.class`` and, with few classes, ``g.<rate>``/``o.<rate>``.
    """

    groups: list[str]
    n: np.ndarray
    eligible: np.ndarray
    min_group_size: int
    class_names: list[str]
    est: dict[str, np.ndarray]
    ci: dict[str, np.ndarray] | None
    method: str
    n_boot: int
    seed: int
    notes: list[str] = field(default_factory=list)
    n_bins: int = DEFAULT_N_BINS  # confidence bins of the ECE

    @property
    def n_total(self) -> int:
        return int(self.n.sum())

    @property
    def n_eligible(self) -> int:
        return int(self.n[self.eligible].sum())

    def value(self, key: str, index: Any = ()) -> float | None:
        v = float(np.asarray(self.est[key])[index]) if key in self.est else math.nan
        return v if math.isfinite(v) else None

    def interval(self, key: str, index: Any = ()) -> list[float | None] | None:
        if self.ci is None or key not in self.ci:
            return None
        lo, hi = (float(np.asarray(self.ci[key])[(i,) + (index if isinstance(index, tuple) else (index,))]) for i in (0, 1))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return None
        return [lo, hi]

    def extreme_group(self, metric_name: str, worst: bool) -> int:
        """Code of the worst (or best) eligible group for a metric; -1 when none."""
        direction = METRICS[metric_name]
        v = np.where(self.eligible, self.est[f"g.{metric_name}"], np.nan)
        largest = (direction == "lower") == worst
        return int(nanargext(v[None, :], 1, largest)[0])


def _point(stats: GroupStats, eligible: np.ndarray, detail: bool) -> dict[str, np.ndarray]:
    """Point estimates of every reported quantity (MetricFrame semantics)."""
    gm = metrics_from_stats(stats)
    om = metrics_from_stats(stats.pooled())
    out: dict[str, np.ndarray] = {}
    for name, direction in METRICS.items():
        out[f"g.{name}"] = gm[name][0]
        out[f"o.{name}"] = om[name][0, 0]
        for k, v in summaries(gm[name], om[name][:, 0], eligible, direction).items():
            out[f"s.{name}.{k}"] = v[0]
    eo = equalized_odds(gm["tpr"], gm["fpr"], eligible)[0]
    out["eod.class"] = eo
    out["eod.tpr"] = rate_differences(gm["tpr"], eligible)[0]  # the two parts of eod.class
    out["eod.fpr"] = rate_differences(gm["fpr"], eligible)[0]
    out["eod"] = nanmax(eo[None, :], 1)[0]
    dp = rate_differences(gm["selection_rate"], eligible)[0]
    out["dp.class"] = dp
    out["dp"] = nanmax(dp[None, :], 1)[0]
    for rate in RATES:
        out[f"g.{rate}"] = gm[rate][0]
        out[f"o.{rate}"] = om[rate][0, 0]
    if not detail:
        for rate in RATES:
            del out[f"g.{rate}"], out[f"o.{rate}"]
    return out


def _log(a: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, np.log(np.where(a > 0, a, 1.0)), np.nan)


def summary_intervals(
    reps: np.ndarray, overall: np.ndarray, point: np.ndarray, point_overall: float, eligible: np.ndarray,
    direction: str, level: float, widen: float = 1.0, *, sizes: np.ndarray,
) -> dict[str, tuple[float, float]]:
    """Simultaneous (max-t) intervals of the extreme-type summaries of one metric.

    ``reps`` are the group replicates ``(R, G)``, ``overall`` the overall replicates ``(R,)``,
    ``point``/``point_overall`` the estimates, ``sizes`` the rows of *every* group (the overall
    pools them all, small groups included). Every band is studentized on a pooled scale
    (:func:`evalsuite.stats.simultaneous.pooled_se`): one per-sample variance shared by the
    eligible groups, scaled by ``1 / n_k`` for group values and by ``1 / n_k - 1 / N`` for
    group-minus-overall gaps, so the band of the observed extreme group is not narrowed by
    that group's own extreme estimate (see :mod:`evalsuite.slices.intervals`). A ratio whose
    groups include a value of 0 (so its log is undefined) falls back to the percentile
    interval of the replicate ratios.
    """
    nan = (math.nan, math.nan)
    out = {k: nan for k in SUMMARY_DIRECTIONS}
    keep = eligible & np.isfinite(point)
    v, vh = reps[:, keep], point[keep]
    if vh.size == 0:
        return out
    sizes = np.asarray(sizes, dtype=np.float64)
    inv_n = 1.0 / sizes[keep]
    to_overall = inv_n - 1.0 / sizes.sum()
    se = pooled_se(bootstrap_se(v), inv_n)
    c = widen * critical_value(max_abs_t(v - vh, se), level)
    out["worst_group"] = extreme_interval(vh, se, c, largest=direction == "lower")
    out["best_group"] = extreme_interval(vh, se, c, largest=direction == "higher")
    if vh.size >= 2:
        band = PairBand(vh, se)
        out["difference"] = band.interval(widen * critical_value(band.t(v), level))
        if np.all(vh > 0):
            lv = _log(v)
            lband = PairBand(np.log(vh), pooled_se(bootstrap_se(lv), inv_n))
            lo, hi = lband.interval(widen * critical_value(lband.t(lv, undefined_is_extreme=True), level))
            out["ratio"] = (math.exp(-hi), min(1.0, math.exp(-lo)))
        else:
            rr = summaries(reps, overall, eligible, direction)["ratio"]
            out["ratio"] = tuple(percentiles(rr, level))
    d = v - overall[:, None]
    dh = vh - point_overall
    sd = pooled_se(bootstrap_se(d), to_overall)
    out["difference_to_overall"] = absmax_interval(dh, sd, widen * critical_value(max_abs_t(d - dh, sd), level))
    if np.all(vh > 0) and point_overall > 0:
        ld = _log(v) - _log(overall)[:, None]
        ldh = np.log(vh) - math.log(point_overall)
        lsd = pooled_se(bootstrap_se(ld), to_overall)
        t = max_abs_t(ld - ldh, lsd)
        t = np.where(np.any(np.isnan(ld), axis=1), np.inf, t)
        lo, hi = absmax_interval(ldh, lsd, widen * critical_value(t, level))
        out["ratio_to_overall"] = (math.exp(-hi), min(1.0, math.exp(-lo)))
    else:
        rr = summaries(reps, overall, eligible, direction)["ratio_to_overall"]
        out["ratio_to_overall"] = tuple(percentiles(rr, level))
    return out


def _clip(interval: tuple[float, float], low: float, high: float) -> np.ndarray:
    return np.array([min(max(x, low), high) if math.isfinite(x) else x for x in interval])


METRIC_RANGE = {"accuracy": (0.0, 1.0), "error_rate": (0.0, 1.0), "macro_recall": (0.0, 1.0), "ece": (0.0, 1.0),
                "nll": (0.0, math.inf)}


def audit_groups(
    rows: RowStats,
    codes: np.ndarray,
    groups: list[str],
    *,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    method: str = "auto",
    class_names: list[str] | None = None,
    level: float = CI_LEVEL,
) -> GroupAudit:
    """Audit one slice column on one condition's rows.

    Args:
        rows: per-row facts (:class:`RowStats`) of the condition.
        codes: group code per row (``0 .. len(groups) - 1``).
        groups: group names.
        min_group_size: groups with fewer rows are reported but left out of every summary.
        n_boot: bootstrap replicates (0: point estimates only).
        seed: seed of the bootstrap generator.
        method: ``auto`` | ``rows`` | ``counts`` (see :mod:`evalsuite.slices.bootstrap`).
        class_names: names of the classes (default ``0 .. C-1``).

    Group metrics, overall metrics and per-class rates get percentile intervals; summaries
    (disparities, worst/best group, equalized odds, demographic parity) get simultaneous
    max-t intervals (:mod:`evalsuite.slices.intervals`).
    """
    codes = np.asarray(codes, dtype=np.int64)
    g = len(groups)
    if len(codes) != len(rows):
        raise DataError(f"slice codes ({len(codes)}) and predictions ({len(rows)}) differ in length")
    if codes.size and (codes.min() < 0 or codes.max() >= g):
        raise DataError(f"slice codes must lie in [0, {g}), got {codes.min()}..{codes.max()}")
    if min_group_size < 1:
        raise UsageError(f"min_group_size must be at least 1, got {min_group_size}")
    if n_boot < 0:
        raise UsageError(f"n_boot must be >= 0, got {n_boot}")
    c = rows.n_classes
    names = list(class_names) if class_names is not None else [str(k) for k in range(c)]
    if len(names) != c:
        raise DataError(f"{len(names)} class names for {c} classes")
    detail = c <= CLASS_DETAIL_LIMIT
    point = point_stats(rows, codes, g)
    n = point.n[0].astype(np.int64)
    eligible = n >= min_group_size
    est = _point(point, eligible, detail)
    ci = None
    used = "none"
    if n_boot > 0 and len(rows) > 0:
        used, ci = _bootstrap(rows, codes, g, n_boot, seed, method, eligible, est, point, detail, level)
    notes = []
    small = [groups[k] for k in range(g) if 0 < n[k] < min_group_size]
    if small:
        notes.append(
            f"{len(small)} group(s) with fewer than {min_group_size} samples are shown but left out of "
            f"the disparity summaries: {', '.join(small)}"
        )
    if int(eligible.sum()) < 2:
        notes.append(f"fewer than two groups have at least {min_group_size} samples: no disparity can be measured")
    return GroupAudit(
        groups=list(groups), n=n, eligible=eligible, min_group_size=min_group_size, class_names=names,
        est=est, ci=ci, method=used, n_boot=n_boot if ci is not None else 0, seed=seed, notes=notes,
        n_bins=rows.n_bins,
    )


@dataclass(frozen=True)
class _Resampling:
    """What regenerates one audit's bootstrap replicates: the same seed gives the same draws, so a
    second pass over them (when the rates were too many to keep) sees exactly the first pass's.

    With ``classes`` the replicates are drawn in its compressed class layout (the touched classes
    and one stand-in, :class:`~evalsuite.slices.metrics.ClassMap`), chunked as the full-width
    draws are, so every replicate is the full-width one restricted to those columns.
    """

    rows: RowStats
    codes: np.ndarray
    g: int
    n_boot: int
    seed: int
    classes: ClassMap | None = None

    def chunks(self, method: str) -> tuple[str, Iterator[GroupStats]]:
        """(method used, iterator over chunks of replicate statistics)."""
        if self.classes is None:
            return replicates(self.rows, self.codes, self.g, self.n_boot, self.seed, method)
        return replicates(self.classes.compress(self.rows), self.codes, self.g, self.n_boot, self.seed, method,
                          chunk_classes=self.classes.n_classes)


class _RateReplicates:
    """Replicates of the per-group, per-class rates (:data:`RATES`) for the parity intervals, of the
    groups in ``groups`` (a mask: the eligible ones, the only ones the intervals use).

    Kept whole when ``keep`` (they fit in :data:`RATE_STORE_LIMIT`); otherwise only their running
    moments (count, sum, sum of squares over non-NaN replicates) are kept, so memory stays at
    groups x classes, and :meth:`passes` regenerates the replicates for the t statistics.
    """

    def __init__(self, keep: bool, groups: np.ndarray, c: int) -> None:
        self.keep = keep
        self.groups = groups
        g = int(groups.sum())
        self._chunks: dict[str, list[np.ndarray]] = {r: [] for r in RATES}
        self._moments = {r: np.zeros((3, g, c)) for r in RATES}
        self._stored: dict[str, np.ndarray] = {}

    def add(self, rate: str, x: np.ndarray) -> None:
        """One chunk of replicates ``(m, G, c)`` of ``rate`` (every group; the others are dropped here)."""
        x = x[:, self.groups]
        if self.keep:
            self._chunks[rate].append(x)
            return
        ok = ~np.isnan(x)
        mom = self._moments[rate]
        mom[0] += ok.sum(axis=0)
        mom[1] += np.where(ok, x, 0.0).sum(axis=0)
        mom[2] += np.where(ok, x * x, 0.0).sum(axis=0)

    def standard_errors(self) -> dict[str, np.ndarray]:
        """Bootstrap standard error of every rate, ``(g, c)`` each (NaN replicates left out)."""
        if self.keep:
            self._stored = {r: np.concatenate(self._chunks[r], axis=0) for r in RATES}
            return {r: bootstrap_se(self._stored[r]) for r in RATES}
        se = {}
        for r in RATES:
            cnt, s1, s2 = self._moments[r]
            with np.errstate(divide="ignore", invalid="ignore"):
                mean = np.where(cnt > 0, s1 / np.where(cnt > 0, cnt, 1), 0.0)
                var = np.where(cnt > 1, s2 / np.where(cnt > 0, cnt, 1) - mean**2, 0.0)
            se[r] = np.sqrt(np.maximum(var, 0.0))
        return se

    def passes(self, resampling: _Resampling, used: str) -> Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(TPR, FPR, selection rate) replicate blocks of the kept groups: the stored ones (after
        :meth:`standard_errors`), or a regeneration of the same replicates chunk by chunk."""
        if self.keep:
            return [(self._stored["tpr"], self._stored["fpr"], self._stored["selection_rate"])]
        k = self.groups
        return (
            (m["tpr"][:, k], m["fpr"][:, k], m["selection_rate"][:, k])
            for m in (metrics_from_stats(ch, resampling.classes) for ch in resampling.chunks(used)[1])
        )


def _replicate_metrics(
    resampling: _Resampling, method: str, detail: bool, rates: _RateReplicates | None
) -> tuple[str, dict[str, np.ndarray]]:
    """(method used, replicates of every group and overall metric, ``(n_boot, ...)`` by key); the
    rates also go to ``rates`` (when given)."""
    used, chunks = resampling.chunks(method)
    vals: dict[str, list[np.ndarray]] = {}
    for chunk in chunks:
        gm = metrics_from_stats(chunk, resampling.classes)
        om = metrics_from_stats(chunk.pooled(), resampling.classes)
        for name in METRICS:
            vals.setdefault(f"g.{name}", []).append(gm[name])
            vals.setdefault(f"o.{name}", []).append(om[name][:, 0])
        for r in RATES:
            if rates is not None:
                rates.add(r, gm[r])
            if detail:
                vals.setdefault(f"g.{r}", []).append(gm[r])
                vals.setdefault(f"o.{r}", []).append(om[r][:, 0])
    return used, {k: np.concatenate(v, axis=0) for k, v in vals.items()}


def _bca_intervals(
    rows: RowStats, codes: np.ndarray, g: int, reps: dict[str, np.ndarray], est: dict[str, np.ndarray], level: float
) -> dict[str, np.ndarray]:
    """BCa intervals of the group means of per-sample values (accuracy, error rate, NLL), which
    the percentile interval covers poorly in small groups."""
    finite = rows.finite.astype(np.float64)
    acc_a = mean_acceleration(rows.correct, codes, g)
    nll_a = mean_acceleration(rows.nll, codes, g, weights=finite)
    return {
        f"g.{name}": bca_interval(reps[f"g.{name}"], est[f"g.{name}"], accel, level)
        for name, accel in (("accuracy", acc_a), ("error_rate", -acc_a), ("nll", nll_a))
    }


def _summary_cis(
    reps: dict[str, np.ndarray], est: dict[str, np.ndarray], eligible: np.ndarray, level: float, widen: float,
    sizes: np.ndarray,
) -> dict[str, np.ndarray]:
    """Simultaneous intervals of every metric's summaries (``s.<metric>.<summary>``), clipped to
    the range the summary can take."""
    ci = {}
    for name, direction in METRICS.items():
        lo, hi = METRIC_RANGE[name]
        ivs = summary_intervals(reps[f"g.{name}"], reps[f"o.{name}"], est[f"g.{name}"], float(est[f"o.{name}"]),
                                 eligible, direction, level, widen, sizes=sizes)
        for stat, iv in ivs.items():
            top = 1.0 if stat.startswith("ratio") else hi
            ci[f"s.{name}.{stat}"] = _clip(iv, 0.0 if stat != "worst_group" and stat != "best_group" else lo, top)
    return ci


def _parity_t(
    bands: dict[str, PairBand], passes: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-replicate, per-class max-t statistics of equalized odds (the larger of the TPR and FPR
    bands' t) and of demographic parity (selection rate), ``(n_boot, c)`` each."""
    t_eo, t_dp = [], []
    for tpr, fpr, sr in passes:  # already restricted to the eligible groups
        t_eo.append(np.fmax(bands["tpr"].t(tpr, per_class=True), bands["fpr"].t(fpr, per_class=True)))
        t_dp.append(bands["selection_rate"].t(sr, per_class=True))
    return np.concatenate(t_eo, axis=0), np.concatenate(t_dp, axis=0)


def _parity_cis(
    bands: dict[str, PairBand], teo: np.ndarray, tdp: np.ndarray, level: float, widen: float,
    classes: ClassMap | None = None,
) -> dict[str, np.ndarray]:
    """Intervals of equalized odds and demographic parity, over all classes (critical value of the
    max over classes) and per class (``eod.class`` / ``dp.class``, ``(2, C)``), clipped to [0, 1].

    The per-class intervals are computed for every class at once (:meth:`PairBand.class_intervals`,
    elementwise the scalar :meth:`PairBand.interval` of each class); with ``classes`` the bands are
    in its compressed layout and the stand-in's interval is copied to every inactive class.
    """
    ci = {}
    c_eo = widen * critical_value(nanmax(teo, 1), level)
    c_dp = widen * critical_value(nanmax(tdp, 1), level)
    eo_all = [bands[r].interval(c_eo) for r in ("tpr", "fpr")]
    ci["eod"] = _clip((_nanmax2(eo_all[0][0], eo_all[1][0]), _nanmax2(eo_all[0][1], eo_all[1][1])), 0.0, 1.0)
    ci["dp"] = _clip(bands["selection_rate"].interval(c_dp), 0.0, 1.0)
    ck_eo = widen * critical_value(teo, level)
    ck_dp = widen * critical_value(tdp, level)
    a, b = bands["tpr"].class_intervals(ck_eo), bands["fpr"].class_intervals(ck_eo)
    eoc = _clip_columns(np.stack([_nanmax2_columns(a[0], b[0]), _nanmax2_columns(a[1], b[1])]), 0.0, 1.0)
    dpc = _clip_columns(np.stack(bands["selection_rate"].class_intervals(ck_dp)), 0.0, 1.0)
    if classes is not None:
        eoc, dpc = classes.expand(eoc), classes.expand(dpc)
    ci["eod.class"] = eoc
    ci["dp.class"] = dpc
    return ci


def _nanmax2_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`_nanmax2` elementwise."""
    return np.where(np.isnan(a), b, np.where(np.isnan(b), a, np.where(b > a, b, a)))


def _clip_columns(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """:func:`_clip` elementwise (non-finite values kept)."""
    y = np.where(low > x, low, x)
    y = np.where(high < y, high, y)
    return np.where(np.isfinite(x), y, x)


def _rate_factors(point: GroupStats) -> dict[str, np.ndarray]:
    """Per rate, ``1 / denominator`` by group and class ``(G, C)``: the variance factor of
    :func:`evalsuite.stats.simultaneous.pooled_se` (true samples of the class for TPR, the other
    samples for FPR, the group for the selection rate; ``inf`` where the denominator is 0)."""
    pos = point.pos[0]
    n = point.n[0][:, None]
    with np.errstate(divide="ignore"):
        return {"tpr": 1.0 / pos, "fpr": 1.0 / (n - pos), "selection_rate": np.broadcast_to(1.0 / n, pos.shape)}


def _bootstrap(
    rows: RowStats, codes: np.ndarray, g: int, n_boot: int, seed: int, method: str, eligible: np.ndarray,
    est: dict[str, np.ndarray], point: GroupStats, detail: bool, level: float,
) -> tuple[str, dict[str, np.ndarray]]:
    """Replicates -> every interval. Rates by group are kept in memory when small, else their
    moments are accumulated and a second pass over the same replicates (same seed) computes
    the max-t statistics of equalized odds and demographic parity.

    Percentile intervals for group and overall metrics (BCa for the group means), simultaneous
    max-t intervals for the summaries, all widened by the small-group ``t`` factor.
    """
    c = rows.n_classes
    # Beyond the per-class detail, the replicates carry only the classes some row touches (plus one
    # stand-in for the rest, :class:`ClassMap`): a 1000-class model on a few hundred rows resamples
    # tens of columns instead of 1000, with every number unchanged.
    classes = None if detail else ClassMap.of(rows)
    resampling = _Resampling(rows, codes, g, n_boot, seed, classes)
    n_groups_rows = np.bincount(codes, minlength=g)
    widen = t_factor(int(n_groups_rows[eligible].min()) if eligible.any() else 0, level)
    n_eligible = int(eligible.sum())
    # The parity intervals need two eligible groups; without them no rate replicate is used. Whether
    # rates are kept or re-drawn is decided on the full width (the two give their standard errors
    # by different, equally valid, formulas).
    width = c if classes is None else classes.width
    rates = (_RateReplicates(n_boot * g * c * len(RATES) <= RATE_STORE_LIMIT, eligible, width)
             if n_eligible >= 2 else None)
    used, reps = _replicate_metrics(resampling, method, detail, rates)
    ci = {k: percentiles(v, level) for k, v in reps.items()}
    ci.update(_bca_intervals(rows, codes, g, reps, est, level))
    ci.update(_summary_cis(reps, est, eligible, level, widen, n_groups_rows))
    if rates is None:
        return used, ci
    # equalized odds and demographic parity: pairwise max-t bands over eligible groups, per class
    gm_point = metrics_from_stats(point)
    se = rates.standard_errors()
    pairwise = (n_eligible * (n_eligible - 1) // 2) * c <= PAIR_LIMIT  # on the model's classes, as always

    def layout(a: np.ndarray) -> np.ndarray:
        return a if classes is None else classes.take(a)

    bands = {r: PairBand(layout(gm_point[r][0][eligible]), pooled_se(se[r], layout(f[eligible]), axis=0),
                         pairwise=pairwise)
             for r, f in _rate_factors(point).items()}
    teo, tdp = _parity_t(bands, rates.passes(resampling, used))
    ci.update(_parity_cis(bands, teo, tdp, level, widen, classes))
    return used, ci


def _nanmax2(a: float, b: float) -> float:
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return max(a, b)


# ---------------------------------------------------------------------------------------------
# results.json leaves


def _summary_leaf(a: GroupAudit, name: str, stat: str) -> dict[str, Any]:
    direction = SUMMARY_DIRECTIONS[stat] or METRICS[name]
    key = f"s.{name}.{stat}"
    extra: dict[str, Any] = {}
    worst = a.extreme_group(name, worst=True)
    best = a.extreme_group(name, worst=False)
    n = a.n_eligible
    if stat in ("worst_group", "best_group"):
        code = worst if stat == "worst_group" else best
        if code >= 0:
            extra["group"] = a.groups[code]
            n = int(a.n[code])
    elif stat in ("difference", "ratio") and worst >= 0 and best >= 0 and a.value(key) is not None:
        extra["groups"] = [a.groups[best], a.groups[worst]]
    if a.value(key) is None:
        extra["note"] = (f"needs at least two groups with {a.min_group_size}+ samples"
                         if stat in ("difference", "ratio") else f"no group with {a.min_group_size}+ samples")
    return metric(a.value(key), n, a.interval(key), direction, **extra)


def audit_metrics(a: GroupAudit, full: bool = True) -> dict[str, Any]:
    """The metric-leaf tree of one audit.

    ``full`` (clean) gives every metric every summary, ``overall`` and ``by_group`` leaves, and
    equalized odds (``equalized_odds_by_class.<class>``, with its TPR and FPR gaps) and
    demographic parity per class. Without it (other conditions, to keep results.json small)
    accuracy keeps all of those, the other metrics keep ``difference``, ``ratio`` and
    ``worst_group``.
    """
    out: dict[str, Any] = {
        "groups": metric(int((a.n > 0).sum()), a.n_total, None, "none"),
        "eligible_groups": metric(int(a.eligible.sum()), a.n_eligible, None, "none", min_group_size=a.min_group_size),
    }
    for name, direction in METRICS.items():
        whole = full or name == "accuracy"
        stats = SUMMARY_DIRECTIONS if whole else CONDITION_SUMMARIES
        node: dict[str, Any] = {stat: _summary_leaf(a, name, stat) for stat in stats}
        if whole:
            node["overall"] = metric(a.value(f"o.{name}"), a.n_total, a.interval(f"o.{name}"), direction)
            node["by_group"] = {
                grp: metric(a.value(f"g.{name}", k), int(a.n[k]), a.interval(f"g.{name}", k), direction,
                            eligible=bool(a.eligible[k]))
                for k, grp in enumerate(a.groups) if a.n[k] > 0
            }
        out[name] = node
    eo_cls = int(nanargext(a.est["eod.class"][None, :], 1, True)[0])
    out["equalized_odds_difference"] = metric(
        a.value("eod"), a.n_eligible, a.interval("eod"), "lower",
        **({"class": a.class_names[eo_cls]} if eo_cls >= 0 else {"note": "needs two eligible groups"}),
    )
    if full:
        out["equalized_odds_by_class"] = {
            cname: metric(a.value("eod.class", k), a.n_eligible, a.interval("eod.class", k), "lower",
                          tpr_difference=a.value("eod.tpr", k), fpr_difference=a.value("eod.fpr", k))
            for k, cname in enumerate(a.class_names)
        }
    dp_cls = int(nanargext(a.est["dp.class"][None, :], 1, True)[0])
    dp: dict[str, Any] = {
        "max": metric(a.value("dp"), a.n_eligible, a.interval("dp"), "lower",
                      **({"class": a.class_names[dp_cls]} if dp_cls >= 0 else {"note": "needs two eligible groups"})),
    }
    if full:
        dp["by_class"] = {
            cname: metric(a.value("dp.class", k), a.n_eligible, a.interval("dp.class", k), "lower")
            for k, cname in enumerate(a.class_names)
        }
    out["demographic_parity_difference"] = dp
    return out


# ---------------------------------------------------------------------------------------------
# report data


def _triple(a: GroupAudit, key: str, index: Any = ()) -> dict[str, float | None]:
    ci = a.interval(key, index)
    return {"value": a.value(key, index), "lo": None if ci is None else ci[0], "hi": None if ci is None else ci[1]}


def audit_report(a: GroupAudit, full: bool = True) -> dict[str, Any]:
    """JSON-ready tables of one audit for the scorecard."""
    rows = []
    for k, grp in enumerate(a.groups):
        if a.n[k] == 0:
            continue
        row: dict[str, Any] = {"group": grp, "n": int(a.n[k]), "eligible": bool(a.eligible[k])}
        for name in METRICS:
            row[name] = _triple(a, f"g.{name}", k)
        rows.append(row)
    summary_rows = []
    for name in METRICS:
        worst = a.extreme_group(name, worst=True)
        best = a.extreme_group(name, worst=False)
        summary_rows.append({
            "metric": name,
            "direction": METRICS[name],
            "overall": _triple(a, f"o.{name}"),
            **{stat: _triple(a, f"s.{name}.{stat}") for stat in SUMMARY_DIRECTIONS},
            "worst_name": a.groups[worst] if worst >= 0 else None,
            "best_name": a.groups[best] if best >= 0 else None,
        })
    eo_cls = int(nanargext(a.est["eod.class"][None, :], 1, True)[0])
    dp_cls = int(nanargext(a.est["dp.class"][None, :], 1, True)[0])
    out: dict[str, Any] = {
        "n": a.n_total,
        "n_eligible": a.n_eligible,
        "min_group_size": a.min_group_size,
        "groups": rows,
        "summaries": summary_rows,
        "equalized_odds": {**_triple(a, "eod"), "class": a.class_names[eo_cls] if eo_cls >= 0 else None},
        "demographic_parity": {**_triple(a, "dp"), "class": a.class_names[dp_cls] if dp_cls >= 0 else None},
        "small_groups": [{"group": a.groups[k], "n": int(a.n[k])} for k in range(len(a.groups)) if 0 < a.n[k] < a.min_group_size],
        "notes": list(a.notes),
        "bootstrap": {"method": a.method, "n_boot": a.n_boot, "seed": a.seed},
    }
    if full and "g.tpr" in a.est:
        per_class = []
        for j, cname in enumerate(a.class_names):
            entry: dict[str, Any] = {"class": cname, "eod": _triple(a, "eod.class", j), "dp": _triple(a, "dp.class", j)}
            for rate in RATES:
                entry[rate] = [_triple(a, f"g.{rate}", (k, j)) for k in range(len(a.groups)) if a.n[k] > 0]
            per_class.append(entry)
        out["per_class"] = per_class
        out["per_class_groups"] = [a.groups[k] for k in range(len(a.groups)) if a.n[k] > 0]
    return out
