"""Presets: every budget of a run in one place — training, the evaluators' sample sizes and the oracle.

`preset(name)` is the only way in; an unknown name is a one-line error wherever it is given. The budgets are checked
against the evaluators' registry where both meet (`bench.evaluate.evaluation_preset`): a preset loads no evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.budgets import (
    Budget,
    EvalSettings,
    GPConfig,
    GroundTruthBudget,
    MutualInfoBudget,
    OracleConfig,
    ReaderConfig,
)
from bench.registry import Registry

if TYPE_CHECKING:
    from evaluators.common import Evaluator


@dataclass(frozen=True)
class Preset:
    """A budget.

    Training length: either `optimiser_steps`, the same number of optimiser steps at every f and for every model,
    `labelled_share` of them on labelled batches (`bench.train.step_schedule`: the fair budget the claims use), or
    `epochs` (per model where `model_epochs` says so) over the training images, where a step count then depends on
    f (`labelled_share`, when set, cycles the labelled set so that at least that share of each epoch's steps is
    supervised; None: each labelled image once per epoch, the authors' schedule). Then `batch_size`, Adam's `lr`;
    `train_limit` keeps the first N training images (None: all); `dataset_overrides` changes a data set's options
    (e.g. synthfaces at 32×32).
    Evaluation: `oracle` (how the oracle every evaluator reads is trained), `budgets` (each evaluator's
    `Budget`, by name: its sample count and how any helper it builds is trained; an evaluator not named runs at
    its own declared default) and `evaluation` (the batch size and seed they share).
    """

    name: str
    batch_size: int
    lr: float
    oracle: OracleConfig
    budgets: dict[str, Budget]
    epochs: int | None = None
    optimiser_steps: int | None = None
    evaluation: EvalSettings = field(default_factory=EvalSettings)
    train_limit: int | None = None
    labelled_share: float | None = None
    dataset_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_epochs: dict[str, int] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self):
        if (self.epochs is None) == (self.optimiser_steps is None):
            raise ValueError(f"preset {self.name}: give exactly one of epochs and optimiser_steps")
        if self.optimiser_steps is not None and (self.labelled_share is None or self.model_epochs):
            raise ValueError(f"preset {self.name}: a step budget needs a labelled_share and no model_epochs")

    def budget_for(self, evaluator: Evaluator) -> Budget | None:
        """The evaluator's budget at this preset: the one it sets, or the evaluator's own default."""
        return self.budgets.get(evaluator.name, evaluator.budget)

    def problems(self, evaluators: dict[str, Evaluator]) -> list[str]:
        """Budgets that would be dropped or misread: for no registered evaluator, or not of the evaluator's kind."""
        found = []
        for name, budget in self.budgets.items():
            if name not in evaluators:
                found.append(f"a budget for '{name}', which is no evaluator ({', '.join(evaluators)})")
                continue
            default = evaluators[name].budget
            if default is None or not isinstance(budget, type(default)):
                kind = "no budget" if default is None else type(default).__name__
                found.append(f"'{name}' takes {kind}, not {type(budget).__name__}")
        return found


CLAIMS_STEPS = 4000
"""The claims preset's optimiser steps (every model, every f): half the learning curves' 8,000-step horizon, the most
whose levelling off this machine could verify at twice the budget; the measures still moving at 4,000 steps are named
with their numbers in docs/BUDGET.md and the claims' notes (scripts/learning_curves.py)."""

LEARNT_BUDGETS = {"swap": Budget(2000), "interventions": Budget(500), "conditional": Budget(2000),
                  "fid": Budget(2000), "mutual_info": MutualInfoBudget(2000),
                  "ground_truth": GroundTruthBudget(2000, reader=ReaderConfig(steps=1000))}
"""The evaluators' budgets of the presets where the models learn (standard, claims)."""

SMALL_SYNTHFACES = {"n_train": 1000, "n_valid": 200, "n_test": 1000, "image_size": 32}
"""synthfaces for the smoke and ci presets (the same data, so that they share its cache)."""

PRESETS: Registry[Preset] = Registry("preset", {preset.name: preset for preset in (
    Preset(
        "smoke", epochs=2, batch_size=50, lr=1e-3, train_limit=500, labelled_share=0.5,
        dataset_overrides={"synthfaces": SMALL_SYNTHFACES},
        oracle=OracleConfig(steps=100),
        budgets={"swap": Budget(100), "interventions": Budget(50), "conditional": Budget(100),
                 "fid": Budget(100), "mutual_info": MutualInfoBudget(100, gp=GPConfig(epochs=1, train_images=5000)),
                 "ground_truth": GroundTruthBudget(100, reader=ReaderConfig(steps=100))},
        description="every code path in seconds (`run --all --preset smoke`: 48 runs, evaluators and tables, in "
                    "under 5 minutes on 2 cores): 500 training images, 2 epochs of batch 50; its numbers "
                    "mean nothing — the models have not learnt yet",
    ),
    Preset(
        "ci", epochs=10, batch_size=100, lr=1e-3, train_limit=1000, labelled_share=0.5,
        dataset_overrides={"synthfaces": SMALL_SYNTHFACES},
        # MVAE's image posterior learns the labels only through the product with the label
        # experts; with its sub-sampled objective (protocol 1) seed 0 at f = 0.06 was 0.617 after
        # 40 epochs (the majority baseline 0.606) and 0.700 after 60.
        model_epochs={"mvae": 60},
        oracle=OracleConfig(steps=300),  # ≥ 0.95 test accuracy on the small synthfaces
        budgets={"swap": Budget(200), "interventions": Budget(100), "conditional": Budget(200),
                 "fid": Budget(200), "mutual_info": MutualInfoBudget(200),
                 "ground_truth": GroundTruthBudget(1000, reader=ReaderConfig(steps=300))},
        description="the tests' grid (CI trains it at f = 0.06 and checks it against results/stored/ci): 1,000 "
                    "training images (synthfaces at 32×32), 10 epochs (~200 steps at f = 0.06; MVAE 60), enough "
                    "for every model to beat the majority baseline; 15–30 s per run (MVAE ~100 s)",
    ),
    Preset(
        "quick", epochs=4, batch_size=100, lr=1e-3, train_limit=3000, labelled_share=0.5,
        dataset_overrides={"synthfaces": {"image_size": 32}},
        # MVAE learns the labels only through the product with the label experts: on synthfaces at
        # f = 0.2 its accuracy was 0.610 after 4 epochs (the majority baseline: 0.608), 0.633 after 12,
        # 0.689 after 16 and 0.766 after 48 (0.704 and 0.782 at f = 1)
        model_epochs={"mvae": 16},
        oracle=OracleConfig(steps=1000),
        budgets={"swap": Budget(1000), "interventions": Budget(300), "conditional": Budget(1000),
                 "fid": Budget(1000), "mutual_info": MutualInfoBudget(1000),
                 "ground_truth": GroundTruthBudget(1000, reader=ReaderConfig(steps=1000))},
        description="the CPU default: 3,000 training images (synthfaces rendered at 32×32), 4 epochs (MVAE 16), "
                    "lr 1e-3, batch 100, labelled batches recycled to half of the steps",
    ),
    Preset(
        "standard", epochs=10, batch_size=100, lr=1e-3, labelled_share=0.5,
        dataset_overrides={"synthfaces": {"image_size": 32}},
        oracle=OracleConfig(steps=1000),  # the quick preset's: the same cached oracle and factor reader
        budgets=dict(LEARNT_BUDGETS),
        description="where the models learn on synthfaces: all 20,000 training images at 32×32, 10 epochs (3,200 "
                    "steps at f = 0.2), batch 100, lr 1e-3, labelled batches recycled to half of the steps; the least "
                    "budget at which every model's accuracy and ground-truth errors have made 90 % of their "
                    "improvement over 12 epochs (docs/BUDGET.md)",
    ),
    Preset(
        "claims", optimiser_steps=CLAIMS_STEPS, batch_size=100, lr=1e-3, labelled_share=0.5,
        dataset_overrides={"synthfaces": {"image_size": 32}},
        oracle=OracleConfig(steps=1000),  # the quick and standard presets': the same cached oracle and factor reader
        budgets=dict(LEARNT_BUDGETS),  # the standard preset's, so that the two budgets' numbers compare
        description="the claims' protocol (bench/protocol.py): every model at every f trains the same number of "
                    "optimiser steps, half of them on labelled batches (all at f = 1), on all training images "
                    "(synthfaces at 32×32), batch 100, lr 1e-3; the step count is where every measure a claim reads "
                    "has levelled off (docs/BUDGET.md)",
    ),
    Preset(
        "paper", epochs=100, batch_size=200, lr=2e-4,
        oracle=OracleConfig(steps=5000),
        budgets={"swap": Budget(2000), "interventions": Budget(1000), "conditional": Budget(2000),
                 "fid": Budget(10_000), "mutual_info": MutualInfoBudget(2000),
                 "ground_truth": GroundTruthBudget(2000, reader=ReaderConfig(steps=5000))},
        description="the paper's settings: all training images, 100 epochs, Adam lr 2e-4, batch 200",
    ),
)})


def preset(name: str) -> Preset:
    """The preset called `name`."""
    return PRESETS[name]
