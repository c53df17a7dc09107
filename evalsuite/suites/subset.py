"""The perturbation subset: the corruption and device suites' cost-bounded tier.

A perturbation suite (corruption, device) may measure its conditions on a seeded stratified
subset of the data instead of on every sample, so its cost is bounded however large the data
is: every condition costs at most ``n`` images instead of the dataset's ``N``. Two options, in
both suites (``suites: {corruption: {ci_half_width: 0.02}}``):

- ``n``: the subset size (an integer, or ``all`` / unset: every sample);
- ``ci_half_width``: a target half-width of the 95% interval of a condition's accuracy; the size
  is :func:`evalsuite.stats.proportion_sample_size` of it at the worst case ``p = 0.5``
  (0.02 -> 2401 samples). Give one of the two.

``evalsuite run --perturbation-samples N|all`` / ``--ci-half-width H`` set them for every suite
of the run that has them (:func:`apply_budget`). The subset is
:func:`evalsuite.data.sampling.subset_positions` of (labels, ``n``, run seed), the rule the
adversarial suite uses for its own ``n``: a function of the data, labels, seed and ``n`` only, the
same for every condition of a suite (and for both suites at the same ``n``), so conditions stay
comparable, drops pair each perturbed sample with its own clean prediction, and the plan, shards,
``--resume`` and baselines all see the same samples. A subset at least as large as the data is
the data itself: no ``indices`` on the conditions and no record in their params, so such a run is
identical to one without the options. A strict subset is recorded in every condition's params
(``subset: {n, seed}``), and the exact ``n`` is in every metric leaf.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from evalsuite.errors import UsageError

#: The suite options this module defines (what ``--perturbation-samples`` / ``--ci-half-width`` replace).
BUDGET_KEYS = ("n", "ci_half_width")


class SubsetOptions:
    """Base of a perturbation suite's ``Options`` dataclass, which declares the two fields last::

        n: int | str | None = None  # subset size; "all" or null: every sample (unless ci_half_width)
        ci_half_width: float | None = None  # target 95% CI half-width of an accuracy (worst case p = 0.5)

    and calls :meth:`check_subset` from its ``__post_init__`` (the checks live here, once).
    """

    n: int | str | None
    ci_half_width: float | None
    suite_label: ClassVar[str] = "suite"

    def check_subset(self) -> None:
        """Normalise ``n`` (``all`` -> None, ``"500"`` -> 500) and refuse bad or conflicting values."""
        where = f"suite '{self.suite_label}'"
        if isinstance(self.n, str):
            text = self.n.strip().lower()
            if text == "all":
                self.n = None
            elif text.isdigit():
                self.n = int(text)
            else:
                raise UsageError(f"{where}: option n must be a positive integer or 'all', got {self.n!r}")
        if self.n is not None and self.n < 1:
            raise UsageError(f"{where}: option n must be a positive integer or 'all', got {self.n!r}")
        h = self.ci_half_width
        if h is not None and not 0.0 < h <= 0.5:
            raise UsageError(f"{where}: option ci_half_width must be a number in (0, 0.5] (0.02: +/-2 points at 95%), "
                             f"got {h!r}")
        if self.n is not None and h is not None:
            raise UsageError(f"{where}: give option n or option ci_half_width, not both")

    def subset_size(self) -> int | None:
        """The requested subset size: ``n``, the size for ``ci_half_width``, or None (every sample)."""
        if self.ci_half_width is not None:
            from evalsuite.stats import proportion_sample_size

            return proportion_sample_size(self.ci_half_width)
        return self.n if isinstance(self.n, int) else None


@dataclass(frozen=True)
class Subset:
    """The samples a perturbation suite's conditions cover."""

    positions: np.ndarray | None  # dataset positions; None: every sample
    total: int  # samples in the data
    requested: int | None  # the subset size asked for (None: every sample)
    target_half_width: float | None  # the ci_half_width it was sized from, if any
    seed: int

    @property
    def n(self) -> int:
        return self.total if self.positions is None else int(len(self.positions))

    def params(self) -> dict[str, Any]:
        """What a condition's params record (empty for the whole data, so such runs are unchanged)."""
        return {} if self.positions is None else {"subset": {"n": self.n, "seed": self.seed}}

    def report(self) -> dict[str, Any]:
        """The scorecard's line: subset size, data size, target and worst-case half-width."""
        from evalsuite.stats import proportion_half_width

        return {"n": self.n, "of": self.total, "subset": self.positions is not None,
                "target_half_width": self.target_half_width, "requested": self.requested,
                "half_width_worst_case": proportion_half_width(self.n) if self.n else None}


def perturbation_subset(opts: SubsetOptions, labels: np.ndarray, seed: int) -> Subset:
    """The subset ``opts`` asks for on data with these ``labels`` (the run's, over every position)."""
    from evalsuite.data.sampling import subset_positions

    total = len(labels)
    size = opts.subset_size()
    positions = None
    if size is not None and size < total:
        positions = subset_positions(np.asarray(labels), size, int(seed))
    return Subset(positions, total, size, opts.ci_half_width, int(seed))


def apply_budget(options: Mapping[str, Any], budget: Mapping[str, Any]) -> dict[str, Any]:
    """A suite's options with the run's ``--perturbation-samples`` / ``--ci-half-width`` (``budget``,
    ``{"n": ...}`` or ``{"ci_half_width": ...}``) in place of the suite file's ``n`` / ``ci_half_width``."""
    if not budget:
        return dict(options)
    return {**{k: v for k, v in options.items() if k not in BUDGET_KEYS}, **budget}


def subset_of(preds: Any) -> dict[str, Any] | None:
    """The ``subset`` record of the first of ``preds`` that has one (None: every sample)."""
    for p in preds:
        rec = p.params.get("subset") if isinstance(p.params, Mapping) else None
        if isinstance(rec, Mapping):
            return dict(rec)
    return None


def takes_budget(suite_class: type) -> bool:
    """Whether a suite class has the subset options (its ``Options`` derive from :class:`SubsetOptions`)."""
    options = getattr(suite_class, "Options", None)
    return isinstance(options, type) and issubclass(options, SubsetOptions)
