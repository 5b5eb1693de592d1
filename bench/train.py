"""The trainer: interleaved labelled/unlabelled batches, atomic checkpoints, exact resume.

A run directory holds config.json, labelled.npy, train_log.csv, checkpoint.pt and, once
finished, metrics.json. A finished run is never retrained; a killed run resumes from its
last checkpoint (written at the end of every epoch and every `checkpoint_every` steps) and,
on the CPU, ends with the same numbers as an uninterrupted run: the data order of epoch e
is a function of (seed, e) and the random state is part of the checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bench import registry, scoring
from bench.api import missing_members
from bench.config import RunConfig
from bench.data import LabelledImages, labelled_indices, unlabelled_indices
from bench.errors import BenchError, TrainingDiverged
from bench.files import atomic_torch_save, atomic_write_text
from bench.nets import to_float_images

LOG_FIELDS = ("epoch", "sup_loss", "unsup_loss", "valid_accuracy", "images_per_s", "seconds")
EPOCH_SEED_OFFSET = 104729


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


def build_model(config: RunConfig, data: LabelledImages, labelled: np.ndarray, n_train: int, device: torch.device):
    torch.manual_seed(config.seed)
    model_class = registry.resolve(config.model)
    try:
        model = model_class(data.spec(labelled, n_train), **config.model_options)
    except TypeError as error:
        raise BenchError(f"model '{config.model}' rejected its options {config.model_options}: {error}") from error
    missing = missing_members(model)
    if missing:
        raise BenchError(f"model '{config.model}' lacks the interface member(s) {', '.join(missing)} (bench/api.py)")
    return model.to(device)


def _prepare_run_dir(config: RunConfig, run_dir: Path) -> None:
    config_path = run_dir / "config.json"
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
    path = run_dir / "labelled.npy"
    if path.exists():
        if not np.array_equal(np.load(path), labelled):
            raise BenchError(f"{path} differs from this configuration's split; delete the run directory")
    else:
        temporary = path.with_name(f".labelled.{os.getpid()}.tmp.npy")
        np.save(temporary, labelled)
        os.replace(temporary, path)
    return labelled, unlabelled_indices(train, labelled)


def _write_log(run_dir: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run_dir / "train_log.csv", buffer.getvalue())


def _save_checkpoint(path: Path, model, optimizer, epoch: int, step: int, log: list[dict]) -> None:
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "epoch": epoch, "step": step, "log": log, "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    atomic_torch_save(state, path)


def _restore_checkpoint(path: Path, model, optimizer) -> tuple[int, int, list[dict]]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except Exception as error:
        raise BenchError(f"{path} cannot be read ({error}); delete it to restart the run") from error
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["epoch"], state["step"], state["log"]


def evaluate(model, data: LabelledImages, split: str, device: torch.device) -> float:
    indices = torch.as_tensor(data.splits[split])
    probs = scoring.predict(model, data.images[indices].to(device))
    return scoring.accuracy(probs, data.labels[indices], data.task)


def train(
    config: RunConfig,
    data: LabelledImages,
    run_dir: Path,
    device: torch.device,
    checkpoint_every: int = 200,
    show_progress: bool | None = None,
) -> dict:
    """Train (or resume, or skip if finished) the run of `config`; returns its metrics."""
    metrics_path = run_dir / "metrics.json"
    _prepare_run_dir(config, run_dir)
    if metrics_path.exists():
        return json.loads(metrics_path.read_text())
    labelled, unlabelled = _labelled_split(config, data, run_dir)
    model = build_model(config, data, labelled, len(labelled) + len(unlabelled), device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    checkpoint_path = run_dir / "checkpoint.pt"
    start_epoch, start_step, log = 0, 0, []
    if checkpoint_path.exists():
        start_epoch, start_step, log = _restore_checkpoint(checkpoint_path, model, optimizer)
    images = data.images.to(device)
    labels = data.labels.to(device)
    interactive = sys.stderr.isatty() if show_progress is None else show_progress
    name = f"{config.model} {config.dataset} f={config.f:g} seed={config.seed}"

    def schedule_of(epoch: int) -> list[Batch]:
        return epoch_schedule(labelled, unlabelled, config.batch_size, config.seed, epoch, config.labelled_share)

    steps_per_epoch = len(schedule_of(0))  # the same for every epoch
    total_steps = steps_per_epoch * config.epochs
    for epoch in range(start_epoch, config.epochs):
        schedule = schedule_of(epoch)
        losses: dict[bool, list[float]] = {True: [], False: []}
        started, seen = time.perf_counter(), 0
        bar = tqdm(total=len(schedule), initial=start_step, desc=f"{name} epoch {epoch + 1}/{config.epochs}",
                   disable=not interactive, leave=False, unit="batch")
        model.train()
        for step in range(start_step, len(schedule)):
            batch = schedule[step]
            if hasattr(model, "set_training_progress"):
                model.set_training_progress((epoch * steps_per_epoch + step) / total_steps)
            index = batch.indices.to(device)
            x = to_float_images(images[index])
            loss, _ = model.loss(x, labels[index] if batch.labelled else None)
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"{name}: the loss became {value} at epoch {epoch + 1}, step {step + 1}; training stopped, "
                    f"the last good checkpoint is kept in {run_dir}; try a lower learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses[batch.labelled].append(value)
            seen += len(index)
            bar.set_postfix(loss=f"{value:.1f}", img_s=f"{seen / (time.perf_counter() - started):.0f}")
            bar.update()
            if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < len(schedule):
                _save_checkpoint(checkpoint_path, model, optimizer, epoch, step + 1, log)
        bar.close()
        start_step = 0
        seconds = time.perf_counter() - started
        row = {
            "epoch": epoch + 1,
            "sup_loss": round(float(np.mean(losses[True])), 4) if losses[True] else "",
            "unsup_loss": round(float(np.mean(losses[False])), 4) if losses[False] else "",
            "valid_accuracy": round(evaluate(model, data, "valid", device), 4),
            "images_per_s": round(seen / seconds, 1) if seconds > 0 else "",
            "seconds": round(seconds, 2),
        }
        log.append(row)
        _save_checkpoint(checkpoint_path, model, optimizer, epoch + 1, 0, log)
        _write_log(run_dir, log)
        print(f"{name} epoch {epoch + 1}/{config.epochs}: sup {row['sup_loss']} unsup {row['unsup_loss']} "
              f"valid acc {row['valid_accuracy']:.3f} ({row['images_per_s']} img/s)", file=sys.stderr)

    test = torch.as_tensor(data.splits["test"])
    train_labels = data.labels[torch.as_tensor(data.splits["train"])]
    metrics = {
        "test_accuracy": evaluate(model, data, "test", device),
        "valid_accuracy": evaluate(model, data, "valid", device),
        "majority_accuracy": scoring.majority_accuracy(train_labels, data.labels[test], data.task),
        "n_labelled": len(labelled),
        "n_unlabelled": len(unlabelled),
        "epochs": config.epochs,
        "train_seconds": round(sum(float(r["seconds"]) for r in log), 2),
        "device": str(device),
    }
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
    return metrics
