"""The evaluator contract: an evaluator added as ARCHITECTURE.md says (one module with its EVALUATOR and its budget,
one registry line) gets the budget its preset sets, builds its cached helper once per data set, draws
its figures, and its numbers reach the tables, the check and the report, with no other file touched."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import pytest
import torch
from torchvision.utils import save_image

import evaluators
from bench.budgets import Budget
from bench.cli import main
from bench.files import atomic_torch_save, cached_build
from bench.metrics import Metric, Tolerance
from bench.presets import preset
from evaluators.common import Evaluator, Resources, device_of, float_images, sample_test_indices

pytestmark = pytest.mark.slow  # trains one smoke run


@dataclass(frozen=True)
class BrightnessBudget(Budget):
    """`samples` test images, and how many training images the helper averages."""

    helper_images: int = 50


def mean_training_image(data, resources: Resources, budget: BrightnessBudget) -> torch.Tensor:
    """The toy's cached helper: the mean of the first training images, built once per data set and budget."""
    def build() -> torch.Tensor:
        BUILT.append(budget.helper_images)
        return float_images(data, torch.as_tensor(data.splits["train"][: budget.helper_images]), "cpu").mean(0)

    path = resources.cache_file(f".brightness-{budget.helper_images}.pt")
    return cached_build(path, build, atomic_torch_save, lambda saved: torch.load(saved, weights_only=True),
                        "toy helper")


BUILT: list[int] = []


def brightness(model, data, oracle, generator, settings, resources, budget: BrightnessBudget) -> dict:
    """A toy evaluator: the mean pixel of the model's reconstructions swap(a, a) of `budget.samples` test images,
    less that of the mean training image."""
    reference = mean_training_image(data, resources, budget)
    chosen = sample_test_indices(data, budget.samples, generator)
    images = float_images(data, chosen, device_of(model))
    with torch.no_grad():
        mean = float(model.swap(images, images).mean() - reference.mean())
    return {"mean_pixel": mean, "n": len(chosen)}


def test_a_toy_evaluator_added_as_the_contract_says_reaches_tables_check_and_report(tmp_path, monkeypatch, ci_cache):
    calls = {"prepare": 0, "draw": 0}
    BUILT.clear()

    def prepare(data, oracle, resources, budget, device) -> None:
        calls["prepare"] += 1
        mean_training_image(data, resources, budget)

    def draw(result, folder) -> None:
        calls["draw"] += 1
        folder.mkdir(parents=True, exist_ok=True)
        save_image(torch.full((1, 4, 4), 0.5 + result["mean_pixel"] / 2), folder / "brightness.png")

    toy = Evaluator("brightness", brightness, metrics=(Metric("mean_pixel", "mean pixel", None, Tolerance(1e-6),
                                                              "a toy"),), details=("n",), count=("n", "images"),
                    budget=BrightnessBudget(samples=20), prepare=prepare, draw=draw,
                    figures=(("brightness", "a grey square as bright as the reconstructions"),))
    monkeypatch.setitem(preset("smoke").budgets, "brightness", BrightnessBudget(samples=30, helper_images=40))
    monkeypatch.setitem(evaluators.EVALUATORS, "brightness", toy)  # the registry line
    runs, out = tmp_path / "runs", tmp_path / "results"
    grid = ["--preset", "smoke", "--datasets", "synthfaces", "--models", "ccvae", "--fs", "1", "--launcher", "inline",
            "--runs", str(runs), "--cache-dir", str(ci_cache), "--out", str(out)]
    assert main(["run", *grid]) == 0
    run_dir = runs / "synthfaces" / "ccvae" / "f=1" / "seed=0"
    result = json.loads((run_dir / "eval" / "brightness.json").read_text())
    assert -1 <= result["mean_pixel"] <= 1 and calls == {"prepare": 1, "draw": 1}
    assert result["n"] == 30 and BUILT == [40]  # the preset's budget; the helper built once, in prepare
    assert len(list(ci_cache.rglob("*.brightness-40.pt"))) == 1  # cached beside the oracle
    assert (run_dir / "eval" / "figures" / "brightness.png").is_file()
    numbers = pd.read_csv(out / "results.csv")
    assert numbers[numbers.metric == "brightness.mean_pixel"].value.tolist() == [result["mean_pixel"]]
    assert (out / "tables" / "synthfaces" / "tablebrightness.md").is_file()  # a table of its own: in no paper table
    report = (out / "report.html").read_text()
    assert "Table brightness: Evaluator brightness" in report and "<h4>brightness</h4>" in report  # and its figure
    assert main(["check", "--update", "--runs", str(runs), "--stored", str(tmp_path / "stored"), "--preset",
                 "smoke"]) == 0
    assert main(["check", "--runs", str(runs), "--stored", str(tmp_path / "stored"), "--preset", "smoke"]) == 0
    stored = pd.read_csv(tmp_path / "stored" / "results.csv")
    assert "brightness.mean_pixel" in set(stored.metric)
