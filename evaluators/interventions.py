"""`interventions` (appendix figures 10–16): does changing label i change label i, and only label i?

For each label i and the same test images (drawn from the evaluation seed), the model intervenes
on i: multi-label data set y_i to the opposite of the image's true value; multi-class data set
the class to i (images already of class i are left out). Everything is judged against the model's
own reconstruction x̂ = swap(x, x) (x itself for a model that cannot swap), so that reconstruction
error is not counted as an effect of the intervention.

What the oracle decides (the measures that rank a model that does nothing below one that works):

    flip_rate[i] = share of intervened images x̃_i whose oracle prediction of label i is the target ỹ_i
    leakage[i]   = mean over images of the share of the other labels j ≠ i whose oracle prediction on
                   x̃_i differs from its prediction on x̂

`flip_rate` (higher is better) and `leakage` (lower is better) are their means over labels. A model
that does nothing flips at the oracle's error rate and leaks nothing; a perfect one flips at the
oracle's accuracy and leaks nothing. Multi-class data have one label, so leakage is undefined there.

The paper's matrix, for comparison with its figures:

    M[i, j] = mean over images | log p_oracle(ỹ_j | x̃_i) − log p_oracle(ỹ_j | x̂) |

(multi-class: ỹ_j is "class j"), and its 2-norm condition number σ_max / σ_min: 1 for a scaled
identity. Its limits: the diagonal measures the log-probability of the flipped, unlikely value,
which any pixel noise moves, while the off-diagonals measure kept values that the oracle has
saturated near 0, so a do-nothing intervention can score as well as a perfect one; for
multi-class data even an ideal intervention (a real image of the target class) scores far from 1.
A singular matrix (some intervention moved nothing) has no condition number: it is recorded as
missing, with that reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from bench.budgets import Budget, EvalSettings
from bench.files import atomic_write
from bench.labels import hard_labels, label_log_terms
from bench.metrics import Metric, Tolerance
from evaluators.common import NO_RESOURCES, Evaluator, Resources, device_of, float_images, sample_test_indices

if TYPE_CHECKING:
    from bench.data.base import LabelledImages

SINGULAR = 1e-12  # σ_min / σ_max below this: the matrix is singular to float64 precision


def condition_number(matrix: np.ndarray) -> float | None:
    """σ_max / σ_min of the matrix, or None where it is singular (σ_min ≤ 1e-12 σ_max, or all zeros)."""
    singular_values = np.linalg.svd(matrix, compute_uv=False)
    if singular_values[0] == 0 or singular_values[-1] <= SINGULAR * singular_values[0]:
        return None
    return float(singular_values[0] / singular_values[-1])


def target_labels(labels: torch.Tensor, i: int, task: str) -> torch.Tensor:
    """ỹ: multi-label flips label i; multi-class becomes the one-hot of class i."""
    if task == "multilabel":
        target = labels.clone()
        target[:, i] = 1 - target[:, i]
        return target
    return torch.nn.functional.one_hot(torch.full((len(labels),), i), labels.shape[1]).to(labels.dtype)


def intervened_to(model, x: torch.Tensor, target: torch.Tensor, i: int) -> torch.Tensor:
    """Each image intervened on label i to its target value `target[:, i]` (the API takes one value per call)."""
    intervened = torch.empty_like(x)
    for value in target[:, i].unique().tolist():
        rows = target[:, i] == value
        intervened[rows] = model.intervene(x[rows], i, value)
    return intervened


def oracle_log_probs(logits: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    """From the oracle's logits: log p_oracle(ỹ_j | x) per label j (multi-label) or log p_oracle(class j | x)
    (multi-class)."""
    multilabel = task == "multilabel"
    return label_log_terms(logits, target, multilabel) if multilabel else torch.log_softmax(logits, -1)


BUDGET = Budget(samples=1000)  # test images drawn; each is intervened on for every label


def evaluate(model, data: LabelledImages, oracle, generator: torch.Generator, settings: EvalSettings,
             resources: Resources = NO_RESOURCES, budget: Budget = BUDGET) -> dict:
    if not model.capabilities.intervene:
        return {"unavailable": "the model cannot intervene"}
    device = device_of(model)
    multilabel = data.task == "multilabel"
    chosen = sample_test_indices(data, budget.samples, generator)
    labels_all = data.labels[chosen].float()
    size = labels_all.shape[1]
    matrix = np.zeros((size, size))
    flip_rates, leakages, counts = [], [], []
    with torch.no_grad():
        # the reference x̂ does not depend on the label intervened on: its oracle logits, once per image
        reference_logits = torch.cat([
            oracle(model.swap(x, x) if model.capabilities.swap else x)
            for x in (float_images(data, batch, device) for batch in chosen.split(settings.batch_size))])
        for i in range(size):
            keep = torch.ones(len(chosen), dtype=torch.bool) if multilabel else labels_all[:, i] == 0
            changes, flipped, leaked = [], [], []
            for batch, before_logits in zip(chosen[keep].split(settings.batch_size),
                                            reference_logits[keep.to(device)].split(settings.batch_size),
                                            strict=True):
                x = float_images(data, batch, device)
                target = target_labels(data.labels[batch].float(), i, data.task).to(device)
                after_logits = oracle(intervened_to(model, x, target, i))
                changes.append((oracle_log_probs(after_logits, target, data.task)
                                - oracle_log_probs(before_logits, target, data.task)).abs().cpu())
                after, before = hard_labels(after_logits, multilabel), hard_labels(before_logits, multilabel)
                flipped.append((after[:, i] == target[:, i]).float().cpu())
                if multilabel:
                    others = [j for j in range(size) if j != i]
                    leaked.append((after[:, others] != before[:, others]).float().mean(1).cpu())
            matrix[i] = torch.cat(changes).mean(0).double().numpy()
            flip_rates.append(float(torch.cat(flipped).mean()))
            leakages.append(float(torch.cat(leaked).mean()) if multilabel else None)
            counts.append(int(keep.sum()))
    result: dict = {"flip_rate": float(np.mean(flip_rates)), "flip_rate_per_label": flip_rates,
                    "matrix": matrix.tolist(), "labels": list(data.label_names), "n": len(chosen),
                    "images_per_label": counts}
    if multilabel:
        result |= {"leakage": float(np.mean(leakages)), "leakage_per_label": leakages}
    else:
        result |= {"leakage": None, "leakage_unavailable": "multi-class data have one label: nothing else can leak"}
    cond = condition_number(matrix)
    result["condition_number"] = cond
    if cond is None:
        result["condition_number_unavailable"] = "the matrix is singular: some intervention moved no oracle output"
    return result


def draw_heatmap(result: dict, folder: Path) -> None:
    """The intervention matrix as a heat-map, `folder/interventions.png`."""
    if "matrix" in result:
        folder.mkdir(parents=True, exist_ok=True)
        intervention_heatmap(result, folder / "interventions.png")


def intervention_heatmap(result: dict, path: Path) -> None:
    """The interventions evaluator's matrix as a heat-map, each row labelled with its flip rate and leakage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # only when drawing: evaluating needs no plotting library

    values, labels = np.asarray(result["matrix"]), result["labels"]
    leakages = result.get("leakage_per_label") or [None] * len(labels)
    rows = [f"{label}: flip {flip:.2f}" + ("" if leak is None else f", leak {leak:.2f}")
            for label, flip, leak in zip(labels, result["flip_rate_per_label"], leakages, strict=True)]
    figure, axes = plt.subplots(figsize=(2.5 + 0.5 * len(labels), 0.8 + 0.45 * len(labels)))
    image = axes.imshow(values, cmap="viridis")
    axes.set_xticks(range(len(labels)), labels, rotation=90)
    axes.set_yticks(range(len(labels)), rows)
    axes.set_xlabel("oracle label j (|Δ log p|)")
    axes.set_ylabel("intervened label i")
    condition = result.get("condition_number")
    axes.set_title(f"cond = {condition:.1f}" if condition is not None else "cond undefined (singular matrix)")
    figure.colorbar(image)
    figure.tight_layout()
    atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=100))
    plt.close(figure)



EVALUATOR = Evaluator(
    "interventions", evaluate,
    metrics=(Metric("flip_rate", "flip rate", True, Tolerance(0.05),
                    "a share of 300 intervened images per label after a short run"),
             Metric("leakage", "leakage", False, Tolerance(0.03),
                    "a share of the other labels' oracle decisions on 300 images per label after a short run",
                    ranked=False),  # doing nothing leaks nothing: read it beside the flip rate
             Metric("condition_number", "condition number", False, Tolerance(1.0, factor=15.0),
                    "the smallest singular value of a briefly trained model's intervention matrix is noise: a "
                    "float-level change of the training arithmetic (channels-last convolutions, the same losses to "
                    "1e-5) moved the CI grid's condition numbers by factors up to 10.4, so only gross changes count",
                    ".3g", "log")),
    details=("flip_rate_per_label", "leakage_per_label", "matrix", "labels", "n", "images_per_label"),
    draw=draw_heatmap,
    figures=(("interventions", "the oracle's |Δ log p| of each label when each label is intervened on"),),
    count=("n", "test images, each intervened on every label"),
    budget=BUDGET,
)
