"""Vet a ``torch.export`` ``.pt2`` archive before torch deserialises any of it.

``torch.export.load`` trusts the archive: a weight or constant whose payload config says
``use_pickle: true`` is read with ``torch.load(weights_only=False)``; ``custom_obj_*`` and
``opaque_obj_*`` constants are unpickled; legacy ``data/weights/<model>.pt`` files, the sample
inputs and the pre-2.8 zip layout fall back to ``weights_only=False``; an AOTInductor package
(``data/aotinductor/``) loads a compiled shared library; and a graph node's ``target`` is
resolved as any attribute chain under ``torch`` (``torch.os.system`` included) and called when
the program runs. Any of these runs code chosen by whoever wrote the file.

:func:`read_checked_pt2` reads the file once, checks the bytes with :mod:`zipfile` and
:mod:`json` (plus a ``torch.load(weights_only=True)`` of the sample inputs, which is torch's
restricted unpickler), and returns the same bytes for ``torch.export.load(io.BytesIO(...))``,
so the file cannot change between check and load. Anything it does not understand is refused
(fail closed) with a one-line :class:`~evalsuite.errors.ModelError` naming the archive and the
member. Plain tensors saved by ``torch.export.save`` (``use_pickle: false``) pass.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from evalsuite.errors import ModelError

WEIGHTS_DIR = "data/weights/"
CONSTANTS_DIR = "data/constants/"
MODELS_DIR = "models/"
SAMPLE_INPUTS_DIR = "data/sample_inputs/"
AOTINDUCTOR_DIR = "data/aotinductor/"
PICKLE_SUFFIXES = (".pkl", ".pickle")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The non-``torch.ops`` targets torch.export serialises (torch._export.serde.serialize._SYM_OPS
# and operator.getitem), plus the side-effect-free ``math`` module.
SAFE_TARGETS = frozenset(
    {f"_operator.{n}" for n in (
        "add", "and_", "eq", "floordiv", "ge", "getitem", "gt", "le", "lshift", "lt", "mod", "mul", "ne", "neg",
        "or_", "pos", "pow", "rshift", "sub", "truediv",
    )}
    | {f"torch.{n}" for n in (
        "_sym_sqrt", "sym_float", "sym_int", "sym_ite", "sym_max", "sym_min", "sym_not", "sym_sum",
    )}
)
# Attributes of ``torch.ops`` itself that are not operator namespaces (they load code).
_OPS_NON_NAMESPACES = frozenset({"load_library", "import_module", "loaded_libraries"})


def _refuse(path: str, member: str, why: str) -> ModelError:
    return ModelError(f"refusing {path}: member {member!r} {why}; evalsuite loads only plain-tensor torch.export archives")


def read_checked_pt2(path: str | Path) -> bytes:
    """The bytes of ``path`` once :func:`check_pt2_bytes` has accepted them."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    check_pt2_bytes(data, str(path))
    return data


def check_pt2_archive(path: str | Path) -> None:
    """Refuse ``path`` (ModelError) unless it is a ``.pt2`` archive torch can load without unpickling."""
    read_checked_pt2(path)


