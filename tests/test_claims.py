"""The claim machinery on constructed results whose answer is known: effects of ten standard errors either way,
no effect, margins at their edges, pairing by seed, controls, missing metrics, Holm's correction, the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.claims import (
    CSV_COLUMNS,
    FAILS,
    FLOOR,
    HOLDS,
    NOT_AT_BUDGET,
    NOT_MEASURED,
    UNDECIDED,
    Claim,
    Part,
    claim_verdict,
    evaluate_claims,
    tally,
    verdict_lines,
)
from bench.cli import main
from bench.models import MODELS
from bench.protocol import CLAIMS, MAJORITY, PROTOCOL, Learnt
from bench.results import RESULT_COLUMNS
from bench.stats import SEEDS_BEYOND, compare_seeds, holm, t_test_seeds
from evaluators import all_metrics
from evaluators.controls import ROWS

NOISE = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])  # per-seed noise of sd 0.79, mean 0
SE = NOISE.std(ddof=1) * math.sqrt(2 / NOISE.size)  # the standard error of a difference of two such means


def results(values: dict[str, np.ndarray], metric: str = "classification.accuracy", f: float = 0.2,
            dataset: str = "synthfaces", controls: dict[str, float] | None = None) -> pd.DataFrame:
    """A results.csv frame: each model's per-seed values at one f, and controls (f NaN) with one value."""
    rows = [{"dataset": dataset, "model": model, "f": f, "seed": seed, "eval_seed": 0, "preset": "ci",
             "metric": metric, "value": float(value)}
            for model, seeds in values.items() for seed, value in enumerate(seeds)]
    rows += [{"dataset": dataset, "model": row, "f": math.nan, "seed": 0, "eval_seed": 0, "preset": "ci",
              "metric": metric, "value": value} for row, value in (controls or {}).items()]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def one_claim(test: str, margin: float = 0.01, metric: str = "classification.accuracy", against=("m2",),
              fs=(0.2,), learnt=()) -> Claim:
    return Claim("t", "constructed", "a test", (Part(metric, "ccvae", against, test, margin=margin,
                                                    datasets=("synthfaces",), fs=fs),), learnt=learnt)


def verdict_for(effect: float, test: str, margin: float = 0.01, metric: str = "classification.accuracy",
                scale: float = 0.01) -> str:
    """The verdict when CCVAE's seeds are M2's shifted by `effect` (each model with seed noise of sd 0.79·scale)."""
    m2 = 0.5 + scale * NOISE
    ccvae = 0.5 + effect + scale * NOISE[::-1]
    rows = evaluate_claims(results({"ccvae": ccvae, "m2": m2}, metric), (one_claim(test, margin, metric),))
    assert len(rows) == 1
    return rows.verdict.iloc[0]


def test_not_worse_holds_fails_and_is_undecided_ten_standard_errors_either_side_of_its_margin():
    step = 10 * SE * 0.01
    assert verdict_for(-0.05 + step, "not_worse", 0.05) == HOLDS
    assert verdict_for(-0.05 - step, "not_worse", 0.05) == FAILS
    assert verdict_for(-0.05, "not_worse", 0.05) == UNDECIDED
    assert verdict_for(-0.02, "not_worse", 0.05, scale=0.001) == HOLDS  # worse, but by less than δ


def test_better_holds_above_zero_and_fails_below_its_minimal_difference():
    step = 10 * SE * 0.01
    assert verdict_for(0.05 + step, "better", 0.05) == HOLDS
    assert verdict_for(-step, "better", 0.05) == FAILS  # worse
    assert verdict_for(0.025, "better", 0.05, scale=0.2) == UNDECIDED  # too noisy to tell


def test_a_tie_within_the_minimal_difference_fails_a_better_claim_as_equivalent():
    rows = evaluate_claims(results({"ccvae": 0.5 + 0.003 + 0.001 * NOISE, "m2": 0.5 + 0.001 * NOISE[::-1]}),
                           (one_claim("better", margin=0.02),))
    assert rows.verdict.iloc[0] == FAILS and "equivalent" in rows.note.iloc[0]


def test_lower_is_better_metrics_are_signed_by_their_direction():
    step = 10 * SE * 0.01
    assert verdict_for(-0.05 - step, "better", 0.05, metric="ground_truth.swap_error") == HOLDS
    assert verdict_for(+step, "better", 0.05, metric="ground_truth.swap_error") == FAILS


