"""The networks and the training loop the oracle and the factor reader share: a small ResNet (`OracleNet`) and a
fixed number of seeded Adam steps on one thread (`fit_by_steps`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from bench.api import to_float_images
from bench.labels import label_log_terms
from bench.runtime import one_thread

if TYPE_CHECKING:
    from bench.api import Task
    from bench.data.base import LabelledImages

FEATURES = 128


class ResidualBlock(nn.Module):
    def __init__(self, width_in: int, width_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width_in, width_out, 3, stride, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(width_out)
        self.conv2 = nn.Conv2d(width_out, width_out, 3, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(width_out)
        self.shortcut = nn.Identity() if stride == 1 and width_in == width_out else nn.Sequential(
            nn.Conv2d(width_in, width_out, 1, stride, bias=False), nn.BatchNorm2d(width_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(hidden)) + self.shortcut(x))


class OracleNet(nn.Module):
    """ResNet-style classifier: features(x) (B, 128) and logits(x) (B, outputs); any image size. `task` None:
    the head is a regression (the factor reader, `evaluators/factor_reader.py`)."""

    def __init__(self, channels: int, size: int, outputs: int, task: Task | None):
        super().__init__()
        self.task = task
        stem: list[nn.Module] = []
        width_in = channels
        while size > 16:  # strided 4×4 convolutions down to 16×16 or less (64 px: two, 32 px: one)
            stem += [nn.Conv2d(width_in, 32, 4, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU()]
            width_in, size = 32, size // 2
        if not stem:  # already small: one 3×3 convolution to 32 channels
            stem = [nn.Conv2d(channels, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU()]
        self.stem = nn.Sequential(*stem)
        self.stages = nn.Sequential(
            ResidualBlock(32, 32, 1), ResidualBlock(32, 64, 2), ResidualBlock(64, FEATURES, 2),
            ResidualBlock(FEATURES, FEATURES, 1),
        )
        self.head = nn.Linear(FEATURES, outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, 128): the globally pooled last stage."""
        return self.stages(self.stem(x)).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def label_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """log p(y_i = 1 | x) per label (multi-label) or log p(y = c | x) per class: (B, L)."""
        logits = self(x)
        return F.logsigmoid(logits) if self.task == "multilabel" else F.log_softmax(logits, -1)

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return self.label_log_probs(x).exp()

    def log_prob_of(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p(y_i | x) of the given label values, per label (B, L); multi-class: (B, 1)."""
        terms = label_log_terms(self(x), y, self.task == "multilabel")
        return terms if self.task == "multilabel" else terms.sum(-1, keepdim=True)


@one_thread()
def fit_by_steps(make_net: Callable[[], nn.Module], data: LabelledImages, config, device: torch.device,
                 batch_loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor], desc: str,
                 show_progress: bool = True) -> nn.Module:
    """Adam for `config.steps` steps (lr `config.lr`) on batches of `config.batch_size` training images, drawn from
    seeded permutations of the training split; `batch_loss(net, x, indices)` with x the batch's float images.
    The net is built by `make_net` after torch is seeded with `config.seed`. The oracle and the factor reader
    are trained this way, on one thread (`one_thread`)."""
    torch.manual_seed(config.seed)
    generator = np.random.default_rng(config.seed)
    net = make_net().to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    images = data.images.to(device)
    order: list[int] = []
    net.train()
    show = show_progress and sys.stderr.isatty()
    for _ in tqdm(range(config.steps), desc=desc, disable=not show, file=sys.stderr):
        if len(order) < config.batch_size:
            order.extend(generator.permutation(data.splits["train"]).tolist())
        batch, order = torch.as_tensor(order[: config.batch_size], device=device), order[config.batch_size :]
        loss = batch_loss(net, to_float_images(images[batch]), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return net.eval()
