"""The paper's qualitative claims as tests with verdicts: `python -m bench claims`.

Each `Claim` is a statement of the paper (its source: table, figure, section) and one or more `Part`s, each a
comparison on one metric: a subject model against other models or a control row (the floor, a ceiling), over
the data sets and supervision rates the claim speaks of. A part's test is one of

    better      the subject is better than each other row (one-sided; fails where it is significantly worse)
    not_worse   non-inferiority with margin δ: the subject is worse by less than δ (fails: worse by more than δ)
    equivalent  equivalence with margin δ (two one-sided tests, TOST): |difference| < δ (fails: |difference| > δ)

on the *effect*: the subject's value minus the other's, signed so that positive is better for the subject (the
metric's declared direction), in the metric's units (for a log-scale metric, `bench.metrics.Metric.scale`, the
difference of logarithms: a log ratio). Runs of two models at the same (data set, f, seed) share
their labelled subset (the supervision split depends on the seed, not the model), so the effect is paired by
seed: a one-sample Student t on the per-seed differences, n the number of seeds both have. A control row does not
depend on the training seed: the subject's seeds are compared with the control's value (its mean over evaluation
seeds). A run evaluated at several evaluation seeds counts with the mean of its evaluations.

Every comparison (data set × f × other row) of a claim is one row of claims.csv with its verdict: `holds` when the
claim's one-sided test rejects its null hypothesis at α = 5 % after Holm's correction over the claim's rows,
`fails` when the opposite one-sided test does (Holm's correction again), `undecided` otherwise (or with fewer than
two seeds), `not measured` when the results lack the metric or a model (with why). The effect's 95 % interval is
the two-sided Student t interval, not adjusted. A claim holds when every one of its rows holds, fails when any
fails, and is undecided otherwise; it is `not measured` when none of its rows could be measured.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bench.data import DATASETS
from bench.errors import BenchError
from bench.files import atomic_write_text
from evaluators import all_metrics

ALPHA = 0.05
HOLDS, FAILS, UNDECIDED, NOT_MEASURED = "holds", "fails", "undecided", "not measured"
VERDICTS = (HOLDS, FAILS, UNDECIDED, NOT_MEASURED)
TESTS = ("better", "not_worse", "equivalent")
FLOOR, RENDERER = "floor: does nothing", "ceiling: renderer"
LOW_RATES, HIGH_RATES, ALL_RATES = (0.004, 0.06), (0.2, 1.0), (0.004, 0.06, 0.2, 1.0)
CSV_COLUMNS = ["claim", "part", "source", "dataset", "f", "metric", "models", "test", "margin", "verdict", "effect",
               "low", "high", "p", "p_against", "n", "note"]


@dataclass(frozen=True)
class Part:
    """One comparison of a claim: `subject` against each of `against` on `metric` (a results.csv name)."""

    metric: str
    subject: str
    against: tuple[str, ...]
    test: str  # one of TESTS
    margin: float = 0.0  # δ of not_worse and equivalent, in the metric's units
    task: str | None = None  # only data sets of this task (bench.data's DatasetEntry.task)
    datasets: tuple[str, ...] = ()  # only these data sets (empty: every data set of the task in the results)
    fs: tuple[float, ...] = ALL_RATES
    subjects: tuple[str, ...] = ()  # several subjects, each against every row of `against` (e.g. DIVA and MVAE)

    def __post_init__(self):
        if self.test not in TESTS:
            raise ValueError(f"unknown test {self.test!r}; one of {TESTS}")
        if self.test != "better" and not self.margin > 0:
            raise ValueError(f"a {self.test} test needs a positive margin")

    @property
    def describe(self) -> str:
        others = ", ".join(self.against)
        subjects = " and ".join(self.subjects or (self.subject,))
        if self.test == "better":
            return f"{subjects} better than {others} on {self.metric}"
        word = "not worse than" if self.test == "not_worse" else "equivalent to"
        return f"{subjects} {word} {others} on {self.metric} (margin {self.margin:g})"


@dataclass(frozen=True)
class Claim:
    key: str
    statement: str
    source: str
    parts: tuple[Part, ...]
    note: str = ""


BASELINES = ("m2", "diva", "mvae")  # the paper's baselines in Tables 1–5 (CSVAE and MCCVAE are this suite's)

CLAIMS: tuple[Claim, ...] = (
    Claim("1", "CCVAE's accuracy is not worse than the baselines'",
          "Table 1, §6.3 (\"we are simply checking that it does not harm them\")",
          (Part("classification.accuracy", "ccvae", BASELINES, "not_worse", margin=0.02, task="multilabel"),),
          note="margin: 2 points of mean per-label test accuracy"),
    Claim("2", "CCVAE preserves characteristics in swaps better than M2, MVAE and DIVA (the oracle's |Δ log p|)",
          "Table 2, §6.3",
          (Part("swap.score", "ccvae", BASELINES, "better", task="multilabel"),)),
    Claim("2-truth", "CCVAE's swaps are nearer the true swap than M2's, MVAE's and DIVA's",
          "Table 2 and Figure 7, on the rendered truth (Table G)",
          (Part("ground_truth.swap_error", "ccvae", BASELINES, "better", datasets=("synthfaces",)),)),
    Claim("7", "M2 carries the label but not the characteristic",
          "Figure 7, §6.3 (\"M2 is only able to preserve the label and not the exact characteristic\")",
          (Part("swap.score", "m2", (FLOOR,), "better", datasets=("synthfaces",)),
           Part("ground_truth.swap_error", "ccvae", ("m2",), "better", datasets=("synthfaces",))),
          note="the label: M2's swaps move the oracle's label probabilities towards a's more than doing nothing; "
               "not the characteristic: CCVAE's swaps are nearer the rendered truth than M2's"),
    Claim("4", "MVAE has the best FID at low f; M2 beats MVAE at high f",
          "Table 4, appendix D (\"for low supervision rates MVAE obtains the best performance but for higher "
          "supervision rates M2 outperforms MVAE\")",
          (Part("fid.fid", "mvae", ("ccvae", "m2", "diva"), "better", task="multilabel", fs=LOW_RATES),
           Part("fid.fid", "m2", ("mvae",), "better", task="multilabel", fs=HIGH_RATES))),
    Claim("5", "CCVAE and M2 are comparable in conditional generation; DIVA and MVAE are near random",
          "Table 5, appendix D (\"CCVAE and M2 are comparable … DIVA and MVAE perform poorly, indicated by random "
          "guessing\")",
          (Part("conditional.accuracy", "ccvae", ("m2",), "equivalent", margin=0.05, task="multilabel"),
           Part("conditional.accuracy", "ccvae", (FLOOR,), "better", task="multilabel", subjects=("ccvae", "m2")),
           Part("conditional.accuracy", "diva", (FLOOR,), "equivalent", margin=0.05, task="multilabel",
                subjects=("diva", "mvae"))),
          note="margins: 5 points of oracle accuracy on the requested labels; the floor generates random test "
               "images whatever the labels"),
    Claim("interventions", "Setting a label changes that label and little else (CCVAE)",
          "§6.1, Figures 3–4, appendix D.3",
          (Part("interventions.flip_rate", "ccvae", (FLOOR,), "better", task="multilabel"),
           Part("interventions.leakage", "ccvae", (RENDERER,), "not_worse", margin=0.05, datasets=("synthfaces",)),
           Part("ground_truth.intervention_error", "ccvae", (FLOOR,), "better", datasets=("synthfaces",))),
          note="leakage margin: 5 % of the other labels' oracle decisions more than the true intervention changes"),
    Claim("6", "CCVAE's multi-class accuracy is not worse than the baselines'",
          "Table 6, appendix D.6",
          (Part("classification.accuracy", "ccvae", BASELINES, "not_worse", margin=0.02, task="multiclass"),),
          note="margin: 2 points of top-1 test accuracy"),
    Claim("7-mi", "CCVAE's multi-class conditional generations are no more out-of-distribution than the baselines'",
          "Table 7, appendix D.6 (reported without a stated ordering: the claim its inclusion implies)",
          (Part("mutual_info.generated", "ccvae", BASELINES, "not_worse", margin=0.02, task="multiclass"),),
          note="margin: 0.02 nats of mutual information I(y; ω | x)"),
)


def claim(key: str) -> Claim:
    for declared in CLAIMS:
        if declared.key == key:
            return declared
    raise BenchError(f"unknown claim '{key}'; choose one of {', '.join(c.key for c in CLAIMS)}")


# ---------------------------------------------------------------------------------------------- the statistics
@dataclass(frozen=True)
class Comparison:
    """The effect of one comparison (positive: better for the subject), its 95 % interval and its two one-sided
    p-values before correction: `p` for the claim's alternative, `p_against` for the opposite one."""

    effect: float
    low: float
    high: float
    p: float
    p_against: float
    n: int


