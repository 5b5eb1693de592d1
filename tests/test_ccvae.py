"""CCVAE/MCCVAE objectives against an independent float64 computation of eq. (4) and (5)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import norm

from bench.api import DataSpec, missing_members
from bench.ccvae import CCVAE
from bench.config import make_config
from bench.data import load, mnist
from bench.evaluate import load_trained_model
from bench.models import MODELS, resolve
from bench.train import build_model, train
from tests import reference
from tests.reference import (
    numpy_parts,
    reference_common,
    reference_label_log_q,
    reference_log_p_zc_given_y,
)

LABEL_NAMES = ("a", "b", "c")


def tiny_model(task: str = "multilabel", k: int = 1, labels: int = 3, style: int = 2, seed: int = 0) -> CCVAE:
    return reference.tiny_model(CCVAE, task, k, labels, style, seed, classifier_samples=7)


@pytest.mark.parametrize("k", [1, 2])
def test_supervised_objective_matches_float64_eq4(k):
    model = tiny_model(k=k)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(4, 1, 32, 32, generator=generator, dtype=torch.float64)
    y = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float64)
    noise = torch.randn(4, model.char_dim + model.style_dim, generator=generator, dtype=torch.float64)
    classifier_noise = torch.randn(7, 4, model.char_dim, generator=generator, dtype=torch.float64)

    objective, _ = model.supervised_objective(x, y, noise, classifier_noise)

    loc, scale, z, mean, params = numpy_parts(model, x, noise)
    z_c, log_px_z, log_qz_x, log_pz_style = reference_common(model, x, z, loc, scale, mean)
    yn = y.numpy()
    c = model.char_dim
    log_qy_zc = reference_label_log_q(params, z_c, yn, k)
    zc_samples = loc[:, :c] + scale[:, :c] * classifier_noise.numpy()
    log_qy_x = logsumexp(reference_label_log_q(params, zc_samples, yn, k), axis=0) - np.log(7)
    log_py = (yn * np.log(params["pi"]) + (1 - yn) * np.log(1 - params["pi"])).sum(1)
    weight = np.exp(log_qy_zc - log_qy_x)
    expected = weight * (log_px_z + reference_log_p_zc_given_y(params, z_c, yn, k) + log_pz_style
                         - log_qy_zc - log_qz_x) + log_qy_x + log_py
    np.testing.assert_allclose(objective.detach().numpy(), expected, rtol=1e-10)


@pytest.mark.parametrize("k", [1, 2])
def test_unsupervised_objective_matches_float64_eq5_with_sampled_labels(k):
    model = tiny_model(k=k)
    generator = torch.Generator().manual_seed(2)
    x = torch.rand(5, 1, 32, 32, generator=generator, dtype=torch.float64)
    noise = torch.randn(5, model.char_dim + model.style_dim, generator=generator, dtype=torch.float64)
    uniform = torch.rand(5, 3, generator=generator, dtype=torch.float64)

    objective, surrogate, _ = model.unsupervised_objective(x, noise, uniform)

    loc, scale, z, mean, params = numpy_parts(model, x, noise)
    z_c, log_px_z, log_qz_x, log_pz_style = reference_common(model, x, z, loc, scale, mean)
    blocks = z_c.reshape(5, -1, k)
    logits = (blocks * params["classifier_weight"]).sum(-1) + params["classifier_bias"]
    y = (uniform.numpy() < 1 / (1 + np.exp(-logits))).astype(float)  # y ~ q(y|z_c) by inversion
    log_py = (y * np.log(params["pi"]) + (1 - y) * np.log(1 - params["pi"])).sum(1)
    expected = (log_px_z + reference_log_p_zc_given_y(params, z_c, y, k) + log_pz_style + log_py
                - reference_label_log_q(params, z_c, y, k) - log_qz_x)
    np.testing.assert_allclose(objective.detach().numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(surrogate.detach().numpy(), expected, rtol=1e-10)


def test_unsupervised_objective_multiclass_sums_classes_exactly():
    model = tiny_model(task="multiclass", labels=4)
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(3, 1, 32, 32, generator=generator, dtype=torch.float64)
    noise = torch.randn(3, model.char_dim + model.style_dim, generator=generator, dtype=torch.float64)

    objective, _, _ = model.unsupervised_objective(x, noise, torch.zeros(3, 4, dtype=torch.float64))

    loc, scale, z, mean, params = numpy_parts(model, x, noise)
    z_c, log_px_z, log_qz_x, log_pz_style = reference_common(model, x, z, loc, scale, mean)
    logits = reference.multiclass_logits(params, z_c)
    log_q = logits - logsumexp(logits, axis=1, keepdims=True)
    expected = log_px_z + log_pz_style - log_qz_x
    for c in range(4):
        log_p_zc = norm.logpdf(z_c, params["prior_loc"][c], params["prior_scale"][c]).sum(1)
        expected = expected + np.exp(log_q[:, c]) * (log_p_zc + np.log(params["pi"][c]) - log_q[:, c])
    np.testing.assert_allclose(objective.detach().numpy(), expected, rtol=1e-10)


def test_supervised_objective_multiclass_matches_float64():
    model = tiny_model(task="multiclass", labels=4)
    generator = torch.Generator().manual_seed(4)
    x = torch.rand(3, 1, 32, 32, generator=generator, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.tensor([0, 3, 1]), 4).double()
    noise = torch.randn(3, model.char_dim + model.style_dim, generator=generator, dtype=torch.float64)
    classifier_noise = torch.randn(7, 3, model.char_dim, generator=generator, dtype=torch.float64)

    objective, _ = model.supervised_objective(x, y, noise, classifier_noise)

    loc, scale, z, mean, params = numpy_parts(model, x, noise)
    z_c, log_px_z, log_qz_x, log_pz_style = reference_common(model, x, z, loc, scale, mean)
    classes = np.array([0, 3, 1])

    def log_q(zc):
        logits = reference.multiclass_logits(params, zc)
        return np.take_along_axis(logits - logsumexp(logits, -1, keepdims=True),
                                  np.broadcast_to(classes[:, None], (*logits.shape[:-1], 1)), -1)[..., 0]

    c = model.char_dim
    log_qy_zc = log_q(z_c)
    log_qy_x = logsumexp(log_q(loc[:, :c] + scale[:, :c] * classifier_noise.numpy()), axis=0) - np.log(7)
    log_pzc = norm.logpdf(z_c, params["prior_loc"][classes], params["prior_scale"][classes]).sum(1)
    expected = (np.exp(log_qy_zc - log_qy_x) * (log_px_z + log_pzc + log_pz_style - log_qy_zc - log_qz_x)
                + log_qy_x + np.log(params["pi"][classes]))
    np.testing.assert_allclose(objective.detach().numpy(), expected, rtol=1e-10)


def test_encoder_gets_no_gradient_through_the_importance_weights_z_c():
    model = tiny_model()
    x = torch.rand(2, 1, 32, 32, dtype=torch.float64)
    y = torch.tensor([[1, 0, 1], [0, 1, 0]], dtype=torch.float64)
    noise = torch.randn(2, model.char_dim + model.style_dim, dtype=torch.float64)
    _, terms = model.supervised_objective(x, y, noise, torch.randn(7, 2, model.char_dim, dtype=torch.float64))
    encoder_params = list(model.encoder.parameters())
    through_weight = torch.autograd.grad(terms["log_qy_zc"].sum(), encoder_params, allow_unused=True)
    assert all(g is None or torch.all(g == 0) for g in through_weight)
    # the classifier still learns from it, and q(y|x) does reach the encoder
    assert torch.autograd.grad(terms["log_qy_zc"].sum(), model.classifier_weight)[0].abs().sum() > 0
    through_qyx = torch.autograd.grad(terms["log_qy_x"].sum(), encoder_params, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in through_qyx)


@pytest.mark.slow
def test_score_function_gradient_is_unbiased_for_the_classifier():
    """E[∇ surrogate] over sampled labels equals ∇ of the exact Σ_y q(y|z_c)(…) (2 labels)."""
    model = tiny_model(labels=2)
    draws = 8_000
    x = torch.rand(1, 1, 32, 32, dtype=torch.float64).expand(draws, -1, -1, -1)
    noise = torch.randn(1, model.char_dim + model.style_dim, dtype=torch.float64).expand(draws, -1)
    uniform = torch.rand(draws, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    params = [model.classifier_weight, model.classifier_bias]

    _, surrogate, _ = model.unsupervised_objective(x, noise, uniform)
    estimate = torch.autograd.grad(surrogate.mean(), params)

    exact_objective = 0
    for combination in itertools.product([0.0, 1.0], repeat=2):
        y = torch.tensor([combination], dtype=torch.float64)
        # u = 0 draws 1 and u → 1 draws 0 for every label: enumerate via the matching uniforms
        forced = torch.where(y > 0, torch.zeros_like(y), torch.full_like(y, 1 - 1e-12))
        value, _, _ = model.unsupervised_objective(x[:1], noise[:1], forced)
        logits = model.label_logits(model.split(model.encoder(x[:1])[0] + model.encoder(x[:1])[1] * noise[:1])[0])
        log_q = -torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none").sum()
        exact_objective = exact_objective + log_q.exp() * value.sum()
    exact = torch.cat([g.flatten() for g in torch.autograd.grad(exact_objective, params)])
    approximate = torch.cat([g.flatten() for g in estimate])
    # without the score-function term the relative error is about 1
    assert torch.linalg.norm(approximate - exact) < 0.25 * torch.linalg.norm(exact)


def test_mccvae_classifier_is_block_diagonal():
    model = tiny_model(k=2)
    z_c = torch.randn(model.char_dim, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(model.label_logits, z_c)  # (L, k·L)
    mask = torch.block_diag(*[torch.ones(1, 2, dtype=torch.float64)] * 3)
    assert torch.all(jacobian[mask == 0] == 0)
    assert torch.all(jacobian[mask == 1] != 0)


def test_mccvae_with_k_1_is_ccvae():
    spec = DataSpec((3, 64, 64), LABEL_NAMES, "multilabel", (0.3, 0.5, 0.6))
    assert MODELS["mccvae"].options["latents_per_label"] == 2
    torch.manual_seed(0)
    ccvae = resolve("ccvae")(spec, **MODELS["ccvae"].options)
    torch.manual_seed(0)
    mccvae_k1 = resolve("mccvae")(spec, **{**MODELS["mccvae"].options, "latents_per_label": 1})
    for (name, a), (_, b) in zip(ccvae.state_dict().items(), mccvae_k1.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    x, y = torch.rand(2, 3, 64, 64), torch.tensor([[1.0, 0, 1], [0, 1, 1]])
    torch.manual_seed(1)
    loss_a, _ = ccvae.loss(x, y)
    torch.manual_seed(1)
    loss_b, _ = mccvae_k1.loss(x, y)
    assert torch.equal(loss_a, loss_b)


@pytest.mark.parametrize(("task", "k"), [("multilabel", 1), ("multilabel", 2), ("multiclass", 1)])
def test_interface_operations_shapes_and_ranges(task, k):
    model = tiny_model(task=task, k=k, labels=3).float().eval()
    assert missing_members(model) == []
    x = torch.rand(2, 1, 32, 32)
    y = torch.tensor([[1.0, 0, 1], [0, 1, 0]]) if task == "multilabel" else torch.eye(3)[:2]
    probs = model.classify(x)
    assert probs.shape == (2, 3) and torch.all((probs >= 0) & (probs <= 1))
    if task == "multiclass":
        torch.testing.assert_close(probs.sum(1), torch.ones(2))
    assert model.represent(x).shape == (2, model.char_dim + model.style_dim)
    expected_char = (2, 3, k) if task == "multilabel" else (2, 1, 3 * k)
    assert model.characteristic(x).shape == expected_char
    outputs = {
        "generate": (model.generate(y, n=4), (2, 4, 1, 32, 32)),
        "intervene": (model.intervene(x, 1, 1.0), (2, 1, 32, 32)),
        "intervene_stochastic": (model.intervene(x, 1, 1.0, stochastic=True), (2, 1, 32, 32)),
        "swap": (model.swap(x, x.flip(0)), (2, 1, 32, 32)),
        "traverse": (model.traverse(x, 2, 5), (2, 5, 1, 32, 32)),
    }
    for name, (images, shape) in outputs.items():
        assert images.shape == shape, name
        assert torch.all((images >= 0) & (images <= 1)), name


def test_swap_with_itself_is_the_reconstruction():
    model = tiny_model().float().eval()
    x = torch.rand(3, 1, 32, 32)
    reconstruction = model.decoder(model.represent(x))
    torch.testing.assert_close(model.swap(x, x), reconstruction)


def prior_samples_classified_as_their_class(model) -> float:
    """Share of 200 samples of p(z_c | y = c) per class c that the model's own q(y | z_c) labels c."""
    classes = model.spec.num_labels
    y = torch.eye(classes).repeat_interleave(200, 0)
    with torch.no_grad():
        loc, scale = model.conditional_prior(y)
        z_c = loc + scale * torch.randn_like(loc)
        return float((model.label_logits(z_c).argmax(-1) == y.argmax(-1)).float().mean())


