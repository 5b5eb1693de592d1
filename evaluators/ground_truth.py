"""`ground_truth` (Table G, not in the paper; `synthfaces` only): did the characteristic latents
capture the characteristic itself, beyond the label, and nothing else?

synthfaces renders every label from a continuous characteristic (label = characteristic above a
threshold), so the truth is known. On test images:

- capture: for label i, its characteristic coordinate c_i(x) is z_c^i itself when it is one-
  dimensional, else its projection on the difference of the two class means of z_c^i; either way
  oriented so that class 1 has the larger mean (no use of the true characteristic). Within each
  class, the Spearman correlation between c_i and the true characteristic; the two classes are
  averaged. 1: the latent orders images by their characteristic; 0: it holds only the label.
- leakage: ridge regression (λ = 1e-3) from all characteristic latents to each context factor
  (background hue, face position and size), fitted on one half of the images, R² on the other;
  the mean over context factors. 0: no context in the characteristic latents.

Models without characteristic coordinates (capabilities.characteristic false) get "unavailable".
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr

from bench.data.base import LabelledImages
from bench.metrics import Metric, Tolerance
from evaluators.common import (
    NO_RESOURCES,
    EvalSettings,
    Evaluator,
    Resources,
    batched,
    float_images,
    sample_test_indices,
)

CONTEXT_PREFIX = ("background_", "face_")


def characteristic_coordinate(latent: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) coordinate of one label's latent (N, k), oriented so class 1 lies higher."""
    direction = latent[labels == 1].mean(0) - latent[labels == 0].mean(0)
    if latent.shape[1] == 1:
        direction = np.sign(direction) + (direction == 0)
    return latent @ direction


def within_class_spearman(coordinate: np.ndarray, truth: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the two classes of Spearman's ρ between coordinate and truth."""
    return float(np.mean([spearmanr(coordinate[labels == c], truth[labels == c]).statistic for c in (0, 1)]))


def ridge_r2(inputs: np.ndarray, targets: np.ndarray, penalty: float = 1e-3) -> np.ndarray:
    """R² per target column on the second half, of a ridge fit (with intercept) on the first half."""
    half = len(inputs) // 2
    design = np.hstack([inputs, np.ones((len(inputs), 1))])
    train, held_out = design[:half], design[half:]
    weights = np.linalg.solve(train.T @ train + penalty * np.eye(design.shape[1]), train.T @ targets[:half])
    residual = ((targets[half:] - held_out @ weights) ** 2).sum(0)
    total = ((targets[half:] - targets[half:].mean(0)) ** 2).sum(0)
    return 1 - residual / total


def evaluate(model, data: LabelledImages, oracle, generator: torch.Generator, settings: EvalSettings,
             resources: Resources = NO_RESOURCES) -> dict:
    if data.factors is None:
        return {"unavailable": f"{data.name} has no ground-truth factors"}
    if not model.capabilities.characteristic:
        return {"unavailable": "the model has no characteristic coordinates"}
    device = next(model.parameters()).device
    chosen = sample_test_indices(data, max(settings.generated, 1000), generator)
    latents = batched(lambda idx: model.characteristic(float_images(data, idx, device)).cpu(), chosen,
                      batch_size=settings.batch_size).double().numpy()  # (N, L, k)
    labels = data.labels[chosen].numpy()
    factors = data.factors[chosen].double().numpy()
    names = list(data.factor_names)
    capture = {}
    for i, label in enumerate(data.label_names):
        coordinate = characteristic_coordinate(latents[:, i], labels[:, i])
        capture[label] = within_class_spearman(coordinate, factors[:, i], labels[:, i])
    context = [j for j, name in enumerate(names) if name.startswith(CONTEXT_PREFIX)]
    if not context:
        raise ValueError(f"{data.name} has factors but none is a context factor (names starting with "
                         f"{' or '.join(CONTEXT_PREFIX)}); leakage cannot be measured")
    leakage = ridge_r2(latents.reshape(len(latents), -1), factors[:, context])
    return {"capture": float(np.mean(list(capture.values()))), "capture_per_label": capture,
            "leakage_r2": float(leakage.mean()),
            "leakage_per_factor": dict(zip([names[j] for j in context], leakage.tolist(), strict=True)),
            "n": len(chosen)}


EVALUATOR = Evaluator(
    "ground_truth", evaluate,
    metrics=(Metric("capture", "capture (Spearman)", True, Tolerance(0.05),
                    "rank correlations on 1,000 test images after a short run"),
             Metric("leakage_r2", "leakage (R²)", False, Tolerance(0.05),
                    "a held-out R² on 500 test images after a short run")),
    details=("capture_per_label", "leakage_per_factor", "n"),
    count=("n", "test images"),
)
