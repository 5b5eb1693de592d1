"""Every measure ranks constructed models correctly on synthfaces, where the renderer gives the true answer:
a model that does nothing, one that does half the job (moves only the label value, or the wrong things),
and a perfect one. The controls of the tables are such models."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torchvision.transforms.v2.functional import gaussian_blur

from bench.api import Capabilities
from bench.budgets import Budget, EvalSettings
from bench.cli import main
from bench.config import make_config
from bench.data import load
from bench.data import synthfaces as truth
from bench.evaluate import evaluation_resources
from bench.presets import preset
from evaluators import conditional, ground_truth, interventions, swap
from evaluators.controls import Control, Floor, OracleControl, RealImages, Renderer, controls_for
from evaluators.oracle import load_or_train_oracle

SETTINGS = EvalSettings(batch_size=100)
BUDGETS = {"swap": Budget(200), "interventions": Budget(60), "conditional": Budget(300),
           "ground_truth": replace(preset("ci").budgets["ground_truth"], samples=2000)}  # the ci preset's reader
pytestmark = pytest.mark.slow  # every test here needs the ci preset's oracle (trained once per session)


@pytest.fixture(scope="module")
def world(ci_cache, ci_runs):
    """synthfaces at the ci preset, its oracle and the evaluators' resources (the session's cache, which the
    CI grid shares: its oracle and factor reader are trained once, by the grid's sweep, whose second worker trains
    runs meanwhile)."""
    config = make_config("ccvae", "synthfaces", 1.0, 0, "ci")
    data = load("synthfaces", cache_dir=ci_cache, options=config.dataset_options)
    oracle, record = load_or_train_oracle(data, config.dataset_options, torch.device("cpu"), ci_cache,
                                          preset("ci").oracle)
    return data, oracle, record, evaluation_resources(config, data, str(ci_cache), None)


def judged(evaluator, model, world) -> dict:
    data, oracle, _, resources = world
    torch.manual_seed(0)
    return evaluator.evaluate(model, data, oracle, torch.Generator().manual_seed(0), SETTINGS, resources,
                              BUDGETS.get(evaluator.EVALUATOR.name))


class LabelOnlySwap(Renderer):
    """Half the job: a's label *values* on b's context, each characteristic redrawn on its class's side."""

    def swap(self, x_char, x_ctx):
        if torch.equal(x_char, x_ctx):
            return super().swap(x_char, x_ctx)  # a reconstruction stays exact
        labels = self.truth.labels_from_factors(self.factors_of(x_char))
        redrawn = self.truth.factors_for_labels(labels, np.random.default_rng(0))
        context = self.factors_of(x_ctx)
        return self._render(np.concatenate([redrawn[:, : self.labels], context[:, self.labels:]], 1))


class ReturnsA(Renderer):
    """A swap that returns a: perfect on what it carries, nothing of b's context kept."""

    def swap(self, x_char, x_ctx):
        return x_char.clone()


class Leaky(Renderer):
    """Interventions that flip label i and also Pale_Skin (the wrong thing), else perfect."""

    def intervene(self, x, i, value, stochastic=False):
        factors = self.truth.with_label(self.factors_of(x), i, int(value))
        pale = self.truth.LABELS.index("Pale_Skin")
        if i != pale:
            factors = np.concatenate([self.truth.with_label(factors[k: k + 1], pale, 1 - int(row[pale]))
                                      for k, row in enumerate(self.truth.labels_from_factors(factors))])
        return self._render(factors)


class WrongLabel(Renderer):
    """Interventions that flip the next label instead of label i (perfectly), leaving label i as it was."""

    def intervene(self, x, i, value, stochastic=False):
        factors, j = self.factors_of(x), (i + 1) % self.labels
        return self._render(np.concatenate([self.truth.with_label(factors[k: k + 1], j, 1 - int(row[j]))
                                            for k, row in enumerate(self.truth.labels_from_factors(factors))]))


class Blurred(Renderer):
    """The truth seen through a decoder's blur (Gaussian, σ = 1 pixel): the operation right, the rendering soft."""

    def swap(self, x_char, x_ctx):
        return gaussian_blur(super().swap(x_char, x_ctx), [5, 5], [1.0, 1.0])

    def intervene(self, x, i, value, stochastic=False):
        return gaussian_blur(super().intervene(x, i, value), [5, 5], [1.0, 1.0])


