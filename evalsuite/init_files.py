"""``evalsuite init``: a starter policy, suite file and run config, with comments, to edit.

The files are the documented defaults written out (each loads as it is: the tests run them
through the same loaders ``run`` uses), so a new user starts from something that works and
reads what each key does where they change it. Existing files are never overwritten unless
``force`` is given.
"""

from __future__ import annotations

from pathlib import Path

from evalsuite.atomic_io import atomic_write_text
from evalsuite.errors import UsageError

POLICY = """\
# evalsuite policy: the gates that turn this run's numbers into PASS / WARN / FAIL.
# `evalsuite gate RUN --list-metrics [PATTERN]` lists every metric path a run produced, with
# its value, n and 95% CI. Reference: docs/policy.md.
version: 1
description: Release gates for this model (edit the thresholds to your product's needs).
gates:
  - name: clean accuracy
    metric: clean.accuracy
    min: 0.80            # at least 80% ...
    bound: ci_lower      # ... even at the lower end of the 95% CI (point | ci_lower | ci_upper)
    severity: fail       # fail: exit code 1; warn: reported, exit 0 (unless --fail-on warn)
  - name: macro F1
    metric: clean.macro_f1
    min: 0.75
    severity: warn
  - name: corruption mean accuracy
    metric: corruption.mean_accuracy
    min: 0.50
    severity: warn
    optional: true       # not evaluated (and said so) when the run has no corruption suite
  - name: clean calibration
    metric: calibration.clean.ece
    max: 0.15
    severity: warn
    optional: true
  # Against the model in production (give `--baseline production/results.json`):
  # - name: no accuracy regression
  #   metric: clean.accuracy
  #   max_drop: 0.01     # at most 1 point below the baseline
"""

SUITE = """\
# evalsuite suite file: which suites run and their options (`--suite THIS_FILE`).
# `evalsuite ls suites` lists the suites; each suite's page in docs/ lists all its options.
description: Starter suite file (the standard preset, options spelled out).
suites:
  clean:
    gallery: 12                 # most confident mistakes shown in the scorecard
  corruption:
    preset: fast                # fast (CI subset) | all (the 19 ImageNet-C corruptions x 5 severities)
    backend: torch              # torch (batched engine) | reference (imagecorruptions, slow)
  device: {}                    # default device profiles; `profiles_file: fleet.yaml` for your own
  adversarial:
    tier: smoke                 # smoke | standard | full (AutoAttack-style)
    n: 128                      # samples attacked (a seeded stratified subset)
  calibration:
    n_bins: 15
    calibration_fraction: 0.5   # share of the data the temperature is fitted on (the rest measures it)
  slices:
    min_group_size: 30          # groups smaller than this get no gap gates
    max_accuracy_gap: 0.1       # the built-in WARN on the accuracy gap between groups
  preprocessing:
    sample: 256                 # clean samples re-scored under each plausible preprocessing mistake
    margin: 0.02                # a mistake scoring this much higher (paired CI above 0) FAILs the run
"""

RUN = """\
# evalsuite run config (`evalsuite run --config THIS_FILE`): the same keys as the flags of
# `evalsuite run` (`batch-size` or `batch_size`); flags given on the command line win.
model: models/model.onnx        # .onnx, .pt (TorchScript), .pt2 (torch.export) or timm:<name>
data: data/holdout              # image folder, .csv/.parquet manifest, .npz, or builtin:digits
out: reports/run                # the run folder (results.json, gates.json, junit.xml, summary.md, scorecard.html)
suite: evalsuite-suite.yaml     # a preset (quick | standard | full), suite names, or a suite file
policy: evalsuite-policy.yaml
seed: 0                         # every random draw is keyed on (seed, condition, sample id)
device: auto                    # auto | cpu | cuda[:N]
batch-size: 64                  # never changes a number (docs/results.md), only speed and memory
fail-on: fail                   # fail | warn (a WARN gate exits 1 too)
"""

FILES = {"evalsuite-policy.yaml": POLICY, "evalsuite-suite.yaml": SUITE, "evalsuite-run.yaml": RUN}


def write_starter_files(folder: str | Path, *, force: bool = False) -> list[Path]:
    """Write the three starter files into ``folder``; refuse (exit 2) to overwrite without ``force``."""
    folder = Path(folder)
    paths = [folder / name for name in FILES]
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise UsageError(f"{existing[0]} exists; pass --force to overwrite the starter files")
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        atomic_write_text(path, FILES[path.name])
    return paths
