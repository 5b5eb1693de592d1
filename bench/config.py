"""The run configuration: everything needed to rerun a run (its budget comes from `bench.presets`)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import __version__
from bench.data import check_rate, dataset_options
from bench.errors import BenchError
from bench.models import model_entry, named
from bench.presets import preset


@dataclass(frozen=True)
class StepOptions:
    """How a training step is executed. They may change numbers in the last float
    digits (channels-last, compile) or more (bf16), so they are part of a run's identity.

    channels_last  NHWC memory format for images and convolutions (oneDNN's and cuDNN's fast layout)
    compile        torch.compile the model's loss (inductor; pays a compile time once per run)
    bf16           bfloat16 autocast for the forward pass (fast on GPUs and AMX CPUs only)
    deterministic  deterministic kernels (`bench.runtime.deterministic_kernels`): exact reruns on a GPU
    """

    channels_last: bool = True
    compile: bool = False
    bf16: bool = False
    deterministic: bool = False


@dataclass(frozen=True)
class RunConfig:
    """Identifies a run: the same RunConfig never trains twice."""

    model: str
    dataset: str
    f: float
    seed: int
    preset: str
    epochs: int | None
    batch_size: int
    lr: float
    train_limit: int | None
    labelled_share: float | None
    model_options: dict[str, Any]
    dataset_options: dict[str, Any]
    step: StepOptions = field(default_factory=StepOptions)
    optimiser_steps: int | None = None  # the training length in steps (then `epochs` is None), the same at every f
    target: str | None = None  # "package.module:Class" where `model` is a user's name for it (NAME=module:Class)
    suite_version: str = __version__

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        fields = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(fields) - known
        if unknown:
            raise BenchError(f"config.json has unknown fields {sorted(unknown)}; it was written by "
                             "another version of the suite, use a fresh --runs directory")
        if "step" in fields:
            fields["step"] = StepOptions(**fields["step"])
        return cls(**fields)

    @property
    def length(self) -> str:
        """The training length as people say it: "4,000 steps" or "10 epochs"."""
        return f"{self.optimiser_steps:,} steps" if self.optimiser_steps is not None else f"{self.epochs} epochs"

    def run_dir(self, runs_root: Path) -> Path:
        return runs_root / self.dataset / self.model / f"f={self.f:g}" / f"seed={self.seed}"


def make_config(
    model: str, dataset: str, f: float, seed: int, preset_name: str,
    epochs: int | None = None, model_options: dict[str, Any] | None = None,
    dataset_overrides: dict[str, Any] | None = None, step: StepOptions | None = None,
    optimiser_steps: int | None = None,
) -> RunConfig:
    """A validated RunConfig from user choices and a preset. `model`: a registered name, "module:Class" or
    "NAME=module:Class" (`bench.models.named`). `epochs` or `optimiser_steps` replaces the preset's training
    length (a different run identity); a step count needs a preset with a labelled share."""
    chosen = preset(preset_name)
    model, target = named(model)
    options = {**model_entry(target or model).options, **(model_options or {})}
    data_options = preset_dataset_options(preset_name, dataset, dataset_overrides)
    if epochs is not None and optimiser_steps is not None:
        raise BenchError("give --epochs or --steps, not both")
    if epochs is not None and epochs < 1:
        raise BenchError(f"--epochs {epochs} must be at least 1")
    if optimiser_steps is not None and optimiser_steps < 1:
        raise BenchError(f"--steps {optimiser_steps} must be at least 1")
    if optimiser_steps is not None and chosen.labelled_share is None:
        raise BenchError(f"--steps needs a preset with a labelled share; '{chosen.name}' has none (its schedule is "
                         "the authors' epochs): use --epochs")
    if seed < 0:
        raise BenchError(f"--seed {seed} must be non-negative")
    if epochs is None and optimiser_steps is None:
        epochs, optimiser_steps = chosen.model_epochs.get(model, chosen.epochs), chosen.optimiser_steps
    return RunConfig(
        model=model, dataset=dataset, f=check_rate(f), seed=seed, preset=chosen.name,
        epochs=epochs, batch_size=chosen.batch_size, lr=chosen.lr,
        train_limit=chosen.train_limit, labelled_share=chosen.labelled_share,
        model_options=options, dataset_options=data_options, step=step or StepOptions(),
        optimiser_steps=optimiser_steps, target=target,
    )


def preset_dataset_options(preset_name: str, dataset: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A data set's options under a preset (its `dataset_overrides`), then the user's `overrides`."""
    return dataset_options(dataset, {**preset(preset_name).dataset_overrides.get(dataset, {}), **(overrides or {})})