def test_the_renderer_is_the_truth_of_every_operation(world, truth_errors):
    data = world[0]
    renderer = Renderer(data)
    test = torch.as_tensor(data.splits["test"][:20])
    x = data.images[test].float() / 255
    assert torch.equal(renderer.swap(x, x), x)  # re-rendering a test image gives it back, exactly
    factors = renderer.factors_of(x)
    flipped = truth.labels_from_factors(truth.with_label(factors, 2, 1))
    assert (flipped[:, 2] == 1).all() and (flipped[:, [0, 1, 3, 4, 5, 6]] == data.labels[test][:, [0, 1, 3, 4, 5, 6]]
                                           .numpy()).all()
    assert truth_errors["perfect"]["capture"] == pytest.approx(1)
    assert truth_errors["perfect"]["swap_error"] == 0 and truth_errors["perfect"]["intervention_error"] == 0


@pytest.fixture(scope="module")
def truth_errors(world) -> dict[str, dict]:
    """Table G of constructed models, each with one kind of swap and one kind of intervention (the two errors
    are computed independently): "half" swaps only label values and leaks its interventions into Pale_Skin,
    "returns a" returns a from its swaps and flips the wrong label in its interventions."""
    data = world[0]

    class HalfAndLeaky(Leaky, LabelOnlySwap):
        pass

    class ReturnsAWrongLabel(WrongLabel, ReturnsA):
        pass

    models = {"nothing": Floor(data), "perfect": Renderer(data), "blurred": Blurred(data),
              "half": HalfAndLeaky(data), "returns a": ReturnsAWrongLabel(data)}
    return {name: judged(ground_truth, model, world) for name, model in models.items()}


def test_swap_measures_rank_nothing_below_half_the_job_below_the_truth(world, truth_errors):
    data = world[0]
    nothing, half, perfect, returns_a = Floor(data), LabelOnlySwap(data), Renderer(data), ReturnsA(data)
    scores = {name: judged(swap, model, world) for name, model in
              (("nothing", nothing), ("half", half), ("perfect", perfect), ("returns a", returns_a))}
    truth = truth_errors
    errors = {name: result["swap_error"] for name, result in truth.items()}
    assert scores["perfect"]["score"] < scores["nothing"]["score"]
    assert scores["perfect"]["score_vs_reconstruction"] < scores["nothing"]["score_vs_reconstruction"]
    # only the truth tells half the job apart, and a decoder's blur costs less than half the job
    assert errors["perfect"] == 0 < errors["blurred"] < errors["half"] < min(errors["nothing"], errors["returns a"])
    assert truth["nothing"]["swap_error_parts"]["characteristics"] > 0.8  # b's characteristics, not a's
    assert truth["returns a"]["swap_error_parts"]["context"] > 0.8  # a's context, not b's
    assert truth["perfect"]["reconstruction_error"] == 0 < truth["blurred"]["reconstruction_error"]  # its rendering
    assert scores["returns a"]["score"] == 0  # the paper's score alone calls returning a perfect ...
    assert scores["returns a"]["context_kept"] < 0.01 < scores["perfect"]["context_kept"]  # ... the other side not
    assert scores["nothing"]["context_kept"] > 0.99  # (a pair may draw the same image twice: it counts ½)


def test_intervention_measures_rank_nothing_below_the_truth_and_catch_leaks(world, truth_errors):
    data, record = world[0], world[2]
    nothing, perfect, leaky = (judged(interventions, model, world) for model in (Floor(data), Renderer(data),
                                                                                Leaky(data)))
    assert nothing["flip_rate"] < 1 - record["test_accuracy"] + 0.05  # the floor: the oracle's own errors
    assert perfect["flip_rate"] > record["test_accuracy"] - 0.05  # the ceiling: the oracle's accuracy
    assert nothing["leakage"] == 0 and perfect["leakage"] < 0.05 < leaky["leakage"]
    assert nothing["condition_number"] is None and "singular" in nothing["condition_number_unavailable"]
    errors = {name: result["intervention_error"] for name, result in truth_errors.items()}  # half: leaky
    assert errors["perfect"] == 0 < errors["blurred"] < errors["half"] < errors["nothing"] < errors["returns a"]
    assert truth_errors["returns a"]["intervention_error_parts"]["target"] > 1  # the wrong label flipped
    assert truth_errors["perfect"]["reader_test_r2"] > 0.8  # the reader (ci: 1,000 images at 32×32, 300 steps)


def test_conditional_generation_floor_and_ceilings(world):
    data, record = world[0], world[2]
    floor, real, rendered = (judged(conditional, model, world)["accuracy"] for model in (Floor(data), RealImages(data),
                                                                                        Renderer(data)))
    assert floor < 0.75 < min(real, rendered)  # random real images match the requested labels by chance only
    assert real == pytest.approx(record["test_accuracy"], abs=0.03)


def test_the_oracle_control_classifies_at_the_oracles_recorded_test_accuracy(world):
    from evaluators import classification

    data, oracle, record, _ = world
    assert judged(classification, OracleControl(data, oracle), world)["accuracy"] == pytest.approx(
        record["test_accuracy"])
    assert "unavailable" in judged(classification, Floor(data), world)
    assert [control.row for control in controls_for(data, oracle)] == [
        "floor: does nothing", "ceiling: real images", "ceiling: oracle", "ceiling: renderer"]
    assert Control.capabilities == Capabilities(*(False,) * 7)


