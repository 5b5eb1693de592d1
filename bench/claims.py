"""The paper's qualitative claims as tests with verdicts: `python -m bench claims`.

The claims, their tests, margins, preconditions, α and the protocol's seeds are declared in `bench.protocol`
(its docstring states the decision rule and which error rate each verdict controls). Here: the statistics and the
verdicts.

A part's comparison is on the *effect*: the subject's mean minus the other's, signed so that positive is better for
the subject (the metric's declared direction), in the metric's units (for a log-scale metric the difference of
logarithms: a log ratio). Against another model: Welch's unpaired t on the two models' seeds. Against a control row
(which does not depend on the training seed: its mean over evaluation seeds) or a constant: a one-sample t on the
subject's seeds. A run evaluated at several evaluation seeds counts with the mean of its evaluations.

Every comparison (data set × f × subject × other) is one row of claims.csv: its effect, the 90 % two-sided interval
whose ends are the one-sided 95 % bounds the tests use, the claim's p (not corrected: intersection-union), the
opposite test's p (Holm-corrected over the claim's rows), n seeds of each side, the verdict, and for an undecided row
the seeds per model that would decide it with 80 % power at the observed effect and spread.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd

from bench import protocol
from bench.data import DATASETS
from bench.files import atomic_write_text
from bench.protocol import FLOOR, LEARNING_CURVES, MAJORITY, PROTOCOL, RENDERER, Claim, Part  # noqa: F401  (re-exported)
from bench.registry import Registry
from bench.stats import SEEDS_BEYOND, compare_seeds, holm
from evaluators import all_metrics

ALPHA = PROTOCOL.alpha
Verdict = Literal["holds", "fails", "undecided", "not at this budget", "not measured"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
HOLDS, FAILS, UNDECIDED, NOT_AT_BUDGET, NOT_MEASURED = VERDICTS
CSV_COLUMNS = ["claim", "part", "source", "dataset", "f", "metric", "models", "test", "margin", "verdict", "effect",
               "low", "high", "p", "p_against", "n", "n_other", "seeds_needed", "note"]


def declared_claims(claims: tuple[Claim, ...] | None) -> tuple[Claim, ...]:
    """`claims`, or where None the protocol's, read when asked (so that a claim added there reaches every command)."""
    return protocol.CLAIMS if claims is None else claims


def claim(key: str) -> Claim:
    return Registry("claim", {declared.key: declared for declared in protocol.CLAIMS})[key]


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


def _row(claim: Claim, index: int, part: Part, dataset: str, f: float, subject: str, other: str, metric: str,
         **values) -> dict:
    return {"claim": claim.key, "part": index + 1, "source": claim.source, "dataset": dataset, "f": f,
            "metric": metric, "models": f"{subject} vs {other}", "test": part.test, "margin": part.margin, **values}


def _metric_of(part: Part, values: pd.DataFrame, dataset: str) -> str:
    """The part's metric, or its substitute where the results have no number of it on `dataset`."""
    here = values[values.dataset == dataset]
    if part.substitute and not (here.metric == part.metric).any() and (here.metric == part.substitute).any():
        return part.substitute
    return part.metric


def part_rows(claim: Claim, index: int, part: Part, values: pd.DataFrame, rows_in_claim: int) -> list[dict]:
    """The rows of one part: one per (data set, f, subject, other), measured or `not measured` with why."""
    declared = all_metrics()
    for name in (part.metric, part.substitute):
        if name is not None and name not in declared:
            raise ValueError(f"claim {claim.key}: {name} is not a declared metric")
    datasets = _datasets_of(part, values)
    if not datasets:
        task = f"a {part.task} data set" if part.task else " or ".join(part.datasets)
        return [_row(claim, index, part, "", math.nan, part.subject, ", ".join(part.against), part.metric,
                     verdict=NOT_MEASURED, n=0, note=f"the results have no {task}")]
    rows = []
    for dataset in datasets:
        metric = _metric_of(part, values, dataset)
        better_sign = 1.0 if declared[metric].higher_is_better else -1.0
        here = values[(values.dataset == dataset) & (values.metric == metric)]
        if declared[metric].log_scale:  # a positive heavy-tailed measure: effects are log ratios
            here = here.assign(value=np.log(here.value))
        for f in part.fs:
            for subject in part.subjects or (part.subject,):
                mine = here[(here.model == subject) & np.isclose(here.f, f)].value.to_numpy()
                for other in part.against:
                    row = dict(claim=claim, index=index, part=part, dataset=dataset, f=f, subject=subject,
                               other=other, metric=metric)
                    theirs = None if part.reference is not None else here[here.model == other]
                    rows.append(_compared(row, mine, theirs, better_sign, rows_in_claim,
                                          functools.partial(_missing, values, dataset, metric, f=f)))
    return rows


