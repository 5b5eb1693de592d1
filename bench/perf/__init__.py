"""`python -m bench perf`: images per second of training steps, the data pipeline and the evaluators.

Every row of the CSV is one measurement (columns `model`, `mode`, `device`, `batch`,
`images_per_s`, then how it was made and on what):

- `sup` / `unsup`: one optimiser step (forward, backward, Adam) of `bench.train.TrainingStep`,
  the trainer's own step, on a labelled / unlabelled batch of 64×64 RGB images with CelebA's
  18 binary labels, sliced from a cached uint8 tensor on the device. The batch indices of
  every step are drawn in advance, as the trainer's epoch schedule is.
- `data`: the data pipeline alone, on the same tensor: slice a batch, convert it to float
  on the device, in the step's memory format. `share_of_step` is its time over a CCVAE
  supervised step's.
- `layer`: each of `bench.layers`' layers (forward + backward at the batch size, on the 64×64
  networks' shapes) beside the torch layer it replaces (`implementation` "torch"); `vs_torch`.
- `epoch` (with `--epoch-images N`): one CCVAE epoch over N random images at rate f with the
  trainer's schedule and step (CelebA's training set is 162,770 images).
- `eval:<name>`: one evaluator on a synthetic set (random images and labels; multi-class for
  `mutual_info`) with an untrained CCVAE and an untrained oracle: throughput does not depend on
  what was learnt. The count is the evaluator's own sample count (`unit` says which).
  FID's Inception has random weights where the FID weights are not found (`note` says so).
- `--profile` (a second CSV, `<out>-profile.csv`): where each step's time goes, one row per
  operator (torch.profiler's self time per step, `share` of all operators' time), for every
  step that is timed above (the authors' too), and the share spent in convolutions.
- `--reference DIR`: the authors' plain-PyTorch CCVAE (a checkout of
  github.com/thwjoy/ccvae_pytorch; it never becomes part of this repository), eager, on the
  same batches with the same Adam step: `implementation` "authors", timed interleaved with
  this suite's CCVAE step (below), and `vs_authors` is the ratio of the two.

A step is timed `repeats` times over `steps` steps after `warmup` steps; the median is kept
(the device is synchronised before each clock read). Steps compared side by side take turns
repeat by repeat, so that the machine's drift falls on both alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from bench import models
from bench.errors import BenchError
from bench.perf.evaluation import evaluator_rates
from bench.perf.timing import CELEBA_LABELS, PerfSettings, environment, interleaved_seconds, synthetic_images
from bench.perf.training import (
    check_reference,
    convolution_share,
    data_seconds,
    epoch_seconds,
    import_authors_ccvae,
    layer_rows,
    models_to_time,
    profile_steps,
    steps_to_compare,
)


def measure(models: list[str], device: torch.device, settings: PerfSettings, evaluators: list[str],
            reference: type | None = None, fid_weights: str | None = None, show_progress: bool = True,
            epoch_images: int = 0, epoch_f: float = 1.0, with_layers: bool = True) -> pd.DataFrame:
    """Every measurement as one DataFrame row (see the module docstring)."""
    machine = environment(device)  # the matmul rate is read before any other measurement
    data = synthetic_images(settings.cached_images, settings.image_size, CELEBA_LABELS, "multilabel", settings.seed)
    options = {"channels_last": settings.step.channels_last, "compile": settings.step.compile,
               "bf16": settings.step.bf16}
    plan: list[tuple[str, str, Callable[[], dict | list[dict]]]] = []

    def with_flops(seconds: float, flops: dict | None, **extra: object) -> dict:
        gflop = flops["total"] / 1e9 if flops else math.nan
        return {"seconds": seconds, "gflop_per_step": round(gflop, 2), "gflop_per_s": round(gflop / seconds, 1),
                **extra}

    def steps_side_by_side(model: str, mode: str) -> list[dict]:
        """The model's step and, for CCVAE with a reference, the authors' step timed interleaved."""
        steps = list(steps_to_compare(model, mode, data, settings, device, reference).values())
        flops = [None if settings.step.compile else {} for _ in steps]  # counted on an eager step only
        seconds = interleaved_seconds(steps, settings, device, flops)
        rows = [with_flops(seconds[0], flops[0], model=model, mode=mode)]
        if len(steps) == 2:
            rows.append(with_flops(seconds[1], flops[1], model=model, mode=mode, implementation="authors",
                                   channels_last=False, compile=False, bf16=False))
        return rows

    for model in models_to_time(models, reference):
        for mode in ("sup", "unsup"):
            plan.append((model, mode, lambda model=model, mode=mode: steps_side_by_side(model, mode)))
    plan.append(("-", "data", lambda: {"seconds": data_seconds(data, settings, device)}))
    if with_layers:
        plan.append(("-", "layer", lambda: layer_rows(settings, device)))
    if epoch_images:
        plan.append(("ccvae", "epoch", lambda: {
            "seconds": epoch_seconds(epoch_images, epoch_f, settings, device, show_progress)
            * settings.batch / epoch_images,  # per batch, as every other row
            "note": f"one epoch of {epoch_images} images at f={epoch_f:g}"}))
    rows = []
    for model, mode, run in tqdm(plan, desc="perf", unit="measurement", disable=not show_progress):
        measured = run()
        for row in measured if isinstance(measured, list) else [measured]:
            seconds = row.pop("seconds")  # per batch
            rows.append({"model": model, "mode": mode, "batch": settings.batch,
                         "images_per_s": settings.batch / seconds, "implementation": "bench", "unit": "images",
                         "note": "", **options, **row})
    if evaluators:
        rows += [{"implementation": "bench", **options, **row}
                 for row in evaluator_rates(device, settings, evaluators, fid_weights)]
    frame = pd.DataFrame(rows)
    frame.insert(2, "device", device.type)
    ccvae_sup = frame[(frame.model == "ccvae") & (frame["mode"] == "sup") & (frame.implementation == "bench")]
    if len(ccvae_sup):
        pipeline = frame["mode"] == "data"
        pipeline_rate = frame.loc[pipeline, "images_per_s"].iloc[0]
        frame.loc[pipeline, "share_of_step"] = float(ccvae_sup.images_per_s.iloc[0] / pipeline_rate)
    for key, value in {**machine, **{f"setting_{k}": v for k, v in asdict(settings).items()
                                                  if k != "step"}}.items():
        frame[key] = value
    authors = frame[frame.implementation == "authors"].set_index("mode").images_per_s
    ours = (frame.implementation == "bench") & (frame.model == "ccvae") & frame["mode"].isin(authors.index)
    frame.loc[ours, "vs_authors"] = (frame.loc[ours, "images_per_s"] / frame.loc[ours, "mode"].map(authors)).round(2)
    frame["images_per_s"] = frame.images_per_s.round(1)
    return frame


@dataclass(frozen=True)
class PerfRequest:
    """What `python -m bench perf` was asked to measure (see the module docstring)."""

    models: tuple[str, ...]
    evaluators: tuple[str, ...]
    settings: PerfSettings
    out: Path
    reference: Path | None = None
    fid_weights: str | None = None
    epoch_images: int = 0
    epoch_f: float = 1.0
    layers: bool = True
    profile: bool = False

    def validate(self) -> None:
        """One BenchError naming the first bad choice, before any work starts."""
        from bench.data import check_rate
        from evaluators import EVALUATORS

        for model in self.models:
            models.model_entry(model)
        EVALUATORS.chosen(self.evaluators)
        for name, value in (("--batch", self.settings.batch), ("--steps", self.settings.steps),
                            ("--repeats", self.settings.repeats), ("--eval-samples", self.settings.eval_samples)):
            if value < 1:
                raise BenchError(f"{name} {value} must be at least 1")
        if self.epoch_images < 0:
            raise BenchError(f"--epoch-images {self.epoch_images} must be 0 (off) or a number of images")
        check_rate(self.epoch_f)
        if self.reference is not None:
            check_reference(self.reference)


def run(request: PerfRequest, device: torch.device, show_progress: bool) -> pd.DataFrame:
    """Validate, measure, write `request.out` (and the operator profile with `profile`), print a summary."""
    from tabulate import tabulate

    from bench.files import atomic_write_text

    request.validate()
    authors = import_authors_ccvae(request.reference) if request.reference is not None else None
    frame = measure(list(request.models), device, request.settings, list(request.evaluators), authors,
                    request.fid_weights, show_progress=show_progress, epoch_images=request.epoch_images,
                    epoch_f=request.epoch_f, with_layers=request.layers)
    atomic_write_text(request.out, frame.to_csv(index=False))
    shown = [c for c in ("model", "mode", "implementation", "device", "batch", "images_per_s", "vs_authors",
                         "vs_torch", "gflop_per_s", "share_of_step", "unit", "note") if c in frame]
    print(tabulate(frame[shown].astype(object).fillna(""), headers="keys", tablefmt="github", showindex=False))
    first = frame.iloc[0]
    print(f"{first.gpu or first.cpu}, {first.threads} threads (float32 matmul {first.matmul_gflop_per_s} GFLOP/s), "
          f"torch {first.torch}, allocator {first.allocator}; written to {request.out}")
    if request.profile:
        operators = profile_steps(list(request.models), device, request.settings, authors)
        profile_out = request.out.with_name(f"{request.out.stem}-profile.csv")
        atomic_write_text(profile_out, operators.to_csv(index=False))
        for (model, mode, implementation), step in operators.groupby(["model", "mode", "implementation"], sort=False):
            slowest = ", ".join(f"{row.operator} {row.share:.0%}" for row in step.head(3).itertuples())
            print(f"{model} {mode} ({implementation}): {step.ms_per_step.sum():.0f} ms of operators per step, "
                  f"convolutions {convolution_share(step):.0%}; slowest: {slowest}")
        print(f"operators per step written to {profile_out}")
    return frame
