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
  context factors. The factor reader (`evaluators/factor_reader.py`, an inverse renderer trained on the
  training images) reads the factors of model.swap(a, b) and of t; each factor's absolute difference is
  divided by that factor's mean difference between the two images of a pair as read (1: as far apart
  as two random test images are). The error is the mean of two parts: the characteristics (should come
  from a) and the context (should come from b). 0: the truth, as far as the reader can tell; ½: the
  model returned a, or b (one part right, the other as far off as another image); a model that keeps
  only a's label values scores in between.
- intervention_error: for each test image and one label i (cycling through the labels), the truth t is
  x re-rendered with label i's characteristic mirrored across its threshold and every other factor
  equal; the error, normalised the same way, is the mean of two parts: label i's characteristic (the
  target) and the mean of the other factors (what should not move). Returning x unchanged scores well
  above ½ (0.82 on the ci preset's small synthfaces: mirroring moves a characteristic far), changing the
  wrong label more.

- reconstruction_error: the same for the model's reconstruction swap(a, a) against a itself, with the
  characteristics and the context as its two parts: how much of every factor the model's rendering
  carries at all. A swap or intervention error near it is the decoder's loss, not the operation's.

Reading factors, not pixels, keeps the decoder's blur out of the errors (the reader is trained on
blurred images too: the truth blurred by one pixel scores well below a swap that carries only the label
value), and comparing with the truth, not with the model's own reconstruction of it, does not let a
model whose reconstructions lose the characteristics pass for one that swaps them. The reader's own
test R² is reported beside the errors (`reader_test_r2`); its misreadings are a floor under every
model's error that the renderer control, which gives the truth exactly, does not show. The true answers
and their readings do not depend on the model: they are rendered and read once per data set and evaluation
seed and cached beside the reader (`truth_readings`); the readings are made on one thread, so that a result
that is the truth reads exactly as the truth whichever process made the cache.

The truth of a conditional generation is its labels, which Table 5 already judges; the renderer's
row there shows what a perfect generator scores. A metric the model or the data cannot give (no
characteristic coordinates, no renderer) is missing with its reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch

from bench.api import to_float_images
from bench.budgets import EvalSettings, GroundTruthBudget, ReaderConfig
from bench.data import truth_of
from bench.files import atomic_torch_save, cached_build
from bench.metrics import Metric, Tolerance
from bench.runtime import one_thread
from evaluators.common import (
    NO_RESOURCES,
    Evaluator,
    Resources,
    batched,
    device_of,
    float_images,
    sample_test_indices,
)
from evaluators.factor_reader import FactorReader, reader_for

if TYPE_CHECKING:
    from bench.data.base import LabelledImages

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
    from scipy.stats import spearmanr  # here: scipy.stats takes ~1 s to import, which most commands do without

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


BUDGET = GroundTruthBudget(samples=2000, reader=ReaderConfig(steps=5000))


def evaluate(model, data: LabelledImages, oracle, generator: torch.Generator, settings: EvalSettings,
             resources: Resources = NO_RESOURCES, budget: GroundTruthBudget = BUDGET) -> dict:
    if data.factors is None:
        return {"unavailable": f"{data.name} has no ground-truth factors"}
    chosen = sample_test_indices(data, budget.samples, generator)
    result: dict = {"n": len(chosen)}
    if model.capabilities.characteristic:
        result |= characteristic_capture(model, data, chosen, settings)
    else:
        reason = "the model has no characteristic coordinates"
        result |= {"capture": None, "capture_unavailable": reason, "leakage_r2": None, "leakage_r2_unavailable": reason}
    return result | operation_errors(model, data, chosen, settings, resources, budget.reader)


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


def flipped_labels(indices: torch.Tensor, labels: int) -> torch.Tensor:
    """The label each test image's intervention flips: its data set index mod L, so the images cycle through the
    labels."""
    return indices.remainder(labels)


def intervention_groups(a_idx: torch.Tensor, data: LabelledImages) -> Iterator[tuple[int, float, torch.Tensor]]:
    """(label i, value, rows) of a batch's interventions: each image flips its label (`flipped_labels`) to the
    other value, so the rows of one group share the label and the value."""
    label = flipped_labels(a_idx, len(data.label_names))
    values = 1 - data.labels[a_idx, label]
    for i in label.unique().tolist():
        for value in values[label == i].unique().tolist():
            yield i, value, (label == i) & (values == value)


