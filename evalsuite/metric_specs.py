"""Metric paths a run will produce, declared before any prediction.

Every suite says, from its options and the run's conditions, which gate paths its
``summarize`` can write (:meth:`evalsuite.suites.base.Suite.metric_specs`). The policy is
checked against these declarations in the first second of a run, so a typo'd metric, a
``ci_lower`` bound on an exact count, or a ``max_drop`` without a baseline is an exit 2
before minutes of predictions, not a surprise at gating time.

A declaration may over-approximate (a metric that only appears with a baseline, or only when
the data has enough groups, is still declared): the pre-flight check must never refuse a
metric the run would have produced. Gating itself still checks the finished results.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

WILDCARD = "*"


@dataclass(frozen=True)
class MetricSpec:
    """One declared gate path.

    ``pattern`` is a dotted path whose ``*`` segments stand for one or more data-dependent
    segments (class names, slice groups, column names: keys that may themselves hold dots).
    ``ci`` says whether the leaf carries a confidence interval (``bound: ci_lower|ci_upper``
    is only meaningful then).
    """

    pattern: str
    ci: bool = True
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = [".+" if seg == WILDCARD else re.escape(seg) for seg in self.pattern.split(".")]
        object.__setattr__(self, "_regex", re.compile(r"\.".join(parts)))

    def matches(self, path: str) -> bool:
        """Whether the concrete gate path ``path`` is one this spec declares."""
        return self._regex.fullmatch(path) is not None


def specs_under(prefix: str, leaves: Iterable[str], ci: bool = True) -> list[MetricSpec]:
    """``prefix.<leaf>`` for every leaf, all with the same interval flag."""
    return [MetricSpec(f"{prefix}.{leaf}", ci) for leaf in leaves]


def match_specs(path: str, specs: Sequence[MetricSpec]) -> list[MetricSpec]:
    """The specs that declare ``path`` (empty: the run will not produce it)."""
    return [s for s in specs if s.matches(path)]


def spec_paths(specs: Sequence[MetricSpec]) -> list[str]:
    """The declared patterns, de-duplicated in order (for did-you-mean and listings)."""
    return list(dict.fromkeys(s.pattern for s in specs))