def test_equivalence_margins_at_their_edges_and_its_doubled_p_for_failing():
    margin, step = 0.05, 10 * SE * 0.001
    assert verdict_for(0.0, "equivalent", margin, scale=0.001) == HOLDS  # no difference, tight
    assert verdict_for(margin - step, "equivalent", margin, scale=0.001) == HOLDS  # inside the upper edge
    assert verdict_for(-margin + step, "equivalent", margin, scale=0.001) == HOLDS
    assert verdict_for(margin + step, "equivalent", margin, scale=0.001) == FAILS  # beyond it
    assert verdict_for(-margin - step, "equivalent", margin, scale=0.001) == FAILS
    assert verdict_for(margin, "equivalent", margin, scale=0.001) == UNDECIDED  # on the edge: neither
    assert verdict_for(0.0, "equivalent", margin, scale=0.5) == UNDECIDED  # too noisy to tell
    a, b = 0.56 + 0.01 * NOISE, 0.5 + 0.01 * NOISE[::-1]
    result = compare_seeds(a, b, "equivalent", margin, PROTOCOL.alpha, PROTOCOL.power)
    above = stats.ttest_ind(a - margin, b, equal_var=False, alternative="greater").pvalue
    assert result.p_against == pytest.approx(min(1, 2 * above), rel=1e-9)


def test_p_and_bounds_match_an_independent_welch_test():
    a, b = np.array([0.53, 0.51, 0.54, 0.52, 0.55, 0.50]), np.array([0.50, 0.49, 0.52, 0.47])
    result = compare_seeds(a, b, "better", 0.01, PROTOCOL.alpha, PROTOCOL.power)
    expected = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    assert result.p == pytest.approx(expected.pvalue, rel=1e-9)
    assert result.p_against == pytest.approx(
        stats.ttest_ind(a - 0.01, b, equal_var=False, alternative="less").pvalue, rel=1e-9)
    low = stats.ttest_ind(a, b, equal_var=False, alternative="greater").confidence_interval(0.95).low
    assert result.low == pytest.approx(low, rel=1e-9)  # the interval's ends are the one-sided 95 % bounds
    assert (result.n, result.n_other) == (6, 4)
    one = compare_seeds(a - 0.5, None, "not_worse", 0.01, PROTOCOL.alpha, PROTOCOL.power)
    assert one.p == pytest.approx(stats.ttest_1samp(a - 0.5, -0.01, alternative="greater").pvalue, rel=1e-9)


def test_a_conjunction_whose_rows_each_reject_holds_though_holm_would_not_let_them():
    """Ten rows at p ≈ 0.03 each: each rejects at α, so the AND holds (intersection-union); Holm over ten would
    have multiplied them into undecided."""
    fs = tuple(np.round(np.linspace(0.1, 1, 10), 2))
    m2 = 0.5 + 0.01 * NOISE
    ccvae = m2[::-1] + 0.0125
    assert 0.01 < stats.ttest_ind(ccvae, m2, equal_var=False, alternative="greater").pvalue < 0.05
    frame = pd.concat([results({"ccvae": ccvae, "m2": m2}, f=f) for f in fs])
    rows = evaluate_claims(frame, (one_claim("better", 0.001, fs=fs),))
    assert set(rows.verdict) == {HOLDS} and claim_verdict(rows) == HOLDS
    assert max(holm(rows.p)) > 0.05


def test_one_row_significantly_against_fails_the_claim_after_holm():
    fs = (0.1, 0.2, 0.3)
    good = results({"ccvae": 0.6 + 0.001 * NOISE, "m2": 0.5 + 0.001 * NOISE}, f=0.1)
    tied = [results({"ccvae": 0.5 + 0.05 * NOISE, "m2": 0.5 + 0.05 * NOISE[::-1]}, f=f) for f in (0.2,)]
    bad = results({"ccvae": 0.4 + 0.001 * NOISE, "m2": 0.5 + 0.001 * NOISE}, f=0.3)
    rows = evaluate_claims(pd.concat([good, *tied, bad]), (one_claim("better", 0.01, fs=fs),))
    assert rows.verdict.tolist() == [HOLDS, UNDECIDED, FAILS] and claim_verdict(rows) == FAILS


