"""Presets and the run configuration (everything needed to rerun a run)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import __version__
from bench.data import check_name, check_rate, dataset_options
from bench.errors import BenchError
from bench.registry import entry


@dataclass(frozen=True)
class Preset:
    """Training budget.

    `train_limit` keeps the first N training images (None: all). `labelled_share`, when set,
    cycles the labelled set so that at least that share of each epoch's steps is supervised
    (None: each labelled image once per epoch, the authors' schedule).
    """

    name: str
    epochs: int
    batch_size: int
    lr: float
    train_limit: int | None = None
    labelled_share: float | None = None
    dataset_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_epochs: dict[str, int] = field(default_factory=dict)
    description: str = ""


PRESETS = {
    "smoke": Preset(
        "smoke", epochs=10, batch_size=100, lr=1e-3, train_limit=1000, labelled_share=0.5,
        dataset_overrides={"synthfaces": {"n_train": 1000, "n_valid": 200, "n_test": 1000, "image_size": 32}},
        # MVAE's image posterior learns the labels only through the product with the label
        # experts; at f = 0.06 it is at the majority baseline after 10 epochs (0.607 vs 0.609)
        # and clearly above it after 40 (0.704).
        model_epochs={"mvae": 40},
        description="15–30 s per run (MVAE ~100 s: 40 epochs): 1,000 training images (synthfaces at "
                    "32×32), 10 epochs (~200 steps at f = 0.06); for tests of every code path, not for "
                    "the paper's numbers",
    ),
    "quick": Preset(
        "quick", epochs=4, batch_size=100, lr=1e-3, train_limit=3000, labelled_share=0.5,
        dataset_overrides={"synthfaces": {"image_size": 32}},
        description="the CPU default: 3,000 training images (synthfaces rendered at 32×32), 4 epochs, "
                    "lr 1e-3, batch 100, labelled batches recycled to half of the steps",
    ),
    "paper": Preset(
        "paper", epochs=100, batch_size=200, lr=2e-4,
        description="the paper's settings: all training images, 100 epochs, Adam lr 2e-4, batch 200",
    ),
}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise BenchError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class StepOptions:
    """How a training step is executed (issue 6). They may change numbers in the last float
    digits (channels-last, compile) or more (bf16), so they are part of a run's identity.

    channels_last  NHWC memory format for images and convolutions (oneDNN's and cuDNN's fast layout)
    compile        torch.compile the model's loss (inductor; pays a compile time once per run)
    bf16           bfloat16 autocast for the forward pass (fast on GPUs and AMX CPUs only)
    """

    channels_last: bool = True
    compile: bool = False
    bf16: bool = False


@dataclass(frozen=True)
class RunConfig:
    """Identifies a run: the same RunConfig never trains twice."""

    model: str
    dataset: str
    f: float
    seed: int
    preset: str
    epochs: int
    batch_size: int
    lr: float
    train_limit: int | None
    labelled_share: float | None
    model_options: dict[str, Any]
    dataset_options: dict[str, Any]
    step: StepOptions = field(default_factory=StepOptions)
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

    def run_dir(self, runs_root: Path) -> Path:
        return runs_root / self.dataset / self.model / f"f={self.f:g}" / f"seed={self.seed}"


def make_config(
    model: str, dataset: str, f: float, seed: int, preset_name: str,
    epochs: int | None = None, model_options: dict[str, Any] | None = None,
    dataset_overrides: dict[str, Any] | None = None, step: StepOptions | None = None,
) -> RunConfig:
    """A validated RunConfig from user choices and a preset."""
    chosen = preset(preset_name)
    check_name(dataset)
    options = {**entry(model).options, **(model_options or {})}
    data_options = dataset_options(dataset, {**chosen.dataset_overrides.get(dataset, {}),
                                             **(dataset_overrides or {})})
    if epochs is not None and epochs < 1:
        raise BenchError(f"--epochs {epochs} must be at least 1")
    if seed < 0:
        raise BenchError(f"--seed {seed} must be non-negative")
    return RunConfig(
        model=model, dataset=dataset, f=check_rate(f), seed=seed, preset=chosen.name,
        epochs=epochs or chosen.model_epochs.get(model, chosen.epochs), batch_size=chosen.batch_size, lr=chosen.lr,
        train_limit=chosen.train_limit, labelled_share=chosen.labelled_share,
        model_options=options, dataset_options=data_options, step=step or StepOptions(),
    )