def one_sided_p(differences: np.ndarray, shift: float, greater: bool) -> float:
    """P-value of Student's one-sample t-test of mean(differences) > shift (greater) or < shift (not greater).
    Differences without spread decide exactly: p = 0 when their mean is strictly on the alternative's side, 1
    otherwise."""
    mean = differences.mean()
    sd = differences.std(ddof=1)
    if sd == 0:
        return 0.0 if (mean > shift if greater else mean < shift) else 1.0
    t = (mean - shift) / (sd / math.sqrt(differences.size))
    return float(stats.t.sf(t, differences.size - 1) if greater else stats.t.cdf(t, differences.size - 1))


def compare(differences: Iterable[float], test: str, margin: float = 0.0) -> Comparison:
    """The comparison of per-seed effects (positive: better for the subject) by `test` with `margin` δ:

    better      p: mean > 0;             p_against: mean < 0
    not_worse   p: mean > −δ;            p_against: mean < −δ
    equivalent  p: max(p(mean > −δ), p(mean < δ)) (TOST);  p_against: min(p(mean < −δ), p(mean > δ))
    """
    differences = np.asarray(list(differences), dtype=float)
    if differences.size < 2:
        raise ValueError("a comparison needs at least two seeds")
    mean, sd, n = float(differences.mean()), float(differences.std(ddof=1)), int(differences.size)
    if sd == 0:
        low = high = mean
    else:
        low, high = (float(v) for v in stats.t.interval(0.95, n - 1, loc=mean, scale=sd / math.sqrt(n)))
    if test == "better":
        p, against = one_sided_p(differences, 0.0, True), one_sided_p(differences, 0.0, False)
    elif test == "not_worse":
        p, against = one_sided_p(differences, -margin, True), one_sided_p(differences, -margin, False)
    elif test == "equivalent":
        p = max(one_sided_p(differences, -margin, True), one_sided_p(differences, margin, False))
        against = min(one_sided_p(differences, -margin, False), one_sided_p(differences, margin, True))
    else:
        raise ValueError(f"unknown test {test!r}")
    return Comparison(mean, low, high, p, against, n)


