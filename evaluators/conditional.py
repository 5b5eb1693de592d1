"""`conditional` (Table 5): do conditional generations show the labels they were asked for?

Label vectors are drawn from the test set (the evaluation seed fixes which), one image is
generated per vector with `model.generate(y, 1)`, and the oracle classifies it: the score is
the oracle's accuracy against the requested labels (mean per-label accuracy at 0.5, or top-1).
The oracle's accuracy on the real test images bounds what a perfect generator could reach.

"Near random" (the paper's words for DIVA and MVAE) means label-blind: generations that do not depend on the
requested labels. The same generations are scored once more against the requested label vectors shuffled among
themselves (`label_blind_accuracy`); a generator that ignores its labels scores the same against both, whatever
labels it happens to render, so `label_gain` = accuracy − label_blind_accuracy is 0 in expectation for every
label-blind generator (always rendering the majority value included) and large for one that carries its labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from bench import scoring
from bench.budgets import Budget, EvalSettings
from bench.metrics import Metric, Tolerance
from evaluators.common import NO_RESOURCES, Evaluator, Resources, batched, device_of, sample_test_indices

if TYPE_CHECKING:
    from bench.data.base import LabelledImages


BUDGET = Budget(samples=2000)  # generations, their labels drawn from the test set


def evaluate(model, data: LabelledImages, oracle, generator: torch.Generator, settings: EvalSettings,
             resources: Resources = NO_RESOURCES, budget: Budget = BUDGET) -> dict:
    if not model.capabilities.generate:
        return {"unavailable": "the model cannot generate conditionally"}
    device = device_of(model)
    requested = data.labels[sample_test_indices(data, budget.samples, generator)].float()
    probs = batched(lambda y: oracle.probs(model.generate(y.to(device), 1)[:, 0]).cpu(), requested,
                    batch_size=settings.batch_size)
    accuracy = scoring.accuracy(probs, requested, data.task)
    shuffled = requested[torch.randperm(len(requested), generator=generator)]  # drawn last: nothing else moves
    blind = scoring.accuracy(probs, shuffled, data.task)
    return {"accuracy": accuracy, "label_gain": accuracy - blind, "label_blind_accuracy": blind,
            "n": len(requested)}


EVALUATOR = Evaluator(
    "conditional", evaluate,
    metrics=(Metric("accuracy", "oracle accuracy", True, Tolerance(0.05),
                    "an accuracy judged on generated images, noisier than on test images"),
             Metric("label_gain", "gain over label-blind", True, Tolerance(0.05),
                    "the difference of two accuracies on the same generations")),
    details=("label_blind_accuracy", "n"),
    count=("n", "generations"),
    budget=BUDGET,
)
