"""Label helpers shared by the models: p(y) from the labelled set, log p(y), hard labels."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from bench.api import DataSpec

PRIOR_CLIP = 1e-3


def clipped_label_prior(spec: DataSpec) -> torch.Tensor:
    """p(y) of the labelled set (per-label or per-class frequencies), clipped to [1e-3, 1 − 1e-3]."""
    return torch.tensor(spec.label_prior, dtype=torch.float32).clamp(PRIOR_CLIP, 1 - PRIOR_CLIP)


def label_prior_log_prob(y: torch.Tensor, prior: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """log p(y) term by term, (B, L): Bernoulli per label, or the one-hot class's log π_c."""
    if multilabel:
        return y * prior.log() + (1 - y) * (1 - prior).log()
    return y * prior.log()


def hard_labels(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """The most likely labels under logits: 0/1 per label, or the one-hot argmax class."""
    if multilabel:
        return (logits > 0).to(logits.dtype)
    return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
