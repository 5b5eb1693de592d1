"""Independent float64 building blocks (numpy/scipy) for the objective tests."""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import log_expit
from scipy.stats import norm

from bench.api import DataSpec
from bench.characteristic import CharacteristicVAE


def tiny_model(model_class, task: str = "multilabel", k: int = 1, labels: int = 3, style: int = 2, seed: int = 0,
               **options):
    """A float64 model on 1×32×32 images with its small parameters moved off their initial values."""
    torch.manual_seed(seed)
    names = tuple(f"l{i}" for i in range(labels))
    prior = tuple(np.linspace(0.2, 0.7, labels)) if task == "multilabel" else tuple(np.full(labels, 1 / labels))
    spec = DataSpec(image_shape=(1, 32, 32), label_names=names, task=task, label_prior=prior,
                    n_train=1000, n_labelled=60)
    model = model_class(spec, latents_per_label=k, style_dim=style, **options).double()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim <= 3 and parameter.numel() < 200:
                parameter.add_(0.3 * torch.randn_like(parameter))
    return model


def gaussian_kl(loc_q, scale_q, loc_p, scale_p):
    return np.log(scale_p / scale_q) + (scale_q**2 + (loc_q - loc_p) ** 2) / (2 * scale_p**2) - 0.5


def laplace_log_likelihood(x, mean):
    return (-np.abs(x - mean) - np.log(2)).reshape(len(x), -1).sum(1)


def bernoulli_log_prob(y, logits):
    return y * log_expit(logits) + (1 - y) * log_expit(-logits)

def numpy_parts(model: CharacteristicVAE, x: torch.Tensor, noise: torch.Tensor):
    """Encoder/decoder outputs (the networks) and model parameters as float64 numpy arrays."""
    with torch.no_grad():
        loc, scale = (t.numpy() for t in model.encoder(x))
        z = loc + scale * noise.numpy()
        mean = model.decoder(torch.from_numpy(z)).numpy()
    params = {name: p.detach().numpy().copy() for name, p in model.named_parameters()
              if not name.startswith(("encoder", "decoder"))}
    params["prior_scale"] = np.maximum(np.logaddexp(0, params["prior_scale_raw"]), 1e-3)
    params["pi"] = np.clip(model.label_prior.numpy(), 1e-3, 1 - 1e-3)
    return loc, scale, z, mean, params


def reference_common(model, x, z, loc, scale, mean):
    c = model.char_dim
    log_px_z = laplace_log_likelihood(x.numpy(), mean)
    log_qz_x = norm.logpdf(z, loc, scale).sum(1)
    log_pz_style = norm.logpdf(z[:, c:]).sum(1)
    return z[:, :c], log_px_z, log_qz_x, log_pz_style


def reference_label_log_q(params, z_c, y, k):
    """log q(y|z_c) for multi-label data, Σ_i over labels, with the diagonal map w_i·z_c^i + b_i."""
    blocks = z_c.reshape(*z_c.shape[:-1], -1, k)
    logits = (blocks * params["classifier_weight"]).sum(-1) + params["classifier_bias"]
    return bernoulli_log_prob(y, logits).sum(-1)


def reference_log_p_zc_given_y(params, z_c, y, k):
    blocks = z_c.reshape(len(z_c), -1, k)
    index = y.astype(int)
    labels = np.arange(blocks.shape[1])
    locs = params["prior_loc"][labels, index]  # (B, L, k)
    scales = params["prior_scale"][labels, index]
    return norm.logpdf(blocks, locs, scales).sum((1, 2))




def multiclass_logits(params, z_c):
    """Logits of the multi-class q(y|z_c), the Bayes classifier of the class-conditional prior:
    log π_c + Σ_d log N(z_c,d; μ_c,d, σ_c,d) for each class c, (..., C)."""
    return norm.logpdf(z_c[..., None, :], params["prior_loc"], params["prior_scale"]).sum(-1) + np.log(params["pi"])
