"""The claims' protocol, fixed before the runs: what each claim of the paper is tested on, how, and with how many
seeds. `bench.claims` decides them; nothing here computes.

Version 1 (2026-12-04), set before any run of the `claims` preset:

- α = 0.05 for every test. A claim **holds** when every one of its comparisons rejects its null hypothesis at α
  with the ordinary one-sided test (Berger's intersection-union test: the claim is an AND of its rows, so a false
  "holds" needs every row's test to err; no correction is needed and none is applied). It **fails** when the
  opposite test rejects for some row after Holm's correction over the claim's rows (an OR of its rows: Holm bounds
  the chance of any false "fails" at α). Otherwise it is undecided.
- Tests are unpaired (Welch's t on the two models' seeds; a one-sample t against a control row or a constant).
  The reason: pairing by seed (both runs share their labelled subset) would remove a shared seed effect, but on the
  stored sets the models' seeds are uncorrelated (var(a − b) / (var a + var b) pooled over every pair of models,
  metric and f: 1.031 on the standard set, 0.997 on the quick set; scripts/pairing.py), so pairing removes
  nothing and halves the degrees of freedom.
- `better` carries a minimal difference δ: the claim holds when the effect is significantly above 0 and not
  significantly below δ; it fails when the effect is significantly below δ (worse, or a tie within δ:
  "equivalent"). `not_worse` (non-inferiority by δ) fails when the effect is significantly below −δ;
  `equivalent` (TOST within ±δ) fails when the effect is significantly outside ±δ (the doubled smaller p of its
  two one-sided tests).
- The seeds: every cell of a claim is run with `seeds[data set]` training seeds, set from the measured cost per
  cell and the power computed on the stored standard set (docs/BUDGET.md); a verdict on fewer seeds is interim.
- A claim states what "learnt" means for it (`Claim.learnt`); where a cell's models have not learnt, its rows read
  `not at this budget` (the numbers that show it in the note) and decide nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

TestKind = Literal["better", "not_worse", "equivalent"]
TESTS: tuple[TestKind, ...] = get_args(TestKind)
FLOOR, RENDERER = "floor: does nothing", "ceiling: renderer"
MAJORITY = "majority_accuracy"  # the trainer's majority-class baseline, a reference for "learnt the labels"
LOW_RATES, HIGH_RATES, ALL_RATES = (0.004, 0.06), (0.2, 1.0), (0.004, 0.06, 0.2, 1.0)


@dataclass(frozen=True)
class Protocol:
    version: str
    alpha: float
    preset: str
    seeds: dict[str, int]  # data set -> the final number of training seeds of every claimed cell
    power: float = 0.8  # the power the seeds needed for an undecided row are computed for

    def seeds_for(self, dataset: str) -> int | None:
        return self.seeds.get(dataset)


LEARNING_CURVES = Path("results") / "curves" / "plateaus.csv"
"""Where each measure's learning curve levelled off (scripts/learning_curves.py, measured before the claims runs):
the claims name the measures still moving at the budget."""

PROTOCOL = Protocol("1", alpha=0.05, preset="claims", seeds={"synthfaces": 5, "fashion-mnist": 3})


@dataclass(frozen=True)
class Part:
    """One comparison of a claim: `subject` (or each of `subjects`) against each of `against` (models or control
    rows) or against the constant `reference`, on `metric` (a results.csv name), by `test` with `margin` δ (the
    minimal difference of `better`). `substitute`: a metric read instead where the results lack `metric`."""

    metric: str
    subject: str
    against: tuple[str, ...]
    test: TestKind
    margin: float = 0.0
    task: str | None = None  # only data sets of this task (bench.data's DatasetEntry.task)
    datasets: tuple[str, ...] = ()  # only these data sets (empty: every data set of the task in the results)
    fs: tuple[float, ...] = ALL_RATES
    subjects: tuple[str, ...] = ()  # several subjects, each against every row of `against` (e.g. DIVA and MVAE)
    reference: float | None = None  # compare with this constant instead of rows (`against` names it)
    substitute: str | None = None

    def __post_init__(self):
        if self.test not in TESTS:
            raise ValueError(f"unknown test {self.test!r}; one of {TESTS}")
        if not self.margin > 0:
            raise ValueError(f"a {self.test} test needs a positive margin (the minimal difference of `better`)")

    @property
    def describe(self) -> str:
        others = ", ".join(self.against)
        subjects = " and ".join(self.subjects or (self.subject,))
        words = {"better": "better than", "not_worse": "not worse than", "equivalent": "equivalent to"}[self.test]
        kind = "minimal difference" if self.test == "better" else "margin"
        instead = f"; {self.substitute} where it is missing" if self.substitute else ""
        return f"{subjects} {words} {others} on {self.metric} ({kind} {self.margin:g}{instead})"


@dataclass(frozen=True)
class Learnt:
    """A precondition: `models`' mean `metric` at a cell is better than `reference`'s (a control row, or the
    majority baseline) — they have learnt what the claim is about. Not checked where the results lack it."""

    metric: str
    models: tuple[str, ...]
    reference: str

    @property
    def describe(self) -> str:
        return f"{', '.join(self.models)} better than {self.reference} on {self.metric}"


@dataclass(frozen=True)
class Claim:
    key: str  # T<n>: a table's claim, F<n>: a figure's, a word: the text's (the paper's numbering)
    statement: str
    source: str
    parts: tuple[Part, ...]
    note: str = ""
    learnt: tuple[Learnt, ...] = field(default_factory=tuple)


BASELINES = ("m2", "diva", "mvae")  # the paper's baselines in Tables 1–5 (CSVAE and MCCVAE are this suite's)
PAPER_MODELS = ("ccvae", *BASELINES)
LABELS_LEARNT = Learnt("classification.accuracy", PAPER_MODELS, MAJORITY)
SWAPS_LEARNT = Learnt("ground_truth.swap_error", ("ccvae",), FLOOR)  # CCVAE's swaps beat doing nothing
LOG_TEN_PERCENT = math.log(1.1)  # a minimal difference of 10 % on a log-scale metric

CLAIMS: tuple[Claim, ...] = (
    Claim("T1", "CCVAE's accuracy is not worse than the baselines'",
          "Table 1, §6.3 (\"we are simply checking that it does not harm them\")",
          (Part("classification.accuracy", "ccvae", BASELINES, "not_worse", margin=0.02, task="multilabel"),),
          note="margin: 2 points of mean per-label test accuracy", learnt=(LABELS_LEARNT,)),
    Claim("T2", "CCVAE preserves characteristics in swaps better than M2, MVAE and DIVA (the oracle's |Δ log p|)",
          "Table 2, §6.3",
          (Part("swap.score", "ccvae", BASELINES, "better", margin=0.05, task="multilabel"),),
          note="minimal difference: 0.05 nats of |Δ log p|", learnt=(LABELS_LEARNT, SWAPS_LEARNT)),
    Claim("T2-truth", "CCVAE's swaps are nearer the true swap than M2's, MVAE's and DIVA's",
          "Table 2 and Figure 7, on the rendered truth (Table G)",
          (Part("ground_truth.swap_error", "ccvae", BASELINES, "better", margin=0.02, datasets=("synthfaces",)),),
          note="minimal difference: 0.02 of the swap error (the floor's is about 0.53)",
          learnt=(LABELS_LEARNT, SWAPS_LEARNT)),
    Claim("F7", "M2 carries the label but not the characteristic",
          "Figure 7, §6.3 (\"M2 is only able to preserve the label and not the exact characteristic\")",
          (Part("swap.score", "m2", (FLOOR,), "better", margin=0.05, datasets=("synthfaces",)),
           Part("ground_truth.swap_error", "ccvae", ("m2",), "better", margin=0.02, datasets=("synthfaces",))),
          note="the label: M2's swaps move the oracle's label probabilities towards a's more than doing nothing; "
               "not the characteristic: CCVAE's swaps are nearer the rendered truth than M2's",
          learnt=(LABELS_LEARNT, SWAPS_LEARNT)),
    Claim("T4", "MVAE has the best FID at low f; M2 beats MVAE at high f",
          "Table 4, appendix D (\"for low supervision rates MVAE obtains the best performance but for higher "
          "supervision rates M2 outperforms MVAE\")",
          (Part("fid.fid", "mvae", ("ccvae", "m2", "diva"), "better", margin=LOG_TEN_PERCENT, task="multilabel",
                fs=LOW_RATES, substitute="fid.oracle_frechet"),
           Part("fid.fid", "m2", ("mvae",), "better", margin=LOG_TEN_PERCENT, task="multilabel", fs=HIGH_RATES,
                substitute="fid.oracle_frechet")),
          note="minimal difference: a distance 10 % smaller; without Inception weights (--fid-weights) the "
               "Fréchet distance in the oracle's feature space stands in for FID, and the verdict says so",
          learnt=(LABELS_LEARNT,)),
    Claim("T5", "CCVAE and M2 are comparable in conditional generation; DIVA and MVAE are near random",
          "Table 5, appendix D (\"CCVAE and M2 are comparable … DIVA and MVAE perform poorly, indicated by random "
          "guessing\")",
          (Part("conditional.accuracy", "ccvae", ("m2",), "equivalent", margin=0.05, task="multilabel"),
           Part("conditional.label_gain", "ccvae", ("label-blind",), "better", margin=0.05, task="multilabel",
                subjects=("ccvae", "m2"), reference=0.0),
           Part("conditional.label_gain", "diva", ("label-blind",), "equivalent", margin=0.05, task="multilabel",
                subjects=("diva", "mvae"), reference=0.0)),
          note="margins: 5 points of oracle accuracy on the requested labels; \"near random\" is label-blind: the "
               "gain of a model's accuracy over that of its own generations scored against shuffled requests "
               "(0 for any generator that ignores its labels, whatever labels it renders)",
          learnt=(LABELS_LEARNT,)),
    Claim("interventions", "Setting a label changes that label and little else (CCVAE)",
          "§6.1, Figures 3–4, appendix D.3",
          (Part("interventions.flip_rate", "ccvae", (FLOOR,), "better", margin=0.05, task="multilabel"),
           Part("interventions.leakage", "ccvae", (RENDERER,), "not_worse", margin=0.05, datasets=("synthfaces",)),
           Part("ground_truth.intervention_error", "ccvae", (FLOOR,), "better", margin=0.02,
                datasets=("synthfaces",))),
          note="leakage margin: 5 % of the other labels' oracle decisions more than the true intervention changes; "
               "minimal differences: 5 points of flip rate, 0.02 of the intervention error",
          learnt=(Learnt("classification.accuracy", ("ccvae",), MAJORITY), SWAPS_LEARNT)),
    Claim("T6", "CCVAE's multi-class accuracy is not worse than the baselines'",
          "Table 6, appendix D.6",
          (Part("classification.accuracy", "ccvae", BASELINES, "not_worse", margin=0.02, task="multiclass"),),
          note="margin: 2 points of top-1 test accuracy", learnt=(LABELS_LEARNT,)),
    Claim("T7", "CCVAE's multi-class conditional generations are no more out-of-distribution than the baselines'",
          "Table 7, appendix D.6 (reported without a stated ordering: the claim its inclusion implies)",
          (Part("mutual_info.generated", "ccvae", BASELINES, "not_worse", margin=0.02, task="multiclass"),),
          note="margin: 0.02 nats of mutual information I(y; ω | x)", learnt=(LABELS_LEARNT,)),
)
