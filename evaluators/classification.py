"""`classification` (Tables 1 and 6): the model's own classifier on the whole test set.

Mean over labels of per-label accuracy at threshold 0.5 (multi-label), top-1 accuracy
(multi-class); the per-label accuracies are reported too. Only `model.classify` is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from bench import scoring
from bench.budgets import EvalSettings
from bench.metrics import Metric, Tolerance
from evaluators.common import NO_RESOURCES, Evaluator, Resources, batched, device_of, float_images

if TYPE_CHECKING:
    from bench.data.base import LabelledImages


def evaluate(model, data: LabelledImages, oracle, generator: torch.Generator, settings: EvalSettings,
             resources: Resources = NO_RESOURCES, budget: None = None) -> dict:
    if not model.capabilities.classify:
        return {"unavailable": "the model cannot classify"}
    device = device_of(model)
    test = torch.as_tensor(data.splits["test"])
    probs = batched(lambda idx: model.classify(float_images(data, idx, device)).cpu(), test,
                    batch_size=settings.batch_size)
    labels = data.labels[test].float()
    result = {"accuracy": scoring.accuracy(probs, labels, data.task), "n": len(test)}
    if data.task == "multilabel":
        per_label = scoring.per_label_accuracy(probs, labels)
        result["per_label"] = dict(zip(data.label_names, per_label.tolist(), strict=True))
    return result


EVALUATOR = Evaluator(
    "classification", evaluate,
    metrics=(Metric("accuracy", "accuracy", True, Tolerance(0.03),
                    "accuracies on 1,000–2,000 test images: a few images' worth of noise in a short run"),),
    details=("n", "per_label"),
    count=("n", "test images"),
)
