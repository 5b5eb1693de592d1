"""`fid` (Table 4): Fréchet distances between generated and real test images.

N images are generated, one per label vector drawn from the test set (as `conditional`), and
compared with N real test images (N = min(its budget's samples, test set size), recorded).
Two different numbers are reported, never mixed up:

- `fid`: pytorch-fid's FID Inception network (2048-dimensional pool features; images resized to
  299×299 by pytorch-fid, grey images repeated to three channels). The weights
  (`pt_inception-2015-12-05-6726825d.pth`) are taken from an explicit `--fid-weights` file, else
  from torch's hub cache (`torch.hub.get_dir()/checkpoints`), else downloaded there. Where none
  of these works, `fid` is null and `fid_unavailable` says why; the evaluation goes on.
- `oracle_frechet`: the same Fréchet distance in the oracle's 128-dimensional penultimate
  feature space. It needs no download and exists for every data set (the paper omits CheXpert's
  FID because Inception never saw X-rays), but it is *not* FID and is not comparable with it.

Both use pytorch-fid's `calculate_frechet_distance`:
d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2}).

Every result records where its FID was measured (`extractor`): the weights file and its SHA-256, the resize
path (pytorch-fid's bilinear resize to 299×299 inside the network, inputs scaled from [0, 1] to [−1, 1]), N and
the dtypes (float32 features, float64 statistics): FIDs from another extractor or N are not comparable.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch

from bench.budgets import Budget, EvalSettings
from bench.files import atomic_torch_save, atomic_write_text, cached_build
from bench.metrics import Metric, Tolerance
from evaluators.common import NO_RESOURCES, Evaluator, Resources, batched, device_of, float_images, sample_test_indices

if TYPE_CHECKING:
    from bench.data.base import LabelledImages

INCEPTION_DIMENSION = 2048  # pool features: fewer images than this leave their covariance rank-deficient


def pytorch_fid_inception() -> ModuleType:
    """pytorch-fid's Inception module, imported where it is used: importing it imports torchvision (~2 s), which
    the suite's light commands (`bench list`, `claims`, `check`, `tables`) and most of its processes do without."""
    from pytorch_fid import inception

    return inception


def weights_name() -> str:
    """The file name pytorch-fid gives its weights in torch's hub cache."""
    return Path(pytorch_fid_inception().FID_WEIGHTS_URL).name


class InceptionUnavailable(RuntimeError):
    """The FID Inception weights could not be found or downloaded."""


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are samples) in float64."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(first: np.ndarray, second: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D) and (M, D)."""
    from pytorch_fid.fid_score import calculate_frechet_distance
    from scipy.linalg import LinAlgWarning

    with warnings.catch_warnings():
        # a rank-deficient covariance (a generator that renders one image, fewer samples than dimensions) makes
        # the product singular: scipy warns, yet the square root's trace is right (to 1e-9 of the eigenvalue
        # formula, tests/test_evaluators.py); and pytorch-fid still passes scipy's deprecated `disp`
        warnings.filterwarnings("ignore", category=LinAlgWarning)
        warnings.filterwarnings("ignore", message="The `disp` argument is deprecated", category=DeprecationWarning)
        return float(calculate_frechet_distance(*gaussian_statistics(first), *gaussian_statistics(second)))


def hub_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / weights_name()


def weights_file(weights: str | Path | None) -> Path:
    """The FID weights file: --fid-weights where given, else torch's hub cache."""
    return Path(weights).expanduser() if weights is not None else hub_weights_path()


@contextmanager
def hub_holding(weights: Path) -> Iterator[None]:
    """torch's hub directory, for the block, is a temporary one whose checkpoints/ holds `weights` under the
    name pytorch-fid asks for: pytorch-fid reads its weights from the hub and takes no file of its own."""
    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "checkpoints").mkdir()
        (Path(folder) / "checkpoints" / weights_name()).symlink_to(weights.resolve())
        torch.hub.set_dir(folder)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)


