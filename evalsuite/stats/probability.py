"""From logits to probabilities, predictions and per-row losses, in one place.

Every suite decides "which class did the model predict" and "was it right" here, so a row with
a NaN or infinite logit is handled the same way everywhere: it predicts no class (``-1``),
counts as an error, and is left out of probability-based losses by the caller.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Rows per chunk are chosen so a float64 block stays near this many elements.
_CHUNK_ELEMENTS = 1 << 22


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy view of an array-like or torch tensor (copied to the CPU when needed)."""
    if isinstance(x, np.ndarray):
        return x
    if type(x).__module__.startswith("torch") and hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def finite_rows(logits: np.ndarray) -> np.ndarray:
    """Per-row flag: every logit finite."""
    return np.all(np.isfinite(logits), axis=1)


def softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64 (stable); NaN rows stay NaN."""
    z = np.asarray(to_numpy(logits), dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def per_sample_nll(logits: Any, labels: Any) -> np.ndarray:
    """Exact ``-log softmax(z)_y`` per row in float64: ``max + log sum exp(z - max) - z_y``
    (log-sum-exp, no probability clipping). Non-finite rows give non-finite losses."""
    z = to_numpy(logits)
    y = np.asarray(to_numpy(labels), dtype=np.int64)
    n, c = z.shape
    out = np.empty(n, dtype=np.float64)
    rows = max(1, _CHUNK_ELEMENTS // max(c, 1))
    for start in range(0, n, rows):
        blk = np.asarray(z[start : start + rows], dtype=np.float64)
        m = blk.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(blk - m).sum(axis=1))
        out[start : start + rows] = lse - blk[np.arange(len(blk)), y[start : start + rows]]
    return out


def predicted_labels(logits: np.ndarray) -> np.ndarray:
    """argmax per row; rows with any non-finite logit get -1 (never counted correct)."""
    logits = np.asarray(logits)
    if logits.ndim == 2 and logits.shape[1] == 0:
        return np.full(len(logits), -1, dtype=np.int64)
    finite = finite_rows(logits)
    pred = np.argmax(np.where(np.isfinite(logits), logits, -np.inf), axis=1)
    return np.where(finite, pred, -1)


def correct(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """0/1 float64 per row: the finite-logit prediction equals the label."""
    return (predicted_labels(logits) == np.asarray(labels)).astype(np.float64)


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """0/1 float64 per row: the label is among the ``k`` highest logits, ties broken as scikit-learn does.

    The rule is ``sklearn.metrics.top_k_accuracy_score``'s exactly: it ranks classes by a stable
    ascending sort reversed, so among equal logits the *higher* class index ranks first. A row
    counts as correct when ``#{j: z_j > z_y} + #{j > y: z_j = z_y} < k``; counting instead of
    partitioning (``argpartition`` picks arbitrarily among ties) makes the result deterministic
    and independent of the NumPy version. Rows with a non-finite logit count as wrong, as in
    :func:`correct`. Note that this tie rule differs from :func:`predicted_labels` (``argmax``,
    the *lower* index wins), so on tied rows top-1 accuracy and ``topk_correct(..., 1)`` can disagree.
    """
    z = np.asarray(to_numpy(logits))
    y = np.asarray(to_numpy(labels), dtype=np.int64)
    n, c = z.shape
    out = np.zeros(n, dtype=np.float64)
    if c == 0 or k <= 0:
        return out
    rows = max(1, _CHUNK_ELEMENTS // c)
    cls = np.arange(c)
    for start in range(0, n, rows):
        blk, yb = z[start : start + rows], y[start : start + rows]
        zy = blk[np.arange(len(blk)), yb][:, None]
        ahead = (blk > zy).sum(axis=1) + ((blk == zy) & (cls[None, :] > yb[:, None])).sum(axis=1)
        out[start : start + rows] = (ahead < k) & finite_rows(blk)
    return out
