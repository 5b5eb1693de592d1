"""The evaluator contract: an evaluator added as ARCHITECTURE.md says (one module with its EVALUATOR, one registry
line, its table) is prepared once per data set, draws its figures, and its numbers reach the tables, the check and
the report, with no other file touched."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import evaluators
from bench import tables
from bench.cli import main
from bench.metrics import Metric, Tolerance
from evaluators.common import Evaluator, device_of, float_images, sample_test_indices

pytestmark = pytest.mark.slow  # trains one smoke run


def brightness(model, data, oracle, generator, settings, resources) -> dict:
    """A toy evaluator: the mean pixel of the model's reconstructions swap(a, a) of 20 test images."""
    chosen = sample_test_indices(data, 20, generator)
    images = float_images(data, chosen, device_of(model))
    with torch.no_grad():
        return {"mean_pixel": float(model.swap(images, images).mean()), "n": len(chosen)}


def test_a_toy_evaluator_added_as_the_contract_says_reaches_tables_check_and_report(tmp_path, monkeypatch):
    calls = {"prepare": 0, "draw": 0}

    def prepare(data, oracle, resources, device) -> None:
        calls["prepare"] += 1

    def draw(result, folder) -> None:
        calls["draw"] += 1
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "brightness.txt").write_text(f"{result['mean_pixel']}\n")

    toy = Evaluator("brightness", brightness, metrics=(Metric("mean_pixel", "mean pixel", None, Tolerance(1e-6),
                                                              "a toy"),), details=("n",), count=("n", "images"),
                    prepare=prepare, draw=draw)
    monkeypatch.setitem(evaluators.EVALUATORS, "brightness", toy)  # the registry line
    monkeypatch.setitem(tables.TABLES, "B", tables.TableSpec("B", "Brightness (a toy)", ("brightness",)))
    runs, out = tmp_path / "runs", tmp_path / "results"
    grid = ["--preset", "smoke", "--datasets", "synthfaces", "--models", "ccvae", "--fs", "1", "--launcher", "inline",
            "--runs", str(runs), "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    assert main(["run", *grid]) == 0
    run_dir = runs / "synthfaces" / "ccvae" / "f=1" / "seed=0"
    result = json.loads((run_dir / "eval" / "brightness.json").read_text())
    assert 0 <= result["mean_pixel"] <= 1 and calls == {"prepare": 1, "draw": 1}
    assert (run_dir / "eval" / "figures" / "brightness.txt").is_file()
    numbers = pd.read_csv(out / "results.csv")
    assert numbers[numbers.metric == "brightness.mean_pixel"].value.tolist() == [result["mean_pixel"]]
    assert (out / "tables" / "synthfaces" / "tableB.md").is_file()
    assert "Table B: Brightness (a toy)" in (out / "report.html").read_text()
    assert main(["check", "--update", "--runs", str(runs), "--stored", str(tmp_path / "stored"), "--preset",
                 "smoke"]) == 0
    assert main(["check", "--runs", str(runs), "--stored", str(tmp_path / "stored"), "--preset", "smoke"]) == 0
    stored = pd.read_csv(tmp_path / "stored" / "results.csv")
    assert "brightness.mean_pixel" in set(stored.metric)
