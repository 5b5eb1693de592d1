"""`swap` (Table 2): does a characteristic swap carry image a's label characteristics, and keep b's context?

For a fixed set of random test pairs (a, b) (drawn from the evaluation seed, the same for every
model), s = model.swap(a, b) should put a's characteristics on b's context. Both sides are measured:

    score                    mean over pairs and labels of | log p_oracle(y_a,i | s) − log p_oracle(y_a,i | a) |
    score_vs_reconstruction  the same against the model's own reconstruction â = swap(a, a) instead of a,
                             so that what the swap carried is separated from how sharp the decoder is
    context_kept             d(s, â) / (d(s, â) + d(s, b̂)), d the mean absolute pixel difference and
                             b̂ = swap(b, b): 1 where s is b's reconstruction (nothing of a carried),
                             0 where it is a's (nothing of b kept); a working swap sits between,
                             nearer 1 where context fills most of the image

(multi-class: the log-probability of a's class). `score` is the paper's measure (lower is better):
a swap that returns a exactly scores 0 there, which is why `context_kept` stands beside it. The
paper leaves open whether the log-probabilities are summed over labels; the mean per label is
used so that data sets with different label counts are comparable. On synthfaces the distance of a
swap to the true, rendered swap is Table G's `swap_error` (`evaluators/ground_truth.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from bench.budgets import Budget, EvalSettings
from bench.metrics import Metric, Tolerance
from evaluators.common import NO_RESOURCES, Evaluator, Resources, batched, device_of, float_images, sample_test_indices

if TYPE_CHECKING:
    from bench.data.base import LabelledImages


def swap_score(swapped_log_probs: torch.Tensor, original_log_probs: torch.Tensor) -> float:
    """Mean absolute difference of the oracle's per-label log-probabilities (B, L) and (B, L)."""
    return float((swapped_log_probs - original_log_probs).abs().mean())


def pixel_distance(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Mean absolute pixel difference per image (B,)."""
    return (first - second).abs().flatten(1).mean(1)


def context_kept(to_characteristic: torch.Tensor, to_context: torch.Tensor) -> float:
    """Mean over pairs of d(s, â) / (d(s, â) + d(s, b̂)); a pair where both distances are 0 counts ½."""
    total = to_characteristic + to_context
    share = torch.where(total > 0, to_characteristic / total.clamp(min=1e-12), torch.full_like(total, 0.5))
    return float(share.mean())


BUDGET = Budget(samples=2000)  # random test pairs (the paper: all of them; 2,000 is its scale)


def evaluate(model, data: LabelledImages, oracle, generator: torch.Generator, settings: EvalSettings,
             resources: Resources = NO_RESOURCES, budget: Budget = BUDGET) -> dict:
    if not model.capabilities.swap:
        return {"unavailable": "the model cannot swap characteristics"}
    device = device_of(model)
    first = sample_test_indices(data, budget.samples, generator)
    second = sample_test_indices(data, len(first), generator)

    def measured(a_idx: torch.Tensor, b_idx: torch.Tensor) -> torch.Tensor:
        """Per pair: the oracle's log-probabilities of y_a on s, a and â (3, B, L), then d(s, â) and d(s, b̂)."""
        a, b = float_images(data, a_idx, device), float_images(data, b_idx, device)
        labels = data.labels[a_idx].float().to(device)
        swapped, a_back, b_back = model.swap(a, b), model.swap(a, a), model.swap(b, b)
        log_probs = [oracle.log_prob_of(image, labels) for image in (swapped, a, a_back)]
        distances = [pixel_distance(swapped, a_back), pixel_distance(swapped, b_back)]
        return torch.cat([*log_probs, *(d.unsqueeze(1) for d in distances)], 1).cpu()

    rows = batched(measured, first, second, batch_size=settings.batch_size)
    width = (rows.shape[1] - 2) // 3
    swapped, original, reconstructed = rows[:, :width], rows[:, width: 2 * width], rows[:, 2 * width: 3 * width]
    return {"score": swap_score(swapped, original), "score_vs_reconstruction": swap_score(swapped, reconstructed),
            "context_kept": context_kept(rows[:, -2], rows[:, -1]), "pairs": len(first)}


EVALUATOR = Evaluator(
    "swap", evaluate,
    metrics=(Metric("score", "|Δ log p| vs a", False, Tolerance(0.05, 0.15),
                    "a mean of oracle log-probability differences on 1,000 pairs after a short run"),
             Metric("score_vs_reconstruction", "|Δ log p| vs â", False, Tolerance(0.05, 0.15),
                    "a mean of oracle log-probability differences on 1,000 pairs after a short run"),
             # not ranked: its best value is the true swap's (the renderer's row), not an extreme; doing nothing
             # scores 1
             Metric("context_kept", "context kept", None, Tolerance(0.05),
                    "a ratio of mean pixel distances on 1,000 pairs after a short run")),
    details=("pairs",),
    count=("pairs", "pairs"),
    budget=BUDGET,
)
