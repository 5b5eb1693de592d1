"""MVAE: the product of experts and the subsampled objective against float64 numpy."""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import log_expit, log_softmax
from scipy.stats import norm

from baselines.mvae import MVAE, product_of_experts
from bench.api import DataSpec
from tests.reference import gaussian_kl, laplace_log_likelihood


def tiny(task="multilabel", labels=3, **options) -> MVAE:
    torch.manual_seed(0)
    spec = DataSpec((1, 32, 32), tuple(f"l{i}" for i in range(labels)), task, tuple([1 / labels] * labels))
    return MVAE(spec, style_dim=2, **options).double()


def test_product_of_gaussian_experts_is_their_normalised_product():
    generator = torch.Generator().manual_seed(0)
    locs = torch.randn(4, 2, 3, generator=generator, dtype=torch.float64)
    scales = torch.rand(4, 2, 3, generator=generator, dtype=torch.float64) + 0.2
    loc, scale = product_of_experts(locs, scales)
    # log N(z; loc, scale) − Σ_j log N(z; μ_j, σ_j) is the same for every z
    points = torch.randn(5, 2, 3, generator=generator, dtype=torch.float64).numpy()
    experts = norm.logpdf(points[:, None], locs.numpy(), scales.numpy()).sum(1)
    gap = norm.logpdf(points, loc.numpy(), scale.numpy()) - experts
    np.testing.assert_allclose(gap, np.broadcast_to(gap[0], gap.shape), rtol=1e-9, atol=1e-9)
    single, single_scale = product_of_experts(locs[:1], scales[:1])
    torch.testing.assert_close((single, single_scale), (locs[0], scales[0]))


def numpy_poe(locs, scales):
    precision = sum(s**-2 for s in scales)
    return sum(m * s**-2 for m, s in zip(locs, scales, strict=True)) / precision, precision**-0.5


def reference_elbo(model, posterior, noise, x=None, y=None, labels=None, beta=1.0, weight=10.0):
    loc, scale = posterior
    z = loc + scale * noise
    value = -beta * gaussian_kl(loc, scale, 0.0, 1.0).sum(1)
    with torch.no_grad():
        if x is not None:
            value = value + laplace_log_likelihood(x.numpy(), model.decoder(torch.from_numpy(z)).numpy())
        if y is not None:
            logits = model.label_decoder(torch.from_numpy(z)).numpy()
            if model.multilabel:
                terms = y * log_expit(logits) + (1 - y) * log_expit(-logits)
                value = value + weight * terms[:, labels].sum(1)
            else:
                value = value + weight * (y * log_softmax(logits, axis=1)).sum(1)
    return value


def test_supervised_objective_is_joint_plus_image_plus_each_label_plus_subset_elbos():
    model = tiny(anneal_fraction=0.2)
    model.set_training_progress(0.05)  # β = 0.25 during annealing
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(4, 1, 32, 32, generator=generator, dtype=torch.float64)
    y = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float64)
    noise = torch.randn(7, 4, model.latent_dim, generator=generator, dtype=torch.float64)
    # the sub-sampled ELBOs of Wu & Goodman's celeba19 code: here {x, y_2} and {y_0, y_1}
    subsets = torch.tensor([[True, False, False, True], [False, True, True, False]])
    objective = model.supervised_objective(x, y, noise, subsets)

    with torch.no_grad():
        image = [t.numpy() for t in model.image_expert(x)]
        label_locs, label_scales = (t.numpy() for t in model.label_experts(y))
    prior = (np.zeros_like(image[0]), np.ones_like(image[1]))
    experts = [(label_locs[i], label_scales[i]) for i in range(3)]
    joint = numpy_poe(*zip(prior, image, *experts, strict=True))
    expected = reference_elbo(model, joint, noise[0].numpy(), x=x, y=y.numpy(), labels=[0, 1, 2], beta=0.25)
    expected += reference_elbo(model, numpy_poe(*zip(prior, image, strict=True)), noise[1].numpy(), x=x, beta=0.25)
    for i in range(3):
        posterior = numpy_poe(*zip(prior, experts[i], strict=True))
        expected += reference_elbo(model, posterior, noise[2 + i].numpy(), y=y.numpy(), labels=[i], beta=0.25,
                                   weight=1.0)
    with_image = numpy_poe(*zip(prior, image, experts[2], strict=True))
    expected += reference_elbo(model, with_image, noise[5].numpy(), x=x, y=y.numpy(), labels=[2], beta=0.25,
                               weight=1.0)
    labels_only = numpy_poe(*zip(prior, experts[0], experts[1], strict=True))
    expected += reference_elbo(model, labels_only, noise[6].numpy(), y=y.numpy(), labels=[0, 1], beta=0.25,
                               weight=1.0)
    np.testing.assert_allclose(objective.detach().numpy(), expected, rtol=1e-10)


