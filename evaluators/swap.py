"""`swap` (Table 2): how exactly a characteristic swap carries image a's label characteristics.

For a fixed set of random test pairs (a, b) (drawn from the evaluation seed, the same for
every model), x̃ = model.swap(a, b) puts a's characteristics on b's context. The oracle scores
a's true label values on x̃ and on a itself:

    score = mean over pairs and labels of | log p_oracle(y_a,i | x̃) − log p_oracle(y_a,i | a) |

(multi-class: the log-probability of a's class). Lower is better; a swap that returns a exactly
scores 0. The paper leaves open whether the log-probabilities are summed over labels; the mean
per label is used so that data sets with different label counts are comparable.
"""

from __future__ import annotations

import torch

from bench.data.base import LabelledImages
from bench.metrics import Metric, Tolerance
from evaluators.common import (
    NO_RESOURCES,
    EvalSettings,
    Evaluator,
    Resources,
    batched,
    float_images,
    sample_test_indices,
)


def swap_score(swapped_log_probs: torch.Tensor, original_log_probs: torch.Tensor) -> float:
    """Mean absolute difference of the oracle's per-label log-probabilities (B, L) and (B, L)."""
    return float((swapped_log_probs - original_log_probs).abs().mean())


def evaluate(model, data: LabelledImages, oracle, generator: torch.Generator, settings: EvalSettings,
             resources: Resources = NO_RESOURCES) -> dict:
    if not model.capabilities.swap:
        return {"unavailable": "the model cannot swap characteristics"}
    device = next(model.parameters()).device
    first = sample_test_indices(data, settings.pairs, generator)
    second = sample_test_indices(data, len(first), generator)

    def log_probs(a_idx: torch.Tensor, b_idx: torch.Tensor) -> torch.Tensor:
        a, b = float_images(data, a_idx, device), float_images(data, b_idx, device)
        labels = data.labels[a_idx].float().to(device)
        swapped = model.swap(a, b)
        return torch.stack([oracle.log_prob_of(swapped, labels), oracle.log_prob_of(a, labels)]).cpu()

    both = batched(lambda a_idx, b_idx: log_probs(a_idx, b_idx).transpose(0, 1), first, second,
                   batch_size=settings.batch_size)
    return {"score": swap_score(both[:, 0], both[:, 1]), "pairs": len(first)}


EVALUATOR = Evaluator(
    "swap", evaluate,
    metrics=(Metric("score", "|Δ log p|", False, Tolerance(0.05, 0.15),
                    "a mean of oracle log-probability differences on 1,000 pairs after a short run"),),
    details=("pairs",),
    count=("pairs", "pairs"),
)
