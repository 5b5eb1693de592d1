"""M2: objectives against an independent float64 computation, and its gradient estimator."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.special import log_softmax

from baselines.m2 import M2
from bench.api import DataSpec
from tests.reference import bernoulli_log_prob, gaussian_kl, laplace_log_likelihood


def tiny(task="multilabel", labels=3, **options) -> M2:
    torch.manual_seed(0)
    prior = tuple(np.linspace(0.2, 0.7, labels)) if task == "multilabel" else tuple(np.full(labels, 1 / labels))
    spec = DataSpec((1, 32, 32), tuple(f"l{i}" for i in range(labels)), task, prior, n_train=1000, n_labelled=50)
    return M2(spec, style_dim=2, **options).double()


def reference_elbo(model, x, y, noise):
    """ELBO(x, y) from the networks' outputs, assembled in numpy."""
    with torch.no_grad():
        loc, scale = (t.numpy() for t in model.encoder(x, y))
        z = loc + scale * noise.numpy()
        mean = model.decoder(torch.cat([torch.from_numpy(z), y], -1)).numpy()
    pi = np.clip(model.spec.label_prior, 1e-3, 1 - 1e-3)
    yn = y.numpy()
    log_py = (yn * np.log(pi) + (1 - yn) * np.log(1 - pi)).sum(1) if model.multilabel else (yn * np.log(pi)).sum(1)
    return laplace_log_likelihood(x.numpy(), mean) + log_py - gaussian_kl(loc, scale, 0.0, 1.0).sum(1)


def test_supervised_objective_and_alpha():
    model = tiny(alpha_scale=0.1)
    assert model.alpha == pytest.approx(0.1 * 1000 / 50 * 1024 / 784)  # per-pixel weight of 28×28
    assert tiny(pixel_scaled_alpha=False).alpha == pytest.approx(0.1 * 1000 / 50)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 32, 32, generator=generator, dtype=torch.float64)
    y = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float64)
    noise = torch.randn(4, model.latent_dim, generator=generator, dtype=torch.float64)
    elbo, log_qy_x = model.supervised_objective(x, y, noise)
    np.testing.assert_allclose(elbo.detach().numpy(), reference_elbo(model, x, y, noise), rtol=1e-10)
    logits = model.classifier(x).detach().numpy()
    np.testing.assert_allclose(log_qy_x.detach().numpy(), bernoulli_log_prob(y.numpy(), logits).sum(1), rtol=1e-10)


def test_unsupervised_multilabel_value_with_sampled_labels():
    model = tiny()
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 32, 32, generator=generator, dtype=torch.float64)
    noise = torch.randn(2, 3, model.latent_dim, generator=generator, dtype=torch.float64)
    uniform = torch.rand(2, 3, 3, generator=generator, dtype=torch.float64)
    value, surrogate = model.unsupervised_objective(x, noise, uniform)
    logits = model.classifier(x).detach().numpy()
    expected = 0
    for s in range(2):
        y = (uniform[s].numpy() < 1 / (1 + np.exp(-logits))).astype(float)
        expected = expected + reference_elbo(model, x, torch.from_numpy(y), noise[s]) \
            - bernoulli_log_prob(y, logits).sum(1)
    np.testing.assert_allclose(value.detach().numpy(), expected / 2, rtol=1e-10)
    np.testing.assert_allclose(surrogate.detach().numpy(), expected / 2, rtol=1e-10)


def test_unsupervised_multiclass_is_exact_over_classes():
    model = tiny(task="multiclass", labels=4)
    generator = torch.Generator().manual_seed(2)
    x = torch.rand(3, 1, 32, 32, generator=generator, dtype=torch.float64)
    noise = torch.randn(1, 3, model.latent_dim, generator=generator, dtype=torch.float64)
    value, _ = model.unsupervised_objective(x, noise, torch.zeros(1, 3, 4, dtype=torch.float64))
    log_q = log_softmax(model.classifier(x).detach().numpy(), axis=1)
    expected = sum(np.exp(log_q[:, c]) * (reference_elbo(model, x, torch.eye(4, dtype=torch.float64)[c].expand(3, -1),
                                                         noise[0]) - log_q[:, c]) for c in range(4))
    np.testing.assert_allclose(value.detach().numpy(), expected, rtol=1e-10)


@pytest.mark.slow
def test_leave_one_out_gradient_is_unbiased_for_the_classifier():
    model = tiny(labels=2)
    draws = 3000
    x = torch.rand(1, 1, 32, 32, dtype=torch.float64)
    noise = torch.randn(1, 1, model.latent_dim, dtype=torch.float64)
    uniform = torch.rand(2, draws, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    params = list(model.classifier.head.parameters())
    _, surrogate = model.unsupervised_objective(x.expand(draws, -1, -1, -1), noise.expand(2, draws, -1), uniform)
    estimate = torch.cat([g.flatten() for g in torch.autograd.grad(surrogate.mean(), params)])
    exact_value = 0
    for bits in itertools.product([0.0, 1.0], repeat=2):
        y = torch.tensor([bits], dtype=torch.float64)
        log_q = model.label_log_prob(model.classifier(x), y)
        exact_value = exact_value + (log_q.exp() * (model.elbo(x, y, noise[0]) - log_q)).sum()
    exact = torch.cat([g.flatten() for g in torch.autograd.grad(exact_value, params)])
    assert torch.linalg.norm(estimate - exact) < 0.25 * torch.linalg.norm(exact)
