"""CSVAE: M1, M2 and N against float64 numpy, and the routing of the adversarial gradients."""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import log_expit

from baselines.csvae import CSVAE
from bench.api import DataSpec
from tests.reference import bernoulli_log_prob, gaussian_kl, laplace_log_likelihood


def tiny(task="multilabel", labels=3) -> CSVAE:
    torch.manual_seed(0)
    prior = (0.2, 0.5, 0.7)[:labels] if task == "multilabel" else tuple([1 / labels] * labels)
    spec = DataSpec((1, 32, 32), tuple(f"l{i}" for i in range(labels)), task, prior, 100, 10)
    return CSVAE(spec, style_dim=3, subspace_dim=2).double()


def batch(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 1, 32, 32, generator=generator, dtype=torch.float64)
    y = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float64)
    z_noise = torch.randn(4, model.style_dim, generator=generator, dtype=torch.float64)
    w_noise = torch.randn(4, model.w_dim, generator=generator, dtype=torch.float64)
    return x, y, z_noise, w_noise


def test_terms_match_float64_with_the_papers_betas_and_fixed_priors():
    model = tiny()
    assert model.betas == (20.0, 1.0, 0.2, 10.0, 1.0)
    x, y, z_noise, w_noise = batch(model)
    terms = model.objective_terms(x, y, z_noise, w_noise)

    with torch.no_grad():
        z_loc, z_scale = (t.numpy() for t in model.z_encoder(x))
        w_loc, w_scale = (t.numpy() for t in model.w_encoder(x, y))
        z = z_loc + z_scale * z_noise.numpy()
        w = w_loc + w_scale * w_noise.numpy()
        mean = model.decoder(torch.from_numpy(np.concatenate([z, w], 1))).numpy()
        logits = model.adversary(torch.from_numpy(z)).numpy()
    yn = y.numpy()
    on = np.repeat(yn, 2, axis=1)  # each label's 2-dimensional subspace
    prior_loc, prior_scale = np.where(on == 1, 0.0, 3.0), np.where(on == 1, 0.1, 1.0)
    pi = np.array([0.2, 0.5, 0.7])
    m1 = (-20 * laplace_log_likelihood(x.numpy(), mean) + gaussian_kl(w_loc, w_scale, prior_loc, prior_scale).sum(1)
          + 0.2 * gaussian_kl(z_loc, z_scale, 0.0, 1.0).sum(1) - (yn * np.log(pi) + (1 - yn) * np.log(1 - pi)).sum(1))
    p_on, p_off = np.exp(log_expit(logits)), np.exp(log_expit(-logits))
    m2 = 10 * (p_on * log_expit(logits) + p_off * log_expit(-logits)).sum(1)
    n = -bernoulli_log_prob(yn, logits).sum(1)
    for name, expected in (("M1", m1), ("M2", m2), ("N", n)):
        np.testing.assert_allclose(terms[name].detach().numpy(), expected, rtol=1e-10, err_msg=name)


def test_adversary_gets_only_grad_N_and_the_encoder_only_grad_M1_plus_M2():
    model = tiny()
    x, y, z_noise, w_noise = batch(model, seed=1)
    terms = model.objective_terms(x, y, z_noise, w_noise)
    adversary = list(model.adversary.parameters())
    encoder = list(model.z_encoder.parameters())
    total = (terms["M1"] + terms["M2"] + terms["N"]).sum()
    from_total = torch.autograd.grad(total, adversary + encoder)
    terms = model.objective_terms(x, y, z_noise, w_noise)
    from_n = torch.autograd.grad(terms["N"].sum(), adversary)
    terms = model.objective_terms(x, y, z_noise, w_noise)
    from_m = torch.autograd.grad((terms["M1"] + terms["M2"]).sum(), encoder)
    for got, want in zip(from_total, (*from_n, *from_m), strict=True):
        torch.testing.assert_close(got, want)
    terms = model.objective_terms(x, y, z_noise, w_noise)
    m2_on_adversary = torch.autograd.grad(terms["M2"].sum(), adversary, allow_unused=True)
    assert all(g is None for g in m2_on_adversary)
    # the encoder is pushed by M2 (towards the adversary's maximum entropy), not by N
    terms = model.objective_terms(x, y, z_noise, w_noise)
    assert torch.autograd.grad(terms["M2"].sum(), encoder[-1])[0].abs().sum() > 0
    terms = model.objective_terms(x, y, z_noise, w_noise)
    assert all(g is None for g in torch.autograd.grad(terms["N"].sum(), encoder, allow_unused=True))


def test_a_training_step_runs_on_current_pytorch_for_both_kinds_of_batch():
    model = tiny().float()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.rand(4, 1, 32, 32)
    y = torch.tensor([[1.0, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]])
    for labels in (y, None):
        loss, logged = model.loss(x, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss) and ("N" in logged) == (labels is not None)


def test_unlabelled_batches_use_the_auxiliary_classifiers_labels():
    model = tiny()
    x, _, _, _ = batch(model)
    imputed = model._hard_labels(x)
    torch.manual_seed(3)
    loss, _ = model.loss(x)
    torch.manual_seed(3)
    z_noise = torch.randn(4, model.style_dim, dtype=torch.float64)
    w_noise = torch.randn(4, model.w_dim, dtype=torch.float64)
    terms = model.objective_terms(x, imputed, z_noise, w_noise)
    torch.testing.assert_close(loss, (terms["M1"] + terms["M2"]).mean())