def _compared(row: dict, mine: np.ndarray, theirs: pd.DataFrame | None, better_sign: float, rows_in_claim: int,
              missing: Callable[[str], str]) -> dict:
    """One comparison: the subject's numbers (`mine`) against the other model's seeds at the same f, a control's one
    value for every f, or the part's constant (`theirs` None), in the better direction; `not measured` (with why)
    where either side lacks numbers, `undecided` with one seed."""
    part, f = row["part"], row["f"]
    if not mine.size:
        return _row(**row, verdict=NOT_MEASURED, n=0, note=missing(row["subject"]))
    other_values = None
    if theirs is None:
        mine = better_sign * (mine - part.reference)
    elif theirs.empty:
        return _row(**row, verdict=NOT_MEASURED, n=0, note=missing(row["other"]))
    elif theirs.f.isna().all():  # a control: one value for every f
        mine = better_sign * (mine - theirs.value.mean())
    else:
        other_values = theirs[np.isclose(theirs.f, f)].value.to_numpy()
        if not other_values.size:
            return _row(**row, verdict=NOT_MEASURED, n=0, note=missing(row["other"]))
        mine, other_values = better_sign * mine, better_sign * other_values
    n_other = 0 if other_values is None else len(other_values)
    if len(mine) < 2 or (other_values is not None and len(other_values) < 2):
        effect = float(mine.mean() - (other_values.mean() if other_values is not None else 0.0))
        return _row(**row, verdict=UNDECIDED, effect=effect, n=len(mine), n_other=n_other,
                    note="one seed: no spread to test against")
    result = compare_seeds(mine, other_values, part.test, part.margin, ALPHA, PROTOCOL.power, rows_in_claim)
    return _row(**row, effect=result.effect, low=result.low, high=result.high, p=result.p,
                p_against=result.p_against, n=result.n, n_other=result.n_other, seeds_needed=result.seeds_needed,
                note=result.seeds_note)


def _missing(values: pd.DataFrame, dataset: str, metric: str, model: str, *, f: float) -> str:
    if values[(values.dataset == dataset) & (values.metric == metric)].empty:
        return f"no {metric} numbers on {dataset} (the evaluator did not run, or could not: see its table's notes)"
    return f"no {model} run with {metric} on {dataset} at f = {f:g}"


def not_learnt(claim: Claim, values: pd.DataFrame, dataset: str, f: float) -> list[str]:
    """Why the models of `claim` have not learnt at (data set, f): each precondition whose models' mean is not better
    than its reference there, with the numbers (empty: learnt, or nothing to judge by)."""
    declared, found = all_metrics(), []
    here = values[values.dataset == dataset]
    for condition in claim.learnt:
        at_f = here[np.isclose(here.f, f)]
        if condition.reference == MAJORITY:
            reference = at_f[at_f.metric == MAJORITY].value
        else:
            reference = here[(here.model == condition.reference) & (here.metric == condition.metric)].value
        if reference.empty:
            continue
        higher = declared[condition.metric].higher_is_better
        for model in condition.models:
            mine = at_f[(at_f.model == model) & (at_f.metric == condition.metric)].value
            if mine.empty:
                continue
            if not (mine.mean() > reference.mean() if higher else mine.mean() < reference.mean()):
                found.append(f"{model}'s {condition.metric} {mine.mean():.3g} is not better than "
                             f"{condition.reference}'s {reference.mean():.3g}")
    return found


