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

import importlib
import math
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from bench import __version__, layers, models
from bench.api import DataSpec
from bench.config import StepOptions
from bench.data import celeba
from bench.data.base import LabelledImages
from bench.errors import BenchError
from bench.runtime import cpu_name, tune_cpu_allocator
from bench.train import LOSS_READ_EVERY, EpochLosses, TrainingStep, float_batch

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


# bench.layers' layers, each timed beside the torch layer it replaces, at the 64×64 networks' shapes
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


def evaluator_rates(device: torch.device, settings: PerfSettings, names: list[str],
                    fid_weights: str | None = None) -> list[dict]:
    """Images per second of each evaluator on synthetic sets, with an untrained CCVAE and oracle.

    Each evaluator runs at the smoke preset's budget with `settings.eval_samples` samples, and with the resources
    any caller passes (a missing file replaced by its `stand_in`, whose note its row carries); what it shares
    across runs (its `prepare`: mutual_info's GP head) is built before the clock starts and read from the cache
    during the timing."""
    from bench.budgets import EvalSettings
    from bench.presets import preset
    from evaluators import EVALUATORS
    from evaluators.common import Resources
    from evaluators.oracle import OracleNet

    eval_settings = EvalSettings(seed=settings.seed)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            evaluator = EVALUATORS[name]
            budget = preset("smoke").budget_for(evaluator)
            if budget is not None:
                budget = replace(budget, samples=settings.eval_samples)
            task = evaluator.tasks[0]  # the first task it is defined for: CelebA-like labels, or ten classes
            labels = CELEBA_LABELS if task == "multilabel" else 10
            data = synthetic_images(2000, settings.image_size, labels, task, settings.seed)
            torch.manual_seed(settings.seed)
            model = models.resolve("ccvae")(spec_of(data)).to(device).eval()
            oracle = OracleNet(3, settings.image_size, labels, task).to(device).eval()
            resources, note = Resources(cache=Path(scratch) / f"perf-{name}.pt", fid_weights=fid_weights), ""
            if evaluator.stand_in is not None:
                resources, note = evaluator.stand_in(resources, Path(scratch), device)
            if evaluator.prepare is not None:  # what it shares across runs is built before the clock starts
                evaluator.prepare(data, oracle, resources, budget, device)
            torch.manual_seed(settings.seed)
            started = time.perf_counter()
            result = evaluator.evaluate(model, data, oracle, torch.Generator().manual_seed(settings.seed),
                                        eval_settings, resources, budget)
            synchronise(device)
            seconds = time.perf_counter() - started
            key, unit = evaluator.count
            count = result.get(key)
            if count is None:
                raise BenchError(f"evaluator {name} returned no '{key}' on the perf set: {result}")
            rows.append({"model": "ccvae", "mode": f"eval:{name}", "batch": eval_settings.batch_size,
                         "images_per_s": count / seconds, "unit": unit, "note": note})
    return rows


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
    import torchvision

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"machine": name, "allocator": tune_cpu_allocator(), "cpu_threads": torch.get_num_threads(),
            "matmul_gflop_per_s": matmul_gflop_per_s(device), "python": platform.python_version(),
            "torch": torch.__version__, "torchvision": torchvision.__version__, "suite_version": __version__}


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
        EVALUATORS.chosen(self.evaluators or None)
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
    print(f"{first.machine}, {first.cpu_threads} threads (float32 matmul {first.matmul_gflop_per_s} GFLOP/s), "
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
