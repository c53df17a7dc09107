"""Registries: definition order, lazy loading, plug-in errors (on private registries), and the
model-format registry's messages, which must stay exactly what the if-chains they replaced said."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint

import pytest

from evalsuite.errors import ModelError, UsageError
from evalsuite.registry import Registry


def _module(monkeypatch, name: str, body: str) -> None:
    mod = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, mod)
    exec(body, mod.__dict__)


def _entry_points(monkeypatch, *eps: EntryPoint) -> None:
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [e for e in eps if e.group == group])
    monkeypatch.delenv("EVALSUITE_DISABLE_PLUGINS", raising=False)


def test_modules_load_on_first_query_in_module_order(monkeypatch):
    reg = Registry("thing", modules=("fake_a", "fake_b"))
    monkeypatch.setitem(sys.modules, "fake_b", types.ModuleType("fake_b"))
    monkeypatch.setitem(sys.modules, "fake_a", types.ModuleType("fake_a"))
    reg.register("b2", object(), origin="fake_b")  # fake_b "imported" first
    reg.register("a1", object(), origin="fake_a")
    reg.register("b1", object(), origin="fake_b")
    reg.register("z", object(), origin="plugin_mod")
    assert reg.ordered() == ["a1", "b2", "b1", "z"]
    assert reg.names() == ["a1", "b1", "b2", "z"]


def test_import_plugins_register_and_broken_ones_are_one_line_usage_errors(monkeypatch, tmp_path):
    reg = Registry("thing", group="test.things")
    holder = types.ModuleType("registry_holder_xyz")
    holder.REG = reg
    monkeypatch.setitem(sys.modules, "registry_holder_xyz", holder)
    (tmp_path / "good_plugin_xyz.py").write_text(
        "import registry_holder_xyz\nregistry_holder_xyz.REG.register('good', 1, 'from a plug-in')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "good_plugin_xyz", raising=False)
    _entry_points(monkeypatch, EntryPoint("good", "good_plugin_xyz", "test.things"))
    try:
        assert reg.names() == ["good"] and reg.description("good") == "from a plug-in"
    finally:
        sys.modules.pop("good_plugin_xyz", None)

    reg2 = Registry("thing", group="test.things")
    _entry_points(monkeypatch, EntryPoint("broken", "no_such_module_xyz", "test.things"))
    with pytest.raises(UsageError) as e:
        reg2.names()
    msg = str(e.value)
    assert "\n" not in msg and "thing plug-in failed to load" in msg and "'broken'" in msg and "ModuleNotFoundError" in msg
    monkeypatch.setenv("EVALSUITE_DISABLE_PLUGINS", "1")
    assert Registry("thing", group="test.things").names() == []


def test_lazy_plugins_resolve_only_when_chosen(monkeypatch):
    _module(monkeypatch, "lazy_plugin_mod", "class Thing:\n    name = 'lazy'\n")
    seen = []
    reg = Registry("suite", group="test.suites", lazy_plugins=True, check=lambda n, o: seen.append((n, o)))
    _entry_points(monkeypatch, EntryPoint("lazy", "lazy_plugin_mod:Thing", "test.suites"),
                  EntryPoint("gone", "lazy_plugin_mod:Missing", "test.suites"))
    assert reg.names() == ["gone", "lazy"] and seen == []
    assert reg.get("lazy") is sys.modules["lazy_plugin_mod"].Thing and seen[0][0] == "lazy"
    with pytest.raises(UsageError, match=r"suite plug-in failed to load: entry point 'gone' .*AttributeError"):
        reg.get("gone")


def test_model_format_order_and_messages_match_the_old_if_chains(tmp_path):
    from evalsuite.models import (
        SUPPORTED_MODELS,
        TORCHSCRIPT_SUFFIXES,
        inspect_model,
        list_entries,
        load_model,
    )
    from evalsuite.models.formats import find_format, formats

    assert [f.name for f in formats()[:4]] == ["onnx", "torchscript", "torch.export", "timm"]
    assert SUPPORTED_MODELS == "a .onnx file, a TorchScript .pt, a torch.export .pt2 or timm:<name> --checkpoint FILE"
    assert TORCHSCRIPT_SUFFIXES == (".pt", ".ts", ".torchscript")
    assert [n for n, _ in list_entries()][:4] == ["<file>.onnx", "<file>.pt", "<file>.pt2", "timm:<name>"]
    for suffix, name in ((".onnx", "onnx"), (".PT", "torchscript"), (".ts", "torchscript"), (".torchscript", "torchscript"),
                         (".pt2", "torch.export")):
        (tmp_path / f"m{suffix}").write_bytes(b"")
        assert find_format(str(tmp_path / f"m{suffix}")).name == name
    assert find_format("timm:resnet18").name == "timm"
    cases = [
        ("timm:", {}, ModelError, "timm: needs a model name, e.g. timm:resnet18"),
        (str(tmp_path / "nope.onnx"), {}, ModelError, f"no such file or directory: {tmp_path / 'nope.onnx'}"),
        (str(tmp_path), {}, ModelError, f"{tmp_path} is a directory; expected {SUPPORTED_MODELS}"),
        (str(tmp_path / "m.onnx"), {"checkpoint": "w.safetensors"}, UsageError,
         f"--checkpoint applies to timm:<name> models only, not {tmp_path / 'm.onnx'}"),
    ]
    (tmp_path / "w.pth").write_bytes(b"")
    (tmp_path / "x.xyz").write_bytes(b"")
    cases += [
        (str(tmp_path / "w.pth"), {}, ModelError, f"unsupported model {str(tmp_path / 'w.pth')!r} (suffix '.pth') "
         f"(a state dict needs timm:<name> --checkpoint FILE); expected {SUPPORTED_MODELS}"),
        (str(tmp_path / "x.xyz"), {}, ModelError, f"unsupported model {str(tmp_path / 'x.xyz')!r} (suffix '.xyz'); "
         f"expected {SUPPORTED_MODELS}"),
    ]
    for spec, kw, exc, message in cases:
        for fn in (load_model, inspect_model):
            with pytest.raises(exc) as e:
                fn(spec, device="cpu", **kw)
            assert str(e.value) == message


def test_register_suite_decorator_registers_a_checked_suite_class(monkeypatch):
    from evalsuite.suites import SUITES, register_suite
    from evalsuite.suites.base import Suite

    monkeypatch.setattr(SUITES, "_entries", dict(SUITES._entries))  # leave the real registry as it was
    monkeypatch.setattr(SUITES, "_descriptions", dict(SUITES._descriptions))
    monkeypatch.setattr(SUITES, "_origins", dict(SUITES._origins))

    @register_suite("decorated_toy")
    class DecoratedToy(Suite):
        """A toy suite registered with the decorator."""

        name = "decorated_toy"

    assert SUITES.get("decorated_toy") is DecoratedToy
    assert SUITES.description("decorated_toy") == "A toy suite registered with the decorator."
    with pytest.raises(ValueError, match="not the entry point's name"):
        register_suite("other_name")(DecoratedToy)
    with pytest.raises(TypeError, match="not a Suite subclass"):
        register_suite("not_a_suite")(int)
    with pytest.raises(ValueError, match="already registered"):
        register_suite("decorated_toy")(DecoratedToy)
