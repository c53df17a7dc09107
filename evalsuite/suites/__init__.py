"""Suite registry: every suite ``evalsuite run`` can run, imported only when chosen."""

from __future__ import annotations

from evalsuite.registry import Registry

SUITES = Registry("suite")
SUITES.register("clean", "evalsuite.suites.clean:CleanSuite", "accuracy, top-5, per-class P/R/F1, NLL, confusion, gallery")


def list_entries() -> list[tuple[str, str]]:
    """(name, description) of every registered suite."""
    return [(n, SUITES.description(n)) for n in SUITES.names()]
