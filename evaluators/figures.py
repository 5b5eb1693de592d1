"""PNG figures of a model: latent traversals (paper figure 3), conditional generations (figure 4), per-pixel
variance of repeated stochastic interventions (figure 5) and characteristic swaps (figure 7). Every figure uses the
evaluation seed's test images. (An evaluator draws its own figures: the intervention heat-maps of figures 10–16
are evaluators/interventions.py's.)"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torchvision.utils import save_image

from bench.files import atomic_write
from evaluators.common import device_of, float_images, sample_test_indices
from evaluators.interventions import intervened_to, target_labels

if TYPE_CHECKING:
    from bench.data.base import LabelledImages

ROWS = 8
FIGURES = {  # what draw_all writes: file stem -> what it shows (the rows and columns of the grid)
    "swaps": "each row: characteristics of a, context of b, the swap",
    "conditional": "each row: 8 generations for the labels of one test image",
    "traversals": "one row per label ({labels}), the first test image",
    "interventions_grid": "each row: a test image, then each label flipped in turn ({labels})",
    "intervention_variance": "top: 8 test images; bottom: per-pixel variance of 16 stochastic interventions on "
                             "{first}",
}


def _save_grid(images: torch.Tensor, columns: int, path: Path) -> None:
    """Write a (N, C, H, W) grid atomically."""
    atomic_write(path, lambda handle: save_image(images.float().cpu(), handle, format="png", nrow=columns, padding=1,
                                                 pad_value=1.0))


@torch.no_grad()
def draw_all(model, data: LabelledImages, generator: torch.Generator, directory: Path) -> list[Path]:
    """Every image figure the model's capabilities allow; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    device = device_of(model)
    chosen = sample_test_indices(data, 2 * ROWS, generator)
    x = float_images(data, chosen[:ROWS], device)
    other = float_images(data, chosen[ROWS:], device)
    labels = data.labels[chosen[:ROWS]].float().to(device)
    written = []
    capabilities = model.capabilities
    if capabilities.swap:  # figure 7: row k = [characteristics of a_k, context b_k, swap]
        path = directory / "swaps.png"
        _save_grid(torch.stack([x, other, model.swap(x, other)], 1).flatten(0, 1), 3, path)
        written.append(path)
    if capabilities.generate:  # figure 4: 8 generations for each of 8 test label vectors
        path = directory / "conditional.png"
        _save_grid(model.generate(labels, ROWS).flatten(0, 1), ROWS, path)
        written.append(path)
    if capabilities.traverse:  # figure 3: one row per label, first test image
        path = directory / "traversals.png"
        rows = [model.traverse(x[:1], i, ROWS)[0] for i in range(labels.shape[1])]
        _save_grid(torch.cat(rows), ROWS, path)
        written.append(path)
    if capabilities.intervene:  # each row: a test image, then each label flipped in turn (as Table C does)
        path = directory / "interventions_grid.png"
        targets = [target_labels(labels, i, data.task).to(device) for i in range(labels.shape[1])]
        columns = [x, *(intervened_to(model, x, target, i) for i, target in enumerate(targets))]
        _save_grid(torch.stack(columns, 1).flatten(0, 1), len(columns), path)
        written.append(path)
    if capabilities.intervene:  # figure 5: per-pixel variance of 16 stochastic interventions, label 0 → 1
        path = directory / "intervention_variance.png"
        repeats = torch.stack([model.intervene(x, 0, 1.0, stochastic=True) for _ in range(16)])
        variance = repeats.var(0).mean(1, keepdim=True)
        _save_grid(torch.cat([x.mean(1, keepdim=True), variance / variance.max().clamp(min=1e-8)]), ROWS, path)
        written.append(path)
    return written
