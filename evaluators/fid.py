"""`fid` (Table 4): Fréchet distances between generated and real test images.

N images are generated, one per label vector drawn from the test set (as `conditional`), and
compared with N real test images (N = min(settings.fid_images, test set size), recorded).
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
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import torch
from pytorch_fid import inception as fid_inception
from pytorch_fid.fid_score import calculate_frechet_distance

from bench.data.base import LabelledImages
from evaluators.common import EvalSettings, batched, float_images, sample_test_indices

WEIGHTS_NAME = Path(fid_inception.FID_WEIGHTS_URL).name


class InceptionUnavailable(RuntimeError):
    """The FID Inception weights could not be found or downloaded."""


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are samples) in float64."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(first: np.ndarray, second: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D) and (M, D)."""
    return float(calculate_frechet_distance(*gaussian_statistics(first), *gaussian_statistics(second)))


def hub_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_NAME


def load_inception(weights: str | Path | None, device: torch.device) -> torch.nn.Module:
    """pytorch-fid's InceptionV3 (2048-d pool block) with the FID weights; InceptionUnavailable if none."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InceptionUnavailable(f"--fid-weights {path} does not exist")
        with mock.patch.object(fid_inception, "load_state_dict_from_url",
                               lambda *args, **kwargs: torch.load(path, map_location="cpu", weights_only=True)):
            network = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
        return network.to(device, memory_format=torch.channels_last).eval()  # 1.5× faster on CPU (oneDNN)
    try:
        network = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    except Exception as error:  # offline, proxy, corrupt file: all say the same to the user
        raise InceptionUnavailable(
            f"FID weights not in {hub_weights_path()} and not downloadable ({type(error).__name__}); "
            f"download {fid_inception.FID_WEIGHTS_URL} there or pass --fid-weights FILE") from error
    return network.to(device, memory_format=torch.channels_last).eval()  # 1.5× faster on CPU (oneDNN)


def inception_features(network: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(B, 2048) pool features of images in [0, 1]; grey images are repeated to RGB."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return network(images.contiguous(memory_format=torch.channels_last))[0].flatten(1)


def evaluate(
    model, data: LabelledImages, oracle, generator: torch.Generator, settings: EvalSettings,
    fid_weights: str | Path | None = None,
) -> dict:
    if not model.capabilities.generate:
        return {"unavailable": "the model cannot generate conditionally"}
    device = next(model.parameters()).device
    real_indices = sample_test_indices(data, settings.fid_images, generator)
    requested = data.labels[sample_test_indices(data, len(real_indices), generator)].float()
    generated = batched(lambda y: model.generate(y.to(device), 1)[:, 0].cpu(), requested,
                        batch_size=settings.batch_size)
    real = batched(lambda idx: float_images(data, idx, device).cpu(), real_indices, batch_size=settings.batch_size)

    def features(function, images: torch.Tensor) -> np.ndarray:
        return batched(lambda x: function(x.to(device)).cpu(), images, batch_size=settings.batch_size).double().numpy()

    result: dict = {"n": len(real_indices),
                    "oracle_frechet": frechet_distance(features(oracle.features, generated),
                                                       features(oracle.features, real))}
    try:
        network = load_inception(fid_weights, device)
    except InceptionUnavailable as missing:
        return {**result, "fid": None, "fid_unavailable": str(missing)}
    result["fid"] = frechet_distance(features(lambda x: inception_features(network, x), generated),
                                     features(lambda x: inception_features(network, x), real))
    return result
