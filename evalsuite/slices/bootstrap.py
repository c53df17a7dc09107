"""Stratified bootstrap of per-group sufficient statistics, vectorised over replicates.

Scheme (documented in ``docs/slices.md``): every replicate resamples each group's rows *with
replacement within the group*, keeping the group's size fixed (a bootstrap stratified by
group). Group metrics, the overall metric (the pooled resampled groups) and every disparity
are computed on the same replicate, so a disparity's interval reflects the joint uncertainty
of the groups it compares. Intervals are 95% percentile intervals over replicates.

Two exact-in-law ways to draw a replicate, chosen by cost (``method="auto"``):

``rows``
    draws how often each row of a group is resampled (:func:`evalsuite.stats.resample_counts`:
    uniform row indices within the group, tallied) and maps the counts to statistics, a chunk
    of replicates at a time. Cost grows with ``n_rows x n_boot``.
``counts``
    groups rows into *cells* of identical discrete facts (true class, predicted class,
    confidence bin) and draws the cell counts of each group from a multinomial
    distribution -- the exact distribution of the counts under row resampling, so every
    count-based metric (accuracy, recalls, rates, selection, ECE's per-bin accuracy) has
    exactly the bootstrap law of ``rows``. The only continuous sums (confidence per bin, NLL)
    are drawn given the counts as a normal with the exact conditional mean and variance
    (``m * mean_cell`` and ``m * var_cell``), which matches the first two moments of the
    resampled sum. Cost grows with ``n_cells x n_boot``, independent of the number of rows.

``auto`` uses ``rows`` while ``n_rows x n_boot <= 2e7`` (small data: exact, cheap) and
otherwise ``counts`` when there are at most an eighth as many cells as rows, else ``rows``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from evalsuite.slices.metrics import GroupStats, RowStats
from evalsuite.stats import resample_counts

ROWS_BUDGET = 20_000_000  # n_rows x n_boot below which the row bootstrap is always used
STATS_ELEMENTS = 4_000_000  # replicate x group x class cells per chunk of the count bootstrap
METHODS = ("auto", "rows", "counts")


def unit_table(rows: RowStats, codes: np.ndarray, collapse: bool) -> dict[str, np.ndarray]:
    """The resampling units of every group.

    ``collapse=False``: every row is a unit (``count`` 1, its own confidence and NLL, variance 0).
    ``collapse=True``: rows with identical (group, true class, predicted class, confidence bin)
    form one *cell* with its row count and the mean/variance of confidence and NLL inside.
    """
    c = rows.n_classes
    b1 = rows.n_bins + 1
    codes = np.asarray(codes, dtype=np.int64)
    pcode = np.where(rows.pred >= 0, rows.pred, c)
    if not collapse:
        order = np.argsort(codes, kind="stable")
        n = len(order)
        return {
            "group": codes[order], "y": rows.y[order], "pred": pcode[order], "bin": rows.bin[order],
            "count": np.ones(n, dtype=np.int64), "conf_mean": rows.conf[order], "conf_var": np.zeros(n),
            "nll_mean": rows.nll[order], "nll_var": np.zeros(n),
        }
    n_cell = c * (c + 1) * b1
    key = codes * n_cell + (rows.y * (c + 1) + pcode) * b1 + rows.bin
    space = (int(codes.max(initial=0)) + 1) * n_cell
    if space <= max(4 * len(key), 1_000_000):  # small key space: count densely, no sort
        dense = np.bincount(key, minlength=space)
        uniq = np.flatnonzero(dense)
        counts = dense[uniq]
        pos = np.zeros(space, dtype=np.int64)
        pos[uniq] = np.arange(len(uniq))
        inv = pos[key]
    else:
        uniq, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
        inv = inv.ravel()
    cnt = counts.astype(np.float64)
    conf_mean = np.bincount(inv, weights=rows.conf, minlength=len(uniq)) / cnt
    nll_mean = np.bincount(inv, weights=rows.nll, minlength=len(uniq)) / cnt
    conf_var = np.bincount(inv, weights=(rows.conf - conf_mean[inv]) ** 2, minlength=len(uniq)) / cnt
    nll_var = np.bincount(inv, weights=(rows.nll - nll_mean[inv]) ** 2, minlength=len(uniq)) / cnt
    rest = uniq % n_cell
    return {
        "group": uniq // n_cell,
        "y": rest // ((c + 1) * b1),
        "pred": (rest // b1) % (c + 1),
        "bin": rest % b1,
        "count": counts,
        "conf_mean": conf_mean,
        "conf_var": np.maximum(conf_var, 0.0),
        "nll_mean": nll_mean,
        "nll_var": np.maximum(nll_var, 0.0),
    }


def choose_method(n_rows: int, n_boot: int, n_cells: int | None) -> str:
    """The ``auto`` rule (see the module docstring)."""
    if n_rows * n_boot <= ROWS_BUDGET or n_cells is None:
        return "rows"
    return "counts" if n_cells * 8 <= n_rows else "rows"


def _layout(c: int, n_bins: int, with_var: bool) -> tuple[dict[str, slice], int]:
    """Column layout of the design matrix: statistic name -> column slice, and its width."""
    b1 = n_bins + 1
    layout = {}
    off = 0
    names = [("pos", c), ("tp", c), ("predc", c + 1), ("bin_n", b1), ("bin_correct", b1), ("conf_mean", b1),
             ("nll_mean", 1)]
    if with_var:
        names += [("conf_var", b1), ("nll_var", 1)]
    for name, width in names:
        layout[name] = slice(off, off + width)
        off += width
    return layout, off


def _design(units: dict[str, np.ndarray], sel: slice | np.ndarray, c: int, n_bins: int, with_var: bool) -> object:
    """Sparse ``D x K`` matrix mapping a group's unit counts to its statistics (CSR).

    Each unit touches at most nine statistics, so the sparse product costs ``9 x K`` per
    replicate instead of ``D x K`` for a dense one."""
    layout, width = _layout(c, n_bins, with_var)
    y, p, b = units["y"][sel], units["pred"][sel], units["bin"][sel]
    correct = (p == y).astype(np.float64)
    k = len(y)
    ones = np.ones(k)
    cols = [layout["pos"].start + y, layout["tp"].start + y, layout["predc"].start + p,
            layout["bin_n"].start + b, layout["bin_correct"].start + b, layout["conf_mean"].start + b,
            np.full(k, layout["nll_mean"].start)]
    vals = [ones, correct, ones, ones, correct, units["conf_mean"][sel], units["nll_mean"][sel]]
    if with_var:
        cols += [layout["conf_var"].start + b, np.full(k, layout["nll_var"].start)]
        vals += [units["conf_var"][sel], units["nll_var"][sel]]
    rows = np.tile(np.arange(k), len(cols))
    cols_a = np.concatenate(cols)
    vals_a = np.concatenate(vals)
    from scipy import sparse

    return sparse.csr_matrix((vals_a, (cols_a, rows)), shape=(width, k))


def _apply(m: np.ndarray, wt: object) -> np.ndarray:
    """``m @ W`` for counts ``m`` (``R x K``) and the transposed design ``wt`` (``D x K``): ``R x D``."""
    return np.asarray(wt @ m.T).T


def replicate_units(
    units: dict[str, np.ndarray], n_classes: int, n_groups: int, n_boot: int, rng: np.random.Generator, collapsed: bool,
    n_bins: int, *, chunk_classes: int | None = None,
) -> Iterator[GroupStats]:
    """Chunks of ``(R, G, ...)`` replicate statistics (``n_bins`` confidence bins).

    ``chunk_classes`` (default ``n_classes``) is the class count the chunk size is computed
    from: units in a compressed class layout (:class:`~evalsuite.slices.metrics.ClassMap`) pass
    the model's, so the chunks -- and with them the order of the random draws -- are the
    full-width computation's.

    Per group and replicate, the resampled count of every unit is drawn -- row draw counts of
    :func:`evalsuite.stats.resample_counts` for rows, a multinomial over cells for collapsed cells -- and
    mapped to statistics by one matrix product with the group's design matrix. For cells, the
    confidence and NLL sums get their within-cell resampling noise (normal, exact mean and
    variance given the counts).
    """
    c = n_classes
    nb = n_bins
    layout, _ = _layout(c, nb, collapsed)
    groups = units["group"]
    bounds = np.searchsorted(groups, np.arange(n_groups + 1)) if not collapsed else None
    designs = []
    for g in range(n_groups):
        sel = slice(bounds[g], bounds[g + 1]) if bounds is not None else np.flatnonzero(groups == g)
        counts = units["count"][sel].astype(np.float64)
        total = counts.sum()
        designs.append((int(total), counts / total if total else counts, _design(units, sel, c, nb, collapsed)))
    biggest = max((len(d[1]) for d in designs), default=1)
    per_rep = max(biggest if not collapsed else 1, n_groups * (3 * (c if chunk_classes is None else chunk_classes) + 4 * nb))
    chunk = max(1, min(n_boot, STATS_ELEMENTS // max(1, per_rep)))
    for r0 in range(0, n_boot, chunk):
        r = min(chunk, n_boot - r0)
        pos = np.zeros((r, n_groups, c))
        tp = np.zeros((r, n_groups, c))
        predc = np.zeros((r, n_groups, c))
        bin_n = np.zeros((r, n_groups, nb))
        bin_correct = np.zeros((r, n_groups, nb))
        bin_conf = np.zeros((r, n_groups, nb))
        nll = np.zeros((r, n_groups))
        for g, (n_g, pvals, w) in enumerate(designs):
            if n_g == 0:
                continue
            if collapsed:
                m = rng.multinomial(n_g, pvals, size=r).astype(np.float64)
            else:
                m = resample_counts(rng, n_g, r)
            out = _apply(m, w)
            pos[:, g] = out[:, layout["pos"]]
            tp[:, g] = out[:, layout["tp"]]
            predc[:, g] = out[:, layout["predc"]][:, :c]
            bn = out[:, layout["bin_n"]][:, :nb]
            bin_n[:, g] = bn
            bin_correct[:, g] = out[:, layout["bin_correct"]][:, :nb]
            cm = out[:, layout["conf_mean"]][:, :nb]
            nm = out[:, layout["nll_mean"]][:, 0]
            if collapsed:
                cv = out[:, layout["conf_var"]][:, :nb]
                nv = out[:, layout["nll_var"]][:, 0]
                cm = np.clip(cm + np.sqrt(cv) * rng.standard_normal(cm.shape), 0.0, bn)
                nm = np.maximum(nm + np.sqrt(nv) * rng.standard_normal(r), 0.0)
            bin_conf[:, g] = cm
            nll[:, g] = nm
        yield GroupStats(pos, tp, predc, bin_n, bin_correct, bin_conf, nll)


def replicates(
    rows: RowStats, codes: np.ndarray, n_groups: int, n_boot: int, seed: int, method: str = "auto", *,
    chunk_classes: int | None = None,
) -> tuple[str, Iterator[GroupStats]]:
    """(method used, iterator over chunks of replicate statistics); ``chunk_classes``: see
    :func:`replicate_units`."""
    if method not in METHODS:
        raise ValueError(f"bootstrap method must be one of {', '.join(METHODS)}, got {method!r}")
    rng = np.random.default_rng(seed)
    n = len(rows)
    c = rows.n_classes
    cells = None
    if method == "auto":
        if n * n_boot <= ROWS_BUDGET:
            method = "rows"
        else:
            cells = unit_table(rows, codes, collapse=True)
            method = choose_method(n, n_boot, len(cells["count"]))
    if method == "rows":
        return method, replicate_units(unit_table(rows, codes, collapse=False), c, n_groups, n_boot, rng, False,
                                       rows.n_bins, chunk_classes=chunk_classes)
    if cells is None:
        cells = unit_table(rows, codes, collapse=True)
    return method, replicate_units(cells, c, n_groups, n_boot, rng, True, rows.n_bins, chunk_classes=chunk_classes)

