"""Evaluators on inputs whose answer is known, the oracle, and the eval/oracle CLI paths."""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.linalg import sqrtm
from torch import nn

from bench.api import Capabilities, to_float_images
from bench.budgets import Budget, EvalSettings, OracleConfig, ReaderConfig
from bench.cli import main
from bench.config import RunConfig, make_config
from bench.data import load, synthfaces
from bench.data.base import LabelledImages
from bench.evaluate import load_trained_model
from bench.files import atomic_torch_save
from bench.presets import preset
from bench.results import run_rows
from evaluators import fid, ground_truth, interventions, swap
from evaluators.common import Resources
from evaluators.controls import Floor, Renderer
from evaluators.factor_reader import reader_for, reader_r2
from evaluators.oracle import OracleNet, load_or_train_oracle, oracle_accuracy

SETTINGS = EvalSettings(batch_size=16)
SAMPLES = {"pairs": Budget(50), "intervened": Budget(40), "generated": Budget(50), "fid": Budget(6)}


class Fake(nn.Module):
    """A model that only implements what a test needs; `parameters()` gives the device."""

    capabilities = Capabilities()

    def __init__(self, **operations):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        for name, function in operations.items():
            setattr(self, name, function)


def toy_data(labels: np.ndarray, pixels: np.ndarray) -> LabelledImages:
    """Grey 4×4 images whose first row holds `pixels` (0..255), with the given labels; all test."""
    count, size = labels.shape
    images = torch.zeros(count, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, :size] = torch.as_tensor(pixels, dtype=torch.uint8)
    index = np.arange(count)
    return LabelledImages("toy", images, torch.as_tensor(labels, dtype=torch.float32),
                          tuple(f"l{i}" for i in range(size)), "multilabel",
                          {"train": index, "valid": index[:0], "test": index})


