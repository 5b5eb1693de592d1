"""The claim machinery on constructed results whose answer is known: effects of ten standard errors either way,
no effect, margins at their edges, pairing by seed, controls, missing metrics, Holm's correction, the CLI."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.claims import (
    CLAIMS,
    CSV_COLUMNS,
    FAILS,
    FLOOR,
    HOLDS,
    NOT_MEASURED,
    UNDECIDED,
    Claim,
    Part,
    claim_verdict,
    compare,
    evaluate_claims,
    holm,
    tally,
)
from bench.cli import main
from bench.registry import MODELS
from bench.results import RESULT_COLUMNS
from evaluators import all_metrics
from evaluators.controls import ROWS

NOISE = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])  # per-seed noise of sd 0.79, mean 0
SE = NOISE.std(ddof=1) / math.sqrt(NOISE.size)  # the standard error of the mean difference


def results(values: dict[str, np.ndarray], metric: str = "classification.accuracy", f: float = 0.2,
            dataset: str = "synthfaces", controls: dict[str, float] | None = None) -> pd.DataFrame:
    """A results.csv frame: each model's per-seed values at one f, and controls (f NaN) with one value."""
    rows = [{"dataset": dataset, "model": model, "f": f, "seed": seed, "eval_seed": 0, "preset": "ci",
             "metric": metric, "value": float(value)}
            for model, seeds in values.items() for seed, value in enumerate(seeds)]
    rows += [{"dataset": dataset, "model": row, "f": math.nan, "seed": 0, "eval_seed": 0, "preset": "ci",
              "metric": metric, "value": value} for row, value in (controls or {}).items()]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def one_claim(test: str, margin: float = 0.0, metric: str = "classification.accuracy", against=("m2",)) -> Claim:
    return Claim("t", "constructed", "a test", (Part(metric, "ccvae", against, test, margin=margin,
                                                    datasets=("synthfaces",), fs=(0.2,)),))


def verdict_for(differences: np.ndarray, test: str, margin: float = 0.0,
                metric: str = "classification.accuracy") -> str:
    """The verdict when CCVAE's value minus M2's, per seed, is `differences` (M2 has a seed effect of its own)."""
    base = np.array([0.5, 0.7, 0.6, 0.8, 0.55])  # large seed-to-seed differences shared by both models
    rows = evaluate_claims(results({"ccvae": base + differences, "m2": base}, metric), (one_claim(test, margin,
                                                                                               metric),))
    assert len(rows) == 1
    return rows.verdict.iloc[0]


@pytest.mark.parametrize("test,margin", [("better", 0.0), ("not_worse", 0.05)])
def test_ten_standard_errors_hold_against_fail_none_undecided(test, margin):
    shift = -margin  # the null hypothesis' edge
    assert verdict_for(shift + 10 * SE * 0.01 + 0.01 * NOISE, test, margin) == HOLDS
    assert verdict_for(shift - 10 * SE * 0.01 + 0.01 * NOISE, test, margin) == FAILS
    assert verdict_for(shift + 0.01 * NOISE, test, margin) == UNDECIDED


def test_lower_is_better_metrics_are_signed_by_their_direction():
    # the swap error is lower-is-better: CCVAE lower by ten standard errors is better
    assert verdict_for(-10 * SE * 0.01 + 0.01 * NOISE, "better", metric="ground_truth.swap_error") == HOLDS
    assert verdict_for(+10 * SE * 0.01 + 0.01 * NOISE, "better", metric="ground_truth.swap_error") == FAILS


def test_equivalence_margins_at_their_edges():
    margin, noise = 0.05, 0.001 * NOISE
    step = 10 * SE * 0.001
    assert verdict_for(noise, "equivalent", margin) == HOLDS  # no difference, tight
    assert verdict_for(margin - step + noise, "equivalent", margin) == HOLDS  # inside the upper edge
    assert verdict_for(-margin + step + noise, "equivalent", margin) == HOLDS  # inside the lower edge
    assert verdict_for(margin + step + noise, "equivalent", margin) == FAILS  # beyond it
    assert verdict_for(-margin - step + noise, "equivalent", margin) == FAILS
    assert verdict_for(margin + noise, "equivalent", margin) == UNDECIDED  # on the edge: neither
    assert verdict_for(0.5 * NOISE, "equivalent", margin) == UNDECIDED  # too noisy to tell


def test_non_inferiority_holds_for_a_small_loss_within_the_margin():
    margin = 0.05
    assert verdict_for(-0.02 + 0.001 * NOISE, "not_worse", margin) == HOLDS  # worse, but by less than δ
    assert verdict_for(-0.02 + 0.001 * NOISE, "better") == FAILS  # …which superiority calls a failure


def test_pairing_by_seed_removes_the_shared_seed_effect():
    """CCVAE is better by 0.01 at every seed; the seeds differ by 0.3: paired, that is decided; unpaired, not."""
    base = np.array([0.2, 0.5, 0.3, 0.6, 0.4])
    ccvae = base + 0.01 + 0.001 * NOISE
    rows = evaluate_claims(results({"ccvae": ccvae, "m2": base}), (one_claim("better"),))
    assert rows.verdict.iloc[0] == HOLDS and rows.n.iloc[0] == 5
    assert stats.ttest_ind(ccvae, base, alternative="greater").pvalue > 0.4  # what ignoring the pairing would say


