"""The supervision split: which training images are labelled at supervision rate f."""

from __future__ import annotations

import math

import numpy as np

from bench.errors import BenchError

SUPERVISION_SEED_OFFSET = 7919  # keeps the split's stream apart from the model's seed stream


def check_rate(f: float) -> float:
    if not (isinstance(f, (int, float)) and 0 < f <= 1):
        raise BenchError(f"supervision rate f={f} is outside (0, 1]; use e.g. --f 0.06 (1.0 = all labelled)")
    return float(f)


def labelled_indices(train: np.ndarray, f: float, seed: int, batch_size: int) -> np.ndarray:
    """A seeded random subset of ⌈f·N⌉ training indices (never fewer than one batch), sorted.

    f = 1 labels every training image. The rest of `train` is the unlabelled set; a model
    never receives labels for it.
    """
    f = check_rate(f)
    n_train = len(train)
    count = min(n_train, max(math.ceil(f * n_train), batch_size))
    if count == n_train:
        return np.sort(np.asarray(train))
    rng = np.random.default_rng([seed, SUPERVISION_SEED_OFFSET])
    return np.sort(rng.choice(np.asarray(train), size=count, replace=False))


def unlabelled_indices(train: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    return np.setdiff1d(np.asarray(train), labelled, assume_unique=True)