class PixelOracle:
    """p_oracle(y_j = 1 | x) = the first row's pixel j, exactly."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The logits: log p − log(1 − p)."""
        p = x[:, 0, 0, : self.size].double()
        return (p.log() - (1 - p).log()).to(x.dtype)

    def label_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 0, : self.size].log()

    def log_prob_of(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = x[:, 0, 0, : self.size].double()
        return (y * p.log() + (1 - y) * (1 - p).log()).to(x.dtype)


def test_a_swap_that_returns_the_characteristic_image_scores_zero():
    data = toy_data(np.random.default_rng(0).integers(0, 2, (30, 3)), np.full((30, 3), 128))
    data.images[:, 0, 1] = torch.randint(1, 255, (30, 4), dtype=torch.uint8)  # images differ
    oracle = OracleNet(1, 4, 3, "multilabel").eval()
    perfect = Fake(swap=lambda a, b: a)
    assert swap.evaluate(perfect, data, oracle, torch.Generator().manual_seed(0), SETTINGS,
                         budget=SAMPLES["pairs"])["score"] == 0
    ignoring = Fake(swap=lambda a, b: b)
    assert swap.evaluate(ignoring, data, oracle, torch.Generator().manual_seed(0), SETTINGS,
                         budget=SAMPLES["pairs"])["score"] > 0
    assert swap.swap_score(torch.tensor([[0.0, -1.0]]), torch.tensor([[-2.0, -1.5]])) == pytest.approx(1.25)


def test_an_intervention_that_moves_only_its_label_gives_a_diagonal_matrix_with_the_closed_form_condition():
    steps = torch.tensor([0.1, 0.2, 0.4])  # how far intervening on label i moves p(y_i = ỹ_i): 0.5 → 0.5 + step

    def intervene(x, i, value, stochastic=False):
        changed = torch.full_like(x, 0.5)  # the reconstruction, with only pixel i moved
        changed[:, 0, 0, i] = 0.5 + steps[i] * (2 * value - 1)
        return changed

    labels = np.random.default_rng(1).integers(0, 2, (40, 3))
    data = toy_data(labels, np.full((40, 3), 0))
    half = Fake(intervene=intervene, swap=lambda a, b: torch.full_like(a, 0.5))
    result = interventions.evaluate(half, data, PixelOracle(3), torch.Generator().manual_seed(0), SETTINGS,
                                    budget=SAMPLES["intervened"])
    expected = np.diag(np.log((0.5 + steps.double().numpy()) / 0.5))
    np.testing.assert_allclose(result["matrix"], expected, rtol=1e-5, atol=1e-6)
    assert result["condition_number"] == pytest.approx(np.log(0.9 / 0.5) / np.log(0.6 / 0.5), rel=1e-5)


def exact_moments(mean: np.ndarray, covariance: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Samples whose sample mean and (ddof = 1) covariance are exactly `mean` and `covariance`."""
    draws = np.random.default_rng(seed).standard_normal((count, len(mean)))
    draws -= draws.mean(0)
    whitened = draws @ np.linalg.inv(np.linalg.cholesky(np.cov(draws, rowvar=False))).T
    return mean + whitened @ np.linalg.cholesky(covariance).T


def test_frechet_distance_of_a_rank_deficient_set_is_the_eigenvalue_formula_without_a_warning():
    """A generator that renders one image (zero covariance) or a few directions: scipy's square root of the
    singular product warns, yet its trace is right; the evaluator keeps the number and drops the warning."""
    import warnings

    rng = np.random.default_rng(0)
    real = rng.normal(size=(100, 32))
    one_image, three_directions = np.repeat(rng.normal(size=(1, 32)), 100, 0), rng.normal(size=(100, 3)) @ rng.normal(
        size=(3, 32))
    for generated in (one_image, three_directions):
        mu1, cov1 = generated.mean(0), np.cov(generated, rowvar=False)
        mu2, cov2 = real.mean(0), np.cov(real, rowvar=False)
        values, vectors = np.linalg.eigh(cov1)
        root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T  # Σ1^½, Σ1 positive semi-definite
        trace_root = np.sqrt(np.clip(np.linalg.eigvalsh(root @ cov2 @ root), 0, None)).sum()  # tr (Σ1 Σ2)^½
        expected = ((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * trace_root
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert fid.frechet_distance(generated, real) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_of_two_gaussians_equals_the_closed_form():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    cov1, cov2 = a @ a.T + np.eye(4), b @ b.T + 0.5 * np.eye(4)
    mu1, mu2 = rng.standard_normal(4), rng.standard_normal(4)
    root1 = sqrtm(cov1).real
    closed = np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * sqrtm(root1 @ cov2 @ root1).real)
    computed = fid.frechet_distance(exact_moments(mu1, cov1, 500, 0), exact_moments(mu2, cov2, 700, 1))
    assert computed == pytest.approx(closed, rel=1e-6)
    same = exact_moments(mu1, cov1, 300, 3)
    assert fid.frechet_distance(same, same) == pytest.approx(0, abs=1e-6)


def test_kernel_inception_distance_is_the_unbiased_mmd_with_the_cubic_kernel():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((30, 4)), rng.standard_normal((30, 4)) + 0.8

    def kernel(a, b):
        return (a @ b / 4 + 1) ** 3

    def mmd2(a, b):  # term by term, as Bińkowski et al. write it
        m = len(a)
        within = sum(kernel(a[i], a[j]) + kernel(b[i], b[j]) for i in range(m) for j in range(m) if i != j)
        return within / (m * (m - 1)) - 2 * sum(kernel(a[i], b[j]) for i in range(m) for j in range(m)) / m**2

    mean, spread = fid.kernel_inception_distance(x, y, subsets=1, subset_size=30)
    assert mean == pytest.approx(mmd2(x, y), rel=1e-10) and spread == 0
    same = fid.kernel_inception_distance(rng.standard_normal((400, 4)), rng.standard_normal((400, 4)), subsets=20,
                                         subset_size=200)
    shifted = fid.kernel_inception_distance(x, y, subsets=20, subset_size=20)
    assert abs(same[0]) < 3 * same[1] + 1e-3 and shifted[0] > 10 * abs(same[0])


def random_inception_state(*args, **kwargs) -> dict:
    """The FID Inception's parameter layout with random values (torchvision's trunk, 1008 classes)."""
    return fid.pytorch_fid_inception()._inception_v3(num_classes=1008, aux_logits=False, weights=None,
                                                     init_weights=False).state_dict()


@pytest.mark.slow
def test_inception_path_runs_with_random_weights_and_reports_missing_weights(tmp_path, monkeypatch):
    weights = tmp_path / fid.weights_name()
    torch.save(random_inception_state(), weights)
    labels = np.random.default_rng(3).integers(0, 2, (12, 2))
    data = toy_data(labels, np.random.default_rng(4).integers(0, 255, (12, 2)))
    model = Fake(generate=lambda y, n: torch.rand(len(y), n, 1, 4, 4))
    oracle = OracleNet(1, 4, 2, "multilabel").eval()
    network = fid.load_inception(weights, torch.device("cpu"))
    assert fid.inception_features(network, torch.rand(2, 1, 32, 32)).shape == (2, 2048)
    cached = Resources(cache=tmp_path / "real.pt", fid_weights=weights)
    result = fid.evaluate(model, data, oracle, torch.Generator().manual_seed(0), SETTINGS, cached, SAMPLES["fid"])
    assert result["n"] == 6 and np.isfinite(result["fid"]) and np.isfinite(result["oracle_frechet"])
    assert np.isfinite(result["kid"]) and result["kid_std"] >= 0 and "N = 6 < 2048" in result["warning"]
    tag = hashlib.sha256(str(weights.resolve()).encode()).hexdigest()[:8]
    features = tmp_path / f"real.fid-{tag}-6-0.pt"  # one file per weights file, N and seed
    assert fid.EVALUATOR.problems(result) == [] and features.is_file()
    extractor = result["extractor"]  # where this FID was measured
    assert extractor["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest() and extractor["n"] == 6
    assert extractor["weights"] == str(weights.resolve()) and "299" in extractor["resize"]
    assert torch.load(features, weights_only=True).shape == (6, 2048)  # the real images' features
    network = fid.load_inception(weights, torch.device("cpu"))
    real = torch.rand(6, 1, 4, 4)
    fresh = fid.real_features(network, real, tmp_path / "fresh.pt", torch.device("cpu"), 4)
    cached = fid.real_features(network, real, tmp_path / "fresh.pt", torch.device("cpu"), 4)
    assert fresh.dtype == cached.dtype == np.float64  # computed or read back: the same precision, the same FID
    np.testing.assert_array_equal(cached, fresh)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(fid.pytorch_fid_inception(), "load_state_dict_from_url", offline)
    missing = fid.evaluate(model, data, oracle, torch.Generator().manual_seed(0), SETTINGS, budget=SAMPLES["fid"])
    assert missing["fid"] is None and "--fid-weights" in missing["fid_unavailable"] and missing["kid"] is None
    assert np.isfinite(missing["oracle_frechet"])
    assert "warning" not in missing  # no warning about a number that was not computed
    monkeypatch.setattr(fid.torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))  # the weights are absent
    tries = []
    monkeypatch.setattr(fid, "load_inception", lambda *args: tries.append(1) or (_ for _ in ()).throw(
        fid.InceptionUnavailable("FID weights not in the hub and not downloadable")))
    shared = Resources(cache=tmp_path / "oracle.pt")  # what every run of a sweep shares: one failed try, then none
    for _ in range(3):
        again = fid.evaluate(model, data, oracle, torch.Generator().manual_seed(0), SETTINGS, shared, SAMPLES["fid"])
        assert again["fid"] is None and "not downloadable" in again["fid_unavailable"]
    assert len(tries) == 1


def test_perf_times_fid_with_the_weights_found_and_random_ones_only_where_there_are_none(tmp_path, monkeypatch):
    given = tmp_path / "given.pth"
    given.write_bytes(b"weights")  # only looked for: the evaluator loads the network itself, inside the timing
    resources = Resources(fid_weights=given)
    assert fid.random_weights_stand_in(resources, tmp_path, torch.device("cpu")) == (resources, "")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # an empty hub cache
    stand_in, note = fid.random_weights_stand_in(Resources(), tmp_path, torch.device("cpu"))
    assert "random weights" in note and Path(stand_in.fid_weights).is_file()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    fid.hub_weights_path().write_bytes(b"weights")  # the hub's file, as pytorch-fid downloads it
    assert fid.random_weights_stand_in(Resources(), tmp_path, torch.device("cpu")) == (Resources(), "")


@pytest.fixture(scope="module")
def ci_data(ci_cache):
    """synthfaces at the ci preset, in the session's cache (so its oracle is trained once per session)."""
    options = make_config("ccvae", "synthfaces", 1.0, 0, "ci").dataset_options
    return load("synthfaces", cache_dir=ci_cache, options=options), options, ci_cache


def test_ground_truth_scores_a_model_that_holds_the_true_characteristics(ci_data):
    data, _, _ = ci_data
    labels = len(data.label_names)
    renderer = Renderer(data)

    def truth(x):  # the factors each test image was rendered from
        return torch.from_numpy(renderer.factors_of(x))

    exact = Fake(characteristic=lambda x: (-3 * truth(x)[:, :labels]).unsqueeze(-1))  # reversed: orientation
    exact.capabilities = Capabilities(swap=False, intervene=False)
    result = ground_truth.evaluate(exact, data, None, torch.Generator().manual_seed(0), SETTINGS)
    assert result["capture"] == pytest.approx(1.0)
    assert abs(result["leakage_r2"]) < 0.05
    leaky = Fake(characteristic=lambda x: truth(x)[:, labels:].unsqueeze(1).expand(-1, labels, -1))  # context
    leaky.capabilities = Capabilities(swap=False, intervene=False)
    assert ground_truth.evaluate(leaky, data, None, torch.Generator().manual_seed(0), SETTINGS)["leakage_r2"] > 0.99
    none = Fake(characteristic=lambda x: None)
    none.capabilities = Capabilities(characteristic=False, swap=False, intervene=False)
    missing = ground_truth.evaluate(none, data, None, torch.Generator(), SETTINGS)
    assert missing["capture"] is None and "no characteristic coordinates" in missing["capture_unavailable"]
    assert missing["swap_error"] is None and "cannot swap" in missing["swap_error_unavailable"]
    constant = Fake(characteristic=lambda x: torch.zeros(len(x), labels, 1))
    constant.capabilities = Capabilities(swap=False, intervene=False)
    flat = ground_truth.evaluate(constant, data, None, torch.Generator().manual_seed(0), SETTINGS)
    assert flat["capture"] is None and "constant within a class" in flat["capture_unavailable"]  # not NaN
    assert ground_truth.EVALUATOR.problems(flat) == []


def test_ground_truth_reads_the_true_answers_once_per_evaluation_seed_and_the_cache_changes_nothing(
        ci_data, tmp_path, monkeypatch):
    data = ci_data[0]
    cached = Resources(cache=tmp_path / "oracle.pt")
    budget = ground_truth.GroundTruthBudget(60, reader=ReaderConfig(steps=3, batch_size=20))

    def judged(resources: Resources, seed: int = 0) -> dict:
        result = ground_truth.evaluate(Floor(data), data, None, torch.Generator().manual_seed(seed), SETTINGS,
                                       resources, budget)
        return {key: result[key] for key in ("swap_error", "intervention_error", "reconstruction_error")}

    fresh = judged(Resources())  # nothing cached: the reader trained afresh (the same seed), the answers read afresh
    assert judged(cached) == fresh and len(list(tmp_path.glob("oracle.truth-*.pt"))) == 1
    monkeypatch.setattr(ground_truth, "read_truth", lambda *args: pytest.fail("the true answers were read again"))
    assert judged(cached) == fresh  # from the cache, the same numbers
    monkeypatch.undo()
    judged(cached, seed=1)  # other test images: their own readings
    assert len(list(tmp_path.glob("oracle.truth-*.pt"))) == 2


def test_the_factor_reader_learns_unit_scale_factors_and_is_cached(tmp_path):
    data = synthfaces.build(None, 200, 10, 100, seed=0, image_size=32)
    unit = synthfaces.unit_factors(data.factors.numpy())
    assert unit.min() >= 0 and unit.max() <= 1 and unit[:, 0].min() < 0.05 < 0.95 < unit[:, 0].max()
    labels = synthfaces.labels_from_factors(data.factors.numpy())
    for i in range(len(synthfaces.LABELS)):  # each label is its unit characteristic above the unit threshold
        assert np.array_equal(labels[:, i] == 1, unit[:, i] > synthfaces._unit_threshold(i))
    config, cache = ReaderConfig(steps=3, batch_size=20), tmp_path / "oracle" / "smoke.reader.pt"
    reader, record = reader_for(data, synthfaces, cache, config, torch.device("cpu"))
    assert len(record["test_r2_per_factor"]) == len(data.factor_names) and len(list(cache.parent.glob("*.pt"))) == 1
    again, record_again = reader_for(data, synthfaces, cache, config, torch.device("cpu"))
    assert record_again == record
    pairs = zip(reader.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert np.mean(reader_r2(reader, data, synthfaces)) == pytest.approx(record["test_r2"])


@pytest.mark.slow
def test_the_oracle_is_accurate_on_the_ci_data_and_cached(ci_data):
    data, options, cache = ci_data
    net, record = load_or_train_oracle(data, options, torch.device("cpu"), cache, preset("ci").oracle)
    assert record["test_accuracy"] >= 0.95 > record["majority_accuracy"]
    assert oracle_accuracy(net, data) == pytest.approx(record["test_accuracy"])
    again, record_again = load_or_train_oracle(data, options, torch.device("cpu"), cache,
                                               preset("ci").oracle)
    assert record_again == record
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True))