def test_p_and_interval_match_an_independent_t_test():
    differences = np.array([0.03, 0.01, 0.04, 0.02, 0.05, 0.0])
    result = compare(differences, "better")
    expected = stats.ttest_1samp(differences, 0.0, alternative="greater")
    assert result.p == pytest.approx(expected.pvalue, rel=1e-12)
    assert result.p_against == pytest.approx(1 - expected.pvalue, rel=1e-12)
    half = stats.t.ppf(0.975, 5) * differences.std(ddof=1) / math.sqrt(6)
    assert (result.low, result.high) == pytest.approx((differences.mean() - half, differences.mean() + half))
    shifted = compare(differences, "not_worse", margin=0.01)
    assert shifted.p == pytest.approx(stats.ttest_1samp(differences, -0.01, alternative="greater").pvalue)


def test_control_rows_are_one_value_for_every_seed():
    accuracy = np.array([0.9, 0.92, 0.91, 0.93, 0.9])
    frame = results({"ccvae": accuracy}, "conditional.accuracy", controls={FLOOR: 0.6})
    rows = evaluate_claims(frame, (one_claim("better", metric="conditional.accuracy", against=(FLOOR,)),))
    assert rows.verdict.iloc[0] == HOLDS
    assert rows.effect.iloc[0] == pytest.approx(accuracy.mean() - 0.6)


def test_a_missing_metric_or_model_is_not_measured_with_why():
    frame = results({"ccvae": np.ones(5), "m2": np.ones(5)})
    rows = evaluate_claims(frame, (one_claim("better", metric="fid.fid"),))
    assert rows.verdict.tolist() == [NOT_MEASURED] and "no fid.fid numbers" in rows.note.iloc[0]
    rows = evaluate_claims(frame, (one_claim("better", against=("diva",)),))
    assert rows.verdict.tolist() == [NOT_MEASURED] and "no diva run" in rows.note.iloc[0]
    rows = evaluate_claims(frame, (Claim("t", "s", "x", (Part("classification.accuracy", "ccvae", ("m2",),
                                                                "better", task="multiclass"),)),))
    assert rows.verdict.tolist() == [NOT_MEASURED] and "no a multiclass data set" in rows.note.iloc[0]
    assert claim_verdict(rows) == NOT_MEASURED


def test_one_seed_is_undecided_not_a_number():
    rows = evaluate_claims(results({"ccvae": [0.9], "m2": [0.5]}), (one_claim("better"),))
    assert rows.verdict.iloc[0] == UNDECIDED and rows.n.iloc[0] == 1 and "one seed" in rows.note.iloc[0]
    assert math.isnan(rows.p.iloc[0])


def test_holm_matches_hand_computation_and_keeps_nan():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.2, math.nan, 0.01])
    assert adjusted[0] == pytest.approx(0.2) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)


def test_holm_turns_a_marginal_row_undecided_among_many():
    """One comparison at p ≈ 0.03 holds alone, but not as one of ten (Holm multiplies it by up to 10)."""
    differences = 0.01 + 0.01 * NOISE * 0.85  # p ≈ 0.03 one-sided, n = 5
    p = stats.ttest_1samp(differences, 0, alternative="greater").pvalue
    assert 0.01 < p < 0.05
    assert compare(differences, "better").p == pytest.approx(p)
    base = np.full(5, 0.5)
    frame = pd.concat([results({"ccvae": base + differences, "m2": base}, f=f) for f in np.linspace(0.1, 1, 10)])
    claim = Claim("t", "s", "x", (Part("classification.accuracy", "ccvae", ("m2",), "better",
                                       datasets=("synthfaces",), fs=tuple(np.linspace(0.1, 1, 10))),))
    rows = evaluate_claims(frame, (claim,))
    assert set(rows.verdict) == {UNDECIDED}


def test_claim_verdict_combines_its_rows():
    def frame(*verdicts):
        return pd.DataFrame({"verdict": verdicts})

    assert claim_verdict(frame(HOLDS, HOLDS)) == HOLDS
    assert claim_verdict(frame(HOLDS, UNDECIDED)) == UNDECIDED
    assert claim_verdict(frame(HOLDS, FAILS, UNDECIDED)) == FAILS
    assert claim_verdict(frame(HOLDS, NOT_MEASURED)) == UNDECIDED


def test_declared_claims_name_declared_metrics_models_and_rows():
    metrics = all_metrics()
    for claim in CLAIMS:
        for part in claim.parts:
            assert part.metric in metrics, (claim.key, part.metric)
            for model in (*part.against, part.subject, *part.subjects):
                assert model in MODELS or model in ROWS, (claim.key, model)
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
    table1 = written[written.claim.astype(str) == "1"]
    assert len(table1) == 12 and set(table1.verdict) <= {HOLDS, UNDECIDED}
    assert (tmp_path / "out" / "CLAIMS.md").read_text().startswith("# The paper's claims")
    assert "not measured" in capsys.readouterr().out  # FID: not in these results
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    assert main(["claims", "--results", str(tmp_path / "bad.csv")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "lacks the column" in error


def test_a_claims_tally_says_how_far_its_comparisons_got():
    def line(verdict, holds=0, fails=0, undecided=0, not_measured=0):
        return {"verdict": verdict, HOLDS: holds, FAILS: fails, UNDECIDED: undecided, NOT_MEASURED: not_measured}

    assert tally(line(HOLDS, holds=4, not_measured=2)) == "holds (all 4)"
    assert tally(line(FAILS, holds=3, fails=2, undecided=7)) == "fails (2 of 12 fail, 3 hold)"
    assert tally(line(FAILS, fails=1, undecided=3)) == "fails (1 of 4 fail)"
    assert tally(line(UNDECIDED, holds=11, undecided=1)) == "undecided (11 of 12 hold)"
    assert tally(line(NOT_MEASURED, not_measured=8)) == "not measured"
