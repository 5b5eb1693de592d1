"""What every evaluator shares: its declaration, its settings and resources, batched model calls,
and test-set sampling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.data.base import LabelledImages
from bench.metrics import Metric
from bench.nets import to_float_images


@dataclass(frozen=True)
class EvalSettings:
    """Sample counts; the same for every model. Each preset (`bench.presets`) chooses its own."""

    pairs: int = 2000  # swap: random test pairs
    intervened: int = 1000  # interventions: test images per label
    generated: int = 2000  # conditional / mutual_info: generations
    fid_images: int = 10_000  # FID and oracle Fréchet distance: generated and test images each
    batch_size: int = 250
    seed: int = 0


@dataclass(frozen=True)
class Resources:
    """What some evaluators need beyond the model, the data and the oracle; every field is optional.

    fid_weights  pytorch-fid's Inception weights file (None: torch's hub cache)
    gp_cache     where mutual_info caches the GP head it fits on the oracle's features (None: no cache)
    gp_config    how mutual_info fits that head (`evaluators.mutual_info.GPConfig`; None: its defaults)
    """

    fid_weights: str | Path | None = None
    gp_cache: Path | None = None
    gp_config: Any = None


NO_RESOURCES = Resources()

Evaluate = Callable[..., dict]  # (model, data, oracle, generator, settings, resources) -> result


@dataclass(frozen=True)
class Evaluator:
    """An evaluator's declaration: its function and everything it reports.

    metrics  the numbers tables and `bench check` read, as `Metric`s (key in the result dict)
    details  the other keys of its result (sample counts, per-label breakdowns, matrices)
    count    (key, unit): the result key holding the sample count and what it counts, which
             `bench perf` divides by the evaluator's time
    """

    name: str
    evaluate: Evaluate
    metrics: tuple[Metric, ...]
    details: tuple[str, ...]
    count: tuple[str, str]

    def qualified(self) -> dict[str, Metric]:
        """The metrics under their results.csv names, "<evaluator>.<key>"."""
        return {f"{self.name}.{metric.key}": metric for metric in self.metrics}

    def undeclared(self, result: dict) -> list[str]:
        """Keys of `result` that are neither a metric, a detail nor a reason for a missing number."""
        known = {metric.key for metric in self.metrics} | set(self.details) | {"unavailable"}
        return sorted(key for key in result if key not in known and not key.endswith("_unavailable"))


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