def test_the_oracle_is_the_same_whatever_thread_count_its_caller_runs_with():
    """It is fitted on one thread (a float reduction's order depends on the thread count), so a sweep's worker
    on one thread and `bench oracle` on every core build the same one; the caller's setting is restored."""
    from evaluators.oracle import train_oracle

    rng = np.random.default_rng(3)
    data = toy_data(rng.integers(0, 2, (64, 3)), rng.integers(0, 256, (64, 3)))
    data = LabelledImages(data.name, torch.nn.functional.pad(data.images, (6, 6, 6, 6)), data.labels, data.label_names,
                          data.task, data.splits)  # 16×16: the oracle's stem wants at least that
    before = torch.get_num_threads()
    fits = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        fits.append(train_oracle(data, OracleConfig(steps=3, batch_size=32), torch.device("cpu"), False))
        assert torch.get_num_threads() == threads
    torch.set_num_threads(before)
    pairs = zip(fits[0].state_dict().values(), fits[1].state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_eval_cli_writes_every_evaluator_and_the_figures(ci_runs, ci_cache, tmp_path, capsys):
    run_dir = tmp_path / "ccvae"  # a copy of the CI grid's CCVAE run, its evaluations removed
    shutil.copytree(ci_runs / "synthfaces" / "ccvae" / "f=0.06" / "seed=0", run_dir)
    shutil.rmtree(run_dir / "eval")
    assert main(["eval", str(run_dir), "--cache-dir", str(ci_cache)]) == 0
    written = {path.stem for path in (run_dir / "eval").glob("*.json")}
    assert written == {"classification", "swap", "interventions", "conditional", "fid", "ground_truth", "mutual_info"}
    assert "unavailable" in json.loads((run_dir / "eval" / "mutual_info.json").read_text())  # multi-label data
    figures = {path.name for path in (run_dir / "eval" / "figures").iterdir()}
    assert {"interventions.png", "swaps.png", "conditional.png", "traversals.png",
            "intervention_variance.png"} <= figures
    matrix = np.array(json.loads((run_dir / "eval" / "interventions.json").read_text())["matrix"])
    assert matrix.shape == (7, 7) and np.all(matrix >= 0)
    evaluated_by_run = json.loads((ci_runs / "synthfaces" / "ccvae" / "f=0.06" / "seed=0" / "eval" / "swap.json")
                                  .read_text())
    before = json.loads((run_dir / "eval" / "swap.json").read_text())
    assert before["score"] == evaluated_by_run["score"]  # `bench run` and `bench eval` evaluate alike
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--only", "swap", "--cache-dir", str(ci_cache)]) == 0  # same seeds
    after = json.loads((run_dir / "eval" / "swap.json").read_text())
    assert after["score"] == before["score"] and "swap: score" in capsys.readouterr().out
    assert main(["eval", str(run_dir), "--only", "swap", "--eval-seeds", "0,1", "--cache-dir", str(ci_cache)]) == 0
    other = json.loads((run_dir / "eval" / "seed=1" / "swap.json").read_text())
    assert other["score"] != before["score"] and other["pairs"] == before["pairs"]  # other pairs, as many
    assert not (run_dir / "eval" / "seed=1" / "figures").exists()  # the figures show the preset's seed
    rows = pd.DataFrame(run_rows(run_dir)).query("metric == 'swap.score'").set_index("eval_seed")["value"]
    assert rows.to_dict() == {0: before["score"], 1: other["score"]}
    assert main(["oracle", "--dataset", "synthfaces", "--preset", "ci", "--cache-dir", str(ci_cache)]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_a_model_saved_by_torch_save_is_evaluated_as_its_run_directory_is(ci_runs, ci_cache, tmp_path, capsys):
    trained = ci_runs / "synthfaces" / "ccvae" / "f=0.06" / "seed=0"
    config = RunConfig.from_json((trained / "config.json").read_text())
    data = load("synthfaces", cache_dir=ci_cache, options=config.dataset_options)
    model = load_trained_model(config, data, trained, torch.device("cpu"))
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    torch.save(model, tmp_path / "whole.pt")
    grid = ["--dataset", "synthfaces", "--preset", "ci", "--only", "classification,swap", "--f", "0.06",
            "--runs", str(tmp_path / "runs"), "--cache-dir", str(ci_cache)]
    capsys.readouterr()
    assert main(["eval", "--model", "bench.ccvae:CCVAE", "--checkpoint", str(tmp_path / "whole.pt"), "--name",
                 "whole", *grid]) == 2  # a whole module is code: refused unless trusted
    error = capsys.readouterr().err.strip()
    assert "--trust-checkpoint" in error and len(error.splitlines()) == 1, error
    for name, checkpoint, trust in (("mine", "weights.pt", []), ("whole", "whole.pt", ["--trust-checkpoint"])):
        assert main(["eval", "--model", "bench.ccvae:CCVAE", "--checkpoint", str(tmp_path / checkpoint),
                     "--name", name, *trust, *grid]) == 0
        for evaluator in ("classification", "swap"):
            ours = json.loads((trained / "eval" / f"{evaluator}.json").read_text())
            theirs = json.loads((tmp_path / "runs" / "synthfaces" / name / "f=0.06" / "seed=0" / "eval" /
                                 f"{evaluator}.json").read_text())
            assert theirs == {**ours, "seconds": theirs["seconds"]}  # the same numbers
    rows = {row["model"] for row in run_rows(tmp_path / "runs" / "synthfaces" / "mine" / "f=0.06" / "seed=0")}
    assert rows == {"mine (evaluated only)"}
    capsys.readouterr()
    m2 = RunConfig.from_json((ci_runs / "synthfaces" / "m2" / "f=0.06" / "seed=0" / "config.json").read_text())
    torch.save(load_trained_model(m2, data, trained.parent.parent.parent / "m2" / "f=0.06" / "seed=0",
                                  torch.device("cpu")).state_dict(), tmp_path / "m2.pt")
    for model_class, checkpoint, message in (
            ("torch.nn:Identity", "weights.pt", "lacks the interface member(s) loss, classify"),
            ("bench.ccvae:CCVAE", "m2.pt", "does not match bench.ccvae:CCVAE"),
            ("bench.ccvae:Nothing", "weights.pt", "has no class 'Nothing'"),
            ("bench.ccvae:CCVAE", "absent.pt", "not found")):
        assert main(["eval", "--model", model_class, "--checkpoint", str(tmp_path / checkpoint), *grid]) == 2
        error = capsys.readouterr().err.strip()
        assert message in error and len(error.splitlines()) == 1, error
    # weights trained at 32×32, loaded for 64×64 images: the message says which size each preset gives
    assert main(["eval", "--model", "bench.ccvae:CCVAE", "--checkpoint", str(tmp_path / "weights.pt"), *grid,
                 "--dataset-option", "image_size=64"]) == 2
    error = capsys.readouterr().err.strip()
    assert "built for 64×64 synthfaces images" in error and "32×32: " in error and "paper" in error, error


@pytest.mark.parametrize(("args", "message"), [
    (["eval", "nowhere"], "is not a run directory"),
    (["eval"], "give a run directory, or a model trained elsewhere"),
    (["eval", "--model", "bench.ccvae:CCVAE"], "needs --checkpoint, --dataset too"),
    (["eval", ".", "--only", "bogus"], "unknown evaluator"),
    (["oracle", "--dataset", "nope"], "unknown data set"),
])
def test_eval_and_oracle_bad_input_is_one_line(args, message, capsys):
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


def test_unfinished_run_is_refused(tmp_path, capsys):
    run_dir = Path(tmp_path)
    config = make_config("ccvae", "synthfaces", 1.0, 0, "smoke")
    (run_dir / "config.json").write_text(config.to_json())
    assert main(["eval", str(run_dir)]) == 2
    assert "has not finished training" in capsys.readouterr().err


def test_mutual_information_closed_forms():
    from evaluators.mutual_info import mutual_information

    agreeing = torch.tensor([[[0.7, 0.3]], [[0.7, 0.3]]])
    assert mutual_information(agreeing).item() == pytest.approx(0, abs=1e-7)
    disagreeing = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # each sample sure, the samples opposed
    assert mutual_information(disagreeing).item() == pytest.approx(np.log(2), rel=1e-6)


def test_gp_mutual_information_is_small_far_from_the_boundary_and_larger_near_it():
    from bench.budgets import GPConfig
    from evaluators.mutual_info import fit_gp_head, mutual_information

    rng = np.random.default_rng(5)
    classes = rng.integers(0, 2, 400)
    features = np.column_stack([(2 * classes - 1) * 3 + 0.5 * rng.standard_normal(400), rng.standard_normal(400)])
    head = fit_gp_head(torch.tensor(features, dtype=torch.float32), torch.as_tensor(classes), 2,
                       GPConfig(inducing_points=20, epochs=40, batch_size=100, lr=0.05))
    probe = torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 0.0]])
    torch.manual_seed(0)
    information = mutual_information(head.class_probability_samples(probe, 256))
    far = information[:2].max()
    assert far < 0.05 and information[2] > 3 * far
    assert head.class_probability_samples(probe, 64).mean(0)[:2].argmax(1).tolist() == [0, 1]


