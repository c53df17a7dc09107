"""Name registries that make every plugin listable and import heavy code only when chosen.

Entries are either objects or lazy ``"module:attr"`` strings (as in lm-evaluation-harness), so
``evalsuite --help`` never imports torchattacks or netcal. Unknown names raise a
:class:`~evalsuite.errors.UsageError` with "did you mean" suggestions.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from typing import Any

from evalsuite.errors import UsageError


def did_you_mean(name: str, choices: list[str] | tuple[str, ...], n: int = 3) -> str:
    """A ' (did you mean X?)' suffix for error messages, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


class Registry:
    """A mapping from names to objects, resolving ``"module:attr"`` strings on first use."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, target: Any, description: str = "") -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = target
        self._descriptions[name] = description

    def names(self) -> list[str]:
        return sorted(self._entries)

    def description(self, name: str) -> str:
        self._check(name)
        return self._descriptions[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _check(self, name: str) -> None:
        if name not in self._entries:
            raise UsageError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}; "
                f"valid: {', '.join(self.names())}"
            )

    def get(self, name: str) -> Any:
        self._check(name)
        target = self._entries[name]
        if isinstance(target, str) and ":" in target:
            module_name, attr = target.split(":", 1)
            target = getattr(importlib.import_module(module_name), attr)
            self._entries[name] = target
        return target
