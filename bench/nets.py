"""Encoder and decoder families shared by every model, and the image likelihood.

64×64 images use the architecture of Higgins et al. (2016) as the CCVAE paper's Table 3 gives
it. 32×32 images (MNIST and Fashion-MNIST, padded from 28×28) use
the same family with the first stride-2 block removed. Every model uses the same networks
and the same Laplace(mean, 1) likelihood so that comparisons are about latent structure.
Where torch's layers are slow on a CPU, `bench.layers`' drop-in equivalents (same parameters,
same values) take their place.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn
from torch.nn import functional as F

from bench.layers import (
    PhasedConvTranspose2d,
    StridedConvTranspose2d,
    WholeInputConv2d,
    WholeOutputConvTranspose2d,
)

HIDDEN = 256
MIN_SCALE = 1e-3
SUPPORTED_SIZES = (32, 64)


def _check_shape(image_shape: tuple[int, int, int]) -> tuple[int, int]:
    channels, height, width = image_shape
    if height != width or height not in SUPPORTED_SIZES:
        raise ValueError(f"images must be square with side in {SUPPORTED_SIZES}, got {image_shape}")
    return channels, height


def conv_features(image_shape: tuple[int, int, int]) -> nn.Sequential:
    """The convolutional trunk of the encoder: (B, C, H, W) -> (B, 256)."""
    channels, size = _check_shape(image_shape)
    widths = [channels, 32, 32, 64, 128] if size == 64 else [channels, 32, 64, 128]
    layers: list[nn.Module] = []
    for width_in, width_out in pairwise(widths):
        layers += [nn.Conv2d(width_in, width_out, 4, 2, 1), nn.ReLU()]
    # the stride-2 blocks leave a 4×4 map: the last 4×4 convolution sees all of it
    layers += [WholeInputConv2d(widths[-1], HIDDEN, 4, 1), nn.ReLU(), nn.Flatten()]
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """q(z|x) = N(loc(x), diag(scale(x)^2)); returns (loc, scale), each (B, latent_dim).

    With `condition_dim` > 0 it is q(z|x, c): the condition (e.g. M2's labels) is concatenated
    to the trunk's 256 features before the two linear heads.
    """

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int, condition_dim: int = 0):
        super().__init__()
        self.features = conv_features(image_shape)
        self.loc = nn.Linear(HIDDEN + condition_dim, latent_dim)
        self.scale = nn.Linear(HIDDEN + condition_dim, latent_dim)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.features(x), condition)

    def heads(self, hidden: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) from the trunk's features (..., 256), so that one trunk pass serves many conditions."""
        if condition is not None:
            hidden = torch.cat([hidden, condition], -1)
        return self.loc(hidden), F.softplus(self.scale(hidden)).clamp(min=MIN_SCALE)


class ImageClassifier(nn.Module):
    """Logits of q(y|x) from the encoder's trunk and one linear layer: (B, C, H, W) -> (B, outputs)."""

    def __init__(self, image_shape: tuple[int, int, int], outputs: int):
        super().__init__()
        self.features = conv_features(image_shape)
        self.head = nn.Linear(HIDDEN, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Decoder(nn.Module):
    """The mean of p(x|z), in [0, 1]: (B, latent_dim) -> (B, C, H, W)."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int):
        super().__init__()
        channels, size = _check_shape(image_shape)
        widths = [128, 64, 32, 32, channels] if size == 64 else [128, 64, 32, channels]
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, HIDDEN), nn.Unflatten(1, (HIDDEN, 1, 1)), nn.ReLU(),
            WholeOutputConvTranspose2d(HIDDEN, widths[0], 4), nn.ReLU(),
        ]
        for width_in, width_out in pairwise(widths[:-1]):
            layers += [StridedConvTranspose2d(width_in, width_out, 4, 2, 1), nn.ReLU()]
        layers += [PhasedConvTranspose2d(widths[-2], widths[-1], 4, 2, 1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


LOG_TWO = math.log(2.0)


def laplace_log_likelihood(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """log Laplace(x | mean, 1) summed over pixels: Σ_p −|x_p − mean_p| − log 2. Shape (B,)."""
    per_pixel = -(x - mean).abs() - LOG_TWO
    return per_pixel.sum(tuple(range(1, per_pixel.dim())))  # no flatten: that copies a channels-last batch


def normal_log_prob(value: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(value | loc, scale²) without building a distribution object."""
    return -0.5 * ((value - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)


def gaussian_kl(
    loc_q: torch.Tensor, scale_q: torch.Tensor, loc_p: torch.Tensor, scale_p: torch.Tensor
) -> torch.Tensor:
    """Elementwise KL(N(loc_q, scale_q²) || N(loc_p, scale_p²)) in closed form."""
    return (scale_p / scale_q).log() + (scale_q**2 + (loc_q - loc_p) ** 2) / (2 * scale_p**2) - 0.5