def test_mutual_info_evaluator_runs_on_multiclass_data_and_caches_its_gp(tmp_path):
    from evaluators import mutual_info

    rng = np.random.default_rng(6)
    classes = rng.integers(0, 3, 60)
    data = toy_data(np.eye(3)[classes], rng.integers(0, 255, (60, 3)))
    data = LabelledImages("toy", data.images, data.labels, data.label_names, "multiclass", data.splits)
    model = Fake(generate=lambda y, n: torch.rand(len(y), n, 1, 4, 4))
    oracle = OracleNet(1, 4, 3, "multiclass").eval()
    config = mutual_info.GPConfig(inducing_points=10, epochs=2, batch_size=30)
    cache = tmp_path / "head.gp.pt"
    torch.manual_seed(0)
    first = mutual_info.evaluate(model, data, oracle, torch.Generator().manual_seed(0), SETTINGS,
                                 Resources(cache=tmp_path / "head.pt"), mutual_info.MutualInfoBudget(50, gp=config))
    assert len(list(tmp_path.glob("head.gp-*.pt"))) == 1 and first["n"] == 50
    assert first["generated"] >= 0 and "real" not in first  # real images are a control of their own
    fitted = mutual_info.fit_gp_on_oracle_features(oracle, data, mutual_info.GPConfig(10, 1, 30, seed=3))
    atomic_torch_save(fitted.state_dict(), tmp_path / "head.gp-10-1-30-0.01-3.pt")
    loaded = mutual_info.gp_head_for(oracle, data, cache, mutual_info.GPConfig(10, 1, 30, seed=3))
    features = oracle.features(to_float_images(data.images[:8]))

    def samples(head):
        torch.manual_seed(1)
        return head.class_probability_samples(features, 16)

    assert torch.equal(samples(fitted), samples(loaded))  # read back from the cache, it predicts as fitted
    mutual_info.evaluate(model, data, oracle, torch.Generator().manual_seed(0), SETTINGS,
                         Resources(cache=tmp_path / "head.pt"),
                         mutual_info.MutualInfoBudget(50, gp=mutual_info.GPConfig(inducing_points=10, epochs=1,
                                                                                  batch_size=30)))
    assert len(list(tmp_path.glob("head.gp-*.pt"))) == 3  # each GPConfig has its own head