def test_a_claim_whose_models_are_below_their_floor_is_not_at_this_budget():
    frame = pd.concat([results({"ccvae": 0.9 + 0.001 * NOISE, "m2": 0.5 + 0.001 * NOISE}),
                       results({"ccvae": 0.7 + 0.01 * NOISE}, metric="ground_truth.swap_error",
                               controls={FLOOR: 0.53})])
    learnt = (Learnt("ground_truth.swap_error", ("ccvae",), FLOOR),)
    rows = evaluate_claims(frame, (one_claim("better", learnt=learnt),))
    assert rows.verdict.tolist() == [NOT_AT_BUDGET] and "0.53" in rows.note.iloc[0]
    assert claim_verdict(rows) == NOT_AT_BUDGET
    below_majority = pd.concat([results({"ccvae": 0.55 + 0.001 * NOISE, "m2": 0.5 + 0.001 * NOISE}),
                                results({"ccvae": np.full(5, 0.6)}, metric=MAJORITY)])
    labels = (Learnt("classification.accuracy", ("ccvae", "m2"), MAJORITY),)
    assert evaluate_claims(below_majority, (one_claim("better", learnt=labels),)).verdict.tolist() == [NOT_AT_BUDGET]


def test_a_constant_reference_and_a_substitute_metric():
    frame = results({"diva": 0.002 + 0.001 * NOISE}, metric="conditional.label_gain")
    claim = Claim("t", "s", "x", (Part("conditional.label_gain", "diva", ("label-blind",), "equivalent",
                                       margin=0.05, datasets=("synthfaces",), fs=(0.2,), reference=0.0),))
    rows = evaluate_claims(frame, (claim,))
    assert rows.verdict.tolist() == [HOLDS] and rows.effect.iloc[0] == pytest.approx(0.002)
    fd = results({"mvae": 10 + NOISE, "m2": 20 + NOISE[::-1]}, metric="fid.oracle_frechet")
    claim = Claim("t", "s", "x", (Part("fid.fid", "mvae", ("m2",), "better", margin=0.1, datasets=("synthfaces",),
                                       fs=(0.2,), substitute="fid.oracle_frechet"),))
    rows = evaluate_claims(fd, (claim,))
    assert rows.metric.tolist() == ["fid.oracle_frechet"] and rows.verdict.tolist() == [HOLDS]
    assert rows.effect.iloc[0] == pytest.approx(math.log(20 / 10), rel=0.01)  # a log ratio


def test_verdicts_on_fewer_seeds_than_the_protocols_are_interim():
    from bench.claims import summary

    three = results({"ccvae": 0.9 + 0.001 * NOISE[:3], "m2": 0.5 + 0.001 * NOISE[:3]})
    line = summary(evaluate_claims(three, (one_claim("better"),)), (one_claim("better"),)).iloc[0]
    assert tally(line) == f"interim (3 of {PROTOCOL.seeds['synthfaces']} seeds): holds (all 1)"
    five = results({"ccvae": 0.9 + 0.001 * NOISE, "m2": 0.5 + 0.001 * NOISE})
    assert tally(summary(evaluate_claims(five, (one_claim("better"),)), (one_claim("better"),)).iloc[0]) == \
        "holds (all 1)"


def test_seeds_needed_give_the_stated_power():
    """The seeds a row would need reach 80 % power in simulation, one fewer does not."""
    rng = np.random.default_rng(0)
    n = t_test_seeds(1.0, 0.05, 0.8, two_sample=True)
    assert n == 14  # the textbook two-sample n for d = 1 (one-sided α = 0.05, power 0.8)

    def simulated(size: int) -> float:
        a, b = rng.normal(1.0, 1.0, (4000, size)), rng.normal(0.0, 1.0, (4000, size))
        return float((stats.ttest_ind(a, b, axis=1, alternative="greater").pvalue < 0.05).mean())

    assert simulated(n) >= 0.78 and simulated(n - 2) < 0.8
    assert t_test_seeds(1.0, 0.05, 0.8, two_sample=False) == 8


def test_a_missing_metric_or_model_is_not_measured_with_why():
    frame = results({"ccvae": np.ones(5), "m2": np.ones(5)})
    rows = evaluate_claims(frame, (one_claim("better", metric="fid.fid"),))
    assert rows.verdict.tolist() == [NOT_MEASURED] and "no fid.fid numbers" in rows.note.iloc[0]
    rows = evaluate_claims(frame, (one_claim("better", against=("diva",)),))
    assert rows.verdict.tolist() == [NOT_MEASURED] and "no diva run" in rows.note.iloc[0]
    rows = evaluate_claims(frame, (Claim("t", "s", "x", (Part("classification.accuracy", "ccvae", ("m2",),
                                                                "better", 0.01, task="multiclass"),)),))
    assert rows.verdict.tolist() == [NOT_MEASURED] and "no a multiclass data set" in rows.note.iloc[0]
    assert claim_verdict(rows) == NOT_MEASURED


