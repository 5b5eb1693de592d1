"""The oracle: an independent classifier per data set that judges every model's images.

A small ResNet (strided 4×4 convolutions down to 16×16, four residual blocks of 32/64/128/128 channels, batch norm,
global average pooling, a 128-dimensional penultimate layer, one linear head). It is trained on *all*
training labels of the real images (never restricted by f), with its own seed, and is cached
per data set and data set options under the data cache (`oracle/<key>.pt` and `.json`). Its
own test accuracy is stored beside it; the evaluators refuse nothing, but the report shows it
so that a reader can see that it clearly exceeds what the VAEs reach.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from bench import scoring
from bench.api import to_float_images
from bench.budgets import OracleConfig
from bench.data.cache import cache_dir, cache_key
from bench.files import atomic_torch_save, atomic_write_text, cached_build
from evaluators.networks import OracleNet, fit_by_steps

if TYPE_CHECKING:
    from bench.data.base import LabelledImages


def random_shift(x: torch.Tensor, max_pixels: float, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ±max_pixels (border pixels repeat): the oracle's only augmentation."""
    shifts = (torch.rand(len(x), 2, generator=generator) * 2 - 1) * (2 * max_pixels / x.shape[-1])
    theta = torch.zeros(len(x), 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = shifts
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def train_oracle(
    data: LabelledImages, config: OracleConfig, device: torch.device, show_progress: bool = True
) -> OracleNet:
    """Fit the oracle on every training image and label (fixed number of Adam steps)."""
    shift_generator = torch.Generator().manual_seed(config.seed)
    labels, shift = data.labels.float().to(device), config.shift_pixels * data.image_shape[-1] / 64

    def batch_loss(net: nn.Module, x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        return -net.log_prob_of(random_shift(x, shift, shift_generator), labels[batch]).sum(-1).mean()

    return fit_by_steps(lambda: OracleNet(data.image_shape[0], data.image_shape[-1], data.labels.shape[1], data.task),
                        data, config, device, batch_loss, f"oracle {data.name}", show_progress)


def oracle_accuracy(net: OracleNet, data: LabelledImages, split: str = "test") -> float:
    indices = torch.as_tensor(data.splits[split])
    device = next(net.parameters()).device
    with torch.no_grad():
        probs = torch.cat([net.probs(to_float_images(data.images[batch].to(device))).cpu()
                           for batch in indices.split(500)])
    return scoring.accuracy(probs, data.labels[indices].float(), data.task)


def oracle_paths(data: LabelledImages, options: dict, config: OracleConfig, directory: Path) -> tuple[Path, Path]:
    stem = Path(cache_key(f"oracle-{data.name}", {**options, **asdict(config)})).stem
    return directory / "oracle" / f"{stem}.pt", directory / "oracle" / f"{stem}.json"


def load_or_train_oracle(
    data: LabelledImages, options: dict, device: torch.device, cache: str | Path | None = None,
    config: OracleConfig | None = None, show_progress: bool = True,
) -> tuple[OracleNet, dict]:
    """The cached oracle for this data set (trained on first use) and its record (test accuracy…)."""
    config = config or OracleConfig()
    weights, record_path = oracle_paths(data, options, config, cache_dir(cache))

    def build() -> tuple[OracleNet, dict]:
        print(f"training the {data.name} oracle ({config.steps} steps; cached at {weights})", file=sys.stderr)
        net = train_oracle(data, config, device, show_progress)
        return net, {"dataset": data.name, "dataset_options": options, "config": asdict(config),
                     "test_accuracy": oracle_accuracy(net, data, "test"),
                     "majority_accuracy": scoring.majority_accuracy(
                         data.labels[data.splits["train"]], data.labels[data.splits["test"]], data.task)}

    def save(built: tuple[OracleNet, dict], path: Path) -> None:
        atomic_write_text(record_path, json.dumps(built[1], indent=2))  # the record first: the weights mark it done
        atomic_torch_save({k: v.cpu() for k, v in built[0].state_dict().items()}, path)

    def load(path: Path) -> tuple[OracleNet, dict]:
        net = OracleNet(data.image_shape[0], data.image_shape[-1], data.labels.shape[1], data.task).to(device)
        net.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        return net.eval(), json.loads(record_path.read_text())

    return cached_build(weights, build, save, load, f"{data.name} oracle")  # two sweeps train it once