def corrupt(path: Path) -> None:
    path.write_bytes(b"not a torch file")


def test_every_cache_rebuilds_a_corrupt_file_with_a_warning(tmp_path, capsys):
    """The six caches (data, oracle, factor reader, readings of the true answers, GP head, real images' Inception
    features) all go through `bench.files.cached_build`: a corrupt file is reported in one line and rebuilt."""
    from bench.data import cached
    from evaluators import mutual_info
    from evaluators.ground_truth import truth_readings

    def rebuilt(what: str) -> None:
        err = capsys.readouterr().err
        assert f"the cached {what}" in err and "rebuilding it" in err, err

    small = lambda: synthfaces.build(None, 200, 10, 100, seed=0, image_size=32)  # noqa: E731
    data = cached("synthfaces", {"n": 200}, small, tmp_path)
    (path,) = tmp_path.glob("synthfaces-*.pt")
    corrupt(path)
    assert torch.equal(cached("synthfaces", {"n": 200}, small, tmp_path).images, data.images)
    rebuilt("synthfaces data set")

    config = OracleConfig(steps=3)
    oracle, record = load_or_train_oracle(data, {"n": 200}, torch.device("cpu"), tmp_path, config, False)
    (weights,) = (tmp_path / "oracle").glob("oracle-synthfaces-*.pt")
    corrupt(weights)
    again, record_again = load_or_train_oracle(data, {"n": 200}, torch.device("cpu"), tmp_path, config, False)
    assert record_again == record and all(torch.equal(a, b) for a, b in zip(
        oracle.state_dict().values(), again.state_dict().values(), strict=True))  # the same fit, on one thread
    rebuilt("synthfaces oracle")

    reader_cache = tmp_path / "oracle" / "x.reader.pt"
    reader, reader_record = reader_for(data, synthfaces, reader_cache, ReaderConfig(steps=3, batch_size=20),
                                       torch.device("cpu"), False)
    corrupt(next(reader_cache.parent.glob("x.reader-*.pt")))
    assert reader_for(data, synthfaces, reader_cache, ReaderConfig(steps=3, batch_size=20), torch.device("cpu"),
                      False)[1] == reader_record
    rebuilt("synthfaces factor reader")

    chosen, partner = torch.arange(10), torch.arange(10, 20)
    readings = truth_readings(reader, reader_record, data, synthfaces, chosen, partner, 5, torch.device("cpu"),
                              tmp_path / "x.truth.pt")
    corrupt(next(tmp_path.glob("x.truth-*.pt")))
    assert torch.equal(truth_readings(reader, reader_record, data, synthfaces, chosen, partner, 5,
                                      torch.device("cpu"), tmp_path / "x.truth.pt"), readings)
    rebuilt("synthfaces readings of the true answers")

    rng = np.random.default_rng(6)
    toy = toy_data(np.eye(3)[rng.integers(0, 3, 60)], rng.integers(0, 255, (60, 3)))
    toy = LabelledImages("toy", toy.images, toy.labels, toy.label_names, "multiclass", toy.splits)
    net, gp = OracleNet(1, 4, 3, "multiclass").eval(), mutual_info.GPConfig(inducing_points=10, epochs=1,
                                                                             batch_size=30)
    head = mutual_info.gp_head_for(net, toy, tmp_path / "h.gp.pt", gp)
    corrupt(next(tmp_path.glob("h.gp-*.pt")))
    again = mutual_info.gp_head_for(net, toy, tmp_path / "h.gp.pt", gp)
    assert all(torch.equal(a, b) for a, b in zip(head.state_dict().values(), again.state_dict().values(),
                                                 strict=True))
    rebuilt("toy GP head")

    counting = {"calls": 0}

    class Network(torch.nn.Module):  # stands in for the Inception network: features of its input
        def forward(self, x):
            counting["calls"] += 1
            return [x.flatten(1)[:, :4].reshape(len(x), 4, 1, 1)]

    real = torch.rand(6, 3, 4, 4)
    features = fid.real_features(Network(), real, tmp_path / "real.fid.pt", torch.device("cpu"), 3)
    corrupt(tmp_path / "real.fid.pt")
    np.testing.assert_array_equal(fid.real_features(Network(), real, tmp_path / "real.fid.pt",
                                                    torch.device("cpu"), 3), features)
    rebuilt("real images' features")
    assert counting["calls"] == 4  # built twice (two batches each), never read from a corrupt file
