"""`ground_truth` (Table G, not in the paper; data sets with generative factors: `synthfaces`): did the
model capture the characteristics themselves, and do its operations give the true answer?

synthfaces renders every label from a continuous characteristic (label = characteristic above a
threshold) and knows every image's factors, so the truth is known. On test images:

- capture: for label i, its characteristic coordinate c_i(x) is z_c^i itself when it is one-
  dimensional, else its projection on the difference of the two class means of z_c^i; either way
  oriented so that class 1 has the larger mean (no use of the true characteristic). Within each
  class, the Spearman correlation between c_i and the true characteristic; the two classes are
  averaged. 1: the latent orders images by their characteristic; 0: it holds only the label.
- leakage_r2: ridge regression (λ = 1e-3) from all characteristic latents to each context factor
  (background hue, face position and size), fitted on one half of the images, R² on the other;
  the mean over context factors. 0: no context in the characteristic latents.
- swap_error: for test pairs (a, b), the true swap t is rendered from a's characteristics and b's
  context factors; the error is the distance of model.swap(a, b) to t̂ = model.swap(t, t), the
  model's own reconstruction of the truth.
- intervention_error: for each test image and one label i (cycling through the labels), the truth
  t is x re-rendered with label i's characteristic mirrored across its threshold and every other
  factor equal; the error is the distance of model.intervene(x, i, 1 − y_i) to t̂ = model.swap(t, t).

Both are distances in the oracle's 128-dimensional feature space, divided by the mean distance
between the model's reconstructions of two random test images there: 0 is (the model's rendering
of) the truth, 1 as far from it as another image. Comparing with the model's reconstruction of the
truth, not the truth itself, keeps the decoder's blur out: the error measures the operation. For
a model that cannot swap, t and real images take the place of t̂ and the reconstructions.
The truth of a conditional generation is its labels, which Table 5 already judges; the renderer's
row there shows what a perfect generator scores. A metric the model or the data cannot give (no
characteristic coordinates, no renderer) is missing with its reason.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr

from bench.data.base import LabelledImages
from bench.metrics import Metric, Tolerance
from bench.nets import to_float_images
from evaluators.common import (
    NO_RESOURCES,
    EvalSettings,
    Evaluator,
    Resources,
    batched,
    device_of,
    float_images,
    sample_test_indices,
    truth_of,
)

CONTEXT_PREFIX = ("background_", "face_")


def characteristic_coordinate(latent: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) coordinate of one label's latent (N, k), oriented so class 1 lies higher."""
    direction = latent[labels == 1].mean(0) - latent[labels == 0].mean(0)
    if latent.shape[1] == 1:
        direction = np.sign(direction) + (direction == 0)
    return latent @ direction


