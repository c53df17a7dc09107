"""Device profiles: named chains of device operations, built-in or from a user's YAML file.

A profile file holds one profile::

    name: my-doorbell
    description: Doorbell camera at dusk, H.264-like compression
    chain:                     # applied in order, as light travels: optics, sensor, ISP, codec
      - op: lens_blur
        radius: 0.006
      - op: sensor_noise
        iso: 3200
      - op: jpeg
        severity: 4            # a step may start from an operation's severity ladder ...
        subsampling: "4:2:0"   # ... and override some of its parameters

or several, as a list or a mapping under ``profiles:`` (``profiles: [{name: ..., chain: ...}]``
or ``profiles: {my-doorbell: {description: ..., chain: [...]}}``). Every operation and
parameter is validated when the file is read: an unknown operation or parameter raises a
:class:`~evalsuite.errors.UsageError` listing the valid ones (with "did you mean"), a bad
value says which file, profile, step and parameter, and what was expected.

Built-in profiles live in ``evalsuite/devices/profiles/*.yaml`` (one per file, same format).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from evalsuite.devices.base import DeviceOp, InvalidParameter
from evalsuite.errors import UsageError
from evalsuite.registry import did_you_mean

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: Names used by the device suite's metrics tree next to the profiles.
RESERVED_NAMES = frozenset({"worst", "mean_accuracy", "ops", "real", "op", "clean"})
PROFILE_KEYS = ("name", "description", "chain")
STEP_META_KEYS = ("op", "severity")


@dataclass(frozen=True)
class Profile:
    """A named chain of device operations."""

    name: str
    description: str
    ops: tuple[DeviceOp, ...]
    source: str = "builtin"

    def chain_summary(self) -> str:
        """``op(k=v) -> op(...)``: the chain with parameters that differ from defaults."""
        return " -> ".join(op.describe() for op in self.ops)

    def config(self) -> dict[str, Any]:
        """JSON-serialisable description (recorded in results.json condition params)."""
        return {
            "profile": self.name,
            "description": self.description,
            "source": self.source,
            "chain": [op.config() for op in self.ops],
        }


def _where(source: str, profile: str | None = None, step: int | None = None) -> str:
    text = source
    if profile is not None:
        text += f": profile {profile!r}"
    if step is not None:
        text += f", step {step}"
    return text


def parse_step(step: Any, where: str) -> DeviceOp:
    """One chain step (``{"op": name, ["severity": s,] **params}``) to a validated operation."""
    from evalsuite.devices.ops import OPS, op_class

    if not isinstance(step, dict) or "op" not in step:
        raise UsageError(f"{where}: a step must be a mapping with an 'op' key, got {step!r}")
    name = step["op"]
    if not isinstance(name, str) or name not in OPS:
        raise UsageError(
            f"{where}: unknown operation {name!r}{did_you_mean(str(name), OPS.names())}; valid: {', '.join(OPS.names())}"
        )
    cls = op_class(name)
    odd = [k for k in step if not isinstance(k, str)]
    if odd:
        raise UsageError(f"{where}: parameter names must be strings, got {odd[0]!r}")
    params = {k: v for k, v in step.items() if k not in STEP_META_KEYS}
    try:
        if "severity" in step:
            return cls.at_severity(step["severity"], **params)
        return cls(**params)
    except InvalidParameter as exc:
        raise UsageError(f"{where}: {exc}") from None


def parse_profile(doc: Any, source: str, name: str | None = None) -> Profile:
    """A profile mapping (``name``, ``description``, ``chain``) to a :class:`Profile`."""
    if not isinstance(doc, dict):
        raise UsageError(f"{_where(source, name)}: a profile must be a mapping with 'name' and 'chain', got {type(doc).__name__}")
    unknown = [k for k in doc if k not in PROFILE_KEYS]
    if unknown:
        raise UsageError(
            f"{_where(source, name or doc.get('name'))}: unknown key {unknown[0]!r}"
            f"{did_you_mean(str(unknown[0]), list(PROFILE_KEYS))}; valid: {', '.join(PROFILE_KEYS)}"
        )
    if name is None:
        name = doc.get("name")
    elif "name" in doc and doc["name"] != name:
        raise UsageError(f"{_where(source, name)}: 'name' ({doc['name']!r}) differs from its key")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise UsageError(
            f"{source}: profile name must be letters, digits, '.', '_' or '-' (starting with a letter or digit), got {name!r}"
        )
    if name in RESERVED_NAMES:
        raise UsageError(f"{source}: profile name {name!r} is reserved; reserved: {', '.join(sorted(RESERVED_NAMES))}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise UsageError(f"{_where(source, name)}: 'description' must be a string")
    chain = doc.get("chain")
    if not isinstance(chain, list) or not chain:
        raise UsageError(f"{_where(source, name)}: 'chain' must be a non-empty list of steps")
    ops = tuple(parse_step(step, _where(source, name, i + 1)) for i, step in enumerate(chain))
    return Profile(name=name, description=" ".join(description.split()), ops=ops, source=source)


def parse_profiles(doc: Any, source: str) -> dict[str, Profile]:
    """A parsed YAML document (one profile, or several under ``profiles:``) to profiles by name."""
    if isinstance(doc, dict) and "profiles" in doc:
        extra = [k for k in doc if k not in ("profiles", "version")]
        if extra:
            raise UsageError(f"{source}: unknown top-level key {extra[0]!r}; valid: profiles, version")
        body = doc["profiles"]
        if isinstance(body, dict):
            items = [parse_profile(v, source, name=str(k)) for k, v in body.items()]
        elif isinstance(body, list):
            items = [parse_profile(v, source) for v in body]
        else:
            raise UsageError(f"{source}: 'profiles' must be a list or a mapping of profiles")
        if not items:
            raise UsageError(f"{source}: 'profiles' is empty")
    elif isinstance(doc, dict):
        items = [parse_profile(doc, source)]
    else:
        raise UsageError(f"{source}: expected a profile mapping or 'profiles:', got {type(doc).__name__}")
    out: dict[str, Profile] = {}
    for p in items:
        if p.name in out:
            raise UsageError(f"{source}: profile {p.name!r} is defined twice")
        out[p.name] = p
    return out


def _read_yaml(path: Path, source: str) -> Any:
    from evalsuite.config import read_yaml

    return read_yaml(path, "device profiles file")


def load_profiles_file(path: str | Path) -> dict[str, Profile]:
    """Profiles from a user's YAML file, validated; clashes with built-in names are errors."""
    source = str(path)
    profiles = parse_profiles(_read_yaml(Path(path), source), source)
    builtin = builtin_profiles()
    clash = [n for n in profiles if n in builtin]
    if clash:
        raise UsageError(
            f"{source}: profile {clash[0]!r} has the name of a built-in profile; rename it "
            f"(built-in: {', '.join(builtin)})"
        )
    return profiles


def builtin_dir() -> Path:
    """Folder of the built-in profile files."""
    return Path(__file__).with_name("profiles")


@lru_cache(maxsize=1)
def builtin_profiles() -> dict[str, Profile]:
    """The built-in profiles by name, in file-name order."""
    out: dict[str, Profile] = {}
    for path in sorted(builtin_dir().glob("*.yaml")):
        for name, prof in parse_profiles(_read_yaml(path, path.name), "builtin").items():
            if name in out:
                raise RuntimeError(f"built-in device profile {name!r} is defined twice")
            out[name] = prof
    return out