def decide(claim: Claim, rows: list[dict], values: pd.DataFrame) -> list[dict]:
    """Each row's verdict (`bench.protocol`): rows where the models have not learnt decide nothing; of the others,
    `holds` where the claim's test rejects at α uncorrected and the opposite test does not (intersection-union),
    `fails` where the opposite test rejects after Holm's correction over the claim's rows."""
    for row in rows:
        if "verdict" not in row or row["verdict"] == UNDECIDED:
            reasons = not_learnt(claim, values, row["dataset"], row["f"])
            if reasons:
                row["verdict"], row["note"] = NOT_AT_BUDGET, "; ".join(reasons)
    measured = [row for row in rows if "verdict" not in row]
    for row, adjusted in zip(measured, holm(row["p_against"] for row in measured), strict=True):
        row["p_against"] = adjusted
    for row in measured:
        fails = row["p_against"] < ALPHA
        row["verdict"] = FAILS if fails else HOLDS if row["p"] < ALPHA else UNDECIDED
        if row["verdict"] != UNDECIDED:
            row["seeds_needed"] = math.nan
            row["note"] = "" if row["note"] == SEEDS_BEYOND else row["note"]
        if fails and row["test"] == "better" and row["effect"] > 0:
            row["note"] = f"better by less than the minimal difference {row['margin']:g}: equivalent"
    return rows


def claim_verdict(rows: pd.DataFrame) -> str:
    """not measured (no row measured), not at this budget (a row whose models have not learnt), fails (a row
    fails), holds (every row holds), undecided otherwise."""
    verdicts = set(rows.verdict)
    if verdicts <= {NOT_MEASURED}:
        return NOT_MEASURED
    if NOT_AT_BUDGET in verdicts:
        return NOT_AT_BUDGET
    if FAILS in verdicts:
        return FAILS
    if verdicts == {HOLDS}:
        return HOLDS
    return UNDECIDED


def seeds_status(rows: pd.DataFrame) -> tuple[int, int] | None:
    """(fewest seeds of any measured row, the protocol's seeds for its data sets) where the claim's rows have fewer
    seeds than the protocol fixes: its verdict is interim. None: final (or no protocol for these data sets)."""
    measured = rows[rows.n.fillna(0) > 0]
    planned = [PROTOCOL.seeds_for(name) for name in set(measured.dataset)]
    if measured.empty or None in planned:
        return None
    other_models = measured.n_other[measured.n_other > 0]  # 0: against a control or a constant
    have = int(min(measured.n.min(), other_models.min() if len(other_models) else measured.n.min()))
    return (have, max(planned)) if have < max(planned) else None


def evaluate_claims(results: pd.DataFrame, claims: tuple[Claim, ...] | None = None) -> pd.DataFrame:
    """claims.csv's rows: every comparison of every claim with its verdict (`bench.protocol`'s rule)."""
    values = run_values(results)
    rows = []
    for declared in declared_claims(claims):
        count = sum(len(_datasets_of(part, values)) * len(part.fs) * len(part.subjects or (part.subject,))
                    * len(part.against) for part in declared.parts)
        rows += decide(declared, [row for index, part in enumerate(declared.parts)
                                  for row in part_rows(declared, index, part, values, max(count, 1))], values)
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def with_subject(name: str, claims: tuple[Claim, ...] | None = None) -> tuple[Claim, ...]:
    """The claims about CCVAE asked of the model `name` instead: each part whose subject is CCVAE gets `name` as its
    subject, compared with everything CCVAE was compared with and with CCVAE itself ("does my model do what the paper
    says CCVAE does, and better than CCVAE?"); parts about other models are left out, and so is a claim left with
    none. Preconditions ("learnt") apply to `name` as they applied to CCVAE."""
    chosen = []
    for declared in declared_claims(claims):
        parts = []
        for part in declared.parts:
            if (part.subjects or (part.subject,)) != ("ccvae",) and "ccvae" not in part.subjects:
                continue
            against = part.against if part.reference is not None else tuple(dict.fromkeys((*part.against, "ccvae")))
            parts.append(replace(part, subject=name, subjects=(), against=against))
        if parts:
            learnt = tuple(replace(condition, models=tuple(name if model == "ccvae" else model
                                                             for model in condition.models))
                           for condition in declared.learnt)
            chosen.append(replace(declared, statement=f"{name} in CCVAE's place: {declared.statement}",
                                  parts=tuple(parts), learnt=learnt))
    return tuple(chosen)


def summary(rows: pd.DataFrame, claims: tuple[Claim, ...] | None = None) -> pd.DataFrame:
    """One line per claim: its verdict and how many of its comparisons hold, fail, stay undecided."""
    lines = []
    for declared in declared_claims(claims):
        mine = rows[rows.claim == declared.key]
        counts = mine.verdict.value_counts()
        status = seeds_status(mine)
        lines.append({"claim": declared.key, "statement": declared.statement, "source": declared.source,
                      "verdict": claim_verdict(mine), **{verdict: int(counts.get(verdict, 0)) for verdict in VERDICTS},
                      "seeds": status[0] if status else math.nan, "planned": status[1] if status else math.nan,
                      "substitute": ", ".join(sorted(set(mine.metric) - {p.metric for p in declared.parts}))})
    return pd.DataFrame(lines)


