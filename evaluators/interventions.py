"""`interventions` (appendix figures 10–16): does changing label i change only label i?

For each label i and the same test images (drawn from the evaluation seed), the model
intervenes on i: multi-label data set y_i to the opposite of the image's true value;
multi-class data set the class to i (images already of class i are left out). The oracle
then scores the target label values ỹ (y with the change) on the intervened image x̃_i and
on the model's reconstruction x̂ = swap(x, x), so that reconstruction error is not counted
as an effect of the intervention:

    M[i, j] = mean over images | log p_oracle(ỹ_j | x̃_i) − log p_oracle(ỹ_j | x̂) |

(multi-class: ỹ_j is "class j"). Ideal: a large diagonal and zeros elsewhere. The condition
number is numpy's 2-norm cond(M) (σ_max / σ_min): 1 for a scaled identity, large when
interventions leak into other labels or fail to move their own.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.data.base import LabelledImages
from bench.metrics import Metric, Tolerance
from evaluators.common import NO_RESOURCES, EvalSettings, Evaluator, Resources, float_images, sample_test_indices


def condition_number(matrix: np.ndarray) -> float:
    return float(np.linalg.cond(matrix))


def target_labels(labels: torch.Tensor, i: int, task: str) -> torch.Tensor:
    """ỹ: multi-label flips label i; multi-class becomes the one-hot of class i."""
    if task == "multilabel":
        target = labels.clone()
        target[:, i] = 1 - target[:, i]
        return target
    return torch.nn.functional.one_hot(torch.full((len(labels),), i), labels.shape[1]).to(labels.dtype)


def oracle_log_probs(oracle, images: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    """log p_oracle(ỹ_j | x) per label j (multi-label) or log p_oracle(class j | x) (multi-class)."""
    return oracle.log_prob_of(images, target) if task == "multilabel" else oracle.label_log_probs(images)


def evaluate(model, data: LabelledImages, oracle, generator: torch.Generator, settings: EvalSettings,
             resources: Resources = NO_RESOURCES) -> dict:
    if not model.capabilities.intervene:
        return {"unavailable": "the model cannot intervene"}
    device = next(model.parameters()).device
    chosen = sample_test_indices(data, settings.intervened, generator)
    labels_all = data.labels[chosen].float()
    size = labels_all.shape[1]
    matrix = np.zeros((size, size))
    counts = []
    with torch.no_grad():
        for i in range(size):
            keep = torch.ones(len(chosen), dtype=torch.bool) if data.task == "multilabel" else labels_all[:, i] == 0
            changes = []
            for batch in chosen[keep].split(settings.batch_size):
                x = float_images(data, batch, device)
                target = target_labels(data.labels[batch].float(), i, data.task).to(device)
                intervened = torch.empty_like(x)
                for value in target[:, i].unique().tolist():  # the API takes one value per call
                    rows = target[:, i] == value
                    intervened[rows] = model.intervene(x[rows], i, value)
                reconstruction = model.swap(x, x)
                changes.append((oracle_log_probs(oracle, intervened, target, data.task)
                                - oracle_log_probs(oracle, reconstruction, target, data.task)).abs().cpu())
            matrix[i] = torch.cat(changes).mean(0).double().numpy()
            counts.append(int(keep.sum()))
    return {"matrix": matrix.tolist(), "condition_number": condition_number(matrix),
            "labels": list(data.label_names), "images_per_label": counts}


EVALUATOR = Evaluator(
    "interventions", evaluate,
    metrics=(Metric("condition_number", "condition number", False, Tolerance(1.0, factor=15.0),
                    "the smallest singular value of a briefly trained model's intervention matrix is noise: a "
                    "float-level change of the training arithmetic (channels-last convolutions, the same losses to "
                    "1e-5) moved smoke condition numbers by factors up to 10.4, so only gross changes count",
                    ".3g"),),
    details=("matrix", "labels", "images_per_label"),
    count=("images_per_label", "intervened images"),
)
