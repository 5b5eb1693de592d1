"""The trainer: interleaved labelled/unlabelled batches, atomic checkpoints, exact resume.

A run trains for a number of optimiser steps, the same at every f (`step_schedule`), or for a number of epochs
(`epoch_schedule`, the authors' schedule, whose step count depends on f). Either way it proceeds in rounds (an
epoch, or `STEPS_PER_ROUND` steps) and after each round logs and checkpoints.

A run directory holds config.json, labelled.npy, train_log.csv (per round: the losses, the accuracy
on the first CURVE_VALID_IMAGES validation images, the speed), checkpoint.pt and, once finished,
metrics.json (test and validation accuracy on the whole splits, the optimiser steps taken). A finished run is
never retrained; a killed run resumes from its last checkpoint (written at the end of every round and every
`checkpoint_every` steps) and, on the CPU, ends with the same numbers as an uninterrupted run: the
batches of round r are a function of (seed, r) and the random state is part of the checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bench import models, rundir, scoring
from bench.api import missing_members, to_float_images
from bench.config import RunConfig, StepOptions
from bench.data import LabelledImages, labelled_indices, unlabelled_indices
from bench.errors import BenchError, TrainingDiverged
from bench.files import UnreadableFile, UntrustedFile, atomic_torch_save, atomic_write, atomic_write_text, load_tensors
from bench.runtime import deterministic_kernels, environment

LOG_FIELDS = ("epoch", "steps", "sup_loss", "unsup_loss", "valid_accuracy", "images_per_s", "seconds")
CURVE_VALID_IMAGES = 1000  # train_log.csv's valid_accuracy: the first N validation images (metrics.json's: all)
EPOCH_SEED_OFFSET = 104729
STEPS_PER_ROUND = 250  # a step-budget run logs, validates and checkpoints every this many steps
STREAM_SEED_OFFSET = 7919  # the labelled and unlabelled streams of a step budget draw from different generators
LOSS_READ_EVERY = 50  # steps between the trainer's reads of the losses from the device


@dataclass(frozen=True)
class Batch:
    indices: torch.Tensor
    labelled: bool


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError("--device cuda was given but no CUDA GPU is available; use --device cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise BenchError(f"unknown --device '{name}'; use auto, cpu or cuda")
    return torch.device(name)


def epoch_schedule(
    labelled: np.ndarray, unlabelled: np.ndarray, batch_size: int, seed: int, epoch: int,
    labelled_share: float | None = None,
) -> list[Batch]:
    """The batches of one epoch, labelled ones spread evenly among the unlabelled ones.

    Every image is used once per epoch (the authors' schedule). With `labelled_share`, the
    labelled set is cycled (reshuffled each pass) until labelled batches are at least that
    share of the epoch's steps.
    """
    generator = torch.Generator().manual_seed(seed * EPOCH_SEED_OFFSET + epoch)

    def batches(indices: np.ndarray, passes: int = 1) -> list[torch.Tensor]:
        if not len(indices):
            return []
        chunks = []
        for _ in range(passes):
            shuffled = torch.as_tensor(indices)[torch.randperm(len(indices), generator=generator)]
            chunks += list(shuffled.split(batch_size))
        return chunks

    unsup = batches(unlabelled)
    passes = 1
    if labelled_share and len(unsup):
        wanted = math.ceil(labelled_share * len(unsup) / (1 - labelled_share))
        passes = max(1, math.ceil(wanted / math.ceil(len(labelled) / batch_size)))
    sup = batches(labelled, passes)
    total = len(sup) + len(unsup)
    sup_positions = {math.floor(j * total / len(sup)) for j in range(len(sup))}
    schedule, sup_iter, unsup_iter = [], iter(sup), iter(unsup)
    for position in range(total):
        is_sup = position in sup_positions
        schedule.append(Batch(next(sup_iter) if is_sup else next(unsup_iter), is_sup))
    return schedule


def stream_batch(indices: np.ndarray, batch_size: int, seed: int, stream: int, k: int) -> torch.Tensor:
    """Batch k of an endless stream of shuffled passes over `indices`: positions k·B … (k+1)·B − 1 of the passes
    laid end to end, pass p being a permutation drawn from (seed, stream, p). Every index is used once per pass,
    every batch has B images, and any batch is computed from k alone (exact resume)."""
    positions = np.arange(k * batch_size, (k + 1) * batch_size)
    chosen = np.empty(batch_size, dtype=np.int64)
    for p in np.unique(positions // len(indices)):
        generator = torch.Generator().manual_seed((seed * EPOCH_SEED_OFFSET + stream) * STREAM_SEED_OFFSET + int(p))
        permutation = torch.randperm(len(indices), generator=generator).numpy()
        here = positions // len(indices) == p
        chosen[here] = indices[permutation[positions[here] % len(indices)]]
    return torch.as_tensor(chosen)


def step_schedule(
    labelled: np.ndarray, unlabelled: np.ndarray, batch_size: int, seed: int, labelled_share: float,
    start: int, stop: int,
) -> list[Batch]:
    """Steps start … stop − 1 of a step budget: step t is labelled when ⌊(t+1)·s⌋ > ⌊t·s⌋ (s = `labelled_share`,
    spread evenly), and takes the next batch of the labelled stream, else of the unlabelled one. Where every image is
    labelled (f = 1) there is no unlabelled stream and every step is labelled: the paper's fully supervised setting
    (hiding the labels of half the steps instead would train M2's classifier on its own guesses at f = 1)."""
    share = Fraction(labelled_share if len(unlabelled) else 1).limit_denominator(1000)
    schedule = []
    for t in range(start, stop):
        before, after = math.floor(t * share), math.floor((t + 1) * share)
        if after > before:
            schedule.append(Batch(stream_batch(labelled, batch_size, seed, 1, before), True))
        else:
            schedule.append(Batch(stream_batch(unlabelled, batch_size, seed, 2, t - after), False))
    return schedule


def build_model(config: RunConfig, data: LabelledImages, labelled: np.ndarray, n_train: int, device: torch.device):
    torch.manual_seed(config.seed)
    model_class = models.resolve(config.target or config.model)
    try:
        model = model_class(data.spec(labelled, n_train), **config.model_options)
    except TypeError as error:
        raise BenchError(f"model '{config.model}' rejected its options {config.model_options}: {error}") from error
    missing = missing_members(model)
    if missing:
        raise BenchError(f"model '{config.model}' lacks the interface member(s) {', '.join(missing)} (bench/api.py)")
    return model.to(device)


def _prepare_run_dir(config: RunConfig, run_dir: Path) -> None:
    config_path = run_dir / rundir.CONFIG
    if config_path.exists():
        stored = RunConfig.from_json(config_path.read_text())
        if stored != config:
            raise BenchError(f"{run_dir} holds a run with a different configuration; "
                             "use another --runs directory or delete that run")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(config_path, config.to_json() + "\n")


def _labelled_split(config: RunConfig, data: LabelledImages, run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    train = data.splits["train"]
    if config.train_limit is not None:
        train = train[: config.train_limit]
    labelled = labelled_indices(train, config.f, config.seed, config.batch_size)
    path = run_dir / rundir.LABELLED
    if path.exists():
        if not np.array_equal(np.load(path), labelled):
            raise BenchError(f"{path} differs from this configuration's split; delete the run directory")
    else:
        atomic_write(path, lambda handle: np.save(handle, labelled))
    return labelled, unlabelled_indices(train, labelled)


def _write_log(run_dir: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run_dir / rundir.TRAIN_LOG, buffer.getvalue())


TENSORBOARD_SCALARS = ("sup_loss", "unsup_loss", "valid_accuracy", "images_per_s")


def _write_tensorboard(run_dir: Path, row: dict) -> None:
    """An epoch's row as TensorBoard scalars in `run_dir/tensorboard/`, where the optional `tensorboard` package is
    installed (`pip install .[tensorboard]`); nothing otherwise (train_log.csv holds the same numbers)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return
    with SummaryWriter(str(run_dir / "tensorboard")) as writer:
        for key in TENSORBOARD_SCALARS:
            if row[key] != "":
                writer.add_scalar(f"train/{key}", float(row[key]), row["epoch"])


def _save_checkpoint(path: Path, model, optimizer, epoch: int, step: int, log: list[dict]) -> None:
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "epoch": epoch, "step": step, "log": log, "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    atomic_torch_save(state, path)


def _restore_checkpoint(path: Path, model, optimizer) -> tuple[int, int, list[dict]]:
    try:
        state = load_tensors(path, map_location="cpu")  # runs no code from the file
    except (UnreadableFile, UntrustedFile) as error:
        raise BenchError(f"{path} is not a checkpoint of this run ({error}); delete it to restart the run") from None
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        raise BenchError(f"{path} does not fit this run's model ({type(error).__name__}); delete it to restart "
                         "the run") from None
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["epoch"], state["step"], state["log"]


def accuracy_on(model, data: LabelledImages, split: str, device: torch.device, limit: int | None = None) -> float:
    """The model's accuracy on the split's images (its first `limit` ones; None: all)."""
    indices = torch.as_tensor(data.splits[split][:limit])
    probs = scoring.predict(model, data.images[indices].to(device))
    return scoring.accuracy(probs, data.labels[indices], data.task)


def float_batch(images: torch.Tensor, index: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """The data pipeline: slice cached uint8 images by (device) indices, float in [0, 1] on the device."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return to_float_images(images[index]).contiguous(memory_format=memory_format)


class TrainingStep:
    """The hot loop's one optimiser step on a batch sliced from the cached uint8 images.

    Images and labels live on the training device; a step slices them with an index tensor
    already there, converts to float on the device, and returns the loss as a tensor: nothing
    waits for the device (the trainer reads losses every `log_every` steps). `StepOptions`
    chooses channels-last memory format, torch.compile of the model's loss and bf16 autocast.
    """

    def __init__(self, model, optimizer, images: torch.Tensor, labels: torch.Tensor, options: StepOptions):
        self.model, self.optimizer, self.options = model, optimizer, options
        self.images, self.labels = images, labels
        if options.channels_last:
            model.to(memory_format=torch.channels_last)
        self.loss = torch.compile(model.loss) if options.compile else model.loss
        self.device_type = images.device.type

    def __call__(self, index: torch.Tensor, labelled: bool) -> torch.Tensor:
        x = float_batch(self.images, index, self.options.channels_last)
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.options.bf16):
            loss, _ = self.loss(x, self.labels[index] if labelled else None)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


class EpochLosses:
    """An epoch's losses, left on the device until `read` fetches them in one synchronisation."""

    def __init__(self, diverged_message: str):
        self.diverged_message = diverged_message  # formatted with {value} and {step}
        self.pending: list[tuple[int, bool, torch.Tensor]] = []
        self.values: dict[bool, list[float]] = {True: [], False: []}  # by labelled / unlabelled batch

    def add(self, step: int, labelled: bool, loss: torch.Tensor) -> None:
        self.pending.append((step, labelled, loss))

    def read(self) -> float:
        """Fetch the pending losses; TrainingDiverged on a non-finite one. Returns the last (nan if none)."""
        values = torch.stack([loss for _, _, loss in self.pending]).tolist() if self.pending else []
        for (step, labelled, _), value in zip(self.pending, values, strict=True):
            if not math.isfinite(value):
                raise TrainingDiverged(self.diverged_message.format(value=value, step=step + 1))
            self.values[labelled].append(value)
        self.pending.clear()
        return values[-1] if values else math.nan


def train(
    config: RunConfig,
    data: LabelledImages,
    run_dir: Path,
    device: torch.device,
    checkpoint_every: int = 200,
    show_progress: bool | None = None,
    log_every: int = LOSS_READ_EVERY,
    on_epoch_end: Callable[[int, torch.nn.Module], None] | None = None,
) -> dict:
    """Train (or resume, or skip if finished) the run of `config`; returns its metrics.

    `on_epoch_end(steps, model)`, when given, is called after each round's checkpoint with the optimiser steps taken
    so far; it must not touch the random state or the weights (the learning curves copy the weights there).
    """
    metrics_path = run_dir / rundir.METRICS
    _prepare_run_dir(config, run_dir)
    if metrics_path.exists():
        return json.loads(metrics_path.read_text())
    with deterministic_kernels(config.step.deterministic):
        return _train(config, data, run_dir, device, checkpoint_every, show_progress, log_every, on_epoch_end)


@dataclass(frozen=True)
class Rounds:
    """How a run's training is cut into rounds (the unit of the log and the checkpoints): `count` rounds of
    `size` steps each (the last may be shorter), `total` steps in all; an epoch is a round of an epoch budget."""

    count: int
    size: int
    total: int
    labelled: int  # how many of the steps are on labelled batches
    unit: str  # "epoch" or "round"

    def steps_in(self, index: int) -> int:
        return min(self.size, self.total - index * self.size)


def _rounds(config: RunConfig, labelled: np.ndarray, unlabelled: np.ndarray) -> tuple[Rounds, Callable]:
    """The run's rounds and the function giving round r's batches."""
    if config.optimiser_steps is not None:
        total = config.optimiser_steps
        share = config.labelled_share if len(unlabelled) else 1  # f = 1: every step is labelled
        labelled_steps = math.floor(total * Fraction(share).limit_denominator(1000))
        rounds = Rounds(math.ceil(total / STEPS_PER_ROUND), STEPS_PER_ROUND, total, labelled_steps, "round")
        return rounds, lambda r: step_schedule(labelled, unlabelled, config.batch_size, config.seed,
                                               config.labelled_share, r * rounds.size, r * rounds.size
                                               + rounds.steps_in(r))
    first = epoch_schedule(labelled, unlabelled, config.batch_size, config.seed, 0, config.labelled_share)
    rounds = Rounds(config.epochs, len(first), len(first) * config.epochs,  # every epoch has as many steps
                    sum(batch.labelled for batch in first) * config.epochs, "epoch")
    return rounds, lambda r: epoch_schedule(labelled, unlabelled, config.batch_size, config.seed, r,
                                            config.labelled_share)


def _train(config: RunConfig, data: LabelledImages, run_dir: Path, device: torch.device, checkpoint_every: int,
           show_progress: bool | None, log_every: int,
           on_epoch_end: Callable[[int, torch.nn.Module], None] | None) -> dict:
    metrics_path = run_dir / rundir.METRICS
    labelled, unlabelled = _labelled_split(config, data, run_dir)
    model = build_model(config, data, labelled, len(labelled) + len(unlabelled), device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    checkpoint_path = run_dir / rundir.CHECKPOINT
    start_round, start_step, log = 0, 0, []
    if checkpoint_path.exists():
        start_round, start_step, log = _restore_checkpoint(checkpoint_path, model, optimizer)
    step_once = TrainingStep(model, optimizer, data.images.to(device), data.labels.to(device), config.step)
    interactive = sys.stderr.isatty() if show_progress is None else show_progress
    name = f"{config.model} {config.dataset} f={config.f:g} seed={config.seed}"
    rounds, batches_of = _rounds(config, labelled, unlabelled)
    for index in range(start_round, rounds.count):
        schedule = [Batch(batch.indices.to(device), batch.labelled) for batch in batches_of(index)]
        where = f"{rounds.unit} {index + 1}/{rounds.count}"
        losses = EpochLosses(f"{name}: the loss became {{value}} at {where}, step {{step}}; training "
                             f"stopped, the last good checkpoint is kept in {run_dir}; try a lower learning rate")
        started, seen = time.perf_counter(), 0
        bar = tqdm(total=len(schedule), initial=start_step, desc=f"{name} {where}",
                   disable=not interactive, leave=False, unit="batch")
        model.train()
        for step in range(start_step, len(schedule)):
            batch = schedule[step]
            if hasattr(model, "set_training_progress"):
                model.set_training_progress((index * rounds.size + step) / rounds.total)
            losses.add(step, batch.labelled, step_once(batch.indices, batch.labelled))
            seen += len(batch.indices)
            bar.update()
            if len(losses.pending) >= log_every:
                bar.set_postfix(loss=f"{losses.read():.1f}", img_s=f"{seen / (time.perf_counter() - started):.0f}")
            if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < len(schedule):
                losses.read()  # never checkpoint weights a non-finite loss has touched
                _save_checkpoint(checkpoint_path, model, optimizer, index, step + 1, log)
        losses.read()
        bar.close()
        start_step = 0
        seconds = time.perf_counter() - started
        valid_accuracy = accuracy_on(model, data, "valid", device, CURVE_VALID_IMAGES)  # the curve; the metrics: all
        steps_done = index * rounds.size + len(schedule)
        row = {
            "epoch": index + 1,
            "steps": steps_done,
            "sup_loss": round(float(np.mean(losses.values[True])), 4) if losses.values[True] else "",
            "unsup_loss": round(float(np.mean(losses.values[False])), 4) if losses.values[False] else "",
            "valid_accuracy": round(valid_accuracy, 4),
            "images_per_s": round(seen / seconds, 1) if seconds > 0 else "",
            "seconds": round(seconds, 2),
        }
        log.append(row)
        _save_checkpoint(checkpoint_path, model, optimizer, index + 1, 0, log)
        _write_log(run_dir, log)
        _write_tensorboard(run_dir, row)
        if on_epoch_end is not None:
            on_epoch_end(steps_done, model)
        print(f"{name} {where}: sup {row['sup_loss']} unsup {row['unsup_loss']} "
              f"valid acc {row['valid_accuracy']:.3f} ({row['images_per_s']} img/s)", file=sys.stderr)

    test = torch.as_tensor(data.splits["test"])
    train_labels = data.labels[torch.as_tensor(data.splits["train"])]
    metrics = {
        "test_accuracy": accuracy_on(model, data, "test", device),
        "valid_accuracy": accuracy_on(model, data, "valid", device),
        "majority_accuracy": scoring.majority_accuracy(train_labels, data.labels[test], data.task),
        "n_labelled": len(labelled),
        "n_unlabelled": len(unlabelled),
        "labelled_fraction": len(labelled) / (len(labelled) + len(unlabelled)),
        "epochs": config.epochs,
        "optimiser_steps": rounds.total,
        "labelled_steps": rounds.labelled,
        "train_seconds": round(sum(float(r["seconds"]) for r in log), 2),
        "device": str(device),
    }
    atomic_write_text(run_dir / rundir.ENVIRONMENT,
                      json.dumps(environment(device, config.step.deterministic), indent=2) + "\n")
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
    return metrics
