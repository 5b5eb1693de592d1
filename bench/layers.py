"""Convolution layers that compute what torch's layers compute, faster on a CPU.

Each is a drop-in subclass of nn.Conv2d / nn.ConvTranspose2d: same parameters, initialisation
and state_dict (checkpoints of either load into the other), same values to float rounding
(tests/test_perf.py checks each against torch's layer in float64, and every model's step
against the same model built from torch's layers). `bench perf` times each beside torch's
layer (the `layer` rows of results/perf.csv, with `vs_torch`).

- `WholeInputConv2d`, `WholeOutputConvTranspose2d`: a 4×4 convolution of a 4×4 map and a 4×4
  transposed convolution of a 1×1 map are matrix products, and oneDNN runs them faster as such.
- `StridedConvTranspose2d`: oneDNN folds a transposed convolution's bias gradient into its
  weight-gradient kernel, which costs more than the sum it is; here the backward sums it.
- `PhasedConvTranspose2d`: the image-producing transposed convolution (3 or 1 output
  channels) is oneDNN's slowest layer for its work; on CPUs its forward runs as one stride-1
  2×2 convolution giving the four output phases as channels, interleaved.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# A 4×4, stride-2, padding-1 transposed convolution gives output row 2m + a (phase a) from input
# rows m + a − 1 and m + a: the kernel row that meets window row dy (0, 1) is PHASE_TAPS[a][dy].
PHASE_TAPS = ((3, 1), (2, 0))


def phase_weight(weight: torch.Tensor) -> torch.Tensor:
    """(in, out, 4, 4) transposed-convolution weight -> (4·out, in, 2, 2) stride-1 weight whose
    output channel (2a + b)·out + c is output phase (a, b) of channel c."""
    in_channels, out_channels = weight.shape[:2]
    taps = torch.tensor(PHASE_TAPS, device=weight.device)
    per_phase = weight.transpose(0, 1)[:, :, taps][:, :, :, :, taps]  # (out, in, a, dy, b, dx)
    return per_phase.permute(2, 4, 0, 1, 3, 5).reshape(4 * out_channels, in_channels, 2, 2)


def transposed_convolution_by_phases(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """conv_transpose2d(x, weight, bias, stride=2, padding=1) for a 4×4 kernel: one stride-1 2×2
    convolution of the 1-padded input gives every phase (a, b) as channels at (H + 1, W + 1);
    phase (a, b) of output pixel (2m + a, 2n + b) is its value at (m + a, n + b)."""
    batch, _, height, width = x.shape
    out_channels = weight.shape[1]
    phase_bias = None if bias is None else bias.repeat(4)
    phases = F.conv2d(x, phase_weight(weight), phase_bias, padding=1)  # (B, 4·out, H + 1, W + 1)
    phases = phases.permute(0, 2, 3, 1).unflatten(3, (2, 2, out_channels))  # (B, H + 1, W + 1, a, b, out)
    y = x.new_empty(batch, height, 2, width, 2, out_channels)
    for a in (0, 1):
        for b in (0, 1):
            y[:, :, a, :, b] = phases[:, a : a + height, b : b + width, a, b]
    return y.view(batch, 2 * height, 2 * width, out_channels).permute(0, 3, 1, 2)  # channels-last


class _ConvTranspose(torch.autograd.Function):
    """conv_transpose2d with torch's backward, except the bias gradient: Σ_{b,h,w} grad.

    `by_phases` computes the forward with `transposed_convolution_by_phases`.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, by_phases=False):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.geometry = stride, padding
        if by_phases:
            return transposed_convolution_by_phases(x, weight, bias)
        return F.conv_transpose2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        stride, padding = ctx.geometry
        grad_x, grad_weight, _ = torch.ops.aten.convolution_backward(
            grad, x, weight, None, stride, padding, (1, 1), True, (0, 0), 1,
            (ctx.needs_input_grad[0], ctx.needs_input_grad[1], False))
        grad_bias = grad.sum((0, 2, 3)) if ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias, None, None, None


class StridedConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d whose backward sums the bias gradient itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _ConvTranspose.apply(x, self.weight, self.bias, self.stride, self.padding)


class PhasedConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d(in, out, 4, 2, 1) whose forward on a CPU runs by output phases."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 4, stride: int = 2, padding: int = 1):
        if (kernel_size, stride, padding) != (4, 2, 1):
            raise ValueError("PhasedConvTranspose2d is the 4×4, stride-2, padding-1 transposed convolution")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        by_phases = x.device.type == "cpu"  # measured on CPUs only; cuDNN keeps its own
        return _ConvTranspose.apply(x, self.weight, self.bias, self.stride, self.padding, by_phases)
class WholeInputConv2d(nn.Conv2d):
    """A Conv2d whose kernel covers its whole input, (B, C, k, k) -> (B, out, 1, 1), computed as the
    matrix product it is: Σ_{c,h,w} weight[o, c, h, w] · x[b, c, h, w] + bias[o]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != self.kernel_size:
            raise ValueError(f"{type(self).__name__} needs a {self.kernel_size} input, got {tuple(x.shape)}")
        return F.linear(x.flatten(1), self.weight.flatten(1), self.bias)[:, :, None, None]


class WholeOutputConvTranspose2d(nn.ConvTranspose2d):
    """A ConvTranspose2d from a 1×1 input, (B, C, 1, 1) -> (B, out, k, k), computed as the matrix
    product it is: out[b, o, h, w] = Σ_c x[b, c] · weight[c, o, h, w] + bias[o]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if x.shape[-2:] != (1, 1):
            raise ValueError(f"{type(self).__name__} needs a 1×1 input, got {tuple(x.shape)}")
        out = (x.flatten(1) @ self.weight.flatten(1)).view(-1, self.out_channels, *self.kernel_size)
        return out + self.bias[:, None, None]


def torch_equivalent(layer: nn.Conv2d | nn.ConvTranspose2d) -> nn.Module:
    """torch's own nn.Conv2d / nn.ConvTranspose2d with the layer's geometry and parameters."""
    library = nn.ConvTranspose2d if isinstance(layer, nn.ConvTranspose2d) else nn.Conv2d
    plain = library(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding)
    plain.load_state_dict(layer.state_dict())
    return plain.to(layer.weight.device, layer.weight.dtype)
