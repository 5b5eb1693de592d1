"""The one loader interface: a data set is a `LabelledImages` of cached uint8 tensors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.api import DataSpec, Task

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class DataSource:
    """Where a data set's `build` finds its files: the user's `--data-root` (None when not given) and
    a folder of the cache where it may download them."""

    root: Path | None
    downloads: Path


@dataclass(frozen=True)
class LabelledImages:
    """Images at model resolution with labels, names, splits and (where known) factors.

    images   uint8 (N, C, H, W)
    labels   float32 (N, L): 0/1 per label (multi-label) or one-hot over classes (multi-class)
    splits   index arrays for "train", "valid" and "test"
    factors  float32 (N, F) ground-truth generative factors, or None
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    label_names: tuple[str, ...]
    task: Task
    splits: dict[str, np.ndarray]
    factors: torch.Tensor | None = None
    factor_names: tuple[str, ...] = ()
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError("images must be uint8 (N, C, H, W)")
        if self.labels.shape != (len(self.images), len(self.label_names)):
            raise ValueError("labels must be (N, number of label names)")
        if set(self.splits) != set(SPLITS):
            raise ValueError(f"splits must be exactly {SPLITS}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def spec(self, labelled: np.ndarray, n_train: int) -> DataSpec:
        """The DataSpec a model may see: p(y) from the labelled training images only."""
        frequencies = self.labels[torch.as_tensor(labelled)].mean(0)
        return DataSpec(
            image_shape=self.image_shape,
            label_names=self.label_names,
            task=self.task,
            label_prior=tuple(float(v) for v in frequencies),
            n_train=n_train,
            n_labelled=len(labelled),
        )

    def to_payload(self) -> dict:
        """Its tensors and names as a dict `torch.load(..., weights_only=True)` reads back (`from_payload`)."""
        return {
            "name": self.name, "images": self.images, "labels": self.labels,
            "label_names": list(self.label_names), "task": self.task,
            "splits": {k: torch.as_tensor(v) for k, v in self.splits.items()},
            "factors": self.factors, "factor_names": list(self.factor_names), "notes": self.notes,
        }

    @classmethod
    def from_payload(cls, payload: dict) -> LabelledImages:
        return cls(
            name=payload["name"], images=payload["images"], labels=payload["labels"],
            label_names=tuple(payload["label_names"]), task=payload["task"],
            splits={k: v.numpy().astype(np.int64) for k, v in payload["splits"].items()},
            factors=payload["factors"], factor_names=tuple(payload["factor_names"]),
            notes=payload["notes"],
        )

    def summary(self) -> str:
        sizes = ", ".join(f"{split} {len(self.splits[split])}" for split in SPLITS)
        channels, height, width = self.image_shape
        return (f"{self.name}: {channels}×{height}×{width} images ({sizes}); {self.task}, "
                f"{len(self.label_names)} labels: {', '.join(self.label_names)}")
