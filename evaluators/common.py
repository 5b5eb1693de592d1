"""What every evaluator shares: its declaration, its settings and resources, batched model calls,
and test-set sampling."""

from __future__ import annotations

import importlib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch

from bench.metrics import Metric
from bench.nets import to_float_images

if TYPE_CHECKING:
    from bench.data.base import LabelledImages


@dataclass(frozen=True)
class EvalSettings:
    """Sample counts; the same for every model. Each preset (`bench.presets`) chooses its own."""

    pairs: int = 2000  # swap: random test pairs
    intervened: int = 1000  # interventions: test images per label
    generated: int = 2000  # conditional / mutual_info: generations
    fid_images: int = 10_000  # FID and oracle Fréchet distance: generated and test images each
    truth_images: int = 2000  # ground_truth: test images (capture, swaps, interventions, reconstructions)
    batch_size: int = 250
    seed: int = 0


@dataclass(frozen=True)
class Resources:
    """What some evaluators need beyond the model, the data and the oracle; every field is optional.

    fid_weights   pytorch-fid's Inception weights file (None: torch's hub cache)
    fid_cache     where fid caches the real test images' Inception features (None: no cache)
    gp_cache      where mutual_info caches the GP head it fits on the oracle's features (None: no cache)
    gp_config     how mutual_info fits that head (`evaluators.mutual_info.GPConfig`; None: its defaults)
    reader_cache  where ground_truth caches its factor reader (`evaluators/factor_reader.py`; None: no cache)
    reader_config how that reader is trained (`evaluators.factor_reader.ReaderConfig`; None: its defaults)
    truth_cache   where ground_truth caches its reader's factors of the true answers, the same for every run of a
                  data set at an evaluation seed (None: no cache)
    """

    fid_weights: str | Path | None = None
    fid_cache: Path | None = None
    gp_cache: Path | None = None
    gp_config: Any = None
    reader_cache: Path | None = None
    reader_config: Any = None
    truth_cache: Path | None = None


NO_RESOURCES = Resources()

Evaluate = Callable[..., dict]  # (model, data, oracle, generator, settings, resources) -> result


@dataclass(frozen=True)
class Evaluator:
    """An evaluator's declaration: its function and everything it reports.

    metrics  the numbers tables and `bench check` read, as `Metric`s (key in the result dict)
    details  the other keys of its result (sample counts, per-label breakdowns, matrices)
    count    (key, unit): the result key holding the sample count and what it counts, which
             `bench perf` divides by the evaluator's time
    prepare  optional: (data, oracle, resources, device) -> None, builds what every run of a data set shares
             for this evaluator (a cached helper: the GP head, the factor reader) once, before parallel
             workers would each wait for it; the harness calls it for every data set of a sweep
    draw     optional: (result, folder) -> None, the figures drawn from a result (at the preset's evaluation
             seed), into the run's eval/figures/
    tasks    the data sets' tasks it is defined for (mutual_info: multi-class only)
    """

    name: str
    evaluate: Evaluate
    metrics: tuple[Metric, ...]
    details: tuple[str, ...]
    count: tuple[str, str]
    prepare: Callable[..., None] | None = None
    draw: Callable[[dict, Path], None] | None = None
    tasks: tuple[str, ...] = ("multilabel", "multiclass")  # the data it is defined for (others: "unavailable")

    def qualified(self) -> dict[str, Metric]:
        """The metrics under their results.csv names, "<evaluator>.<key>"."""
        return {f"{self.name}.{metric.key}": metric for metric in self.metrics}

    def problems(self, result: dict) -> list[str]:
        """What makes a result unfit to store: keys it does not declare; metrics that are NaN or infinite;
        metrics that are missing without a reason (`<key>_unavailable`, or `unavailable` for the whole)."""
        if "unavailable" in result:
            return []
        known = {metric.key for metric in self.metrics} | set(self.details)
        found = [f"undeclared key '{key}'" for key in result
                 if key not in known and not (key.endswith("_unavailable") and key[: -len("_unavailable")] in known)]
        for metric in self.metrics:
            value = result.get(metric.key)
            if value is None and not result.get(f"{metric.key}_unavailable"):
                found.append(f"'{metric.key}' missing without a '{metric.key}_unavailable' reason")
            elif isinstance(value, float) and not math.isfinite(value):
                found.append(f"'{metric.key}' is {value}")
        return found


def truth_of(data: LabelledImages) -> ModuleType | None:
    """The module that renders a data set's true answers (its registry entry's `truth`), or None."""
    from bench.data import DATASETS  # the registry, read when asked (not needed to import the evaluators)

    name = DATASETS[data.name].truth if data.name in DATASETS and data.factors is not None else None
    return importlib.import_module(name) if name else None


def device_of(model: torch.nn.Module) -> torch.device:
    """The device a model (or a control, which may have buffers only) lives on."""
    return next(itertools.chain(model.parameters(), model.buffers())).device


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
