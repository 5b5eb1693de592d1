"""Modified DIVA (C.4): objectives against an independent float64 computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import log_expit, logsumexp
from scipy.stats import norm

from baselines.diva import DIVA
from tests import reference
from tests.reference import numpy_parts, reference_common, reference_label_log_q


def tiny(task="multilabel", k=1, labels=3, **options) -> DIVA:
    return reference.tiny_model(DIVA, task, k, labels, style=2, seed=0, **options)


def inputs(model, batch=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, 32, 32, generator=generator, dtype=torch.float64)
    noise = torch.randn(batch, model.char_dim + model.style_dim, generator=generator, dtype=torch.float64)
    return x, noise


@pytest.mark.parametrize("k", [1, 2])
def test_supervised_objective_matches_float64(k):
    model = tiny(k=k, beta=0.7)
    x, noise = inputs(model)
    y = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float64)

    objective, classifier = model.supervised_objective(x, y, noise)

    loc, scale, z, mean, params = numpy_parts(model, x, noise)
    z_c, log_px_z, _, _ = reference_common(model, x, z, loc, scale, mean)
    c, yn = model.char_dim, y.numpy().astype(int)
    labels = np.arange(3)
    prior_loc = params["prior_loc"][labels, yn].reshape(4, -1)  # (B, L·k)
    prior_scale = params["prior_scale"][labels, yn].reshape(4, -1)
    kl_style = reference.gaussian_kl(loc[:, c:], scale[:, c:], 0.0, 1.0).sum(1)
    kl_c = reference.gaussian_kl(loc[:, :c], scale[:, :c], prior_loc, prior_scale).sum(1)
    np.testing.assert_allclose(objective.detach().numpy(), log_px_z - 0.7 * kl_style - 0.7 * kl_c, rtol=1e-10)
    np.testing.assert_allclose(classifier.detach().numpy(), reference_label_log_q(params, z_c, yn, k), rtol=1e-10)


@pytest.mark.parametrize("k", [1, 2])
def test_unsupervised_objective_sums_each_label_exactly(k):
    model = tiny(k=k, beta=0.7)
    x, noise = inputs(model, seed=1)

    objective = model.unsupervised_objective(x, noise)

    loc, scale, z, mean, params = numpy_parts(model, x, noise)
    z_c, log_px_z, _, _ = reference_common(model, x, z, loc, scale, mean)
    c = model.char_dim
    kl_style = reference.gaussian_kl(loc[:, c:], scale[:, c:], 0.0, 1.0).sum(1)
    log_qzc_x = norm.logpdf(z_c, loc[:, :c], scale[:, :c]).sum(1)
    blocks = z_c.reshape(4, 3, k)
    logits = (blocks * params["classifier_weight"]).sum(-1) + params["classifier_bias"]
    expectation = np.zeros(4)
    for i in range(3):  # label by label, value by value
        for value in (0, 1):
            log_q = log_expit(logits[:, i]) if value else log_expit(-logits[:, i])
            log_p_zc = norm.logpdf(blocks[:, i], params["prior_loc"][i, value], params["prior_scale"][i, value]).sum(-1)
            log_py = np.log(params["pi"][i] if value else 1 - params["pi"][i])
            expectation += np.exp(log_q) * (log_p_zc + log_py - log_q)
    expected = log_px_z - 0.7 * kl_style + 0.7 * (expectation - log_qzc_x)
    np.testing.assert_allclose(objective.detach().numpy(), expected, rtol=1e-10)


def test_unsupervised_objective_equals_brute_force_sum_over_all_label_vectors():
    """The per-label two-state sums equal the full 2^L sum over y of q(y|z_c)(…)."""
    model = tiny(labels=3)
    x, noise = inputs(model, batch=2, seed=2)
    objective = model.unsupervised_objective(x, noise).detach()
    loc, scale = model.encoder(x)
    z = loc + scale * noise
    z_c = model.split(z)[0]
    brute = 0
    for bits in range(8):
        y = torch.tensor([[(bits >> i) & 1 for i in range(3)]] * 2, dtype=torch.float64)
        log_q = model.label_log_prob(z_c, y)
        prior_loc, prior_scale = model.conditional_prior(y)
        log_p = torch.distributions.Normal(prior_loc, prior_scale).log_prob(z_c).sum(-1)
        log_py = model.label_prior_log_prob(y).sum(-1)
        brute = brute + log_q.exp() * (log_p + log_py - log_q)
    rest = objective - model.beta * brute.detach()
    # rest must not depend on y: recompute it from the closed-form pieces
    c = model.char_dim
    log_px_z = torch.distributions.Laplace(model.decoder(z), 1.0).log_prob(x).flatten(1).sum(1)
    kl_style = torch.distributions.kl_divergence(
        torch.distributions.Normal(loc[:, c:], scale[:, c:]), torch.distributions.Normal(0.0, 1.0)).sum(1)
    log_qzc = torch.distributions.Normal(loc[:, :c], scale[:, :c]).log_prob(z_c).sum(1)
    torch.testing.assert_close(rest, (log_px_z - kl_style - log_qzc).detach(), rtol=1e-9, atol=1e-9)


def test_multiclass_objectives_match_float64():
    model = tiny(task="multiclass", labels=4)
    x, noise = inputs(model, batch=3, seed=3)
    objective = model.unsupervised_objective(x, noise)
    loc, scale, z, mean, params = numpy_parts(model, x, noise)
    z_c, log_px_z, _, _ = reference_common(model, x, z, loc, scale, mean)
    c = model.char_dim
    logits = reference.multiclass_logits(params, z_c)
    log_q = logits - logsumexp(logits, axis=1, keepdims=True)
    expectation = sum(
        np.exp(log_q[:, j]) * (norm.logpdf(z_c, params["prior_loc"][j], params["prior_scale"][j]).sum(1)
                               + np.log(params["pi"][j]) - log_q[:, j]) for j in range(4))
    expected = (log_px_z - reference.gaussian_kl(loc[:, c:], scale[:, c:], 0.0, 1.0).sum(1)
                + expectation - norm.logpdf(z_c, loc[:, :c], scale[:, :c]).sum(1))
    np.testing.assert_allclose(objective.detach().numpy(), expected, rtol=1e-10)


def test_alpha_default_keeps_the_original_weight_per_pixel():
    assert tiny().alpha == pytest.approx(3500 * 1024 / 784)
    assert tiny(alpha=5.0).alpha == 5.0
    model = tiny(alpha=2.0)
    x, noise = inputs(model, batch=2)
    y = torch.tensor([[1.0, 0, 1], [0, 1, 0]], dtype=torch.float64)
    torch.manual_seed(0)
    loss, _ = model.loss(x, y)
    torch.manual_seed(0)
    objective, classifier = model.supervised_objective(x, y, torch.randn_like(noise))
    torch.testing.assert_close(loss, -(objective + 2.0 * classifier).mean())
