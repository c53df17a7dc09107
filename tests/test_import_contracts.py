"""Import layering: the import-linter contracts in pyproject.toml, and no cross-package private imports.

Lower layers (data, models, stats, results, conditions, predictions, the runner, the feature
engines, ...) never import the suites, the attacks, the CLI, the API or training; the contracts
live in ``[tool.importlinter]`` of pyproject.toml and ``make lint`` runs them too. A second check
(AST) refuses a module importing a private name (a ``_module`` or a ``_name``) from another
package of evalsuite; within one package private helpers are fine. Each check is also shown to
fail on a deliberate violation, so a broken checker cannot pass silently.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("evalsuite", "training")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "importlinter.cli"]
    env = {**os.environ, "PYTHONPATH": str(cwd), "NO_COLOR": "1"}
    return subprocess.run([*cmd, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    proc = _lint_imports(ROOT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "0 broken" in out and "KEPT" in out


def _copy_sources(dst: Path) -> None:
    for pkg in PACKAGES:
        for src in (ROOT / pkg).rglob("*.py"):
            if "__pycache__" in src.parts:
                continue
            target = dst / src.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
    shutil.copyfile(ROOT / "pyproject.toml", dst / "pyproject.toml")


def test_import_contracts_report_an_upward_import(tmp_path):
    """A copy of the sources with one lazy upward import (models -> suites) breaks the contract."""
    _copy_sources(tmp_path)
    victim = tmp_path / "evalsuite" / "models" / "base.py"
    victim.write_text(victim.read_text(encoding="utf-8") + (
        "\n\ndef _violation():\n    from evalsuite.suites.base import Suite\n\n    return Suite\n"
    ), encoding="utf-8")
    proc = _lint_imports(tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "BROKEN" in out and "evalsuite.models.base -> evalsuite.suites.base" in out, out


# ------------------------------------------------------------------------ private imports
def _owner(module: str) -> str:
    """The package a module belongs to: ``evalsuite.<first part>`` or the top-level package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "evalsuite" and len(parts) > 1 else parts[0]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts = parts[:-1]
    return ".".join(parts), is_pkg


def private_cross_package_imports(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """``file:line: importer imports target`` for every private evalsuite name imported across packages."""
    found = []
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            module, is_pkg = _module_name(path, root)
            here = _owner(module)
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                targets: list[tuple[str, str | None]] = []
                if isinstance(node, ast.Import):
                    targets = [(a.name, None) for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        anchor = module.split(".") if is_pkg else module.split(".")[:-1]
                        anchor = anchor[: len(anchor) - (node.level - 1)]
                        base = ".".join([*anchor, base] if base else anchor)
                    targets = [(base, a.name) for a in node.names]
                for target, name in targets:
                    if target.split(".")[0] != "evalsuite":
                        continue
                    full = f"{target}.{name}" if name and name != "*" else target
                    if _owner(full) == here:
                        continue
                    if any(_is_private(p) for p in full.split(".")):
                        found.append(f"{path.relative_to(root)}:{node.lineno}: {module} imports {full}")
    return found


def test_no_private_imports_across_packages():
    assert private_cross_package_imports(ROOT) == []


def test_private_import_check_reports_violations(tmp_path):
    pkg = tmp_path / "evalsuite"
    (pkg / "jpeg").mkdir(parents=True)
    (pkg / "corruptions").mkdir()
    for init in (pkg / "__init__.py", pkg / "jpeg" / "__init__.py", pkg / "corruptions" / "__init__.py"):
        init.write_text("")
    (pkg / "corruptions" / "_ops.py").write_text("def _helper():\n    pass\n\n\ndef public():\n    pass\n")
    (pkg / "corruptions" / "blur.py").write_text("from evalsuite.corruptions._ops import _helper\nfrom . import _ops\n")
    (pkg / "cli.py").write_text("def _flags():\n    pass\n")
    (pkg / "jpeg" / "a.py").write_text(
        "from evalsuite.corruptions._ops import public\n"
        "import evalsuite.corruptions._ops\n"
        "from evalsuite.cli import _flags\n"
        "from evalsuite import cli\n"
        "from evalsuite.jpeg import _own\n"
        "from ..corruptions import _ops\n"
    )
    found = private_cross_package_imports(tmp_path, ("evalsuite",))
    assert [f.split(": ", 1)[1] for f in found] == [
        "evalsuite.jpeg.a imports evalsuite.corruptions._ops.public",
        "evalsuite.jpeg.a imports evalsuite.corruptions._ops",
        "evalsuite.jpeg.a imports evalsuite.cli._flags",
        "evalsuite.jpeg.a imports evalsuite.corruptions._ops",
    ]


def test_predictions_live_below_the_suites():
    """``suites.base`` re-exports the prediction types for plug-ins; they are the same objects."""
    import evalsuite.predictions as predictions
    import evalsuite.suites.base as base

    assert base.Predictions is predictions.Predictions and base.PredictionSet is predictions.PredictionSet
    assert predictions.Predictions.__module__ == "evalsuite.predictions"