def test_a_user_model_that_does_nothing_trains_is_evaluated_and_flips_at_the_floor(tmp_path, ci_cache, world):
    record = world[2]
    runs = tmp_path / "runs"
    assert main(["train", "--model", "nothing=tests.models:DoNothingVAE", "--f", "0.06", "--preset", "ci",
                 "--epochs", "1", "--runs", str(runs), "--cache-dir", str(ci_cache)]) == 0
    (run_dir,) = runs.glob("synthfaces/*/f=0.06/seed=0")
    assert run_dir.parent.parent.name == "nothing"  # the user's name for the class, not a folder with a colon
    assert json.loads((run_dir / "config.json").read_text())["target"] == "tests.models:DoNothingVAE"
    assert main(["eval", str(run_dir), "--only", "interventions,swap", "--cache-dir", str(ci_cache)]) == 0
    result = json.loads((run_dir / "eval" / "interventions.json").read_text())
    assert result["flip_rate"] < 1 - record["test_accuracy"] + 0.05
    assert json.loads((run_dir / "eval" / "swap.json").read_text())["context_kept"] > 0.99


class LabelBlind(Renderer):
    """A label-blind generator with a label bias: renders `value` for every label whatever was requested."""

    def __init__(self, data, value: int):
        super().__init__(data)
        self.value = value

    def generate(self, y, n=1):
        return super().generate(torch.full_like(y, float(self.value)), n)


def test_near_random_means_label_blind_whatever_the_generators_label_bias(world):
    """Each label-blind generator gains nothing over its own generations scored against shuffled labels, though
    its raw accuracies differ widely with its bias; the floor gains nothing; the renderer gains much."""
    data = world[0]
    blind = {value: judged(conditional, LabelBlind(data, value), world) for value in (0, 1)}
    assert abs(blind[0]["accuracy"] - blind[1]["accuracy"]) > 0.1  # the bias moves the raw score ...
    for result in (*blind.values(), judged(conditional, Floor(data), world)):
        assert abs(result["label_gain"]) < 0.03  # ... not the gain (300 generations: sd about 0.01)
    assert judged(conditional, Renderer(data), world)["label_gain"] > 0.3


def test_a_model_that_does_nothing_is_never_marked_best_in_any_table():
    """On the stored standard set, a model that behaves as the floor (swaps return b, interventions their input,
    reconstructions are exact, generations random real images) is added with the floor's numbers, the real images'
    distances, and seed noise: no table marks it best or tied, while the real models are still marked."""
    from pathlib import Path

    import pandas as pd

    from bench.tables import dataset_tables, read_paper

    stored = Path(__file__).resolve().parents[1] / "results" / "stored" / "standard" / "results.csv"
    results = pd.read_csv(stored)
    floor = results[(results.model == "floor: does nothing")].groupby("metric").value.mean()
    real = results[(results.model == "ceiling: real images")].groupby("metric").value.mean()
    distances = {name: value for name, value in real.items() if name.startswith(("fid.", "mutual"))}
    does_nothing = floor.to_dict() | distances
    does_nothing |= {"conditional.label_gain": 0.0, "classification.accuracy": float(floor.get(
        "conditional.accuracy", 0.5))}
    rng = np.random.default_rng(0)
    rows = [{"dataset": "synthfaces", "model": "nothing", "f": f, "seed": seed, "eval_seed": 0, "preset": "standard",
             "metric": metric, "value": value * (1 + 0.001 * rng.standard_normal()) + 1e-4 * rng.standard_normal()}
            for metric, value in does_nothing.items() for f in (0.004, 0.06, 0.2, 1.0) for seed in range(3)]
    rows += [{"dataset": "synthfaces", "model": model, "f": f, "seed": seed, "eval_seed": 0, "preset": "standard",
              "metric": "conditional.label_gain", "value": 0.3 + 0.01 * seed}
             for model in ("ccvae", "m2", "diva") for f in (0.004, 0.06, 0.2, 1.0) for seed in range(3)]
    frame = pd.concat([results, pd.DataFrame(rows)], ignore_index=True)
    tables = dataset_tables(frame, "synthfaces", read_paper(Path("no such file")))
    marked = pd.concat(tables.values())
    assert not marked[(marked.model == "nothing") & (marked.mark != "")].shape[0], \
        marked[(marked.model == "nothing") & (marked.mark != "")][["metric", "f", "mark"]]
    assert (marked[marked.model != "nothing"].mark != "").sum() > 20  # the real models are still marked
    assert (marked[(marked.metric == "fid.oracle_frechet") & (marked.model != "nothing")].mark != "").any()