@one_thread()
def read_truth(reader: FactorReader, data: LabelledImages, truth: ModuleType, chosen: torch.Tensor,
               partner: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """(N, 4, F): the reader's factors of a, of b, of the true swap of (a, b) and of the true intervention on a,
    for the pairs (chosen, partner); on one thread, so that they are the same whichever process reads them."""
    size, labels = data.image_shape[-1], len(data.label_names)

    def rendered(factors: np.ndarray) -> torch.Tensor:
        return to_float_images(torch.from_numpy(truth.render_at(factors, size)).to(device))

    def read(a_idx: torch.Tensor, b_idx: torch.Tensor) -> torch.Tensor:
        a, b = float_images(data, a_idx, device), float_images(data, b_idx, device)
        factors_a, factors_b = data.factors[a_idx].numpy(), data.factors[b_idx].numpy()
        true_swap = rendered(np.concatenate([factors_a[:, :labels], factors_b[:, labels:]], 1))
        true_intervened = torch.empty_like(a)
        for i, value, rows in intervention_groups(a_idx, data):
            true_intervened[rows.to(device)] = rendered(truth.with_label(factors_a[rows.numpy()], i, int(value)))
        return torch.stack([reader(a), reader(b), reader(true_swap), reader(true_intervened)], 1).cpu()

    return batched(read, chosen, partner, batch_size=batch_size)


def truth_readings(reader: FactorReader, record: dict, data: LabelledImages, truth: ModuleType, chosen: torch.Tensor,
                   partner: torch.Tensor, batch_size: int, device: torch.device, cache: Path | None) -> torch.Tensor:
    """`read_truth`, cached beside the reader (`cache` plus a hash of the reader's record, the pairs, the batch size
    and the device type): every run of a data set at an evaluation seed is compared with the same true answers,
    so they are rendered and read once. None: read afresh, not kept."""
    if cache is None:
        return read_truth(reader, data, truth, chosen, partner, batch_size, device)
    key = hashlib.sha256(json.dumps(record, sort_keys=True).encode())
    for part in (chosen.numpy().tobytes(), partner.numpy().tobytes(), f"{batch_size}-{device.type}".encode()):
        key.update(part)
    path = cache.with_name(f"{cache.stem}-{key.hexdigest()[:12]}.pt")
    return cached_build(path, lambda: read_truth(reader, data, truth, chosen, partner, batch_size, device),
                        atomic_torch_save, lambda saved: torch.load(saved, map_location="cpu", weights_only=True),
                        f"{data.name} readings of the true answers")  # two workers read them once


@one_thread()
def operation_errors(model, data: LabelledImages, chosen: torch.Tensor, settings: EvalSettings,
                     resources: Resources, reader_config: ReaderConfig) -> dict:
    """swap_error, intervention_error and reconstruction_error, read by the factor reader (see the module
    docstring); on one thread, as the true answers are read (`read_truth`), so that a result that is the truth
    reads exactly as the truth."""
    truth = truth_of(data)
    able = {"swap_error": (model.capabilities.swap, "the model cannot swap"),
            "intervention_error": (model.capabilities.intervene, "the model cannot intervene"),
            "reconstruction_error": (model.capabilities.swap, "the model cannot swap (its reconstruction: swap(x, x))")}
    if truth is None or not any(can for can, _ in able.values()):
        reasons = {key: reason if truth is not None else f"{data.name} has no renderer for the true answer"
                   for key, (_, reason) in able.items()}
        return {key: value for name, reason in reasons.items()
                for key, value in ((name, None), (f"{name}_unavailable", reason))}
    device, labels = device_of(model), len(data.label_names)
    reader, record = reader_for(data, truth, resources.cache_file(".reader.pt"), reader_config, device)
    partner = chosen.roll(1)  # pairs (a, b): each test image with the one drawn before it
    read_a, read_b, true_swap, true_intervened = truth_readings(reader, record, data, truth, chosen, partner,
                                                                settings.batch_size, device,
                                                                resources.cache_file(".truth.pt")).unbind(1)

    def read_results(a_idx: torch.Tensor, b_idx: torch.Tensor) -> torch.Tensor:
        """(B, 3, F): the reader's factors of the model's swap of (a, b), of its intervention on a and of its
        reconstruction of a, swap(a, a) (NaN where the model cannot)."""
        a, b = float_images(data, a_idx, device), float_images(data, b_idx, device)
        cannot = torch.full((len(a), read_a.shape[-1]), float("nan"), device=device)
        swapped = reader(model.swap(a, b)) if model.capabilities.swap else cannot
        intervened = cannot
        if model.capabilities.intervene:
            results = torch.empty_like(a)
            for i, value, rows in intervention_groups(a_idx, data):
                results[rows.to(device)] = model.intervene(a[rows.to(device)], i, value)
            intervened = reader(results)
        reconstructed = reader(model.swap(a, a)) if model.capabilities.swap else cannot
        return torch.stack([swapped, intervened, reconstructed], 1).cpu()

    swapped, intervened, reconstructed = batched(read_results, chosen, partner,
                                                 batch_size=settings.batch_size).unbind(1)
    # per image, the factors' absolute differences (N, 4, F): between a and b as read (the scale); between the swap
    # and its truth; between the intervention and its truth; between the reconstruction of a and a
    table = torch.stack([read_a - read_b, swapped - true_swap, intervened - true_intervened, reconstructed - read_a],
                        1).abs().double()
    normalised = table[:, 1:] / table[:, 0].mean(0)  # per factor, in units of the distance between two images
    characteristic, context = normalised[..., :labels], normalised[..., labels:]

    def characteristics_and_context(column: int) -> dict[str, float]:
        return {"characteristics": float(characteristic[:, column].mean()), "context": float(context[:, column].mean())}

    flipped = flipped_labels(chosen, labels)
    target = characteristic[:, 1].gather(1, flipped[:, None]).squeeze(1)
    others = (normalised[:, 1].sum(1) - target) / (normalised.shape[-1] - 1)
    intervention_parts = {"target": float(target.mean()), "others": float(others.mean())}
    result: dict = {"reader_test_r2": record["test_r2"]}
    for key, parts in (("swap_error", characteristics_and_context(0)), ("intervention_error", intervention_parts),
                       ("reconstruction_error", characteristics_and_context(2))):
        can, reason = able[key]
        result |= ({key: float(np.mean(list(parts.values()))), f"{key}_parts": parts} if can
                   else {key: None, f"{key}_unavailable": reason})
    return result


ERROR_TOLERANCE = "a mean of normalised factor errors (as read) over 1,000 test images after a short run"
def prepare(data: LabelledImages, oracle, resources: Resources, budget: GroundTruthBudget,
            device: torch.device) -> None:
    """The factor reader every run of a data set with a renderer shares, trained (and cached) once."""
    truth = truth_of(data)
    if truth is not None:
        reader_for(data, truth, resources.cache_file(".reader.pt"), budget.reader, device)


EVALUATOR = Evaluator(
    "ground_truth", evaluate,
    metrics=(Metric("capture", "capture (Spearman)", True, Tolerance(0.05),
                    "rank correlations on 1,000 test images after a short run"),
             Metric("leakage_r2", "leakage (R²)", False, Tolerance(0.05),
                    "a held-out R² on 500 test images after a short run"),
             Metric("swap_error", "swap error", False, Tolerance(0.05), ERROR_TOLERANCE),
             Metric("intervention_error", "intervention error", False, Tolerance(0.05), ERROR_TOLERANCE),
             # returning the input reconstructs perfectly and does nothing else: read it beside the other errors
             Metric("reconstruction_error", "reconstruction error", False, Tolerance(0.05), ERROR_TOLERANCE,
                    ranked=False)),
    details=("capture_per_label", "leakage_per_factor", "n", "swap_error_parts", "intervention_error_parts",
             "reconstruction_error_parts", "reader_test_r2"),
    count=("n", "test images"),
    budget=BUDGET,
    prepare=prepare,
)