def test_one_seed_is_undecided_not_a_number():
    rows = evaluate_claims(results({"ccvae": [0.9], "m2": [0.5, 0.6]}), (one_claim("better"),))
    assert rows.verdict.iloc[0] == UNDECIDED and rows.n.iloc[0] == 1 and "one seed" in rows.note.iloc[0]
    assert math.isnan(rows.p.iloc[0])


def test_holm_matches_hand_computation_and_keeps_nan():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.2, math.nan, 0.01])
    assert adjusted[0] == pytest.approx(0.2) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)


def test_claim_verdict_combines_its_rows():
    def frame(*verdicts):
        return pd.DataFrame({"verdict": verdicts})

    assert claim_verdict(frame(HOLDS, HOLDS)) == HOLDS
    assert claim_verdict(frame(HOLDS, UNDECIDED)) == UNDECIDED
    assert claim_verdict(frame(HOLDS, FAILS, UNDECIDED)) == FAILS
    assert claim_verdict(frame(HOLDS, NOT_MEASURED)) == UNDECIDED
    assert claim_verdict(frame(HOLDS, NOT_AT_BUDGET, FAILS)) == NOT_AT_BUDGET


def test_declared_claims_name_declared_metrics_models_and_rows():
    metrics = all_metrics()
    for claim in CLAIMS:
        for part in claim.parts:
            assert part.metric in metrics, (claim.key, part.metric)
            for model in (*(part.against if part.reference is None else ()), part.subject, *part.subjects):
                assert model in MODELS or model in ROWS, (claim.key, model)
        for condition in claim.learnt:
            assert condition.metric in metrics and (condition.reference in ROWS or condition.reference in metrics)
    assert len({claim.key for claim in CLAIMS}) == len(CLAIMS)


