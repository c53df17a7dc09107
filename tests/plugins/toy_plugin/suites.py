"""Toy suite: the mean top-1 confidence of every condition's predictions."""

from __future__ import annotations

from evalsuite.stats import mean_metric
from evalsuite.suites.base import Suite, SuiteOutput


class ToySuite(Suite):
    name = "toy"  # = the entry point's name; metrics land at results.metrics.toy
    stage = "analysis"  # summarise after every perturbation suite's predictions exist
    option_names = ()

    def summarize(self, run, preds):
        metrics = {key.replace("/", "."): {"confidence": mean_metric(p.probs.max(axis=1), seed=run.seed)}
                   for key, p in preds.items()}
        return SuiteOutput(metrics=metrics)