def load_inception(weights: str | Path | None, device: torch.device) -> torch.nn.Module:
    """pytorch-fid's InceptionV3 (2048-d pool block) with the FID weights; InceptionUnavailable if none."""
    fid_inception = pytorch_fid_inception()
    block = [fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InceptionUnavailable(f"--fid-weights {path} does not exist")
        with hub_holding(path):
            network = fid_inception.InceptionV3(block)
    else:
        try:
            network = fid_inception.InceptionV3(block)
        except Exception as error:  # offline, proxy, corrupt file: all say the same to the user
            raise InceptionUnavailable(
                f"FID weights not in {hub_weights_path()} and not downloadable ({type(error).__name__}); "
                f"download {fid_inception.FID_WEIGHTS_URL} there or pass --fid-weights FILE") from error
    return network.to(device, memory_format=torch.channels_last).eval()  # 1.5× faster on CPU (oneDNN)


def save_random_weights(path: Path) -> Path:
    """A weights file with the FID Inception's parameter layout and random values (torchvision's trunk, 1008
    classes): the network's shape and cost without its weights, for timing and tests where they are absent."""
    network = pytorch_fid_inception()._inception_v3(num_classes=1008, aux_logits=False, weights=None,
                                                    init_weights=False)
    torch.save(network.state_dict(), path)
    return path


def random_weights_stand_in(resources: Resources, scratch: Path, device: torch.device) -> tuple[Resources, str]:
    """For `bench perf`: the resources as given where the FID weights file is (--fid-weights, or torch's hub
    cache); otherwise Inception with random weights (the same network and cost), saved in `scratch`, and a note
    saying so. Only the file is looked for: the evaluator loads the network once, inside the timing."""
    if weights_file(resources.fid_weights).is_file():
        return resources, ""
    random_weights = save_random_weights(scratch / weights_name())
    return replace(resources, fid_weights=random_weights), "Inception with random weights (FID weights not found)"


@functools.lru_cache(maxsize=4)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extractor_record(weights: str | Path | None, n: int) -> dict:
    """What a FID depends on besides the images: the Inception weights (file, SHA-256), the resize path, N, dtypes."""
    path = weights_file(weights)
    stat = path.stat()
    return {"weights": str(path.resolve()), "sha256": _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns),
            "network": "pytorch-fid InceptionV3, 2048-d pool features",
            "resize": "bilinear to 299×299 inside the network (resize_input), [0, 1] scaled to [−1, 1]",
            "n": n, "features_dtype": "float32", "statistics_dtype": "float64"}