@pytest.mark.parametrize("k", [1, 2])
def test_multiclass_prior_means_start_apart_and_agree_with_the_classifier(k):
    spec = DataSpec(image_shape=(1, 32, 32), label_names=tuple("abcdefghij"), task="multiclass",
                    label_prior=(0.1,) * 10)
    model = CCVAE(spec, latents_per_label=k)  # as built for training: its initial values
    means = model.prior_loc.detach().double()
    distances = torch.cdist(means, means)[~torch.eye(10, dtype=torch.bool)]
    torch.testing.assert_close(distances, torch.full_like(distances, 6 * np.sqrt(2)))  # every pair, whatever k
    own = means.unflatten(-1, (10, k))[torch.arange(10), torch.arange(10)]
    assert torch.all(own > 0) and (means > 0).sum() == 10 * k  # class c's own block positive, the others negative
    torch.manual_seed(0)
    assert prior_samples_classified_as_their_class(model) >= 0.99


@pytest.mark.slow
@pytest.mark.skipif(not mnist.fashion_mnist_found(None), reason="dataset-fashion-mnist not installed")
@pytest.mark.parametrize("name", ["ccvae"])  # DIVA shares bench.characteristic's prior and classifier
def test_multiclass_prior_and_classifier_agree_before_and_after_the_ci_budget(name, tmp_path, ci_cache):
    config = make_config(name, "fashion-mnist", 1.0, 0, "ci")
    data = load("fashion-mnist", cache_dir=ci_cache, options=config.dataset_options)
    run_dir = config.run_dir(tmp_path)
    torch.manual_seed(0)
    assert prior_samples_classified_as_their_class(build_model(config, data, data.splits["train"][:100], 1000,
                                                               torch.device("cpu"))) >= 0.9
    train(config, data, run_dir, torch.device("cpu"), show_progress=False)
    trained = load_trained_model(config, data, run_dir, torch.device("cpu"))
    assert prior_samples_classified_as_their_class(trained) >= 0.9
