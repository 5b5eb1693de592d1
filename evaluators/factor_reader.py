"""The factor reader: an inverse renderer, for data sets whose truth can be rendered (synthfaces).

Table G asks whether a model's swap or intervention shows the true answer. Pixels cannot say it (a
blurry decoder is far from every sharp rendering), and comparing with the model's own reconstruction
of the truth lets a model that reconstructs nothing of the characteristics score well. The reader
answers in the data's own terms: it reads an image's generative factors, each on the [0, 1] scale of
its truth module's `unit_factors`, so the question becomes whether the model's result and the true
answer show the same mouth curvature, hair hue, face position...

It is the oracle's network (`evaluators/oracle.py`) with a linear head for the factors, trained by
squared error on every training image, with its own seed, and cached beside the oracle
(`oracle/<oracle key>.reader-<config hash>.pt` and `.json`, the record holding its test R² per
factor). Its augmentation is a Gaussian blur of random width (up to `blur_sigma` pixels at 64 px,
scaled with the image size), so that it reads a VAE's blurred rendering of a face as it reads the
sharp one; it is not shifted, since the face's position is one of the factors.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bench.api import to_float_images
from bench.budgets import ReaderConfig
from bench.files import atomic_torch_save, atomic_write_text, cached_build
from evaluators.networks import OracleNet, fit_by_steps

if TYPE_CHECKING:
    from bench.data.base import LabelledImages


class FactorReader(nn.Module):
    """forward(x): (B, F) factors on the unit scale, from float images in [0, 1]."""

    def __init__(self, channels: int, size: int, factors: int):
        super().__init__()
        self.network = OracleNet(channels, size, factors, task=None)  # its head regresses the factors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


def random_blur(x: torch.Tensor, widest: float, groups: int, generator: torch.Generator) -> torch.Tensor:
    """Each of `groups` slices of the batch blurred with its own σ, uniform on [0, widest] pixels."""
    from torchvision.transforms.v2.functional import gaussian_blur  # here: torchvision takes ~2 s to import

    sigmas = torch.rand(groups, generator=generator) * widest
    parts = []
    for part, sigma in zip(x.tensor_split(groups), sigmas.tolist(), strict=True):
        size = 2 * math.ceil(3 * sigma) + 1
        parts.append(gaussian_blur(part, [size, size], [sigma, sigma]) if size > 1 else part)
    return torch.cat(parts)


def unit_targets(data: LabelledImages, truth: ModuleType) -> torch.Tensor:
    return torch.from_numpy(truth.unit_factors(data.factors.numpy()))


def train_reader(data: LabelledImages, truth: ModuleType, config: ReaderConfig, device: torch.device,
                 show_progress: bool = True) -> FactorReader:
    """Fit the reader on every training image's factors (fixed number of Adam steps, as the oracle)."""
    blur_generator = torch.Generator().manual_seed(config.seed)
    targets, widest = unit_targets(data, truth).to(device), config.blur_sigma * data.image_shape[-1] / 64

    def batch_loss(reader: nn.Module, x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(reader(random_blur(x, widest, config.blur_groups, blur_generator)), targets[batch])

    return fit_by_steps(lambda: FactorReader(data.image_shape[0], data.image_shape[-1], targets.shape[1]),
                        data, config, device, batch_loss, f"factor reader {data.name}", show_progress)


def reader_r2(reader: FactorReader, data: LabelledImages, truth: ModuleType, split: str = "test") -> list[float]:
    """R² of the reader's factors on the split's images, per factor."""
    indices = torch.as_tensor(data.splits[split])
    device = next(reader.parameters()).device
    with torch.no_grad():
        read = torch.cat([reader(to_float_images(data.images[batch].to(device))).cpu()
                          for batch in indices.split(500)]).double()
    targets = unit_targets(data, truth)[indices].double()
    residual = ((read - targets) ** 2).sum(0)
    total = ((targets - targets.mean(0)) ** 2).sum(0)
    return (1 - residual / total).tolist()


def reader_for(data: LabelledImages, truth: ModuleType, cache_path: Path | None, config: ReaderConfig,
               device: torch.device, show_progress: bool = True) -> tuple[FactorReader, dict]:
    """The reader cached at `cache_path` (beside the oracle; the config's hash is added to the name), trained on
    first use, and its record (test R² per factor); None: trained afresh and not kept."""
    if cache_path is None:
        return _trained(data, truth, config, device, show_progress)
    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:8]
    weights = cache_path.with_name(f"{cache_path.stem}-{digest}.pt")
    record_path = weights.with_suffix(".json")

    def build() -> tuple[FactorReader, dict]:
        print(f"training the {data.name} factor reader ({config.steps} steps; cached at {weights})", file=sys.stderr)
        return _trained(data, truth, config, device, show_progress)

    def save(built: tuple[FactorReader, dict], path: Path) -> None:
        atomic_write_text(record_path, json.dumps(built[1], indent=2))  # the record first: the weights mark it done
        atomic_torch_save({k: v.cpu() for k, v in built[0].state_dict().items()}, path)

    def load(path: Path) -> tuple[FactorReader, dict]:
        reader = FactorReader(data.image_shape[0], data.image_shape[-1], len(data.factor_names)).to(device)
        reader.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        return reader.eval(), json.loads(record_path.read_text())

    return cached_build(weights, build, save, load, f"{data.name} factor reader")  # two sweeps train it once


def _trained(data: LabelledImages, truth: ModuleType, config: ReaderConfig, device: torch.device,
             show_progress: bool) -> tuple[FactorReader, dict]:
    reader = train_reader(data, truth, config, device, show_progress)
    r2 = reader_r2(reader, data, truth)
    return reader, {"dataset": data.name, "config": asdict(config), "test_r2": float(np.mean(r2)),
                    "test_r2_per_factor": dict(zip(data.factor_names, r2, strict=True))}
