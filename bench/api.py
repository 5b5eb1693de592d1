"""The model interface the trainer and every evaluator rely on (ARCHITECTURE.md, "The model interface").

A model is an `nn.Module` built as ``Model(spec: DataSpec, **options)`` with the members of
`LabelVAE`. Evaluators use nothing else; an operation a model cannot perform is marked
False in `capabilities` and its method raises `NotImplementedError` or returns None.

Conventions shared by all models:

- images are float tensors (B, C, H, W) in [0, 1];
- labels ``y`` are float tensors (B, L): 0/1 per label for multi-label data, one-hot over the
  classes for multi-class data (then L is the number of classes);
- every returned image is the decoder's mean (the Laplace location), clipped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch

Task = Literal["multilabel", "multiclass"]


@dataclass(frozen=True)
class DataSpec:
    """What a model may know about its data set: shapes, label names and p(y).

    `label_prior` is p(y) estimated from the *labelled* training images only: the per-label
    frequency of 1 (multi-label) or the class frequencies (multi-class). `n_train` and
    `n_labelled` are the sizes of the training set and of its labelled part.
    """

    image_shape: tuple[int, int, int]
    label_names: tuple[str, ...]
    task: Task
    label_prior: tuple[float, ...]
    n_train: int = 1
    n_labelled: int = 1

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


@dataclass(frozen=True)
class Capabilities:
    """Which interface operations are meaningful for a model; tables print "—" otherwise."""

    classify: bool = True
    represent: bool = True
    characteristic: bool = True
    generate: bool = True
    intervene: bool = True
    swap: bool = True
    traverse: bool = True


@runtime_checkable
class LabelVAE(Protocol):
    """The members a model offers to the trainer and the evaluators."""

    spec: DataSpec
    capabilities: Capabilities

    def loss(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Negative objective averaged over the batch; ``y is None`` means unlabelled.

        The dict holds detached scalar tensors to log (e.g. the objective's value); they stay
        on the device, since converting them to Python numbers would synchronise every step."""

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Label probabilities: (B, L) per-label for multi-label, (B, C) for multi-class."""

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior means of the whole latent, (B, D)."""

    def characteristic(self, x: torch.Tensor) -> torch.Tensor | None:
        """Per-label characteristic coordinates (B, L, k), or None where the model has none."""

    def generate(self, y: torch.Tensor, n: int = 1) -> torch.Tensor:
        """n conditional generations per label row: (B, n, C, H, W)."""

    def intervene(
        self, x: torch.Tensor, i: int, value: float, stochastic: bool = False
    ) -> torch.Tensor:
        """x with label i set to `value`, the rest kept; `stochastic` samples the new value's
        characteristic instead of taking its most likely one. (B, C, H, W)."""

    def swap(self, x_char: torch.Tensor, x_ctx: torch.Tensor) -> torch.Tensor:
        """The label characteristics of x_char on the context of x_ctx. (B, C, H, W)."""

    def traverse(self, x: torch.Tensor, i: int, steps: int) -> torch.Tensor | None:
        """A smooth change of label i's characteristic: (B, steps, C, H, W), or None."""


class ProgressAware(Protocol):
    """Optional: a model with a schedule (e.g. KL annealing) is told the training progress."""

    def set_training_progress(self, fraction: float) -> None:
        """Called by the trainer before every step with (steps done) / (total steps) in [0, 1]."""


REQUIRED_MEMBERS = (
    "loss", "classify", "represent", "characteristic", "generate", "intervene", "swap",
    "traverse", "capabilities", "spec",
)


def missing_members(model: object) -> list[str]:
    """The interface members `model` lacks (empty for a conforming model)."""
    return [name for name in REQUIRED_MEMBERS if not hasattr(model, name)]


def to_float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) in 0..255 -> float32 in [0, 1] on the same device."""
    return images.float().div_(255.0)