def holm(p_values: Iterable[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, at most 1); NaN stays NaN and is not counted."""
    p_values = list(p_values)
    finite = sorted((p, index) for index, p in enumerate(p_values) if not math.isnan(p))
    adjusted, running = list(p_values), 0.0
    for rank, (p, index) in enumerate(finite):
        running = max(running, min(1.0, (len(finite) - rank) * p))
        adjusted[index] = running
    return adjusted


# ------------------------------------------------------------------------------------------ results -> verdicts
def run_values(results: pd.DataFrame) -> pd.DataFrame:
    """One value per (data set, model, f, seed, metric): a run's mean over its evaluation seeds; a control's
    (f NaN) mean over its evaluation seeds, with seed NaN."""
    runs = results[results.f.notna()].groupby(["dataset", "model", "f", "seed", "metric"], as_index=False)["value"]
    controls = results[results.f.isna()].groupby(["dataset", "model", "metric"], as_index=False)["value"].mean()
    return pd.concat([runs.mean(), controls.assign(f=math.nan, seed=math.nan)], ignore_index=True)


def _datasets_of(part: Part, values: pd.DataFrame) -> list[str]:
    present = sorted(set(values.dataset))
    if part.datasets:
        return [name for name in part.datasets if name in present] or list(part.datasets)
    return [name for name in present if name in DATASETS and DATASETS[name].task == part.task]


def _row(claim: Claim, index: int, part: Part, dataset: str, f: float, subject: str, other: str, **values) -> dict:
    return {"claim": claim.key, "part": index + 1, "source": claim.source, "dataset": dataset, "f": f,
            "metric": part.metric, "models": f"{subject} vs {other}", "test": part.test,
            "margin": part.margin if part.test != "better" else math.nan, **values}


def part_rows(claim: Claim, index: int, part: Part, values: pd.DataFrame) -> list[dict]:
    """The rows of one part: one per (data set, f, subject, other), measured or `not measured` with why."""
    declared = all_metrics()
    if part.metric not in declared:
        raise ValueError(f"claim {claim.key}: {part.metric} is not a declared metric")
    better_sign = 1.0 if declared[part.metric].higher_is_better else -1.0
    if declared[part.metric].log_scale:  # a positive heavy-tailed measure: effects are log ratios
        chosen = values.metric == part.metric
        values = values.assign(value=values.value.where(~chosen, np.log(values.value.where(chosen, 1.0))))
    datasets = _datasets_of(part, values)
    if not datasets:
        task = f"a {part.task} data set" if part.task else " or ".join(part.datasets)
        return [_row(claim, index, part, "", math.nan, part.subject, ", ".join(part.against), verdict=NOT_MEASURED,
                     n=0, note=f"the results have no {task}")]
    rows = []
    for dataset in datasets:
        here = values[(values.dataset == dataset) & (values.metric == part.metric)]
        for f in part.fs:
            for subject in part.subjects or (part.subject,):
                mine = here[(here.model == subject) & np.isclose(here.f, f)].set_index("seed").value
                for other in part.against:
                    row = dict(claim=claim, index=index, part=part, dataset=dataset, f=f, subject=subject,
                               other=other)
                    rows.append(_compared(row, mine, here[here.model == other], better_sign,
                                          functools.partial(_missing, values, dataset, part.metric, f=f)))
    return rows


def _compared(row: dict, mine: pd.Series, theirs: pd.DataFrame, better_sign: float,
              missing: Callable[[str], str]) -> dict:
    """One comparison: the subject's numbers by seed (`mine`) against the other's (`theirs`: paired by seed, or a
    control's one value for every f), in the better direction; `not measured` (with why) where either side lacks
    numbers, `undecided` on one seed."""
    part, f = row["part"], row["f"]
    if mine.empty or theirs.empty:
        return _row(**row, verdict=NOT_MEASURED, n=0, note=missing(row["subject"] if mine.empty else row["other"]))
    if theirs.f.isna().all():  # a control: one value for every f
        differences = better_sign * (mine - theirs.value.mean())
    else:
        differences = better_sign * (mine - theirs[np.isclose(theirs.f, f)].set_index("seed").value).dropna()
    if differences.empty:
        return _row(**row, verdict=NOT_MEASURED, n=0, note=missing(row["other"]))
    if len(differences) < 2:
        return _row(**row, verdict=UNDECIDED, effect=float(differences.iloc[0]), n=1,
                    note="one seed: no spread to test against")
    result = compare(differences.to_numpy(), part.test, part.margin)
    return _row(**row, effect=result.effect, low=result.low, high=result.high, p=result.p,
                p_against=result.p_against, n=result.n, note="")


def _missing(values: pd.DataFrame, dataset: str, metric: str, model: str, *, f: float) -> str:
    if values[(values.dataset == dataset) & (values.metric == metric)].empty:
        return f"no {metric} numbers on {dataset} (the evaluator did not run, or could not: see its table's notes)"
    return f"no {model} run with {metric} on {dataset} at f = {f:g}"


def decide(rows: list[dict]) -> list[dict]:
    """Holm-correct the claim's measured rows (both directions) and give each its verdict."""
    measured = [row for row in rows if "p" in row and not math.isnan(row.get("p", math.nan))]
    for key in ("p", "p_against"):
        for row, adjusted in zip(measured, holm(row[key] for row in measured), strict=True):
            row[key] = adjusted
    for row in measured:
        row["verdict"] = HOLDS if row["p"] < ALPHA else FAILS if row["p_against"] < ALPHA else UNDECIDED
    return rows


def claim_verdict(rows: pd.DataFrame) -> str:
    verdicts = set(rows.verdict)
    if verdicts <= {NOT_MEASURED}:
        return NOT_MEASURED
    if FAILS in verdicts:
        return FAILS
    if verdicts == {HOLDS}:
        return HOLDS
    return UNDECIDED


def evaluate_claims(results: pd.DataFrame, claims: tuple[Claim, ...] = CLAIMS) -> pd.DataFrame:
    """claims.csv's rows: every comparison of every claim with its verdict (module docstring)."""
    values = run_values(results)
    rows = []
    for declared in claims:
        rows += decide([row for index, part in enumerate(declared.parts)
                        for row in part_rows(declared, index, part, values)])
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def summary(rows: pd.DataFrame, claims: tuple[Claim, ...] = CLAIMS) -> pd.DataFrame:
    """One line per claim: its verdict and how many of its comparisons hold, fail, stay undecided."""
    lines = []
    for declared in claims:
        mine = rows[rows.claim == declared.key]
        counts = mine.verdict.value_counts()
        lines.append({"claim": declared.key, "statement": declared.statement, "source": declared.source,
                      "verdict": claim_verdict(mine), **{verdict: int(counts.get(verdict, 0)) for verdict in VERDICTS}})
    return pd.DataFrame(lines)


def markdown(rows: pd.DataFrame, title: str, claims: tuple[Claim, ...] = CLAIMS) -> str:
    """CLAIMS.md: the verdict table, then each claim's comparisons."""
    from tabulate import tabulate

    table = summary(rows, claims)
    lines = [f"# {title}", "", METHOD, "", tabulate(
        [[c.key, c.statement, c.source.split(",")[0].split(" (")[0], f"**{v}**", _counts(r)]
         for c, v, (_, r) in zip(claims, table.verdict, table.iterrows(), strict=True)],
        ["claim", "statement", "where", "verdict", "comparisons"], tablefmt="github"), ""]
    for declared in claims:
        mine = rows[rows.claim == declared.key]
        lines += [f"## {declared.key}: {declared.statement} — {claim_verdict(mine)}", "",
                  f"Source: {declared.source}.", ""]
        lines += [f"- part {i + 1}: {part.describe}" for i, part in enumerate(declared.parts)]
        if declared.note:
            lines += ["", declared.note[0].upper() + declared.note[1:] + "."]
        shown = mine.assign(f=mine.f.map(lambda v: "" if pd.isna(v) else f"{v:g}"),
                            effect=[_effect(r) for _, r in mine.iterrows()],
                            p=[_p(r) for _, r in mine.iterrows()])
        lines += ["", tabulate(shown[["part", "dataset", "f", "models", "verdict", "effect", "p", "n", "note"]],
                               headers="keys", tablefmt="github", showindex=False), ""]
    return "\n".join(lines)


def _effect(row) -> str:
    if pd.isna(row.effect):
        return ""
    if pd.isna(row.low):
        return f"{row.effect:+.3g}"
    return f"{row.effect:+.3g} [{row.low:+.3g}, {row.high:+.3g}]"


def _p(row) -> str:
    """The p-value of the test behind the verdict: the opposite one-sided test's for `fails`, else the claim's."""
    value = row.p_against if row.verdict == FAILS else row.p
    return "" if pd.isna(value) else f"{value:.3g}"


def _counts(row) -> str:
    return ", ".join(f"{row[verdict]} {verdict}" for verdict in VERDICTS if row[verdict])


METHOD = ("Each claim of the paper is a test (`bench/claims.py`): effect = the subject's value minus the other's, "
          "positive when better for the subject, paired by training seed (both runs share their labelled subset); "
          "a control row is one value. Verdicts: **holds** when the claim's one-sided t-test rejects at 5 % after "
          "Holm's correction over the claim's comparisons, **fails** when the opposite one-sided test does, "
          "**undecided** otherwise, **not measured** when the results lack the metric or a model. A claim holds "
          "when all its comparisons hold and fails when any fails. Effects are shown with their 95 % t interval "
          "(not adjusted); p is the Holm-adjusted p-value of the claim's test, or of the opposite test where "
          "the verdict is fails.")


def write_claims(results: pd.DataFrame, out: Path, title: str = "The paper's claims") -> pd.DataFrame:
    """claims.csv and CLAIMS.md into `out`; returns the rows."""
    rows = evaluate_claims(results)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "claims.csv", rows.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "CLAIMS.md", markdown(rows, title) + "\n")
    return rows


def tally(line) -> str:
    """A claim's verdict and how far its comparisons got (a line of `summary`): "holds (all 4)", "fails (2 of 12
    fail, 3 hold)", "undecided (11 of 12 hold)", "not measured"."""
    measured = line[HOLDS] + line[FAILS] + line[UNDECIDED]
    if line["verdict"] == NOT_MEASURED:
        return NOT_MEASURED
    if line["verdict"] == HOLDS:
        return f"{HOLDS} (all {measured})"
    if line["verdict"] == FAILS:
        also = f", {line[HOLDS]} hold" if line[HOLDS] else ""
        return f"{FAILS} ({line[FAILS]} of {measured} fail{also})"
    return f"{UNDECIDED} ({line[HOLDS]} of {measured} hold)"


def verdict_lines(rows: pd.DataFrame) -> str:
    """What `run --all` prints at its end: one line per claim."""
    table = summary(rows)
    tallies = [tally(line) for _, line in table.iterrows()]
    width, tally_width = max(len(key) for key in table.claim), max(map(len, tallies))
    return "\n".join(f"{line.claim:>{width}}  {shown:<{tally_width}}  {line.statement}"
                     for line, shown in zip(table.itertuples(), tallies, strict=True))
