"""`bench perf`'s training measurements: the trainer's step per model and mode, the data pipeline, the fast layers
against torch's, the operator profile, an epoch, and the authors' CCVAE step beside this suite's."""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile
from tqdm.auto import tqdm

from bench import layers, models
from bench.api import DataSpec
from bench.config import StepOptions
from bench.data.base import LabelledImages
from bench.errors import BenchError
from bench.perf.timing import (
    CELEBA_LABELS,
    PerfSettings,
    batch_indices,
    interleaved_seconds,
    seconds_per_call,
    spec_of,
    synchronise,
    synthetic_images,
)
from bench.train import LOSS_READ_EVERY, EpochLosses, TrainingStep, float_batch


def training_step(model_name: str, data: LabelledImages, settings: PerfSettings, device: torch.device,
                  labelled: bool) -> Callable[[int], object]:
    """call -> one training step of a registered model (the trainer's TrainingStep) on batch `call`."""
    torch.manual_seed(settings.seed)
    model = models.resolve(model_name)(spec_of(data), **models.model_entry(model_name).options).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    step = TrainingStep(model, optimizer, data.images.to(device), data.labels.to(device), settings.step)
    indices = batch_indices(settings, settings.warmup + settings.repeats * settings.steps, device)
    return lambda call: step(indices[call], labelled)


def data_seconds(data: LabelledImages, settings: PerfSettings, device: torch.device) -> float:
    """Seconds per batch of the pipeline alone: slice the cached uint8 tensor, float on the device."""
    images = data.images.to(device)
    indices = batch_indices(settings, settings.warmup + settings.repeats * settings.steps, device)
    return seconds_per_call(lambda call: float_batch(images, indices[call], settings.step.channels_last),
                            settings, device)


LAYER_CASES: tuple[tuple[Callable[[], torch.nn.Module], tuple[int, int, int]], ...] = (  # (layer, input C×H×W)
    (lambda: layers.StridedConvTranspose2d(32, 32, 4, 2, 1), (32, 16, 16)),
    (lambda: layers.PhasedConvTranspose2d(32, 3), (32, 32, 32)),
    (lambda: layers.WholeInputConv2d(128, 256, 4, 1), (128, 4, 4)),
    (lambda: layers.WholeOutputConvTranspose2d(256, 128, 4), (256, 1, 1)),
)


def forward_backward(layer: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor) -> Callable[[int], object]:
    """call -> the layer's forward on x and its backward from `grad` (gradients returned, not accumulated)."""
    return lambda call: torch.autograd.grad(layer(x), [x, *layer.parameters()], grad)


def layer_rows(settings: PerfSettings, device: torch.device) -> list[dict]:
    """Forward + backward (input and parameter gradients) of each `LAYER_CASES` layer and of torch's
    equivalent, interleaved, on a batch; `vs_torch` is how many times faster the suite's layer is."""
    memory_format = torch.channels_last if settings.step.channels_last else torch.contiguous_format
    rows = []
    for make, shape in LAYER_CASES:
        torch.manual_seed(settings.seed)
        fast = make().to(device, memory_format=memory_format)
        plain = layers.torch_equivalent(fast).to(memory_format=memory_format)
        x = torch.randn(settings.batch, *shape, device=device).contiguous(memory_format=memory_format)
        x.requires_grad_()
        grad = torch.randn_like(plain(x))
        fast_seconds, torch_seconds = interleaved_seconds(
            [forward_backward(fast, x, grad), forward_backward(plain, x, grad)], settings, device)
        name, note = type(fast).__name__, f"forward + backward on {settings.batch}×{shape[0]}×{shape[1]}×{shape[2]}"
        rows += [{"model": name, "seconds": fast_seconds, "note": note,
                  "vs_torch": round(torch_seconds / fast_seconds, 2)},
                 {"model": name, "seconds": torch_seconds, "note": note, "implementation": "torch"}]
    return rows


def operator_profile(step: Callable[[int], object], settings: PerfSettings, device: torch.device) -> pd.DataFrame:
    """Per operator, its own (self) time per step over `steps` calls after `warmup`, from torch.profiler.

    Columns: operator, calls_per_step, ms_per_step, share (of all operators' time), slowest first.
    On a GPU the device's time is what counts.
    """
    for call in range(settings.warmup):
        step(call)
    synchronise(device)
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if device.type == "cuda" else [])]
    with profile(activities=activities) as profiler:
        for call in range(settings.steps):
            step(settings.warmup + call)
        synchronise(device)
    self_time = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    frame = pd.DataFrame([{"operator": event.key, "calls_per_step": event.count / settings.steps,
                           "ms_per_step": getattr(event, self_time) / 1e3 / settings.steps}
                          for event in profiler.key_averages()])
    frame = frame[frame.ms_per_step > 0].sort_values("ms_per_step", ascending=False, ignore_index=True)
    frame["share"] = frame.ms_per_step / frame.ms_per_step.sum()
    return frame


def convolution_share(operators: pd.DataFrame) -> float:
    """The share of operator time in convolutions, forward and backward (operators named *conv*)."""
    return float(operators.loc[operators.operator.str.contains("conv", case=False), "share"].sum())


def models_to_time(models: list[str], reference: type | None) -> list[str]:
    """The models whose steps are timed: with a reference, CCVAE's always (the authors' is timed beside it)."""
    return models if reference is None or "ccvae" in models else ["ccvae", *models]


