"""One exception family for every user-facing mistake.

The CLI maps :class:`EvalsuiteError` to a one-line message and exit code 2; anything else is a
bug and keeps its traceback. Subclasses only exist so callers and tests can be specific.
"""

from __future__ import annotations


class EvalsuiteError(Exception):
    """A problem with the user's input (paths, data, model, policy, options). Exit code 2."""

    exit_code = 2


class UsageError(EvalsuiteError):
    """Bad command-line option or configuration value."""


class DataError(EvalsuiteError):
    """The data cannot be read or does not fit the model (labels, images, manifest)."""


class ModelError(EvalsuiteError):
    """The model file cannot be loaded, or lacks metadata evalsuite needs."""


class PolicyError(EvalsuiteError):
    """The policy file is malformed or names metrics that do not exist."""


class ResultsError(EvalsuiteError):
    """A results.json that cannot be read or does not follow the schema."""


class RunEnvironmentError(EvalsuiteError):
    """The machine failed the run (disk full, permissions, memory), not the user's input. Exit 2.

    Predictions already computed stay in the run's staging folder, so ``--resume`` continues
    once the cause is fixed.
    """
