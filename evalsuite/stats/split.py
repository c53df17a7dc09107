"""Stratified splitting: one implementation, the seeding rule an explicit strategy.

:func:`stratified_split` groups positions by label (classes in ``np.unique`` order), asks a
*sizes* rule how many of every class go to each leading part, asks an *order* strategy which
members of the class come first, cuts the ordered members into parts (the last part takes the
rest) and returns every part as sorted positions. What differs between the callers is stated by
the two arguments, never by a private copy of the loop:

Orders (the seeding rule):

- :func:`hash_order` -- rank by ``blake2b(seed, key, id)`` (:func:`evalsuite.seeding.sample_seeds`),
  ties by id; uses no generator, so a sample's side depends only on (seed, key, its id, its
  class's size), not on sample order or the other classes (the calibration split);
- :func:`shuffle_order` -- ``rng.shuffle`` of each class in turn, one generator for all
  classes (the builtin digits split, the training hold-out);
- :func:`draw_order` -- ``rng.choice(members, take, replace=False)`` per class with at least one
  to take, one generator shared with :func:`allocated_sizes` (``--sample``). ``choice`` draws
  a different stream from ``shuffle`` (Floyd's algorithm for small classes), so the two stay
  separate options: folding one into the other would change every sample already drawn.

Sizes:

- :func:`fraction_sizes` -- per class ``round(f * n_class)`` for every fraction, with the
  rounding named (``"half_up"``: ``floor(f n + 0.5)``; ``"half_even"``: Python's ``round``)
  and optionally at least one sample on each side of a two-part split;
- :func:`allocated_sizes` -- a total spread over classes by largest remainder, at least one per
  class (:func:`allocate`); with fewer slots than classes, classes drawn by frequency.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: ``order(members, take) -> members``: the class's positions with the ``take`` that go to the
#: leading parts first. It may return only those ``take``; the rest then form the last part.
Order = Callable[[np.ndarray, int], np.ndarray]
#: ``sizes(class_counts) -> (K, P)`` members of each class in each of the ``P`` leading parts.
Sizes = Callable[[np.ndarray], np.ndarray]

ROUNDING = ("half_up", "half_even")


def _generator(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


# -------------------------------------------------------------------------------- orders


def hash_order(seed: int, key: str, ids: Any) -> Order:
    """Rank each class by ``blake2b(seed, key, id)``, ties broken by the id (no generator)."""
    from evalsuite.seeding import sample_seeds

    ids = np.asarray(ids).astype(str)
    keys = sample_seeds(seed, key, list(ids))

    def order(members: np.ndarray, take: int) -> np.ndarray:
        return members[np.lexsort((ids[members], keys[members]))]

    return order


def shuffle_order(rng: int | np.random.Generator) -> Order:
    """``rng.shuffle`` every class in turn (one generator across classes, every class shuffled)."""
    gen = _generator(rng)

    def order(members: np.ndarray, take: int) -> np.ndarray:
        gen.shuffle(members)
        return members

    return order


def draw_order(rng: int | np.random.Generator) -> Order:
    """``rng.choice(members, take, replace=False)``; a class with nothing to take draws nothing."""
    gen = _generator(rng)

    def order(members: np.ndarray, take: int) -> np.ndarray:
        if take == 0:
            return members[:0]
        return gen.choice(members, size=take, replace=False)

    return order


# --------------------------------------------------------------------------------- sizes


def _round(x: float, rounding: str) -> int:
    if rounding == "half_up":
        return int(np.floor(x + 0.5))
    if rounding == "half_even":
        return int(round(x))
    raise ValueError(f"rounding must be one of {', '.join(ROUNDING)}, got {rounding!r}")


def fraction_sizes(fractions: float | Sequence[float], rounding: str = "half_up", *, both_sides: bool = False) -> Sizes:
    """Per class ``round(f * n)`` for each fraction ``f`` (each rounded on its own).

    ``both_sides`` (one fraction only): a class of two or more puts at least one sample in each
    part; a class of one goes to the last part.
    """
    fr = [float(fractions)] if np.isscalar(fractions) else [float(f) for f in fractions]
    if rounding not in ROUNDING:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDING)}, got {rounding!r}")
    if both_sides and len(fr) != 1:
        raise ValueError("both_sides needs exactly one fraction")

    def sizes(counts: np.ndarray) -> np.ndarray:
        out = np.zeros((len(counts), len(fr)), dtype=np.int64)
        for c, n in enumerate(counts):
            n = int(n)
            for j, f in enumerate(fr):
                k = _round(f * n, rounding)
                if both_sides:
                    k = min(max(k, 1), n - 1) if n >= 2 else 0
                out[c, j] = k
        return out

    return sizes


def allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Per-class sample counts summing to ``total``: proportional, at least one each (needs total >= K)."""
    n = counts.sum()
    quota = total * counts / n
    alloc = np.minimum(np.maximum(np.floor(quota).astype(np.int64), 1), counts)
    # Largest remainder: add where the quota is furthest above the allocation, take away where
    # the allocation is furthest above the quota (never below one). Ties go to the earlier class.
    while alloc.sum() < total:
        room = np.where(alloc < counts, quota - alloc, -np.inf)
        alloc[int(np.argmax(room))] += 1
    while alloc.sum() > total:
        excess = np.where(alloc > 1, alloc - quota, -np.inf)
        alloc[int(np.argmax(excess))] -= 1
    return alloc


def allocated_sizes(total: int, rng: int | np.random.Generator) -> Sizes:
    """``total`` spread over classes (:func:`allocate`); with fewer slots than classes, ``total``
    classes drawn without replacement, weighted by frequency, get one each (from ``rng``)."""
    gen = _generator(rng)

    def sizes(counts: np.ndarray) -> np.ndarray:
        if total >= len(counts):
            alloc = allocate(counts, total)
        else:
            chosen = gen.choice(len(counts), size=total, replace=False, p=counts / counts.sum())
            alloc = np.zeros(len(counts), dtype=np.int64)
            alloc[chosen] = 1
        return alloc[:, None]

    return sizes


# -------------------------------------------------------------------------------- split


def stratified_split(labels: Any, sizes: Sizes | np.ndarray, order: Order) -> list[np.ndarray]:
    """Sorted int64 positions of each part: ``P`` leading parts sized by ``sizes``, then the rest.

    Classes are the distinct ``labels`` in ``np.unique`` order (pass strings to order them as
    strings); ``sizes`` is called once on the class counts before any ``order`` call (so a shared
    generator draws the allocation first), then ``order`` once per class.
    """
    labels = np.asarray(labels)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    per_class = np.asarray(sizes(counts) if callable(sizes) else sizes, dtype=np.int64)
    if per_class.ndim == 1:  # one leading part
        per_class = per_class[:, None]
    n_lead = per_class.shape[1]
    parts: list[list[np.ndarray]] = [[] for _ in range(n_lead + 1)]
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        cuts = np.concatenate(([0], np.cumsum(per_class[c])))
        take = int(cuts[-1])
        ranked = order(members, take)
        for j in range(n_lead):
            parts[j].append(ranked[cuts[j] : cuts[j + 1]])
        if len(ranked) == len(members):
            parts[-1].append(ranked[take:])
        else:
            parts[-1].append(np.setdiff1d(members, ranked[:take]))
    return [np.sort(np.concatenate(p)).astype(np.int64, copy=False) if p else np.zeros(0, dtype=np.int64) for p in parts]


__all__ = [
    "allocate", "allocated_sizes", "draw_order", "fraction_sizes", "hash_order", "shuffle_order", "stratified_split",
]
