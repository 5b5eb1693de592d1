"""What every evaluator shares: its settings, batched model calls, and test-set sampling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench.data.base import LabelledImages
from bench.nets import to_float_images


@dataclass(frozen=True)
class EvalSettings:
    """Sample counts; the same for every model. `for_preset` scales them to the training budget."""

    pairs: int = 2000  # swap: random test pairs
    intervened: int = 1000  # interventions: test images per label
    generated: int = 2000  # conditional / mutual_info: generations
    fid_images: int = 10_000  # FID and oracle Fréchet distance: generated and test images each
    batch_size: int = 250
    seed: int = 0

    @classmethod
    def for_preset(cls, preset: str) -> EvalSettings:
        if preset == "smoke":
            return cls(pairs=200, intervened=100, generated=200, fid_images=200)
        if preset == "quick":
            return cls(pairs=1000, intervened=300, generated=1000, fid_images=1000)
        return cls()


def batched(function: Callable[..., torch.Tensor], *tensors: torch.Tensor, batch_size: int) -> torch.Tensor:
    """torch.cat of function(*chunks) over aligned chunks of the tensors, without gradients."""
    with torch.no_grad():
        return torch.cat([function(*chunk) for chunk in zip(*(t.split(batch_size) for t in tensors), strict=True)])


def float_images(data: LabelledImages, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Float test images in [0, 1] on `device` for the given data set indices."""
    return to_float_images(data.images[indices].to(device))


def sample_test_indices(data: LabelledImages, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` test indices drawn without replacement (all of them when the test set is smaller)."""
    test = torch.as_tensor(data.splits["test"])
    return test[torch.randperm(len(test), generator=generator)[: min(count, len(test))]]
