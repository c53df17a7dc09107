"""Gate a freshly trained model on the spot: ``evalsuite run`` on the held-out split.

The exported ONNX carries its preprocessing metadata, so the run needs no flags. Results go to
``<out>/eval/`` and the scorecard is copied beside the model as ``<out>/scorecard.html``. The
run's exit code (0 pass, 1 a gate failed) becomes the exit code of ``evalsuite train``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def evaluate_exported(recipe: Any, onnx_path: str | Path, test_spec: str, out_dir: str | Path) -> Any:
    """Run evalsuite's suite ``recipe.eval.suite`` with ``recipe.eval.policy`` on ``test_spec``."""
    from evalsuite.api import run
    from evalsuite.config import RunConfig

    out = Path(out_dir)
    config = RunConfig(
        model=str(onnx_path),
        data=str(test_spec),
        out_dir=str(out / "eval"),
        suite=recipe.eval.suite,
        policy=recipe.eval.policy,
        seed=recipe.seed,
        device=recipe.device,
        batch_size=recipe.eval.batch_size,
        progress=None,
    )
    outcome = run(config)
    scorecard = Path(outcome.scorecard_path)
    if scorecard.exists():
        shutil.copyfile(scorecard, out / "scorecard.html")
    log.info("evalsuite run on %s: exit code %d, scorecard %s", test_spec, outcome.exit_code, out / "scorecard.html")
    return outcome
