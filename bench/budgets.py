"""The evaluators' budgets: how many samples each draws and how the helpers they build are trained.

Plain frozen dataclasses that import nothing of the suite, so that a preset (`bench.presets`) can set every budget
without loading an evaluator or torch. Each evaluator names its own default (`evaluators/<name>.py`, `BUDGET`); the
oracle's, the factor reader's and the GP head's configs are part of their cache keys (`dataclasses.asdict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EvalSettings:
    """What every evaluator of one evaluation shares: the batch size of its model calls and the seed its samples
    are drawn from. How many samples each draws is its own `Budget`."""

    batch_size: int = 250
    seed: int = 0


@dataclass(frozen=True)
class Budget:
    """An evaluator's budget: `samples`, how many test images, pairs or generations it draws (what its `count`
    counts). An evaluator that needs more (how a helper it builds is trained) declares a subclass with those
    fields. Each preset sets every evaluator's budget in one place (`bench.presets`); an evaluator a preset does
    not name runs at its own declared default."""

    samples: int


@dataclass(frozen=True)
class OracleConfig:
    """How the oracle is trained (`evaluators/oracle.py`); part of its cache key. Each preset sets the steps."""

    steps: int = 1000
    batch_size: int = 100
    lr: float = 1e-3
    shift_pixels: float = 3.0  # random translation at 64 px (scaled with the image size)
    seed: int = 12345  # not a VAE seed: the oracle is independent of every run


@dataclass(frozen=True)
class ReaderConfig:
    """How the factor reader is trained (`evaluators/factor_reader.py`); part of its cache key. Each preset sets the
    steps."""

    steps: int = 1000
    batch_size: int = 100
    lr: float = 1e-3
    blur_sigma: float = 2.0  # the widest augmentation blur, in pixels at 64 px
    blur_groups: int = 4  # a batch is blurred in this many groups, each with its own width
    seed: int = 271828  # independent of the oracle's and of every run's


@dataclass(frozen=True)
class GroundTruthBudget(Budget):
    """`samples` test images (each paired with the one drawn before it), and how the factor reader is trained
    (`reader`)."""

    reader: ReaderConfig


INDUCING_POINTS = 200
"""The sparse GP head's inducing points per class (`evaluators/mutual_info.py`)."""


@dataclass(frozen=True)
class GPConfig:
    """How the GP head of Table 7's mutual information is fitted; part of its cache key."""

    inducing_points: int = INDUCING_POINTS
    epochs: int = 3
    batch_size: int = 256
    lr: float = 0.01
    seed: int = 0
    train_images: int | None = None  # fit on the first N training images (None: all)


@dataclass(frozen=True)
class MutualInfoBudget(Budget):
    """`samples` generations, and how the GP head is fitted (`gp`)."""

    gp: GPConfig = field(default_factory=GPConfig)
