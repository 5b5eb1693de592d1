"""Independent evaluators: pure functions of (model, data, oracle, generator, settings, resources).

Each module declares itself once, in its `EVALUATOR` (`evaluators.common.Evaluator`): the function,
the metrics it reports (label, better direction, digits, regression tolerance and why), the other
keys of its result, and what its sample count counts. Everything else (the tables, `bench check`,
`bench perf`, `bench eval`) reads those declarations from here. An evaluator looks at a model only
through `bench/api.py`.

To add one: write `evaluators/<name>.py` with `evaluate` and `EVALUATOR`, and add it to `EVALUATORS`
below (ARCHITECTURE.md, "How to add an evaluator").
"""

from __future__ import annotations

from bench.metrics import TRAINER_METRICS, Metric
from bench.registry import Registry
from evaluators import classification, conditional, fid, ground_truth, interventions, mutual_info, swap
from evaluators.common import Evaluator

EVALUATORS: Registry[Evaluator] = Registry("evaluator", {evaluator.name: evaluator for evaluator in (
    classification.EVALUATOR,
    swap.EVALUATOR,
    interventions.EVALUATOR,
    conditional.EVALUATOR,
    fid.EVALUATOR,
    mutual_info.EVALUATOR,
    ground_truth.EVALUATOR,
)})


def all_metrics() -> dict[str, Metric]:
    """Every declared metric under its results.csv name: the trainer's, then each registered evaluator's
    "<evaluator>.<key>". Read at call time, so the registry is the only list there is."""
    metrics = {metric.key: metric for metric in TRAINER_METRICS}
    for evaluator in EVALUATORS.values():
        metrics.update(evaluator.qualified())
    return metrics
