"""`mutual_info` (Table 7, multi-class data): how uncertain is a Bayesian oracle about generations?

The oracle's last linear layer is replaced by a gpytorch sparse variational GP classifier: one
independent GP per class over the oracle's standardised 128-dimensional penultimate features
(RBF kernel with a scale, constant mean), 200 inducing points initialised at random training
features and learnt, a softmax likelihood, trained with the variational ELBO (Adam, mini-batches)
on the oracle's features of the training set. For images x and S posterior function samples ω,

    I(y; ω | x) = H[ E_ω p(y | x, ω) ] − E_ω H[ p(y | x, ω) ]      (the BALD / epistemic term)

averaged over images, for conditionally generated images (labels drawn from the test set, as
`conditional`). Low: the oracle is sure what the image shows; high: it lies between classes. The
reference a perfect generator would match, real test images, is the "ceiling: real images"
control's row (`evaluators/controls.py`): one row, computed once per data set.
The fitted GP is cached next to the oracle (`oracle/<key>.gp.pt`).
"""

from __future__ import annotations

import warnings
from dataclasses import astuple
from pathlib import Path
from typing import TYPE_CHECKING

import torch

with warnings.catch_warnings():  # linear_operator scripts functions at import; torch deprecates jit.script
    warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning)
    import gpytorch

from bench.budgets import INDUCING_POINTS, EvalSettings, GPConfig, MutualInfoBudget
from bench.files import atomic_torch_save, cached_build
from bench.metrics import Metric, Tolerance
from bench.runtime import one_thread
from evaluators.common import NO_RESOURCES, Evaluator, Resources, batched, device_of, float_images, sample_test_indices

if TYPE_CHECKING:
    from bench.data.base import LabelledImages

POSTERIOR_SAMPLES = 64


class MulticlassSVGP(gpytorch.models.ApproximateGP):
    """C independent SVGPs over the features, sharing one set of inducing inputs per class."""

    def __init__(self, inducing: torch.Tensor, classes: int):
        batch = torch.Size([classes])
        points = inducing.unsqueeze(0).repeat(classes, 1, 1)
        distribution = gpytorch.variational.CholeskyVariationalDistribution(len(inducing), batch_shape=batch)
        strategy = gpytorch.variational.IndependentMultitaskVariationalStrategy(
            gpytorch.variational.VariationalStrategy(self, points, distribution, learn_inducing_locations=True),
            num_tasks=classes)
        super().__init__(strategy)
        self.mean_module = gpytorch.means.ConstantMean(batch_shape=batch)
        self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(batch_shape=batch),
                                                         batch_shape=batch)

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


class GPHead(torch.nn.Module):
    """Standardisation, the SVGP and its softmax likelihood: the oracle's Bayesian last layer."""

    def __init__(self, shift: torch.Tensor, scale: torch.Tensor, inducing: torch.Tensor, classes: int):
        super().__init__()
        self.register_buffer("shift", shift)
        self.register_buffer("scale", scale)
        self.gp = MulticlassSVGP(inducing, classes)
        self.likelihood = gpytorch.likelihoods.SoftmaxLikelihood(num_classes=classes, mixing_weights=False)

    def standardise(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.shift) / self.scale

    def class_probability_samples(self, features: torch.Tensor, samples: int) -> torch.Tensor:
        """p(y | x, ω_s) for S posterior samples ω_s of the latent functions: (S, B, C)."""
        with torch.no_grad(), gpytorch.settings.num_likelihood_samples(samples):
            functions = self.gp(self.standardise(features)).rsample(torch.Size([samples]))
        return functions.softmax(-1)


