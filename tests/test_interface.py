"""Every registered model honours bench/api.py: shapes, ranges, capabilities and behaviour."""

from __future__ import annotations

import json

import pytest
import torch

from bench.api import DataSpec, missing_members, to_float_images
from bench.config import make_config
from bench.data import load
from bench.evaluate import load_trained_model
from bench.models import MODELS, default_models, model_entry, resolve

NAMES = sorted(MODELS)
GRID = sorted(default_models())  # the models the CI grid trains


def untrained(name: str, task: str):
    torch.manual_seed(0)
    labels = 3
    spec = DataSpec((1, 32, 32), tuple(f"l{i}" for i in range(labels)), task, (0.3, 0.4, 0.5), 100, 10)
    return resolve(name)(spec, **model_entry(name).options).eval()


@pytest.mark.parametrize("task", ["multilabel", "multiclass"])
@pytest.mark.parametrize("name", NAMES)
def test_operations_return_the_documented_shapes_in_the_unit_interval(name, task):
    model = untrained(name, task)
    assert missing_members(model) == []
    x = torch.rand(2, 1, 32, 32)
    y = torch.tensor([[1.0, 0, 1], [0, 1, 0]]) if task == "multilabel" else torch.eye(3)[:2]
    loss, terms = model.train().loss(x, y)
    unsup_loss, _ = model.loss(x)
    assert loss.ndim == 0 and torch.isfinite(loss) and torch.isfinite(unsup_loss) and "objective" in terms
    model.eval()
    probs = model.classify(x)
    assert probs.shape == (2, 3) and torch.all((probs >= 0) & (probs <= 1))
    assert model.represent(x).shape[0] == 2
    capabilities = model.capabilities
    assert (model.characteristic(x) is None) != capabilities.characteristic
    assert (model.traverse(x, 1, 4) is None) != capabilities.traverse
    if capabilities.traverse:
        assert model.traverse(x, 1, 4).shape == (2, 4, 1, 32, 32)
    outputs = [
        (model.generate(y, n=3), (2, 3, 1, 32, 32)),
        (model.intervene(x, 1, 1.0), (2, 1, 32, 32)),
        (model.intervene(x, 1, 1.0, stochastic=True), (2, 1, 32, 32)),
        (model.swap(x, x.flip(0)), (2, 1, 32, 32)),
    ]
    for images, shape in outputs:
        assert images.shape == shape and torch.all((images >= 0) & (images <= 1))


@pytest.fixture(scope="module")
def trained(ci_runs, ci_cache):
    """Each model of the CI grid (f = 0.06, ~200 steps; MVAE 40 epochs), its metrics and test images."""
    models, metrics = {}, {}
    for name in GRID:
        config = make_config(name, "synthfaces", 0.06, 0, "ci")
        data = load("synthfaces", cache_dir=ci_cache, options=config.dataset_options)
        run_dir = config.run_dir(ci_runs)
        metrics[name] = json.loads((run_dir / "metrics.json").read_text())
        models[name] = load_trained_model(config, data, run_dir, torch.device("cpu"))
    test = torch.as_tensor(data.splits["test"][:64])
    return models, to_float_images(data.images[test]), data.labels[test], metrics


@pytest.mark.parametrize("name", GRID)
def test_every_model_beats_the_majority_baseline_on_the_ci_preset_at_f_006(name, trained):
    metrics = trained[3][name]
    assert metrics["test_accuracy"] > metrics["majority_accuracy"] + 0.02, metrics


@pytest.mark.parametrize("name", GRID)
def test_swap_with_itself_reconstructs_better_than_with_another_context(name, trained):
    models, x, *_ = trained
    model = models[name]
    own = (model.swap(x, x) - x).abs().mean()
    other = (model.swap(x, x.roll(1, 0)) - x).abs().mean()
    assert own < other


UNDERTRAINED_W = pytest.mark.xfail(strict=True, reason=(
    "after the ci preset's ~200 steps CSVAE's q(w|x,y) still ignores y (every w near 0), while p(w_i|y_i=0) is "
    "centred at (3, 3): moving the encoder's output 3 units takes ~3/lr Adam steps"))


@pytest.mark.parametrize("name", [n if n != "csvae" else pytest.param(n, marks=UNDERTRAINED_W) for n in GRID])
def test_intervening_with_the_current_value_changes_less_than_flipping_it(name, trained):
    models, x, *_ = trained
    model = models[name]
    labels = (model.classify(x) > 0.5).float()  # the model's own belief about each label
    reference = model.swap(x, x)
    current, flipped = [], []
    for i in range(labels.shape[1]):
        same = torch.stack([model.intervene(x[j : j + 1], i, float(labels[j, i]))[0] for j in range(len(x))])
        other = torch.stack([model.intervene(x[j : j + 1], i, float(1 - labels[j, i]))[0] for j in range(len(x))])
        current.append((same - reference).abs().mean())
        flipped.append((other - reference).abs().mean())
    assert torch.stack(current).mean() < torch.stack(flipped).mean()
