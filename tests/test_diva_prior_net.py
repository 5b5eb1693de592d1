"""Modified DIVA with DIVA's own conditional-prior network: objectives against an independent float64 computation,
and the interface operations reading the network."""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import expit, log_expit
from scipy.stats import norm

from baselines.diva_prior_net import DIVAPriorNet
from bench.models import MODELS, default_models
from tests import reference
from tests.reference import laplace_log_likelihood, reference_label_log_q


def tiny(task="multilabel", k=1, labels=3, **options) -> DIVAPriorNet:
    return reference.tiny_model(DIVAPriorNet, task, k, labels, style=2, seed=0, **options)


def parts(model, x, noise):
    """The networks' outputs and the prior network's weights as float64 numpy, the prior computed in numpy."""
    with torch.no_grad():
        loc, scale = (t.numpy() for t in model.encoder(x))
        z = loc + scale * noise.numpy()
        mean = model.decoder(torch.from_numpy(z)).numpy()
    weights = {name: value.detach().numpy() for name, value in model.prior_net.named_parameters()}

    def prior(y):
        hidden = y @ weights["0.weight"].T + weights["0.bias"]
        hidden = np.where(hidden > 0, hidden, 0.01 * hidden)  # LeakyReLU
        out = hidden @ weights["2.weight"].T + weights["2.bias"]
        loc_p, raw = np.split(out, 2, -1)
        return loc_p, np.maximum(np.logaddexp(0, raw), 1e-3)

    params = {"pi": model.label_prior.numpy().astype(float)}
    if model.multilabel:
        params |= {"classifier_weight": model.classifier_weight.detach().numpy(),
                   "classifier_bias": model.classifier_bias.detach().numpy()}
    return loc, scale, z, mean, prior, params


def inputs(model, batch=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, 32, 32, generator=generator, dtype=torch.float64)
    noise = torch.randn(batch, model.char_dim + model.style_dim, generator=generator, dtype=torch.float64)
    return x, noise


def test_supervised_objective_reads_the_prior_network():
    model = tiny(k=2, beta=0.7)
    x, noise = inputs(model)
    y = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float64)
    objective, classifier = model.supervised_objective(x, y, noise)
    loc, scale, z, mean, prior, params = parts(model, x, noise)
    c = model.char_dim
    prior_loc, prior_scale = prior(y.numpy())
    kl_style = reference.gaussian_kl(loc[:, c:], scale[:, c:], 0.0, 1.0).sum(1)
    kl_c = reference.gaussian_kl(loc[:, :c], scale[:, :c], prior_loc, prior_scale).sum(1)
    expected = laplace_log_likelihood(x.numpy(), mean) - 0.7 * kl_style - 0.7 * kl_c
    np.testing.assert_allclose(objective.detach().numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(classifier.detach().numpy(),
                               reference_label_log_q(params, z[:, :c], y.numpy().astype(int), 2), rtol=1e-10)


def test_unsupervised_objective_with_given_label_samples_and_the_exact_label_kl():
    model = tiny(k=1, beta=0.7)
    x, noise = inputs(model, seed=1)
    label_noise = torch.rand(5, 4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    objective = model.unsupervised_objective(x, noise, label_noise)
    loc, scale, z, mean, prior, params = parts(model, x, noise)
    c = model.char_dim
    z_c = z[:, :c]
    logits = z_c.reshape(4, 3, 1)[..., 0] * params["classifier_weight"][:, 0] + params["classifier_bias"]
    q, pi = expit(logits), params["pi"]
    samples = (label_noise.numpy() < q).astype(float)  # (S, B, L)
    log_pzc_y = np.stack([norm.logpdf(z_c, *prior(sample)).sum(1) for sample in samples])
    kl_y = (q * (np.log(q) - np.log(pi)) + (1 - q) * (np.log(1 - q) - np.log(1 - pi))).sum(1)
    kl_style = reference.gaussian_kl(loc[:, c:], scale[:, c:], 0.0, 1.0).sum(1)
    log_qzc_x = norm.logpdf(z_c, loc[:, :c], scale[:, :c]).sum(1)
    expected = (laplace_log_likelihood(x.numpy(), mean) - 0.7 * kl_style
                + 0.7 * (log_pzc_y.mean(0) - kl_y - log_qzc_x))  # the score-function term has value 0
    np.testing.assert_allclose(objective.detach().numpy(), expected, rtol=1e-10)
    assert np.isfinite(log_expit(logits)).all()


def test_multiclass_classifier_is_the_bayes_classifier_of_the_prior_network():
    model = tiny(task="multiclass", k=1, labels=4)
    z_c = torch.randn(5, model.char_dim, dtype=torch.float64)
    _, _, _, _, prior, params = parts(model, *inputs(model))
    loc, scale = prior(np.eye(4))
    expected = norm.logpdf(z_c.numpy()[:, None], loc, scale).sum(-1) + np.log(params["pi"])
    np.testing.assert_allclose(model.label_logits(z_c).detach().numpy(), expected, rtol=1e-10)


def test_interventions_and_traversals_set_a_label_block_from_the_network_and_keep_the_rest():
    model = tiny(k=2).float().eval()
    x = torch.rand(3, 1, 32, 32)
    z_c, z_style = model.split(model._posterior_mean(x))
    labels = model._own_labels(z_c)
    target = labels.clone()
    target[:, 1] = 1.0
    loc, _ = model.conditional_prior(target)
    blocks = model.blocks(z_c).clone()
    blocks[:, 1] = model.blocks(loc)[:, 1]
    torch.testing.assert_close(model.intervene(x, 1, 1.0), model._decode(blocks.flatten(-2), z_style))
    assert model.traverse(x, 1, 5).shape == (3, 5, 1, 32, 32)
    assert model.generate(target, 2).shape == (3, 2, 1, 32, 32)


def test_the_other_reading_is_registered_outside_the_default_grid():
    assert "diva-prior-net" in MODELS and "diva-prior-net" not in default_models()
    assert set(default_models()) == {"ccvae", "mccvae", "m2", "mvae", "csvae", "diva"}
