"""Run configuration: CLI flags over an optional YAML config file over suite presets.

A :class:`RunConfig` is the whole description of a run. The resolved configuration (every
suite's options after presets and overrides) is written to ``<out>/config.json`` and its hash
goes into results.json provenance, so a scorecard can always be traced to what ran.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError, UsageError
from evalsuite.registry import did_you_mean

PRESET_PACKAGE = "evalsuite.presets"


@dataclass
class RunConfig:
    """Everything ``evalsuite run`` needs. Field names match the CLI flags (``--batch-size``)."""

    model: str
    data: str
    out_dir: str = "reports/run"
    suite: str = "standard"
    policy: str | None = None
    baseline: str | None = None
    reference: str | None = None  # run --reference MODEL: paired candidate-vs-reference comparison
    seed: int = 0
    device: str = "auto"
    batch_size: int = 64
    workers: int | None = None
    limit: int | None = None
    sample: int | None = None
    resume: bool = False
    skip_bad_images: bool = False
    max_image_pixels: int = 64_000_000  # = evalsuite.data.guards.DEFAULT_MAX_IMAGE_PIXELS (no numpy import here)
    follow_symlinks: bool = False
    allow_baseline_mismatch: bool = False
    allow_calibration_overlap: bool = False  # evaluate an INT8 model on data overlapping its calibration samples
    checkpoint: str | None = None
    model_overrides: dict[str, Any] = field(default_factory=dict)
    suite_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache_limit_mb: int = 4096
    progress: bool | None = None
    fail_on: str = "fail"
    target_threads: int | None = None  # --target-threads N: threads of the performance suite's measurements
    perturbation_samples: int | str | None = None  # --perturbation-samples N|all: suites' subset n (None: as configured)
    ci_half_width: float | None = None  # --ci-half-width H: suites' subset sized for this 95% CI half-width

    def __post_init__(self) -> None:
        # Every field is checked against its type hint (one loader for all option mappings), so a
        # config file's ``seed: "zero"`` or ``resume: "no"`` is an error, never a silent cast.
        import typing

        from evalsuite.options import coerce

        for name in ("model_overrides", "suite_overrides"):
            if getattr(self, name) is None:
                setattr(self, name, {})
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            setattr(self, f.name, coerce(getattr(self, f.name), hints[f.name], f.name))
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not 0 <= self.seed < 2**63:
            raise UsageError(f"--seed must be an integer in [0, 2**63), got {self.seed}")
        for name in ("limit", "sample"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise UsageError(f"--{name} must be >= 1, got {v}")
        if self.limit is not None and self.sample is not None:
            raise UsageError("use either --limit or --sample, not both")
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {self.workers}")
        if self.target_threads is not None and self.target_threads < 1:
            raise UsageError(f"--target-threads must be >= 1, got {self.target_threads}")
        if self.fail_on not in ("fail", "warn"):
            raise UsageError(f"--fail-on must be 'fail' or 'warn', got {self.fail_on!r}")
        if self.cache_limit_mb < 0:
            raise UsageError(f"cache_limit_mb must be >= 0, got {self.cache_limit_mb}")
        self._check_budget()

    def _check_budget(self) -> None:
        v = self.perturbation_samples
        if isinstance(v, str):
            text = v.strip().lower()
            if text != "all" and not text.isdigit():
                raise UsageError(f"--perturbation-samples must be a positive integer or 'all', got {v!r}")
            self.perturbation_samples = "all" if text == "all" else int(text)
            v = self.perturbation_samples
        if isinstance(v, int) and v < 1:
            raise UsageError(f"--perturbation-samples must be a positive integer or 'all', got {v!r}")
        h = self.ci_half_width
        if h is not None and not 0.0 < h <= 0.5:
            raise UsageError(f"--ci-half-width must be a number in (0, 0.5] (0.02: +/-2 points at 95%), got {h!r}")
        if v is not None and h is not None:
            raise UsageError("use either --perturbation-samples or --ci-half-width, not both")

    def sample_budget(self) -> dict[str, Any]:
        """The perturbation suites' subset options these flags set (``{}``: as the suite file says)."""
        if self.ci_half_width is not None:
            return {"ci_half_width": self.ci_half_width}
        if self.perturbation_samples is not None:
            return {"n": self.perturbation_samples}
        return {}

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> RunConfig:
        """Load a run config file; keyword ``overrides`` (from the CLI) win over the file."""
        data = load_yaml_mapping(path, what="run config")
        data = {k.replace("-", "_"): v for k, v in data.items()}
        if "out" in data:  # the flag's name (--out); out_dir is the field's
            if "out_dir" in data:
                raise UsageError(f"run config {path}: give 'out' or 'out_dir', not both")
            data["out_dir"] = data.pop("out")
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise UsageError(
                f"run config {path}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], sorted(valid))}"
            )
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**data)
        except TypeError as exc:
            raise UsageError(f"run config {path}: {exc}") from None
        except UsageError as exc:
            raise UsageError(f"run config {path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_yaml(path: str | Path, what: str, error: type[EvalsuiteError] = UsageError) -> Any:
    """Parse a YAML file with :func:`evalsuite.safe_yaml.safe_load` (alias, depth, size limits,
    duplicate keys refused); every failure is a one-line ``error`` naming ``what`` and the path."""
    return read_yaml_document(path, what, error)[0]


def read_yaml_document(path: str | Path, what: str, error: type[EvalsuiteError] = UsageError) -> tuple[Any, bytes]:
    """:func:`read_yaml` and the exact bytes parsed (so a record's sha256 is of what was used)."""
    from evalsuite.safe_yaml import MAX_BYTES, YamlError, safe_load

    p = Path(path)
    if not p.exists():
        raise error(f"{what} not found: {p}")
    if not p.is_file():
        raise error(f"{what} is not a file: {p}")
    try:
        if p.stat().st_size > MAX_BYTES:
            raise error(f"{what} {p} is larger than {MAX_BYTES // (1024 * 1024)} MiB; refused")
        raw = p.read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} {p} is not a UTF-8 text file") from None
    except OSError as exc:
        raise error(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    try:
        return safe_load(text), raw
    except YamlError as exc:
        raise error(f"{what} {p}: {exc}") from None


def load_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; one-line errors for every failure."""
    data = read_yaml(path, what)
    p = Path(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{what} {p} must be a YAML mapping, got {type(data).__name__}")
    return data


def preset_names() -> list[str]:
    """Names of the suite presets shipped in ``evalsuite/presets`` (``policy-*.yaml`` there are policies)."""
    return sorted(
        p.name[: -len(".yaml")]
        for p in resources.files(PRESET_PACKAGE).iterdir()
        if p.name.endswith(".yaml") and not p.name.startswith("policy-")
    )


def load_suite_spec(spec: str, suite_names: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Resolve ``--suite`` (a preset name or a YAML path) to ``{suite name: options}``.

    The YAML holds ``suites:`` mapping suite names to option mappings (``{}`` for defaults).
    ``suite_names`` are the registered suites a comma list may name (the caller passes them:
    this module sits below the suite registry).
    """
    import yaml

    if spec.endswith((".yaml", ".yml")) or "/" in spec:
        data = load_yaml_mapping(spec, what="suite file")
        origin = spec
    elif spec in preset_names():
        text = resources.files(PRESET_PACKAGE).joinpath(f"{spec}.yaml").read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        origin = f"preset {spec}"
    else:
        return _suite_list(spec, suite_names)
    unknown = sorted(set(data) - {"suites", "description"})
    if unknown:
        raise UsageError(f"{origin}: unknown key {unknown[0]!r}; expected 'suites' (and optional 'description')")
    suites = data.get("suites") or {}
    if not isinstance(suites, dict):
        raise UsageError(f"{origin}: 'suites' must map suite names to option mappings")
    out: dict[str, dict[str, Any]] = {}
    for name, opts in suites.items():
        if opts is None:
            opts = {}
        if not isinstance(opts, dict):
            raise UsageError(f"{origin}: options of suite {name!r} must be a mapping, got {type(opts).__name__}")
        out[str(name)] = dict(opts)
    return out


def _suite_list(spec: str, suites: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--suite clean,corruption``: suite names and presets, comma-separated, each with its defaults
    (a preset contributes its suites with the preset's options; a later entry's options win)."""
    presets = preset_names()
    out: dict[str, dict[str, Any]] = {}
    for raw in spec.split(","):
        name = raw.strip()
        if name in presets:
            out.update(load_suite_spec(name))
        elif name in suites:
            out.setdefault(name, {})
        else:
            known = [*presets, *suites]
            what = f"{name!r} in --suite {spec!r}" if "," in spec else repr(name)
            raise UsageError(f"unknown suite or preset {what}{did_you_mean(name, known)}; presets: "
                             f"{', '.join(presets)}; suites: {', '.join(suites)}; or a suite YAML file")
    return out


def resolve_suites(config: RunConfig, suite_names: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """The preset's suites with ``config.suite_overrides`` merged in (overrides win)."""
    suites = load_suite_spec(config.suite, suite_names)
    for name, opts in config.suite_overrides.items():
        if name not in suites:
            raise UsageError(
                f"option for suite {name!r} given, but suite {config.suite!r} does not run it "
                f"(it runs: {', '.join(suites) or 'nothing'})"
            )
        suites[name] = {**suites[name], **opts}
    return suites


def config_hash(resolved: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a resolved configuration."""
    blob = json.dumps(resolved, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()
