"""Toy suite: a brightened copy of the data, and how confident the model is under every condition."""

from __future__ import annotations

from dataclasses import dataclass

from evalsuite.conditions import Condition, ConditionIdentity
from evalsuite.errors import UsageError
from evalsuite.gates import Gate
from evalsuite.metric_specs import MetricSpec
from evalsuite.results import gate_path
from evalsuite.stats import correct, mean_metric
from evalsuite.suites.base import Suite, SuiteOutput


@dataclass
class ToyOptions:
    """``suites: {toy: {brighten: 0.3}}`` in a suite file; the field types are the schema."""

    brighten: float = 0.3  # added to every pixel by the toy/brighter condition (0: no condition)
    confident: float = 0.9  # a top-1 probability at least this high counts as confident
    min_confidence: float = 0.5  # the built-in check's bound on the mean clean confidence

    def __post_init__(self) -> None:  # what the types cannot say
        for name in ("brighten", "confident", "min_confidence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UsageError(f"suite 'toy': option {name} must be a number in [0, 1], got {getattr(self, name)!r}")


class Brighter(Condition):
    def apply(self, x, ctx):  # float N x 3 x H x W in [0, 1] on the run's device
        return (x + self.params["brighten"]).clamp(0, 1)


class ToySuite(Suite):
    name = "toy"  # = the entry point's name; metrics land at results.metrics.toy
    stage = "analysis"  # summarise after every suite's predictions exist, so all conditions are seen
    Options = ToyOptions  # self.opts is a ToyOptions built from the suite file's mapping

    def conditions(self, run):
        if not self.opts.brighten:
            return []
        identity = ConditionIdentity(suite="toy", kind="toy", parts=("brighter",))  # key toy/brighter
        return [Brighter(identity=identity, params={"brighten": self.opts.brighten})]

    def summarize(self, run, preds):
        metrics = {}
        for key, p in preds.items():  # every condition of the run: clean, corruption/..., toy/brighter
            top = p.probs.max(axis=1)
            wrong = 1.0 - correct(p.logits, p.labels)
            metrics[gate_path(key)] = {
                "confidence": mean_metric(top, seed=run.seed),
                "confident_errors": mean_metric(wrong * (top >= self.opts.confident), "lower", seed=run.seed),
            }
        check = Gate.check("toy: clean confidence", "toy.clean.confidence", min=self.opts.min_confidence,
                           description="The mean top-1 probability on clean data.")
        return SuiteOutput(metrics=metrics, checks=[check])

    def metric_specs(self, run, conditions):
        return [MetricSpec(f"toy.{gate_path(c.key)}.{leaf}")  # every leaf has a bootstrap CI
                for c in conditions for leaf in ("confidence", "confident_errors")]
