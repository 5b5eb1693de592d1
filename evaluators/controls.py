"""Controls: reference "models" built from the data itself, judged by the same evaluators as every model
and shown as labelled rows below the models, so that a reader sees where each table's floor and ceiling
lie and whether a model is nearer one or the other.

- `OracleControl` ("ceiling: oracle"): classifies with the oracle, so Tables 1 and 6 show the oracle's own
  test accuracy, which bounds what the other evaluators can see.
- `Floor` ("floor: does nothing"): a swap returns the context image b unchanged (nothing of a is
  carried), an intervention returns its input, a generation ignores the requested labels and returns
  real test images drawn at random. It cannot classify (the majority baseline is that row of Tables 1
  and 6) and has no characteristic latent.
- `RealImages` ("ceiling: real images"): a generation is a real test image with exactly the requested
  labels (the nearest label vector in Hamming distance where none has them). The ceiling of
  conditional generation, FID and mutual information: what a perfect generator would score with
  the same oracle and sample sizes.
- `Renderer` ("ceiling: renderer", data sets with a renderer: synthfaces): the true answer of every
  operation, rendered from the generative factors of the test images: a swap puts a's
  characteristics on b's context factors, an intervention moves label i's characteristic across its
  threshold (mirrored, everything else equal), a generation renders factors drawn for the requested
  labels, and the characteristic coordinates are the true characteristics.

Each control is a `bench/api.py` model that only implements what it can; the rest is marked False in
`capabilities`. It is judged only by the evaluators whose tables it bounds (`judges`): random real
images, for instance, are the floor of conditional generation but would look like a ceiling in a
table of unconditional fidelity (FID), so the floor is not shown there. The sampling of `Floor`,
`RealImages` and `Renderer` draws from torch's global random state, which the evaluators seed, so a
control's numbers are reproducible like a model's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from bench.api import Capabilities, to_float_images
from bench.data import truth_of

if TYPE_CHECKING:
    from bench.data.base import LabelledImages


class Control(nn.Module):
    """A reference "model" over one data set's test split. `row` is its label in the tables."""

    row = "control"
    judges: tuple[str, ...] = ()  # the evaluators whose tables it bounds
    capabilities = Capabilities(classify=False, represent=False, characteristic=False, generate=False,
                                intervene=False, swap=False, traverse=False)

    def __init__(self, data: LabelledImages):
        super().__init__()
        self.data = data
        self.test = torch.as_tensor(data.splits["test"])
        self.register_buffer("anchor", torch.zeros(1))  # where its images go: `.to(device)` moves it

    def _numpy_generator(self) -> np.random.Generator:
        """A generator drawn from torch's global random state (seeded by the evaluators)."""
        return np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))

    def _images(self, indices: torch.Tensor) -> torch.Tensor:
        return to_float_images(self.data.images[indices].to(self.anchor.device))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def characteristic(self, x: torch.Tensor) -> torch.Tensor | None:
        return None

    def generate(self, y: torch.Tensor, n: int = 1) -> torch.Tensor:
        raise NotImplementedError

    def intervene(self, x: torch.Tensor, i: int, value: float, stochastic: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def swap(self, x_char: torch.Tensor, x_ctx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def traverse(self, x: torch.Tensor, i: int, steps: int) -> torch.Tensor | None:
        return None


class OracleControl(Control):
    row = "ceiling: oracle"
    judges = ("classification",)
    capabilities = Capabilities(classify=True, represent=False, characteristic=False, generate=False,
                                intervene=False, swap=False, traverse=False)

    def __init__(self, data: LabelledImages, oracle: nn.Module):
        super().__init__(data)
        self.oracle = oracle

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.oracle.probs(x)


class Floor(Control):
    row = "floor: does nothing"
    judges = ("swap", "interventions", "conditional", "ground_truth")
    capabilities = Capabilities(classify=False, represent=False, characteristic=False, generate=True,
                                intervene=True, swap=True, traverse=False)

    def generate(self, y: torch.Tensor, n: int = 1) -> torch.Tensor:
        chosen = self.test[torch.randint(0, len(self.test), (len(y) * n,))]
        return self._images(chosen).unflatten(0, (len(y), n))

    def intervene(self, x: torch.Tensor, i: int, value: float, stochastic: bool = False) -> torch.Tensor:
        return x.clone()

    def swap(self, x_char: torch.Tensor, x_ctx: torch.Tensor) -> torch.Tensor:
        return x_ctx.clone()


class RealImages(Control):
    row = "ceiling: real images"
    judges = ("conditional", "fid", "mutual_info")
    capabilities = Capabilities(classify=False, represent=False, characteristic=False, generate=True,
                                intervene=False, swap=False, traverse=False)

    def generate(self, y: torch.Tensor, n: int = 1) -> torch.Tensor:
        labels = self.data.labels[self.test].to(y.device)
        mismatches = (y.unsqueeze(1) != labels.unsqueeze(0)).sum(-1)  # (B, test) Hamming distances
        nearest = mismatches == mismatches.min(1, keepdim=True).values
        weights = nearest.float().cpu()
        chosen = torch.multinomial(weights, n, replacement=True)  # (B, n) among the nearest test images
        return self._images(self.test[chosen.flatten()]).unflatten(0, (len(y), n))


class Renderer(Control):
    """The truth, rendered; needs a data set whose registry entry names a renderer (`DatasetEntry.truth`)."""

    row = "ceiling: renderer"
    judges = ("swap", "interventions", "conditional", "fid", "ground_truth")
    capabilities = Capabilities(classify=False, represent=False, characteristic=True, generate=True,
                                intervene=True, swap=True, traverse=False)

    def __init__(self, data: LabelledImages):
        super().__init__(data)
        truth = truth_of(data)
        if truth is None:
            raise ValueError(f"{data.name} has no renderer: its truth cannot be rendered")
        self.truth = truth
        self.size = data.image_shape[-1]
        self.labels = len(data.label_names)
        self._factors = {image.numpy().tobytes(): row.numpy()
                         for image, row in zip(data.images[self.test], data.factors[self.test], strict=True)}

    def factors_of(self, x: torch.Tensor) -> np.ndarray:
        """The generative factors of test images (B, F), found by their pixels."""
        keys = (x * 255).round().to(torch.uint8).cpu()
        try:
            return np.stack([self._factors[image.numpy().tobytes()] for image in keys])
        except KeyError:
            raise ValueError("the renderer knows the factors of test images only") from None

    def _render(self, factors: np.ndarray) -> torch.Tensor:
        return to_float_images(torch.from_numpy(self.truth.render_at(factors, self.size)).to(self.anchor.device))

    def characteristic(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.factors_of(x)[:, : self.labels]).unsqueeze(-1).to(x.device)

    def generate(self, y: torch.Tensor, n: int = 1) -> torch.Tensor:
        labels = y.repeat_interleave(n, 0).cpu().numpy()
        return self._render(self.truth.factors_for_labels(labels, self._numpy_generator())).unflatten(0, (len(y), n))

    def intervene(self, x: torch.Tensor, i: int, value: float, stochastic: bool = False) -> torch.Tensor:
        rng = self._numpy_generator() if stochastic else None
        return self._render(self.truth.with_label(self.factors_of(x), i, int(value), rng))

    def swap(self, x_char: torch.Tensor, x_ctx: torch.Tensor) -> torch.Tensor:
        if x_char is x_ctx or torch.equal(x_char, x_ctx):
            return x_char.clone()  # an image swapped with itself is itself, whatever its factors
        characteristics, context = self.factors_of(x_char), self.factors_of(x_ctx)
        return self._render(np.concatenate([characteristics[:, : self.labels], context[:, self.labels :]], 1))


ROWS = tuple(control.row for control in (Floor, RealImages, Renderer, OracleControl))
"""The controls' rows, in the order the tables show them (below the models)."""


def controls_for(data: LabelledImages, oracle: nn.Module) -> list[Control]:
    """The controls a data set allows: the floor, real images, the oracle, and the renderer where it has one."""
    controls: list[Control] = [Floor(data), RealImages(data), OracleControl(data, oracle)]
    if truth_of(data) is not None:
        controls.append(Renderer(data))
    return controls