@one_thread()
def fit_gp_head(features: torch.Tensor, classes: torch.Tensor, num_classes: int, config: GPConfig) -> GPHead:
    """Fit the SVGP head on training features (N, D) and class indices (N,), on one thread (`one_thread`)."""
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    shift, scale = features.mean(0), features.std(0).clamp(min=1e-6)
    start = torch.randperm(len(features), generator=generator)[: config.inducing_points]
    head = GPHead(shift, scale, (features[start] - shift) / scale, num_classes)
    inputs = head.standardise(features)
    objective = gpytorch.mlls.VariationalELBO(head.likelihood, head.gp, num_data=len(features))
    optimizer = torch.optim.Adam(head.parameters(), lr=config.lr)
    head.train()
    for _ in range(config.epochs):
        for batch in torch.randperm(len(features), generator=generator).split(config.batch_size):
            loss = -objective(head.gp(inputs[batch]), classes[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return head.eval()


def mutual_information(probability_samples: torch.Tensor) -> torch.Tensor:
    """I(y; ω | x) per image from (S, B, C) samples: H[E_s p_s] − E_s H[p_s], in nats."""

    def entropy(p: torch.Tensor) -> torch.Tensor:
        return -(p * p.clamp(min=1e-12).log()).sum(-1)

    return entropy(probability_samples.mean(0)) - entropy(probability_samples).mean(0)


def gp_head_for(oracle, data: LabelledImages, cache_path: Path | None, config: GPConfig) -> GPHead:
    """The cached head for this oracle, or a new fit on the oracle's training-set features."""
    if cache_path is None:
        return fit_gp_on_oracle_features(oracle, data, config)
    settings = "-".join(f"{value:g}" for value in astuple(config) if value is not None)
    cache_path = cache_path.with_name(f"{cache_path.stem}-{settings}{cache_path.suffix}")  # one file per GPConfig

    def load(path: Path) -> GPHead:
        state = torch.load(path, weights_only=True)
        placeholder = torch.zeros(config.inducing_points, len(state["shift"]))  # load_state_dict fills it
        head = GPHead(state["shift"], state["scale"], placeholder, data.labels.shape[1])
        head.load_state_dict(state)
        return head.eval()

    return cached_build(cache_path, lambda: fit_gp_on_oracle_features(oracle, data, config),
                        lambda head, path: atomic_torch_save(head.state_dict(), path), load, f"{data.name} GP head")


def fit_gp_on_oracle_features(oracle, data: LabelledImages, config: GPConfig) -> GPHead:
    device = next(oracle.parameters()).device
    train = torch.as_tensor(data.splits["train"][: config.train_images])
    features = batched(lambda idx: oracle.features(float_images(data, idx, device)).cpu(), train, batch_size=500)
    return fit_gp_head(features.float(), data.labels[train].argmax(1), data.labels.shape[1], config)


BUDGET = MutualInfoBudget(samples=2000)


def evaluate(model, data: LabelledImages, oracle, generator: torch.Generator, settings: EvalSettings,
             resources: Resources = NO_RESOURCES, budget: MutualInfoBudget = BUDGET) -> dict:
    if data.task != "multiclass":
        return {"unavailable": "Table 7 is defined for multi-class data"}
    if not model.capabilities.generate:
        return {"unavailable": "the model cannot generate conditionally"}
    device = device_of(model)
    head = gp_head_for(oracle, data, resources.cache_file(".gp.pt"), budget.gp)
    requested = data.labels[sample_test_indices(data, budget.samples, generator)].float()

    def information(images: torch.Tensor) -> torch.Tensor:
        return mutual_information(head.class_probability_samples(oracle.features(images).cpu(), POSTERIOR_SAMPLES))

    generated = batched(lambda y: information(model.generate(y.to(device), 1)[:, 0]), requested,
                        batch_size=settings.batch_size)
    return {"generated": float(generated.mean()), "n": len(requested), "posterior_samples": POSTERIOR_SAMPLES,
            "inducing_points": INDUCING_POINTS}


def prepare(data: LabelledImages, oracle, resources: Resources, budget: MutualInfoBudget, device: torch.device) -> None:
    """The GP head every run of a multi-class data set shares, fitted (and cached) once."""
    if data.task == "multiclass":
        gp_head_for(oracle, data, resources.cache_file(".gp.pt"), budget.gp)


EVALUATOR = Evaluator(
    "mutual_info", evaluate,
    metrics=(Metric("generated", "MI of generations", False, Tolerance(0.01, 0.25),
                    "a mean of small GP mutual informations over 1,000 images, moved by the oracle's features",
                    ".4f", marked_only_if=("conditional.label_gain", 0.05)),),  # real images are in-distribution
    details=("n", "posterior_samples", "inducing_points"),
    count=("n", "generations"),
    budget=BUDGET,
    prepare=prepare,
    tasks=("multiclass",),
)