def test_cli_writes_claims_and_refuses_a_bad_file(tmp_path, capsys):
    path = tmp_path / "results.csv"
    base = np.array([0.5, 0.7, 0.6])
    frame = pd.concat([results({"ccvae": base + 0.001 * NOISE[:3], "m2": base, "diva": base, "mvae": base - 0.2},
                               f=f) for f in (0.004, 0.06, 0.2, 1.0)])
    frame.to_csv(path, index=False)
    assert main(["claims", "--results", str(path), "--out", str(tmp_path / "out")]) == 0
    written = pd.read_csv(tmp_path / "out" / "claims.csv")
    assert list(written.columns) == CSV_COLUMNS
    table1 = written[written.claim.astype(str) == "T1"]
    assert len(table1) == 12 and set(table1.verdict) <= {HOLDS, UNDECIDED}
    assert (tmp_path / "out" / "CLAIMS.md").read_text().startswith("# The paper's claims")
    assert "not measured" in capsys.readouterr().out  # FID: not in these results
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    assert main(["claims", "--results", str(tmp_path / "bad.csv")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "lacks the column" in error


def test_a_claims_tally_says_how_far_its_comparisons_got():
    def line(verdict, holds=0, fails=0, undecided=0, not_measured=0, not_at_budget=0):
        return {"verdict": verdict, HOLDS: holds, FAILS: fails, UNDECIDED: undecided, NOT_MEASURED: not_measured,
                NOT_AT_BUDGET: not_at_budget}

    assert tally(line(HOLDS, holds=4, not_measured=2)) == "holds (all 4)"
    assert tally(line(FAILS, holds=3, fails=2, undecided=7)) == "fails (2 of 12 fail, 3 hold)"
    assert tally(line(FAILS, fails=1, undecided=3)) == "fails (1 of 4 fail)"
    assert tally(line(UNDECIDED, holds=11, undecided=1)) == "undecided (11 of 12 hold)"
    assert tally(line(NOT_MEASURED, not_measured=8)) == "not measured"
    assert tally(line(NOT_AT_BUDGET, holds=1, not_at_budget=3)) == "not at this budget (3 of 4)"


STORED = Path(__file__).resolve().parents[1] / "results" / "stored"


def test_on_the_stored_standard_set_claim_1_holds_by_intersection_union():
    """Every comparison of claim T1 rejects at 5 % on three seeds; under Holm's correction it was undecided."""
    rows = evaluate_claims(pd.read_csv(STORED / "standard" / "results.csv"))
    mine = rows[rows.claim == "T1"]
    assert len(mine) == 12 and claim_verdict(mine) == HOLDS
    assert mine.p.max() < 0.05 < max(holm(mine.p))


def test_the_main_jobs_budget_decides_nothing_its_models_have_not_learnt():
    rows = evaluate_claims(pd.read_csv(STORED / "quick" / "results.csv"))
    for key in ("T2", "T2-truth", "F7", "interventions"):  # CCVAE's swaps are no nearer the truth than doing nothing
        mine = rows[(rows.claim == key) & (rows.dataset == "synthfaces")]
        assert set(mine.verdict) == {NOT_AT_BUDGET} and mine.note.str.contains("floor: does nothing").all(), key
    assert "cannot be decided at this budget" in verdict_lines(rows)


def test_a_users_model_is_judged_in_ccvaes_place_against_a_stored_set(tmp_path, capsys):
    """A toy user model (CCVAE's stored ci numbers, accuracy 3 points better) against the stored ci set."""
    stored = pd.read_csv(STORED / "ci" / "results.csv")
    mine = stored[stored.model == "ccvae"].assign(model="mine")
    mine.loc[mine.metric == "classification.accuracy", "value"] += 0.03
    mine.to_csv(tmp_path / "mine.csv", index=False)
    out = tmp_path / "out"
    assert main(["claims", "--results", str(tmp_path / "mine.csv"), "--stored", str(STORED / "ci"), "--subject",
                 "mine", "--out", str(out)]) == 0
    rows = pd.read_csv(out / "claims.csv", dtype={"claim": str})
    accuracy = rows[(rows.claim == "T1") & (rows.f == 0.06)]
    assert set(accuracy.models) == {"mine vs m2", "mine vs diva", "mine vs mvae", "mine vs ccvae"}
    assert accuracy.set_index("models").loc["mine vs ccvae", "verdict"] == HOLDS
    assert not rows.models.str.startswith("m2 vs").any()  # the claims about other models are left out
    assert "mine in CCVAE's place" in (out / "CLAIMS.md").read_text()
    assert main(["claims", "--results", str(tmp_path / "mine.csv"), "--subject", "yours", "--out", str(out)]) == 2
    assert "no runs of 'yours'" in capsys.readouterr().err


def test_a_row_no_affordable_seed_count_decides_says_so_instead_of_an_infinite_number():

    assert t_test_seeds(0.001, 0.05, 0.8, two_sample=True) is None
    m2 = 0.5 + 0.01 * NOISE
    rows = evaluate_claims(results({"ccvae": 0.5 + 0.05 + 0.01 * NOISE[::-1], "m2": m2}),
                           (one_claim("equivalent", 0.05),))  # on the margin's edge: undecided for any n
    assert rows.verdict.tolist() == [UNDECIDED] and rows.seeds_needed.isna().all()
    assert rows.note.tolist() == [SEEDS_BEYOND]
    assert np.isfinite(rows.select_dtypes("number").to_numpy(dtype=float)[~rows.select_dtypes("number").isna()
                                                                          .to_numpy()]).all()


def test_a_claims_measures_still_moving_at_the_budget_are_named_in_its_note(tmp_path):
    from bench.claims import still_moving, write_claims

    levels = pd.DataFrame({"dataset": "synthfaces", "model": ["ccvae", "m2", "ccvae"], "f": 1.0,
                           "measure": ["classification.accuracy", "classification.accuracy", "swap.score"],
                           "levelled_at": [6000, 2000, 8000], "at_half_horizon": [0.78, 0.9, 0.3],
                           "at_horizon": [0.83, 0.9, 0.2]})
    claim = one_claim("not_worse", margin=0.02)
    assert still_moving(claim, levels, 4000) == [
        "synthfaces ccvae f = 1 classification.accuracy: 0.78 → 0.83 at twice the budget"]  # not m2's, nor swaps
    assert still_moving(claim, levels, 8000) == []
    frame = results({"ccvae": 0.8 + 0.01 * NOISE, "m2": 0.8 + 0.01 * NOISE}).assign(preset=PROTOCOL.preset)
    steps = frame.assign(metric="optimiser_steps", value=4000.0)
    write_claims(pd.concat([frame, steps]), tmp_path, claims=(claim,), levels=levels)
    assert "not levelled off by 4,000 steps" in (tmp_path / "CLAIMS.md").read_text()
    write_claims(pd.concat([frame, steps]).assign(preset="ci"), tmp_path, claims=(claim,), levels=levels)
    assert "not levelled off" not in (tmp_path / "CLAIMS.md").read_text()  # curves of another preset's budget