def steps_to_compare(model: str, mode: str, data: LabelledImages, settings: PerfSettings, device: torch.device,
                     reference: type | None) -> dict[str, Callable[[int], object]]:
    """The model's training step ("bench") and, for CCVAE with a reference, the authors' step ("authors", eager)."""
    labelled = mode == "sup"
    steps = {"bench": training_step(model, data, settings, device, labelled)}
    if reference is not None and model == "ccvae":
        eager = replace(settings, step=StepOptions(channels_last=False))
        steps["authors"] = reference_step(reference, data, eager, device, labelled)
    return steps


def profile_steps(models: list[str], device: torch.device, settings: PerfSettings,
                  reference: type | None = None) -> pd.DataFrame:
    """`operator_profile` of every model's sup and unsup step (and the authors' beside CCVAE's), stacked."""
    data = synthetic_images(settings.cached_images, settings.image_size, CELEBA_LABELS, "multilabel", settings.seed)
    frames = []
    for model in models_to_time(models, reference):
        for mode in ("sup", "unsup"):
            for implementation, step in steps_to_compare(model, mode, data, settings, device, reference).items():
                operators = operator_profile(step, settings, device)
                operators.insert(0, "implementation", implementation)
                operators.insert(0, "mode", mode)
                operators.insert(0, "model", model)
                frames.append(operators)
    return pd.concat(frames, ignore_index=True)


def check_reference(checkout: Path) -> None:
    if not (checkout / "models" / "ccvae.py").is_file():
        raise BenchError(f"--reference {checkout} has no models/ccvae.py; give a checkout of "
                         "https://github.com/thwjoy/ccvae_pytorch")


def import_authors_ccvae(checkout: Path) -> type:
    """The CCVAE class of a checkout of the authors' plain-PyTorch code (`models/ccvae.py`).

    Their modules import each other from the checkout's root (`from models.networks import ...`),
    so the root is on sys.path while they are imported, and only then."""
    check_reference(checkout)
    sys.path.insert(0, str(checkout))
    try:
        return importlib.import_module("models.ccvae").CCVAE
    finally:
        sys.path.remove(str(checkout))


def reference_step(authors_ccvae: type, data: LabelledImages, settings: PerfSettings, device: torch.device,
                   labelled: bool) -> Callable[[int], object]:
    """call -> one step of the authors' CCVAE class (their constructor, `sup` and `unsup`), eager."""
    prior = data.labels[torch.as_tensor(data.splits["train"])].mean(0, keepdim=True)
    torch.manual_seed(settings.seed)
    model = authors_ccvae(z_dim=45, num_classes=data.labels.shape[1], im_shape=data.image_shape,
                          use_cuda=device.type == "cuda", prior_fn=lambda: prior.to(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    images, labels = data.images.to(device), data.labels.to(device)
    indices = batch_indices(settings, settings.warmup + settings.repeats * settings.steps, device)

    def step(call: int) -> None:
        x = images[indices[call]].float() / 255  # the authors' loader hands over float batches
        loss = model.sup(x, labels[indices[call]]) if labelled else model.unsup(x)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


def epoch_seconds(n_images: int, f: float, settings: PerfSettings, device: torch.device,
                  show_progress: bool = True) -> float:
    """Seconds for one CCVAE training epoch over `n_images` random images (CelebA's training set is
    162,770) at supervision rate f, with the trainer's schedule and step; losses read as the trainer reads them."""
    from bench.data.split import labelled_indices, unlabelled_indices
    from bench.train import epoch_schedule

    generator = torch.Generator(device=device).manual_seed(settings.seed)
    images = torch.randint(0, 256, (n_images, 3, settings.image_size, settings.image_size), dtype=torch.uint8,
                           device=device, generator=generator)
    labels = (torch.rand(n_images, CELEBA_LABELS, device=device, generator=generator) < 0.3).float()
    train = np.arange(n_images)
    labelled = labelled_indices(train, f, settings.seed, settings.batch)
    spec = DataSpec((3, settings.image_size, settings.image_size), tuple(f"label_{i}" for i in range(CELEBA_LABELS)),
                    "multilabel", tuple(labels[torch.as_tensor(labelled, device=device)].mean(0).tolist()),
                    n_images, len(labelled))
    torch.manual_seed(settings.seed)
    model = models.resolve("ccvae")(spec).to(device).train()
    step = TrainingStep(model, torch.optim.Adam(model.parameters(), lr=2e-4), images, labels, settings.step)
    schedule = [(batch.indices.to(device), batch.labelled) for batch in
                epoch_schedule(labelled, unlabelled_indices(train, labelled), settings.batch, settings.seed, 0)]
    for index, labelled_batch in schedule[: settings.warmup]:  # compile and allocator warm-up, not timed
        step(index, labelled_batch)
    synchronise(device)
    losses = EpochLosses("perf epoch: the loss became {value} at step {step}")
    started = time.perf_counter()
    for step_number, (index, labelled_batch) in enumerate(tqdm(
            schedule, desc=f"ccvae epoch of {n_images} images", unit="batch", disable=not show_progress, leave=False)):
        losses.add(step_number, labelled_batch, step(index, labelled_batch))
        if len(losses.pending) >= LOSS_READ_EVERY:  # as the trainer reads them
            losses.read()
    losses.read()
    synchronise(device)
    return time.perf_counter() - started