def inception_features(network: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(B, 2048) pool features of images in [0, 1]; grey images are repeated to RGB."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return network(images.contiguous(memory_format=torch.channels_last))[0].flatten(1)


def kernel_inception_distance(first: np.ndarray, second: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): the unbiased MMD² between two feature sets (N, D) and (M, D) with the
    cubic polynomial kernel k(x, y) = (x·y / D + 1)³, averaged over `subsets` random subsets of
    min(subset_size, N, M) rows of each; returns its mean and its standard deviation over the subsets."""
    generator = np.random.default_rng(seed)
    size = min(subset_size, len(first), len(second))
    dimension = first.shape[1]
    values = []
    for _ in range(subsets):
        x = first[generator.choice(len(first), size, replace=False)]
        y = second[generator.choice(len(second), size, replace=False)]
        k_xx, k_yy, k_xy = ((a @ b.T / dimension + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (size * (size - 1))
        values.append(within - 2 * k_xy.mean())
    return float(np.mean(values)), float(np.std(values))


def real_features(network: torch.nn.Module, real: torch.Tensor, cache: Path | None, device: torch.device,
                  batch_size: int) -> np.ndarray:
    """Inception features of the real test images: computed once per data set, sample and weights, and cached
    at `cache` (the same real images serve every model of the data set)."""
    def build() -> torch.Tensor:
        return batched(lambda x: inception_features(network, x.to(device)).cpu(), real, batch_size=batch_size)

    features = build() if cache is None else cached_build(
        cache, build, atomic_torch_save, lambda path: torch.load(path, weights_only=True), "real images' features")
    return features.double().numpy()  # float64 whether computed or read back: the same FID and KID either way


BUDGET = Budget(samples=10_000)  # generated and real test images, each (the paper's scale for FID)


def evaluate(model, data: LabelledImages, oracle, generator: torch.Generator, settings: EvalSettings,
             resources: Resources = NO_RESOURCES, budget: Budget = BUDGET) -> dict:
    if not model.capabilities.generate:
        return {"unavailable": "the model cannot generate conditionally"}
    device = device_of(model)
    real_indices = sample_test_indices(data, budget.samples, generator)
    requested = data.labels[sample_test_indices(data, len(real_indices), generator)].float()
    generated = batched(lambda y: model.generate(y.to(device), 1)[:, 0].cpu(), requested,
                        batch_size=settings.batch_size)
    real = batched(lambda idx: float_images(data, idx, device).cpu(), real_indices, batch_size=settings.batch_size)

    def features(function, images: torch.Tensor) -> np.ndarray:
        return batched(lambda x: function(x.to(device)).cpu(), images, batch_size=settings.batch_size).double().numpy()

    n = len(real_indices)
    result: dict = {"n": n, "oracle_frechet": frechet_distance(features(oracle.features, generated),
                                                               features(oracle.features, real))}
    known_missing = resources.cache_file(".fid-weights-missing") if resources.fid_weights is None else None
    try:
        if known_missing is not None and known_missing.is_file() and not hub_weights_path().is_file():
            raise InceptionUnavailable(known_missing.read_text().strip())  # a download failed once: not again
        network = load_inception(resources.fid_weights, device)
    except InceptionUnavailable as missing:
        if known_missing is not None and not known_missing.is_file():
            atomic_write_text(known_missing, f"{missing}\n")
        return {**result, "fid": None, "fid_unavailable": str(missing), "kid": None, "kid_unavailable": str(missing)}
    if n < INCEPTION_DIMENSION:  # said only where an FID is computed
        result["warning"] = (f"FID on N = {n} < {INCEPTION_DIMENSION} images: its covariance estimate is "
                             "rank-deficient and biased upward; compare FIDs only at equal N (KID is unbiased)")
    cache = None
    if resources.cache is not None:  # one file per weights file, sample size and seed
        weights = (hashlib.sha256(str(Path(resources.fid_weights).resolve()).encode()).hexdigest()[:8]
                   if resources.fid_weights else "hub")
        cache = resources.cache_file(f".fid-{weights}-{n}-{settings.seed}.pt")
    ours = features(lambda x: inception_features(network, x), generated)
    theirs = real_features(network, real, cache, device, settings.batch_size)
    result["fid"] = frechet_distance(ours, theirs)
    result["kid"], result["kid_std"] = kernel_inception_distance(ours, theirs, seed=settings.seed)
    result["extractor"] = extractor_record(resources.fid_weights, n)
    return result


# random real images have the best distances of all: a generator is marked best only where it carries its labels
CARRIES_LABELS = ("conditional.label_gain", 0.05)

EVALUATOR = Evaluator(
    "fid", evaluate,
    metrics=(Metric("fid", "FID", False, Tolerance(1.0, 0.05),
                    "a Fréchet distance of fixed Inception features: moved by the generations only", ".1f", "log",
                    marked_only_if=CARRIES_LABELS),
             Metric("kid", "KID", False, Tolerance(0.002, 0.1),
                    "an unbiased MMD² of the same features, averaged over 100 subsets", ".4f",
                    marked_only_if=CARRIES_LABELS),
             Metric("oracle_frechet", "oracle Fréchet (not FID)", False, Tolerance(1.0, 0.35),
                    "a float-level change of the training arithmetic (channels-last convolutions, the same losses "
                    "to 1e-5) moved the CI grid's oracle Fréchet distances by up to 30 %", ".1f", "log",
                    marked_only_if=CARRIES_LABELS)),
    details=("n", "kid_std", "warning", "extractor"),
    count=("n", "generations"),
    budget=BUDGET,
    stand_in=random_weights_stand_in,
)
