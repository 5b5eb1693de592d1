"""Label helpers shared by the models: p(y) from the labelled set, log q(y | logits), label
probabilities, hard labels, and the score-function term of sampled labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

if TYPE_CHECKING:
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


def label_log_terms(logits: torch.Tensor, y: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """log q(y | logits) term by term (shape of `logits`): log Ber(y_i | σ(logit_i)) per label, or
    y_c · log softmax(logits)_c per class for a one-hot y. Summed over the last axis: log q(y | logits)."""
    if multilabel:
        return -F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return y * F.log_softmax(logits, -1)


def label_probs(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """q(y_i = 1) per label (sigmoid), or the class probabilities (softmax)."""
    return torch.sigmoid(logits) if multilabel else F.softmax(logits, -1)


def hard_labels(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """The most likely labels under logits: 0/1 per label, or the one-hot argmax class."""
    if multilabel:
        return (logits > 0).to(logits.dtype)
    return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)


def score_function_term(log_prob: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """(log q − stop_gradient(log q)) · (R − b), elementwise: value 0, gradient the score-function
    (REINFORCE) estimator of ∇ E_q[R] for samples along dim 0, with the leave-one-out baseline
    b_s = mean of the other samples' rewards (unbiased: b_s does not depend on sample s; Kool, van Hoof &
    Welling 2019). `reward` is treated as a constant."""
    reward = reward.detach()
    baseline = (reward.sum(0, keepdim=True) - reward) / max(reward.shape[0] - 1, 1)
    return (log_prob - log_prob.detach()) * (reward - baseline)
