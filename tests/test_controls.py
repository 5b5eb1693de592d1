"""Every measure ranks constructed models correctly on synthfaces, where the renderer gives the true answer:
a model that does nothing, one that does half the job (moves only the label value, or the wrong things),
and a perfect one. The controls of the tables are such models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.api import Capabilities
from bench.cli import main
from bench.config import make_config
from bench.data import load
from bench.data import synthfaces as truth
from bench.presets import preset
from evaluators import conditional, ground_truth, interventions, swap
from evaluators.common import EvalSettings
from evaluators.controls import Control, Floor, OracleControl, RealImages, Renderer, controls_for
from evaluators.oracle import load_or_train_oracle

SETTINGS = EvalSettings(pairs=200, intervened=60, generated=300, fid_images=300, batch_size=100)
pytestmark = pytest.mark.slow  # every test here needs the smoke oracle (trained once per session)


@pytest.fixture(scope="module")
def world(smoke_cache):
    """synthfaces at the smoke preset and its oracle (the session's cache)."""
    options = make_config("ccvae", "synthfaces", 1.0, 0, "smoke").dataset_options
    data = load("synthfaces", cache_dir=smoke_cache, options=options)
    oracle, record = load_or_train_oracle(data, options, torch.device("cpu"), smoke_cache, preset("smoke").oracle)
    return data, oracle, record


def judged(evaluator, model, world) -> dict:
    data, oracle, _ = world
    torch.manual_seed(0)
    return evaluator.evaluate(model, data, oracle, torch.Generator().manual_seed(0), SETTINGS)


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


def test_the_renderer_is_the_truth_of_every_operation(world):
    data, _, _ = world
    renderer = Renderer(data)
    test = torch.as_tensor(data.splits["test"][:20])
    x = data.images[test].float() / 255
    assert torch.equal(renderer.swap(x, x), x)  # re-rendering a test image gives it back, exactly
    factors = renderer.factors_of(x)
    flipped = truth.labels_from_factors(truth.with_label(factors, 2, 1))
    assert (flipped[:, 2] == 1).all() and (flipped[:, [0, 1, 3, 4, 5, 6]] == data.labels[test][:, [0, 1, 3, 4, 5, 6]]
                                           .numpy()).all()
    errors = judged(ground_truth, renderer, world)
    assert errors["swap_error"] == 0 and errors["intervention_error"] == 0 and errors["capture"] == pytest.approx(1)


def test_swap_measures_rank_nothing_below_half_the_job_below_the_truth(world):
    data, _, _ = world
    nothing, half, perfect, returns_a = Floor(data), LabelOnlySwap(data), Renderer(data), ReturnsA(data)
    scores = {name: judged(swap, model, world) for name, model in
              (("nothing", nothing), ("half", half), ("perfect", perfect), ("returns a", returns_a))}
    errors = {name: judged(ground_truth, model, world)["swap_error"] for name, model in
              (("nothing", nothing), ("half", half), ("perfect", perfect))}
    assert scores["perfect"]["score"] < scores["nothing"]["score"]
    assert scores["perfect"]["score_vs_reconstruction"] < scores["nothing"]["score_vs_reconstruction"]
    assert errors["perfect"] == 0 < errors["half"] < errors["nothing"]  # only the truth tells half the job apart
    assert scores["returns a"]["score"] == 0  # the paper's score alone calls returning a perfect ...
    assert scores["returns a"]["context_kept"] < 0.01 < scores["perfect"]["context_kept"]  # ... the other side not
    assert scores["nothing"]["context_kept"] > 0.99  # (a pair may draw the same image twice: it counts ½)


def test_intervention_measures_rank_nothing_below_the_truth_and_catch_leaks(world):
    data, _, record = world
    nothing, perfect, leaky = (judged(interventions, model, world) for model in (Floor(data), Renderer(data),
                                                                                Leaky(data)))
    assert nothing["flip_rate"] < 1 - record["test_accuracy"] + 0.05  # the floor: the oracle's own errors
    assert perfect["flip_rate"] > record["test_accuracy"] - 0.05  # the ceiling: the oracle's accuracy
    assert nothing["leakage"] == 0 and perfect["leakage"] < 0.05 < leaky["leakage"]
    assert nothing["condition_number"] is None and "singular" in nothing["condition_number_unavailable"]
    nothing_error = judged(ground_truth, Floor(data), world)["intervention_error"]
    assert judged(ground_truth, Renderer(data), world)["intervention_error"] == 0 < nothing_error


def test_conditional_generation_floor_and_ceilings(world):
    data, _, record = world
    floor, real, rendered = (judged(conditional, model, world)["accuracy"] for model in (Floor(data), RealImages(data),
                                                                                        Renderer(data)))
    assert floor < 0.75 < min(real, rendered)  # random real images match the requested labels by chance only
    assert real == pytest.approx(record["test_accuracy"], abs=0.03)


def test_the_oracle_control_classifies_at_the_oracles_recorded_test_accuracy(world):
    from evaluators import classification

    data, oracle, record = world
    assert judged(classification, OracleControl(data, oracle), world)["accuracy"] == pytest.approx(
        record["test_accuracy"])
    assert "unavailable" in judged(classification, Floor(data), world)
    assert [control.row for control in controls_for(data, oracle)] == [
        "floor: does nothing", "ceiling: real images", "ceiling: oracle", "ceiling: renderer"]
    assert Control.capabilities == Capabilities(*(False,) * 7)


def test_a_user_model_that_does_nothing_trains_is_evaluated_and_flips_at_the_floor(tmp_path, smoke_cache, world):
    _, _, record = world
    runs = tmp_path / "runs"
    assert main(["train", "--model", "tests.models:DoNothingVAE", "--f", "0.06", "--preset", "smoke", "--epochs", "1",
                 "--runs", str(runs), "--cache-dir", str(smoke_cache)]) == 0
    (run_dir,) = runs.glob("synthfaces/*/f=0.06/seed=0")
    assert main(["eval", str(run_dir), "--only", "interventions,swap", "--cache-dir", str(smoke_cache)]) == 0
    result = json.loads((run_dir / "eval" / "interventions.json").read_text())
    assert result["flip_rate"] < 1 - record["test_accuracy"] + 0.05
    assert json.loads((run_dir / "eval" / "swap.json").read_text())["context_kept"] > 0.99
