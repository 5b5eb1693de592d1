"""ARCHITECTURE.md's recipes, each followed as written with a toy: a data set, a table, a claim and a preset added
the documented way reach every command that reads their registry (a model's recipe: `tests/test_registries.py`;
an evaluator's: `tests/test_plugin.py`)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from bench import protocol
from bench.cli import main
from bench.data import DATASETS, DatasetEntry, load, synthfaces
from bench.presets import PRESETS
from bench.protocol import Claim, Part
from bench.tables import TABLES, TableSpec
from tests.conftest import ROOT

STORED_CI = ROOT / "results" / "stored" / "ci"


def build_toy(source, n_images: int = 120):
    """The toy data set's builder (`build(source, **options)`): a few synthfaces images under another name."""
    return replace(synthfaces.build(source, n_images, 20, 40, seed=0, image_size=32), name="toy")


def test_a_data_set_added_as_documented_loads_is_listed_and_joins_a_grid(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(DATASETS, "toy", DatasetEntry("toy", "tests.test_recipes:build_toy", "multilabel",
                                                      "synthfaces' labels", image_sizes=(32,),
                                                      options={"n_images": 120}))
    data = load("toy", cache_dir=tmp_path / "cache")
    assert data.name == "toy" and tuple(data.images.shape[1:]) == (3, 32, 32) and len(data.splits["test"]) == 40
    assert main(["data", "--list"]) == 0 and "toy" in capsys.readouterr().out
    assert main(["run", "--datasets", "toy", "--models", "ccvae", "--fs", "1", "--preset", "smoke", "--dry-run",
                 "--runs", str(tmp_path / "runs")]) == 0
    assert "toy/ccvae/f=1/seed=0" in capsys.readouterr().out


def test_a_table_added_as_documented_is_written_in_every_format_and_reported(monkeypatch, tmp_path):
    monkeypatch.setitem(TABLES, "Z", TableSpec("Z", "Toy: the oracle's swap score alone", ("swap",),
                                               only=("swap.score",)))
    assert main(["tables", "--stored", str(STORED_CI), "--out", str(tmp_path)]) == 0
    for suffix in ("csv", "tex", "md"):
        assert (tmp_path / "tables" / "synthfaces" / f"tableZ.{suffix}").is_file(), suffix
    assert "Table Z: Toy: the oracle's swap score alone" in (tmp_path / "REPORT.md").read_text()
    assert list(pd.read_csv(tmp_path / "tables" / "synthfaces" / "tableZ.csv").model)[:1] == ["ccvae"]


def test_a_claim_added_as_documented_is_decided_and_written(monkeypatch, tmp_path):
    toy = Claim("X1", "CCVAE's accuracy is within half a point of M2's", "a recipe test",
                (Part("classification.accuracy", "ccvae", ("m2",), "not_worse", margin=0.5, task="multilabel",
                      fs=(0.06,)),))  # the ci set: synthfaces at f = 0.06
    monkeypatch.setattr(protocol, "CLAIMS", (*protocol.CLAIMS, toy))
    assert main(["claims", "--results", str(STORED_CI / "results.csv"), "--out", str(tmp_path)]) == 0
    rows = pd.read_csv(tmp_path / "claims.csv", dtype={"claim": str})
    assert set(rows[rows.claim == "X1"].verdict) == {"holds"}  # five seeds each, accuracies 0.8 apart by far less
    assert "## X1: CCVAE's accuracy is within half a point of M2's" in (tmp_path / "CLAIMS.md").read_text()


def test_a_preset_added_as_documented_is_listed_and_runs_a_grid(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(PRESETS, "tiny", replace(PRESETS["smoke"], name="tiny", epochs=1, description="one epoch"))
    assert main(["list", "presets"]) == 0 and "tiny" in capsys.readouterr().out
    assert main(["run", "--datasets", "synthfaces", "--models", "ccvae", "--fs", "1", "--preset", "tiny",
                 "--dry-run", "--runs", str(tmp_path / "runs")]) == 0
    assert "synthfaces/ccvae/f=1/seed=0" in capsys.readouterr().out