def read_levels(path: Path = LEARNING_CURVES) -> pd.DataFrame | None:
    """The learning curves' plateaus (None where they have not been measured here)."""
    return pd.read_csv(path) if path.is_file() else None


def still_moving(claim: Claim, levels: pd.DataFrame, budget: int) -> list[str]:
    """The claim's measures and models whose learning curve (`levels`: scripts/learning_curves.py's plateaus.csv)
    had not levelled off by `budget` steps, each with its value there and at the curve's horizon."""
    metrics = {part.metric for part in claim.parts} | {part.substitute for part in claim.parts if part.substitute}
    models = {name for part in claim.parts for name in (part.subject, *part.subjects, *part.against)}
    late = levels[levels.measure.isin(metrics) & levels.model.isin(models) & (levels.levelled_at > budget)]
    return [f"{row.dataset} {row.model} f = {row.f:g} {row.measure}: {row.at_half_horizon:.3g} → "
            f"{row.at_horizon:.3g} at twice the budget" for row in late.itertuples()]


def markdown(rows: pd.DataFrame, title: str, claims: tuple[Claim, ...] | None = None,
             levels: pd.DataFrame | None = None, budget: int | None = None) -> str:
    """CLAIMS.md: the verdict table, then each claim's comparisons; with the learning curves' `levels` and the
    runs' step `budget`, each claim says which of its measures had not levelled off by then."""
    from tabulate import tabulate

    claims = declared_claims(claims)
    table = summary(rows, claims)
    lines = [f"# {title}", "", METHOD, "", tabulate(
        [[c.key, c.statement, c.source.split(",")[0].split(" (")[0], f"**{tally(r)}**", _counts(r)]
         for c, (_, r) in zip(claims, table.iterrows(), strict=True)],
        ["claim", "statement", "where", "verdict", "comparisons"], tablefmt="github"), ""]
    for declared in claims:
        mine = rows[rows.claim == declared.key]
        line = table[table.claim == declared.key].iloc[0]
        lines += [f"## {declared.key}: {declared.statement} — {tally(line)}", "",
                  f"Source: {declared.source}.", ""]
        lines += [f"- part {i + 1}: {part.describe}" for i, part in enumerate(declared.parts)]
        lines += [f"- learnt means: {condition.describe}" for condition in declared.learnt]
        moving = still_moving(declared, levels, budget) if levels is not None and budget else []
        if moving:
            lines += [f"- not levelled off by {budget:,} steps on the learning curves (seed 0, docs/BUDGET.md): "
                      + "; ".join(moving)]
        if declared.note:
            lines += ["", declared.note[0].upper() + declared.note[1:] + "."]
        shown = mine.assign(f=mine.f.map(lambda v: "" if pd.isna(v) else f"{v:g}"),
                            effect=[_effect(r) for _, r in mine.iterrows()],
                            p=[_p(r) for _, r in mine.iterrows()],
                            n=[_n(r) for _, r in mine.iterrows()],
                            seeds_needed=mine.seeds_needed.map(lambda v: "" if pd.isna(v) else f"{v:.0f}"))
        lines += ["", tabulate(shown[["part", "dataset", "f", "models", "verdict", "effect", "p", "n",
                                      "seeds_needed", "note"]],
                               headers="keys", tablefmt="github", showindex=False), ""]
    return "\n".join(lines)


def _effect(row) -> str:
    if pd.isna(row.effect):
        return ""
    if pd.isna(row.low):
        return f"{row.effect:+.3g}"
    return f"{row.effect:+.3g} [{row.low:+.3g}, {row.high:+.3g}]"


def _n(row) -> str:
    if pd.isna(row.n) or not row.n:
        return ""
    return f"{row.n:.0f}" + (f" vs {row.n_other:.0f}" if pd.notna(row.n_other) and row.n_other else "")


def _p(row) -> str:
    """The p-value of the test behind the verdict: the opposite one-sided test's for `fails`, else the claim's."""
    value = row.p_against if row.verdict == FAILS else row.p
    return "" if pd.isna(value) else f"{value:.3g}"


def _counts(row) -> str:
    return ", ".join(f"{row[verdict]} {verdict}" for verdict in VERDICTS if row[verdict])