def check_pt2_bytes(data: bytes, path: str) -> None:
    """Refuse an archive that would make ``torch.export.load`` unpickle or run code (see module docstring)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ModelError(f"not a torch.export program: {path} (not a zip archive: {exc})") from None
    members = _members(infos, path)

    def read(rel: str) -> bytes:
        try:
            return zf.read(members[rel])
        except Exception as exc:  # noqa: BLE001 - any failure to read a member is a refusal
            raise _refuse(path, rel, f"cannot be read ({type(exc).__name__})") from None

    if "archive_format" not in members:
        raise _refuse(path, "archive_format", "is missing (an old torch.export layout, whose weights are "
                      "pickled); re-save it with torch.export.save")
    if read("archive_format").strip() != b"pt2":
        raise _refuse(path, "archive_format", "is not 'pt2'")
    for rel in members:
        if rel.startswith(AOTINDUCTOR_DIR):
            raise _refuse(path, rel, "is an AOTInductor compiled library (native code)")
        if rel.lower().endswith(PICKLE_SUFFIXES):
            raise _refuse(path, rel, "is a pickle file")
        if rel.startswith((WEIGHTS_DIR, CONSTANTS_DIR)) and rel.endswith(".pt"):
            raise _refuse(path, rel, "is a pickled legacy weights file")
    models = [rel[len(MODELS_DIR) : -len(".json")] for rel in members
              if rel.startswith(MODELS_DIR) and rel.endswith(".json")]
    if not models:
        raise _refuse(path, MODELS_DIR, "holds no program (models/<name>.json)")
    for name in models:
        _check_program(path, f"{MODELS_DIR}{name}.json", read)
        _check_payloads(path, f"{WEIGHTS_DIR}{name}_weights_config.json", WEIGHTS_DIR, ("weight_",), members, read)
        _check_payloads(path, f"{CONSTANTS_DIR}{name}_constants_config.json", CONSTANTS_DIR, ("tensor_",), members,
                        read)
        sample = f"{SAMPLE_INPUTS_DIR}{name}.pt"
        if sample in members:
            _check_sample_inputs(path, sample, read(sample))


def _members(infos: list[zipfile.ZipInfo], path: str) -> dict[str, str]:
    """{name below the archive's root folder: full member name}; one root, no duplicates."""
    if not infos:
        raise ModelError(f"not a torch.export program: {path} (an empty zip archive)")
    roots = {info.filename.split("/", 1)[0] for info in infos}
    if len(roots) != 1:
        raise _refuse(path, sorted(roots)[1], "lies outside the archive's single root folder")
    members: dict[str, str] = {}
    for info in infos:
        name = info.filename
        rel = name.split("/", 1)[1] if "/" in name else ""
        if name.endswith("/") or not rel:
            continue
        if "\\" in name or any(part in ("", ".", "..") for part in rel.split("/")):
            raise _refuse(path, name, "has a malformed name")
        if rel in members:
            raise _refuse(path, name, "appears twice (a reader could pick either copy)")
        members[rel] = name
    return members


def _json(path: str, member: str, raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _refuse(path, member, f"is not valid JSON ({type(exc).__name__})") from None


def _check_payloads(
    path: str, config: str, directory: str, prefixes: tuple[str, ...], members: dict[str, str], read: Any
) -> None:
    """Every entry of a weights/constants config is a raw (non-pickled) tensor stored in the archive."""
    if config not in members:
        raise _refuse(path, config, "is missing (torch would fall back to a pickled legacy file)")
    doc = _json(path, config, read(config))
    entries = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(entries, dict):
        raise _refuse(path, config, "is malformed (no 'config' object)")
    for fqn, meta in entries.items():
        where = f"{config}[{fqn!r}]"
        if not isinstance(meta, dict):
            raise _refuse(path, where, "is malformed (not an object)")
        use_pickle = meta.get("use_pickle")
        if use_pickle is True:
            raise _refuse(path, where, "is pickled (use_pickle: true), which torch loads with weights_only=False")
        if use_pickle is not False:
            raise _refuse(path, where, f"is malformed (use_pickle = {use_pickle!r}, expected false)")
        name = meta.get("path_name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise _refuse(path, where, f"is malformed (path_name = {name!r})")
        if not name.startswith(prefixes):
            raise _refuse(path, where, f"names {name!r}, a pickled object rather than a plain tensor")
        if f"{directory}{name}" not in members:
            raise _refuse(path, where, f"names {directory}{name}, which the archive lacks")
        if not isinstance(meta.get("tensor_meta"), dict):
            raise _refuse(path, where, "is malformed (no tensor_meta)")


def _targets(node: Any, out: list[str], depth: int = 0) -> None:
    """Every graph node ``target`` in a serialised program (nodes of nested subgraphs included)."""
    if depth > 200:
        raise RecursionError("nesting")
    if isinstance(node, dict):
        target = node.get("target")
        if "target" in node and ("inputs" in node or "outputs" in node):
            out.append(target if isinstance(target, str) else repr(target))
        for value in node.values():
            _targets(value, out, depth + 1)
    elif isinstance(node, list):
        for value in node:
            _targets(value, out, depth + 1)


def safe_target(target: str) -> bool:
    """Whether a serialised call target resolves to an operator rather than arbitrary Python."""
    if target in SAFE_TARGETS:
        return True
    parts = target.split(".")
    if target.startswith("math.") and len(parts) == 2 and _NAME.match(parts[1]) and not parts[1].startswith("_"):
        return True
    if parts[:2] != ["torch", "ops"] or len(parts) not in (4, 5):
        return False
    rest = parts[2:]
    return (all(_NAME.match(p) and not p.startswith("__") for p in rest)
            and rest[0] not in _OPS_NON_NAMESPACES)


def _check_program(path: str, member: str, read: Any) -> None:
    doc = _json(path, member, read(member))
    targets: list[str] = []
    try:
        _targets(doc, targets)
    except RecursionError:
        raise _refuse(path, member, "is nested too deeply") from None
    for target in targets:
        if not safe_target(target):
            shown = target if len(target) <= 80 else target[:77] + "..."
            raise _refuse(path, member, f"calls {shown!r}, which is not a torch operator")


def _check_sample_inputs(path: str, member: str, raw: bytes) -> None:
    """torch reads sample inputs with weights_only=True, then retries with False: only the first may succeed."""
    import torch

    if not raw:  # torch reads an empty record as "no sample inputs"
        return
    try:
        torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever the restricted unpickler refuses, we refuse
        first = " ".join(str(exc).split())[:100]
        raise _refuse(path, member, f"needs the unrestricted unpickler ({type(exc).__name__}: {first})") from None
