"""Trainer and CLI on the smoke preset: run directory, resume after SIGKILL, NaN stop, errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench import scoring
from bench import train as bench_train
from bench.ccvae import CCVAE
from bench.cli import main
from bench.config import StepOptions, make_config
from bench.data import load
from bench.errors import BenchError, TrainingDiverged
from bench.evaluate import load_trained_model
from bench.nets import Decoder, Encoder, laplace_log_likelihood
from bench.runtime import deterministic_kernels
from bench.train import epoch_schedule, step_schedule, train
from evaluators import EVALUATORS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def bench(*args: str, cache: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENCH_CACHE": str(cache)}
    result = subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if check and result.returncode != 0:
        raise AssertionError(result.stderr)
    return result


def test_nets_shapes_and_laplace_likelihood():
    from scipy.stats import laplace

    for shape in ((3, 64, 64), (1, 32, 32)):
        loc, scale = Encoder(shape, 9)(torch.rand(2, *shape))
        assert loc.shape == scale.shape == (2, 9) and torch.all(scale >= 1e-3)
        images = Decoder(shape, 9)(loc)
        assert images.shape == (2, *shape) and torch.all((images >= 0) & (images <= 1))
    x, mean = torch.rand(2, 1, 4, 4, dtype=torch.float64), torch.rand(2, 1, 4, 4, dtype=torch.float64)
    expected = laplace.logpdf(x.numpy(), mean.numpy(), 1).reshape(2, -1).sum(1)
    np.testing.assert_allclose(laplace_log_likelihood(x, mean).numpy(), expected, rtol=1e-12)


def test_schedule_spreads_labelled_batches_and_uses_every_image_once():
    labelled, unlabelled = np.arange(0, 40), np.arange(40, 400)
    schedule = epoch_schedule(labelled, unlabelled, 20, seed=0, epoch=0)
    flags = [batch.labelled for batch in schedule]
    assert sum(flags) == 2 and len(flags) == 20 and flags[0] and flags[10]
    used = np.sort(np.concatenate([batch.indices.numpy() for batch in schedule]))
    np.testing.assert_array_equal(used, np.arange(400))
    assert all(np.all(b.indices.numpy() < 40) == b.labelled for b in schedule)
    shared = epoch_schedule(labelled, unlabelled, 20, seed=0, epoch=0, labelled_share=0.5)
    assert sum(b.labelled for b in shared) == 18 and len(shared) == 36
    again = epoch_schedule(labelled, unlabelled, 20, seed=0, epoch=0, labelled_share=0.5)
    assert all(torch.equal(a.indices, b.indices) for a, b in zip(shared, again, strict=True))
    assert all(b.labelled for b in epoch_schedule(np.arange(100), np.array([], int), 20, 0, 0))


@pytest.mark.slow
def test_train_writes_the_run_directory_and_never_retrains(tmp_path, cache):
    args = ("train", "--model", "ccvae", "--f", "0.06", "--preset", "smoke", "--epochs", "2", "--runs", str(tmp_path))
    result = bench(*args, cache=cache)
    run_dir = tmp_path / "synthfaces" / "ccvae" / "f=0.06" / "seed=0"
    assert {"config.json", "labelled.npy", "train_log.csv", "checkpoint.pt", "metrics.json"} <= {
        p.name for p in run_dir.iterdir()}
    assert "test accuracy" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # smoke: the first 500 images, batch 50; ⌈0.06 · 500⌉ = 30 labelled, raised to one batch
    assert metrics["n_labelled"] == 50 and metrics["n_unlabelled"] == 450
    assert len(np.load(run_dir / "labelled.npy")) == 50
    stamp = (run_dir / "metrics.json").stat().st_mtime_ns
    again = bench(*args, cache=cache)
    assert "epoch" not in again.stderr and (run_dir / "metrics.json").stat().st_mtime_ns == stamp
    clash = bench("train", "--model", "ccvae", "--f", "0.06", "--preset", "smoke", "--epochs", "3",
                  "--runs", str(tmp_path), cache=cache, check=False)
    assert clash.returncode == 2 and "different configuration" in clash.stderr


def test_deterministic_kernels_are_recorded_in_the_config_and_change_nothing_on_the_cpu(tmp_path, cache):
    options = make_config("ccvae", "synthfaces", 1, 0, "smoke").dataset_options
    data = load("synthfaces", cache_dir=cache, options=options)
    metrics = {}
    for deterministic in (False, True):
        config = make_config("ccvae", "synthfaces", 1, 0, "smoke", epochs=1, model_options={"style_dim": 4},
                             step=StepOptions(deterministic=deterministic))
        run_dir = tmp_path / str(deterministic)
        metrics[deterministic] = train(config, data, run_dir, torch.device("cpu"), show_progress=False)
        assert json.loads((run_dir / "config.json").read_text())["step"]["deterministic"] is deterministic
        assert not torch.are_deterministic_algorithms_enabled()  # restored after the run
    assert metrics[True]["test_accuracy"] == metrics[False]["test_accuracy"]
    before = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    with deterministic_kernels(True):
        assert torch.are_deterministic_algorithms_enabled() and os.environ["CUBLAS_WORKSPACE_CONFIG"]
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == before


def test_the_curve_reads_the_first_validation_images_and_the_metrics_all_of_them(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(bench_train, "CURVE_VALID_IMAGES", 50)  # of the smoke synthfaces' 200
    config = make_config("ccvae", "synthfaces", 1, 0, "smoke", epochs=1, model_options={"style_dim": 4})
    data = load("synthfaces", cache_dir=cache, options=config.dataset_options)
    metrics = train(config, data, tmp_path, torch.device("cpu"), show_progress=False)
    model = load_trained_model(config, data, tmp_path, torch.device("cpu"))
    first = data.splits["valid"][:50]
    with open(tmp_path / "train_log.csv") as handle:
        curve = float(next(csv.DictReader(handle))["valid_accuracy"])
    assert curve == round(scoring.accuracy(scoring.predict(model, data.images[first]), data.labels[first],
                                           data.task), 4)
    assert metrics["valid_accuracy"] == bench_train.accuracy_on(model, data, "valid", torch.device("cpu"))
    assert len(data.splits["valid"]) == 200


def test_training_curves_are_tensorboard_events_where_tensorboard_is_installed(tmp_path, cache):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                            reason="the optional extra tensorboard is not installed")
    config = make_config("ccvae", "synthfaces", 1, 0, "smoke", epochs=2, model_options={"style_dim": 4})
    options = config.dataset_options
    train(config, load("synthfaces", cache_dir=cache, options=options), tmp_path, torch.device("cpu"),
          show_progress=False)
    events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    logged = {(event.step, round(event.value, 4)) for event in events.Scalars("train/valid_accuracy")}
    with open(tmp_path / "train_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert logged == {(int(row["epoch"]), float(row["valid_accuracy"])) for row in rows} and len(rows) == 2


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_numbers(tmp_path, cache):
    args = ["train", "--model", "ccvae", "--f", "0.2", "--preset", "smoke", "--epochs", "3", "--checkpoint-every", "2"]
    bench(*args, "--runs", str(tmp_path / "straight"), cache=cache)
    env = {**os.environ, "BENCH_CACHE": str(cache)}
    runs = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "bench", *args, "--runs", str(runs)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = runs / "synthfaces" / "ccvae" / "f=0.2" / "seed=0" / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline:
        if checkpoint.exists() and torch.load(checkpoint, weights_only=False)["epoch"] >= 1:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (checkpoint.parent / "metrics.json").exists(), "the run finished before it was killed"
    bench(*args, "--runs", str(runs), cache=cache)
    straight = json.loads((tmp_path / "straight" / checkpoint.parent.relative_to(runs) / "metrics.json").read_text())
    resumed = json.loads((checkpoint.parent / "metrics.json").read_text())
    for key in ("test_accuracy", "valid_accuracy", "n_labelled"):
        assert resumed[key] == straight[key], key
    straight_log = (tmp_path / "straight" / checkpoint.parent.relative_to(runs) / "train_log.csv").read_text()
    resumed_log = (checkpoint.parent / "train_log.csv").read_text()
    column = lambda text, i: [line.split(",")[i] for line in text.splitlines()]  # noqa: E731
    assert column(straight_log, 1) == column(resumed_log, 1) and column(straight_log, 2) == column(resumed_log, 2)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path, cache, monkeypatch):
    config = make_config("ccvae", "synthfaces", 1.0, 0, "smoke")
    data = load("synthfaces", cache_dir=cache, options=config.dataset_options)
    calls = {"n": 0}
    original = CCVAE.loss

    def failing_loss(self, x, y=None):
        calls["n"] += 1
        loss, terms = original(self, x, y)
        return (loss * float("nan"), terms) if calls["n"] == 4 else (loss, terms)

    monkeypatch.setattr(CCVAE, "loss", failing_loss)
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1/2, step 4"):
        train(config, data, tmp_path / "run", torch.device("cpu"), checkpoint_every=2, show_progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--model", "ccvae", "--dataset", "cifar"], "unknown data set 'cifar'"),
    (["train", "--model", "vqvae"], "unknown model 'vqvae'"),
    (["train", "--model", "ccvae", "--f", "1.5"], "outside (0, 1]"),
    (["train", "--model", "ccvae", "--preset", "huge"], "invalid choice: 'huge'"),
    (["train", "--model", "ccvae", "--dataset", "celeba"], "needs --data-root"),
    (["train", "--model", "ccvae", "--dataset", "celeba", "--data-root", "/nonexistent"], "does not exist"),
    (["run"], "say --all"),
    (["run", "--all", "--fs", "0.1,x"], "not a comma-separated list"),
    (["check", "--stored", "/nonexistent"], "no stored results at /nonexistent"),
    (["eval", "--model", "mccvae", "--checkpoint", "weights.pt", "--dataset", "synthfaces"],
     "--model bench.ccvae:CCVAE --model-option latents_per_label=2"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, message, capsys, tmp_path):
    assert main([*args, "--runs", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1 and "Traceback" not in error


@pytest.mark.slow
def test_run_all_prints_accuracies_beside_the_majority_baseline(tmp_path, cache):
    result = bench("run", "--all", "--models", "ccvae,mccvae", "--fs", "1", "--preset", "smoke", "--epochs", "1",
                   "--no-eval", "--runs", str(tmp_path), "--out", str(tmp_path / "results"), cache=cache)
    assert "majority baseline" in result.stdout and "f=1" in result.stdout and "synthfaces" in result.stdout
    assert "mccvae" in result.stdout
    assert (tmp_path / "results" / "results.csv").exists()
    config = json.loads((tmp_path / "synthfaces" / "mccvae" / "f=1" / "seed=0" / "config.json").read_text())
    assert config["model_options"]["latents_per_label"] == 2
    run_dir = tmp_path / "synthfaces" / "ccvae" / "f=1" / "seed=0"
    (run_dir / "eval").mkdir()
    for name in EVALUATORS:
        (run_dir / "eval" / f"{name}.json").write_text("{}")
    grid = ["run", "--models", "ccvae", "--fs", "1", "--preset", "smoke", "--epochs", "1", "--runs", str(tmp_path),
            "--dry-run"]
    assert "done  synthfaces/ccvae/f=1/seed=0" in bench(*grid, cache=cache).stdout
    another_seed = bench(*grid, "--eval-seeds", "0,1", cache=cache).stdout  # eval/seed=1/ is not written yet
    assert "evaluate  synthfaces/ccvae/f=1/seed=0" in another_seed


def test_importing_the_suite_turns_on_mkl_strict_reproducibility_unless_the_user_chose_a_mode():
    """Without it, on an AVX-512 CPU the same evaluation differed in its 7th digit between `bench run` and a fresh
    `bench eval` (the test of `bench eval` compares the two exactly)."""
    code = "import os, bench; print(os.environ['MKL_CBWR'])"
    environment = {key: value for key, value in os.environ.items() if key != "MKL_CBWR"}
    chosen = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True)
    kept = subprocess.run([sys.executable, "-c", code], env={**environment, "MKL_CBWR": "COMPATIBLE"},
                          capture_output=True, text=True, check=True)
    assert chosen.stdout.strip() == "AUTO,STRICT" and kept.stdout.strip() == "COMPATIBLE"


def test_a_step_budget_gives_every_model_and_rate_the_same_steps_and_labelled_share():
    from bench.models import MODELS
    from bench.presets import PRESETS

    steps = PRESETS["claims"].optimiser_steps
    configs = [make_config(model, "synthfaces", f, 0, "claims") for model in MODELS for f in (0.004, 0.06, 0.2, 1)]
    assert {(c.optimiser_steps, c.labelled_share, c.epochs) for c in configs} == {(steps, 0.5, None)}
    labelled, unlabelled = np.arange(40), np.arange(40, 1000)
    schedule = step_schedule(labelled, unlabelled, 20, 3, 0.5, 0, 100)
    assert len(schedule) == 100 and sum(batch.labelled for batch in schedule) == 50
    assert all(len(batch.indices) == 20 for batch in schedule)
    assert all(set(batch.indices.tolist()) <= set((labelled if batch.labelled else unlabelled).tolist())
               for batch in schedule)
    everything = step_schedule(np.arange(1000), np.arange(0), 20, 3, 0.5, 0, 100)  # f = 1: fully supervised
    assert len(everything) == 100 and all(batch.labelled for batch in everything)


def test_a_step_schedule_is_a_function_of_the_step_alone_and_uses_each_image_once_per_pass():
    labelled, unlabelled = np.arange(30), np.arange(30, 230)
    whole = step_schedule(labelled, unlabelled, 20, 1, 0.5, 0, 60)
    parts = step_schedule(labelled, unlabelled, 20, 1, 0.5, 0, 25) + step_schedule(labelled, unlabelled, 20, 1,
                                                                                    0.5, 25, 60)
    assert all(torch.equal(a.indices, b.indices) and a.labelled == b.labelled for a, b in zip(whole, parts,
                                                                                            strict=True))
    unsupervised = torch.cat([batch.indices for batch in whole if not batch.labelled])  # 30 batches: 3 passes
    for start in range(0, 600, 200):
        assert sorted(unsupervised[start:start + 200].tolist()) == list(range(30, 230))
    supervised = torch.cat([batch.indices for batch in whole if batch.labelled])  # 600 draws of 30 images
    assert sorted(supervised[:30].tolist()) == list(range(30))
    assert not torch.equal(supervised[:30], supervised[30:60])  # each pass reshuffled


def test_a_step_budget_run_records_its_steps_in_its_metrics_and_log(tmp_path, cache):
    config = make_config("ccvae", "synthfaces", 1.0, 0, "smoke", optimiser_steps=30, model_options={"style_dim": 4})
    data = load("synthfaces", cache_dir=cache, options=config.dataset_options)
    metrics = train(config, data, tmp_path / "run", torch.device("cpu"), show_progress=False)
    assert (metrics["optimiser_steps"], metrics["labelled_steps"], metrics["epochs"]) == (30, 30, None)  # f = 1
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    assert log.steps.tolist() == [30]
    with pytest.raises(BenchError, match="--epochs or --steps"):
        make_config("ccvae", "synthfaces", 1.0, 0, "smoke", epochs=2, optimiser_steps=30)
    with pytest.raises(BenchError, match="needs a preset with a labelled share"):
        make_config("ccvae", "synthfaces", 1.0, 0, "paper", optimiser_steps=30)


def test_a_column_says_how_many_images_were_labelled_where_a_minimum_count_raised_f():
    from bench.tables import f_header

    shares = pd.DataFrame({"f": [0.004, 0.2], "n_labelled": [100, 4000], "labelled_fraction": [0.005, 0.2]})
    assert f_header(0.004, shares) == "f=0.004 (100 labelled, 0.5 %)"
    assert f_header(0.2, shares) == "f=0.2"
    assert f_header(1.0, shares) == "f=1"  # not recorded (an older stored set)