METHOD = ("Each claim of the paper is a test declared in `bench/protocol.py` (protocol version "
          f"{PROTOCOL.version}): effect = the subject's mean minus the other's, positive when better for the subject; "
          "Welch's unpaired t against another model (the models' seeds are uncorrelated, so pairing would only halve "
          "the degrees of freedom), a one-sample t against a control row or a constant. Verdicts: **holds** when every "
          "comparison's one-sided test rejects at 5 % (intersection-union: no correction needed), **fails** when the "
          "opposite one-sided test rejects for some comparison after Holm's correction over the claim's "
          "comparisons (`better` fails below its minimal difference: worse, or equivalent), **undecided** otherwise, "
          "**not at this budget** where the models have not learnt what the claim is about (the note says which "
          "number shows it), **not measured** where the results lack the metric or a model; **interim** while a "
          "claim has fewer seeds than the protocol fixes. Effects are shown with their 90 % interval, whose ends are "
          "the one-sided 95 % bounds the tests use (not adjusted); p is the claim's test's (uncorrected), or the "
          "opposite test's Holm-adjusted p where the verdict is fails; seeds needed: per model, for 80 % power at "
          "the observed effect and spread.")


def write_claims(results: pd.DataFrame, out: Path, title: str = "The paper's claims",
                 claims: tuple[Claim, ...] | None = None, levels: pd.DataFrame | None = None) -> pd.DataFrame:
    """claims.csv and CLAIMS.md into `out`; returns the rows. `levels`: the learning curves' plateaus, named in
    CLAIMS.md where the results are of the protocol's preset (whose step budget the curves were measured for)."""
    rows = evaluate_claims(results, claims)
    budget = None
    if levels is not None and set(results.preset) == {PROTOCOL.preset}:
        budget = int(results.loc[results.metric == "optimiser_steps", "value"].max())
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "claims.csv", rows.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "CLAIMS.md", markdown(rows, title, claims, levels, budget) + "\n")
    return rows


def tally(line) -> str:
    """A claim's verdict and how far its comparisons got (a line of `summary`): "holds (all 4)", "fails (2 of 12
    fail, 3 hold)", "undecided (11 of 12 hold)", "not at this budget (4 of 12)", "not measured"; "interim (3 of 5
    seeds): …" on fewer seeds than the protocol's, "…, on fid.oracle_frechet" where a substitute was read."""
    measured = line[HOLDS] + line[FAILS] + line[UNDECIDED] + line.get(NOT_AT_BUDGET, 0)
    verdict = line["verdict"]
    if verdict == NOT_MEASURED:
        return NOT_MEASURED
    if verdict == HOLDS:
        text = f"{HOLDS} (all {measured})"
    elif verdict == FAILS:
        also = f", {line[HOLDS]} hold" if line[HOLDS] else ""
        text = f"{FAILS} ({line[FAILS]} of {measured} fail{also})"
    elif verdict == NOT_AT_BUDGET:
        text = f"{NOT_AT_BUDGET} ({line[NOT_AT_BUDGET]} of {measured})"
    else:
        text = f"{UNDECIDED} ({line[HOLDS]} of {measured} hold)"
    if line.get("substitute"):
        text += f", on {line['substitute']}"
    if pd.notna(line.get("seeds", math.nan)):
        text = f"interim ({line['seeds']:.0f} of {line['planned']:.0f} seeds): {text}"
    return text


def verdict_lines(rows: pd.DataFrame, claims: tuple[Claim, ...] | None = None) -> str:
    """What `run --all` prints at its end: one line per claim."""
    table = summary(rows, claims)
    tallies = [tally(line) for _, line in table.iterrows()]
    width, tally_width = max(len(key) for key in table.claim), max(map(len, tallies))
    lines = [f"{line.claim:>{width}}  {shown:<{tally_width}}  {line.statement}"
             for line, shown in zip(table.itertuples(), tallies, strict=True)]
    unlearnt = int((table.verdict == NOT_AT_BUDGET).sum())
    if unlearnt:
        lines.append(f"{unlearnt} claim(s) cannot be decided at this budget: the models have not learnt what they are "
                     "about (CLAIMS.md says which number shows it). The protocol's verdicts are those of the "
                     f"`{PROTOCOL.preset}` preset with its seeds: the README's table, "
                     f"results/stored/{PROTOCOL.preset}.")
    return "\n".join(lines)