def within_class_spearman(coordinate: np.ndarray, truth: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the two classes of Spearman's ρ between coordinate and truth; NaN where the coordinate is
    constant within a class (ρ is undefined there: the caller says so)."""
    classes = [labels == c for c in (0, 1)]
    if any(np.ptp(coordinate[inside]) == 0 for inside in classes):
        return float("nan")
    return float(np.mean([spearmanr(coordinate[inside], truth[inside]).statistic for inside in classes]))


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
    chosen = sample_test_indices(data, max(settings.generated, 1000), generator)
    result: dict = {"n": len(chosen)}
    if model.capabilities.characteristic:
        result |= characteristic_capture(model, data, chosen, settings)
    else:
        reason = "the model has no characteristic coordinates"
        result |= {"capture": None, "capture_unavailable": reason, "leakage_r2": None, "leakage_r2_unavailable": reason}
    return result | operation_errors(model, data, oracle, chosen, settings)


def characteristic_capture(model, data: LabelledImages, chosen: torch.Tensor, settings: EvalSettings) -> dict:
    """capture (with capture_per_label) and leakage_r2 (with leakage_per_factor) on the `chosen` test images."""
    device = device_of(model)
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
    result = {"capture_per_label": {label: value if np.isfinite(value) else None for label, value in capture.items()},
              "leakage_r2": float(leakage.mean()),
              "leakage_per_factor": dict(zip([names[j] for j in context], leakage.tolist(), strict=True))}
    constant = [label for label, value in capture.items() if not np.isfinite(value)]
    if constant:
        reason = (f"the characteristic coordinate of {', '.join(constant)} is constant within a class: there is no "
                  "order to compare with the truth")
        return {**result, "capture": None, "capture_unavailable": reason}
    return {**result, "capture": float(np.mean(list(capture.values())))}


def operation_errors(model, data: LabelledImages, oracle, chosen: torch.Tensor, settings: EvalSettings) -> dict:
    """swap_error and intervention_error against the rendered truth (see the module docstring)."""
    truth = truth_of(data)
    able = {"swap_error": (model.capabilities.swap, "the model cannot swap"),
            "intervention_error": (model.capabilities.intervene, "the model cannot intervene")}
    if truth is None or not any(can for can, _ in able.values()):
        reasons = {key: reason if truth is not None else f"{data.name} has no renderer for the true answer"
                   for key, (_, reason) in able.items()}
        return {key: value for name, reason in reasons.items()
                for key, value in ((name, None), (f"{name}_unavailable", reason))}
    device, size, labels = device_of(model), data.image_shape[-1], len(data.label_names)
    partner = chosen.roll(1)  # pairs (a, b): each test image with the one drawn before it

    def rendered(factors: np.ndarray) -> torch.Tensor:
        return to_float_images(torch.from_numpy(truth.render_at(factors, size)).to(device))

    def reconstructed(images: torch.Tensor) -> torch.Tensor:
        """Oracle features of the model's reconstruction of `images` (of the images, for a model that cannot swap)."""
        return oracle.features(model.swap(images, images) if model.capabilities.swap else images)

    def distances(a_idx: torch.Tensor, b_idx: torch.Tensor) -> torch.Tensor:
        """Per image: distance of two random reconstructions, swap error and intervention error, unnormalised (B, 3)."""
        a, b = float_images(data, a_idx, device), float_images(data, b_idx, device)
        factors_a, factors_b = data.factors[a_idx].numpy(), data.factors[b_idx].numpy()
        row = [(reconstructed(a) - reconstructed(b)).norm(dim=1)]
        if model.capabilities.swap:
            true_swap = rendered(np.concatenate([factors_a[:, :labels], factors_b[:, labels:]], 1))
            row.append((oracle.features(model.swap(a, b)) - reconstructed(true_swap)).norm(dim=1))
        else:
            row.append(torch.full_like(row[0], float("nan")))
        if model.capabilities.intervene:
            label = a_idx.remainder(labels)  # each image flips one label, cycling through them
            values = 1 - data.labels[a_idx, label]
            intervened, true_intervened = torch.empty_like(a), torch.empty_like(a)
            for i in label.unique().tolist():
                for value in values[label == i].unique().tolist():
                    rows = (label == i) & (values == value)
                    intervened[rows.to(device)] = model.intervene(a[rows.to(device)], i, value)
                    true_intervened[rows.to(device)] = rendered(truth.with_label(factors_a[rows.numpy()], i,
                                                                                 int(value)))
            row.append((oracle.features(intervened) - reconstructed(true_intervened)).norm(dim=1))
        else:
            row.append(torch.full_like(row[0], float("nan")))
        return torch.stack(row, 1).cpu()

    table = batched(distances, chosen, partner, batch_size=settings.batch_size).double()
    scale = float(table[:, 0].mean())
    result = {}
    for column, (key, (can, reason)) in enumerate(able.items(), 1):
        result |= {key: float(table[:, column].mean()) / scale} if can else {key: None, f"{key}_unavailable": reason}
    return result


ERROR_TOLERANCE = "a mean of normalised oracle-feature distances over 1,000 test images after a short run"
EVALUATOR = Evaluator(
    "ground_truth", evaluate,
    metrics=(Metric("capture", "capture (Spearman)", True, Tolerance(0.05),
                    "rank correlations on 1,000 test images after a short run"),
             Metric("leakage_r2", "leakage (R²)", False, Tolerance(0.05),
                    "a held-out R² on 500 test images after a short run"),
             Metric("swap_error", "swap error", False, Tolerance(0.05), ERROR_TOLERANCE),
             Metric("intervention_error", "intervention error", False, Tolerance(0.05), ERROR_TOLERANCE)),
    details=("capture_per_label", "leakage_per_factor", "n"),
    count=("n", "test images"),
)
