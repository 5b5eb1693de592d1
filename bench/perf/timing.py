"""How `bench perf` times: its settings, synthetic data, interleaved medians of synchronised clocks, the machine."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import __version__
from bench.api import DataSpec
from bench.config import StepOptions
from bench.data import celeba
from bench.data.base import LabelledImages
from bench.runtime import environment as runtime_environment
from bench.runtime import tune_cpu_allocator

CELEBA_LABELS = len(celeba.LABELS)  # the paper's CelebA label subset


@dataclass(frozen=True)
class PerfSettings:
    batch: int = 200
    image_size: int = 64
    steps: int = 10
    warmup: int = 3
    repeats: int = 5
    cached_images: int = 4000  # the uint8 tensor batches are sliced from
    eval_samples: int = 200  # each evaluator's sample count (the ci preset's)
    step: StepOptions = field(default_factory=StepOptions)
    seed: int = 0


def synthetic_images(n: int, image_size: int, num_labels: int, task: str, seed: int) -> LabelledImages:
    """Random uint8 images with random labels (and factors): the shapes of a real set, none of its content."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, image_size, image_size), dtype=torch.uint8, generator=generator)
    if task == "multilabel":
        labels = (torch.rand(n, num_labels, generator=generator) < 0.3).float()
    else:
        classes = torch.randint(0, num_labels, (n,), generator=generator)
        labels = torch.nn.functional.one_hot(classes, num_labels).float()
    order = np.arange(n)
    splits = {"train": order[: n // 2], "valid": order[n // 2: 3 * n // 4], "test": order[3 * n // 4:]}
    factors = torch.rand(n, num_labels + 2, generator=generator)
    names = tuple(f"label_{i}" for i in range(num_labels))
    factor_names = (*names, "background_0", "face_0")  # ground_truth's context factors
    return LabelledImages("perf", images, labels, names, task, splits, factors, factor_names)  # type: ignore[arg-type]


def spec_of(data: LabelledImages) -> DataSpec:
    return data.spec(data.splits["train"], len(data.splits["train"]))


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_seconds(functions: list[Callable[[int], object]], settings: PerfSettings, device: torch.device,
                        flops: list[dict | None] | None = None) -> list[float]:
    """Per function, the median over `repeats` of the mean seconds of `steps` calls, after `warmup` calls.

    Each repeat times every function in turn, so that a machine's drift (clock, other load) over the
    measurement falls on all of them alike: side-by-side ratios are taken from the same minutes.
    With `flops`, each function's first warm-up call is counted by torch's FlopCounterMode into
    flops[i]["total"] (where flops[i] is a dict).
    """
    flops = flops or [None] * len(functions)
    for function, counts in zip(functions, flops, strict=True):
        for call in range(settings.warmup):
            if counts is not None and call == 0:
                with FlopCounterMode(display=False) as counter:
                    function(call)
                counts["total"] = counter.get_total_flops()
            else:
                function(call)
    synchronise(device)
    timings: list[list[float]] = [[] for _ in functions]
    for repeat in range(settings.repeats):
        for function, seconds in zip(functions, timings, strict=True):
            started = time.perf_counter()
            for call in range(settings.steps):
                function(settings.warmup + repeat * settings.steps + call)
            synchronise(device)
            seconds.append((time.perf_counter() - started) / settings.steps)
    return [statistics.median(seconds) for seconds in timings]


def seconds_per_call(function: Callable[[int], object], settings: PerfSettings, device: torch.device,
                     flops: dict | None = None) -> float:
    """`interleaved_seconds` of one function."""
    return interleaved_seconds([function], settings, device, [flops])[0]


def batch_indices(settings: PerfSettings, count: int, device: torch.device) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(settings.seed)
    return [torch.randperm(settings.cached_images, generator=generator)[: settings.batch].to(device)
            for _ in range(count)]


def matmul_gflop_per_s(device: torch.device, size: int = 2048, repeats: int = 4, rounds: int = 3) -> float:
    """The device's float32 matrix-multiply rate, the best of `rounds`: a practical peak to read GFLOP/s against."""
    first, second = torch.rand(size, size, device=device), torch.rand(size, size, device=device)
    for _ in range(3):
        first @ second
    synchronise(device)
    best = math.inf
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeats):
            first @ second
        synchronise(device)
        best = min(best, time.perf_counter() - started)
    return round(repeats * 2 * size**3 / best / 1e9, 1)


def environment(device: torch.device) -> dict:
    """Where the speeds were measured: the run's environment record (`bench.runtime.environment`, the one every run
    and stored set keeps) with what speed also depends on: the allocator, the float32 matmul rate, torchvision and
    the suite's version."""
    import torchvision

    return {**runtime_environment(device), "allocator": tune_cpu_allocator(),
            "matmul_gflop_per_s": matmul_gflop_per_s(device), "torchvision": torchvision.__version__,
            "suite_version": __version__}
