"""What every evaluator shares: its declaration, its settings and resources, batched model calls,
and test-set sampling."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from bench.api import to_float_images
from bench.budgets import Budget
from bench.metrics import Metric

if TYPE_CHECKING:
    from bench.data.base import LabelledImages


@dataclass(frozen=True)
class Resources:
    """What evaluators need beyond the model, the data and the oracle; every field is optional.

    cache        the data set's oracle weights file (`evaluators/oracle.py`): an evaluator keeps what it builds
                 once per data set and oracle (a fitted helper, features of the real images) beside it, at
                 `cache_file(suffix)` (None: nothing is cached)
    fid_weights  pytorch-fid's Inception weights file, given by the user (None: torch's hub cache)
    """

    cache: Path | None = None
    fid_weights: str | Path | None = None

    def cache_file(self, suffix: str) -> Path | None:
        """Where an evaluator caches a helper: beside the oracle, its name ending in `suffix` (".gp.pt")."""
        return None if self.cache is None else self.cache.with_suffix(suffix)


NO_RESOURCES = Resources()

Evaluate = Callable[..., dict]  # (model, data, oracle, generator, settings, resources, budget) -> result


@dataclass(frozen=True)
class Evaluator:
    """An evaluator's declaration: its function and everything it reports.

    metrics  the numbers tables and `bench check` read, as `Metric`s (key in the result dict)
    details  the other keys of its result (sample counts, per-label breakdowns, matrices)
    count    (key, unit): the result key holding the sample count and what it counts, which
             `bench perf` divides by the evaluator's time
    budget   its default `Budget` (None: it draws no sample, e.g. it reads the whole test set); each preset
             sets its own in `Preset.budgets`, and the harness passes it to `evaluate` and `prepare`
    prepare  optional: (data, oracle, resources, budget, device) -> None, builds what every run of a data set
             shares for this evaluator (a cached helper: the GP head, the factor reader) once, before parallel
             workers would each wait for it; the harness calls it for every data set of a sweep
    draw     optional: (result, folder) -> None, the figures drawn from a result (at the preset's evaluation
             seed), into the run's eval/figures/
    figures  what `draw` writes: (file stem, what it shows) per PNG, which the report's gallery shows
    tasks    the data sets' tasks it is defined for (mutual_info: multi-class only)
    stand_in optional: (resources, scratch folder, device) -> (resources, note), what `bench perf` times it
             with where a file it needs is missing on this machine (FID: Inception with random weights), and
             the note its row carries; None: it is timed with the resources as given
    """

    name: str
    evaluate: Evaluate
    metrics: tuple[Metric, ...]
    details: tuple[str, ...]
    count: tuple[str, str]
    budget: Budget | None = None
    prepare: Callable[..., None] | None = None
    draw: Callable[[dict, Path], None] | None = None
    figures: tuple[tuple[str, str], ...] = ()
    tasks: tuple[str, ...] = ("multilabel", "multiclass")  # the data it is defined for (others: "unavailable")
    stand_in: Callable[..., tuple[Resources, str]] | None = None

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