def test_subsets_have_sizes_two_to_n_minus_one_drawn_uniformly():
    model = tiny(labels=3)  # N = 4 modalities: sizes 2 and 3, each subset of a size equally likely
    torch.manual_seed(0)
    draws = torch.cat([model.draw_subsets() for _ in range(3000)])
    sizes = draws.sum(1)
    assert set(sizes.tolist()) == {2, 3}
    assert abs((sizes == 2).float().mean().item() - 0.5) < 0.03
    pairs = draws[sizes == 2]
    assert abs(pairs[:, 0].float().mean().item() - 0.5) < 0.04  # 3 of the 6 pairs hold the image
    assert tiny(task="multiclass", labels=4).subsets == 0  # image and class only: no such subset


def test_unsupervised_objective_and_annealing():
    model = tiny(task="multiclass", labels=4)
    assert model.beta == 0.0
    model.set_training_progress(0.5)
    assert model.beta == 1.0
    generator = torch.Generator().manual_seed(2)
    x = torch.rand(3, 1, 32, 32, generator=generator, dtype=torch.float64)
    noise = torch.randn(3, model.latent_dim, generator=generator, dtype=torch.float64)
    objective = model.unsupervised_objective(x, noise)
    with torch.no_grad():
        image = [t.numpy() for t in model.image_expert(x)]
    posterior = numpy_poe(*zip((np.zeros_like(image[0]), np.ones_like(image[1])), image, strict=True))
    np.testing.assert_allclose(objective.detach().numpy(), reference_elbo(model, posterior, noise.numpy(), x=x),
                               rtol=1e-10)


def test_multiclass_supervised_objective_has_one_label_expert_for_the_one_hot_class():
    model = tiny(task="multiclass", labels=4)
    model.set_training_progress(0.1)  # β = 0.5
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(3, 1, 32, 32, generator=generator, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.tensor([2, 0, 3]), 4).double()
    noise = torch.randn(3, 3, model.latent_dim, generator=generator, dtype=torch.float64)  # joint, image, class
    objective = model.supervised_objective(x, y, noise)

    with torch.no_grad():
        image = [t.numpy() for t in model.image_expert(x)]
        class_loc, class_scale = (t.numpy()[0] for t in model.label_experts(y))
    prior = (np.zeros_like(image[0]), np.ones_like(image[1]))
    joint = numpy_poe(*zip(prior, image, (class_loc, class_scale), strict=True))
    expected = reference_elbo(model, joint, noise[0].numpy(), x=x, y=y.numpy(), beta=0.5)
    expected += reference_elbo(model, numpy_poe(*zip(prior, image, strict=True)), noise[1].numpy(), x=x, beta=0.5)
    expected += reference_elbo(model, numpy_poe(*zip(prior, (class_loc, class_scale), strict=True)),
                               noise[2].numpy(), y=y.numpy(), beta=0.5, weight=1.0)
    np.testing.assert_allclose(objective.detach().numpy(), expected, rtol=1e-10)
