"""Name registries that make every plugin listable and import heavy code only when chosen.

Entries are either objects or lazy ``"module:attr"`` strings (as in lm-evaluation-harness), so
``evalsuite --help`` never imports torchattacks or netcal. Unknown names raise a
:class:`~evalsuite.errors.UsageError` with "did you mean" suggestions.

Things register where they are defined (``@register_corruption`` on a corruption's apply
function, ``@register_model_format`` on a loader class, as timm's ``@register_model``): a
registry built with ``modules=`` imports those defining modules the first time it is listed or
queried, never at import time, so ``evalsuite --help`` stays fast.

Third-party plug-ins come in through Python entry points (``group=``, e.g.
``evalsuite.corruptions``), discovered on the same first query, as pytest and
lm-evaluation-harness do. Two kinds of group:

- *import* groups (corruptions, model formats): the entry point names a module (or an object
  in one); importing it runs its registration decorators.
- *lazy* groups (suites): the entry point ``name = module:attr`` registers ``name`` lazily;
  the module is imported only when that name is chosen.

A plug-in that fails to import, register or resolve is a one-line :class:`UsageError` (exit 2)
naming the entry point, never a traceback. Plug-ins are only ever the installed distributions
the user chose: nothing loads a module named by a model file, a manifest, a policy or a suite
file. ``EVALSUITE_DISABLE_PLUGINS=1`` switches entry-point loading off (as
``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` does for pytest).
"""

from __future__ import annotations

import difflib
import importlib
import itertools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from evalsuite.errors import UsageError

DISABLE_PLUGINS_ENV = "EVALSUITE_DISABLE_PLUGINS"
_SEQ = itertools.count()


def did_you_mean(name: str, choices: list[str] | tuple[str, ...], n: int = 3) -> str:
    """A ' (did you mean X?)' suffix for error messages, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


def _one_line(text: object, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def plugins_disabled() -> bool:
    return os.environ.get(DISABLE_PLUGINS_ENV, "").strip().lower() not in ("", "0", "false", "no")


class Registry:
    """A mapping from names to objects, resolving ``"module:attr"`` strings on first use.

    Args:
        kind: what is registered, for messages (``"corruption"``).
        modules: built-in modules that register their entries when imported; imported, in
            this order, on the first query. Their order (then the order of registration within
            a module) is :meth:`ordered`'s order, whoever imported them first.
        group: the entry-point group of third-party plug-ins, loaded on the first query.
        lazy_plugins: ``group`` entry points are ``name = module:attr`` registrations resolved
            only when chosen (suites), instead of modules imported on the first query.
        check: called as ``check(name, obj)`` on a plug-in's resolved object; raises to refuse it.
    """

    def __init__(
        self,
        kind: str,
        *,
        modules: Sequence[str] = (),
        group: str | None = None,
        lazy_plugins: bool = False,
        check: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, Any] = {}
        self._descriptions: dict[str, str] = {}
        self._origins: dict[str, tuple[str, int]] = {}  # name -> (defining module, registration number)
        self._plugins: dict[str, str] = {}  # name -> the entry point that brought it, for messages
        self._modules = tuple(modules)
        self._lazy_plugins = lazy_plugins
        self._check_plugin = check
        self._pending = bool(self._modules) or group is not None
        self._lock = threading.RLock()
        self._loading_plugin: str | None = None

    # -- registration ---------------------------------------------------------------------------
    def register(self, name: str, target: Any, description: str = "", *, origin: str | None = None) -> None:
        """Register ``target`` under ``name``; ``origin`` (the defining module) orders :meth:`ordered`."""
        with self._lock:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = target
            self._descriptions[name] = description
            if origin is None:
                origin = target.split(":", 1)[0] if isinstance(target, str) else getattr(target, "__module__", "")
            self._origins[name] = (str(origin), next(_SEQ))
            if self._loading_plugin is not None:
                self._plugins[name] = self._loading_plugin

    # -- queries (each loads the defining modules and plug-ins first) ---------------------------
    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def ordered(self) -> list[str]:
        """Names in definition order: built-in modules in ``modules`` order, then plug-ins."""
        self._load()
        ranks: dict[str, int] = {m: i for i, m in enumerate(self._modules)}
        for origin, _ in sorted(self._origins.values(), key=lambda o: o[1]):
            ranks.setdefault(origin, len(ranks))
        return sorted(self._entries, key=lambda n: (ranks[self._origins[n][0]], self._origins[n][1]))

    def description(self, name: str) -> str:
        self._check(name)
        return self._descriptions[name]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _check(self, name: str) -> None:
        self._load()
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
            plugin = self._plugins.get(name)
            if plugin is None:
                target = getattr(importlib.import_module(module_name), attr)
            else:
                try:
                    target = getattr(importlib.import_module(module_name), attr)
                    if self._check_plugin is not None:
                        self._check_plugin(name, target)
                except Exception as exc:  # noqa: BLE001 - a broken plug-in is the user's one-line problem
                    raise UsageError(self._plugin_error(plugin, exc)) from None
            self._entries[name] = target
        return target

    # -- loading --------------------------------------------------------------------------------
    def _load(self) -> None:
        if not self._pending:
            return
        with self._lock:
            if not self._pending:
                return
            self._pending = False
            try:
                for module in self._modules:
                    importlib.import_module(module)
                if self.group is not None and not plugins_disabled():
                    self._load_plugins()
            except BaseException:
                self._pending = True  # a later query fails the same way instead of seeing half a registry
                raise

    def _load_plugins(self) -> None:
        from importlib.metadata import entry_points

        eps = sorted(entry_points(group=self.group), key=lambda e: (e.name, e.value))
        for ep in eps:
            dist = getattr(getattr(ep, "dist", None), "name", None)
            where = f"entry point {ep.name!r} = {ep.value!r} in group {self.group!r}" + (f" (distribution {dist})" if dist else "")
            if self._lazy_plugins:
                self._register_lazy(ep, where, dist)
                continue
            self._loading_plugin = where
            try:
                ep.load()
            except Exception as exc:  # noqa: BLE001 - any failure of third-party code: one line, exit 2
                raise UsageError(self._plugin_error(where, exc)) from None
            finally:
                self._loading_plugin = None

    def _register_lazy(self, ep: Any, where: str, dist: str | None) -> None:
        module, _, attr = str(ep.value).partition(":")
        if not module.strip() or not attr.strip():
            raise UsageError(self._plugin_error(where, f"expected '{ep.name} = package.module:Object'"))
        if ep.name in self._entries:
            if self._plugins.get(ep.name) == where:
                return  # already registered by an earlier (failed) load of this registry
            raise UsageError(self._plugin_error(where, f"{self.kind} {ep.name!r} is already registered"))
        self._loading_plugin = where
        try:
            self.register(ep.name, f"{module.strip()}:{attr.strip()}", f"plug-in {self.kind} from {dist or ep.value}",
                          origin=module.strip())
        finally:
            self._loading_plugin = None

    def _plugin_error(self, where: str, exc: BaseException | str) -> str:
        detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        return f"{self.kind} plug-in failed to load: {where}: {_one_line(detail)}"
