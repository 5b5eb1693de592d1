"""MVAE (Wu & Goodman, "Multimodal generative models for scalable weakly-supervised learning",
NeurIPS 2018), the CelebA variant with one expert per label, on this suite's networks.

Labels are a second modality. The posterior is a product of Gaussian experts,
precision-weighted (section 2.1):

    q(z|x, y) ∝ p(z) q(z|x) Π_i q(z|y_i),   p(z) = N(0, I) is the prior expert
    μ = Σ_j μ_j σ_j⁻² / Σ_j σ_j⁻²,  σ² = 1 / Σ_j σ_j⁻²

    q(z|x)      `bench.nets.Encoder` (dim z = style_dim + L, CCVAE's count of latents)
    q(z|y_i)    one small MLP per label (1 → 64 → 2·dim z); multi-class data have one expert
                for the one-hot class
    p(x|z)      Laplace(decoder(z), 1)
    p(y|z)      MLP (dim z → 64 → L): Bernoulli per label (multi-label) or categorical

For a subset S of the N = L + 1 modalities (the image and each label), ELBO_S = E_{q(z|S)} [Σ_{m∈S} λ_m
log p(m|z)] − β KL(q(z|S) || p(z)), q(z|S) = PoE(prior, the experts of S), one reparameterised sample, KL in
closed form.

    labelled:    ELBO_{x,y} + ELBO_x + Σ_i ELBO_{y_i} + Σ_{j=1}^{k} ELBO_{S_j}   (sub-sampled training, section 2.2)
    unlabelled:  ELBO_x

The sub-sampled terms (Wu & Goodman's celeba19 training, `--approx-m`, default 1): k = `subsets` = 1 random
subset per batch, its size drawn uniformly from 2 … N − 1 and then the subset uniformly among those of that size
(so it may hold the image or not; a labels-only subset trains the product of label experts that `generate`
samples). Multi-class data have N = 2 modalities (the image and the class), so no such subset exists and the
objective is the first three terms. Weights as that code applies them: λ_x = 1 everywhere; λ_y = `label_weight`
= 10 in ELBO_{x,y} (its `--lambda-attrs`) and 1 in the single-label and sub-sampled ELBOs (its `elbo_loss`
default there). β rises linearly from 0 to 1 over the first `anneal_fraction` = 20 % of training (its 20 of 100
epochs; the trainer reports progress through `set_training_progress`), then stays 1, in every term.

Interface operations (posterior means unless stochastic; ŷ = classify(x) thresholded):
    classify(x)          p(y | z = E q(z|x)), the label decoder on the image posterior.
    represent(x)         E q(z|x) (with the prior expert).
    characteristic(x)    None: no latent is tied to a label.
    generate(y, n)       z ~ q(z|y) = PoE(prior, label experts of y), decode.
    intervene(x, i, v)   z = E PoE(prior, q(z|x), q(z|y_i = v)) (a sample when stochastic);
                         multi-class: the class expert of class i.
    swap(a, b)           z = E PoE(prior, q(z|b), label experts of ŷ_a): b's image with a's
                         label *values*; MVAE has no separate characteristic to move.
    traverse             None ("it is not clear how one would do them for MVAE", section 6.1).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from bench.api import Capabilities, DataSpec
from bench.labels import hard_labels, label_log_terms, label_probs
from bench.nets import MIN_SCALE, Decoder, Encoder, gaussian_kl, laplace_log_likelihood

EXPERT_HIDDEN = 64


def product_of_experts(locs: torch.Tensor, scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision-weighted product of Gaussian experts stacked on dim 0: (E, B, D) -> (B, D) each."""
    precisions = scales.pow(-2)
    precision = precisions.sum(0)
    return (locs * precisions).sum(0) / precision, precision.rsqrt()


class LabelExperts(nn.Module):
    """q(z|y_i) for every label i at once (batched MLPs), or one expert of the one-hot class."""

    def __init__(self, num_labels: int, latent_dim: int, multilabel: bool):
        super().__init__()
        self.multilabel = multilabel
        experts, inputs = (num_labels, 1) if multilabel else (1, num_labels)
        self.hidden_weight = nn.Parameter(torch.randn(experts, inputs, EXPERT_HIDDEN) / inputs**0.5)
        self.hidden_bias = nn.Parameter(torch.zeros(experts, EXPERT_HIDDEN))
        self.out_weight = nn.Parameter(torch.randn(experts, EXPERT_HIDDEN, 2 * latent_dim) / EXPERT_HIDDEN**0.5)
        self.out_bias = nn.Parameter(torch.zeros(experts, 2 * latent_dim))

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale), each (E, B, D): E = L experts (multi-label) or 1 (multi-class)."""
        inputs = y.unsqueeze(-1) if self.multilabel else y.unsqueeze(1)  # (B, E, inputs)
        hidden = F.relu(torch.einsum("bei,eih->beh", inputs, self.hidden_weight) + self.hidden_bias)
        out = torch.einsum("beh,eho->beo", hidden, self.out_weight) + self.out_bias
        loc, raw_scale = out.transpose(0, 1).chunk(2, -1)
        return loc, F.softplus(raw_scale).clamp(min=MIN_SCALE)


class MVAE(nn.Module):
    capabilities = Capabilities(characteristic=False, traverse=False)

    def __init__(
        self, spec: DataSpec, style_dim: int = 27, label_weight: float = 10.0, anneal_fraction: float = 0.2,
        subsets: int = 1,
    ):
        super().__init__()
        self.spec = spec
        self.multilabel = spec.task == "multilabel"
        labels = spec.num_labels
        self.latent_dim = style_dim + labels
        self.image_expert = Encoder(spec.image_shape, self.latent_dim)
        self.label_experts = LabelExperts(labels, self.latent_dim, self.multilabel)
        self.decoder = Decoder(spec.image_shape, self.latent_dim)
        self.label_decoder = nn.Sequential(
            nn.Linear(self.latent_dim, EXPERT_HIDDEN), nn.ReLU(), nn.Linear(EXPERT_HIDDEN, labels))
        self.label_weight = label_weight
        self.anneal_fraction = anneal_fraction
        self.beta = 1.0 if anneal_fraction <= 0 else 0.0
        # multi-class (N = 2) or a single label: no subset of size 2 … N − 1 exists
        self.subsets = subsets if self.multilabel and labels >= 2 else 0

    def set_training_progress(self, fraction: float) -> None:
        self.beta = 1.0 if self.anneal_fraction <= 0 else min(1.0, fraction / self.anneal_fraction)

    # ----------------------------------------------------------------- components
    def posterior(self, image: tuple | None, labels: tuple | None) -> tuple[torch.Tensor, torch.Tensor]:
        """PoE of the prior expert with the given image expert (loc, scale) and label experts (E, B, D)."""
        locs, scales = [], []
        for expert in (image, labels):
            if expert is not None:
                loc, scale = expert
                locs.append(loc if loc.ndim == 3 else loc.unsqueeze(0))
                scales.append(scale if scale.ndim == 3 else scale.unsqueeze(0))
        reference = locs[0][0]
        locs.insert(0, torch.zeros_like(reference).unsqueeze(0))
        scales.insert(0, torch.ones_like(reference).unsqueeze(0))
        return product_of_experts(torch.cat(locs), torch.cat(scales))

    def label_log_likelihood(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p(y_i|z) per label (B, L) for multi-label data; log p(y|z) as (B, 1) for multi-class."""
        terms = label_log_terms(self.label_decoder(z), y, self.multilabel)
        return terms if self.multilabel else terms.sum(-1, keepdim=True)

    def _elbo(self, posterior, noise, x=None, y=None, labels=None, label_weight=None) -> torch.Tensor:
        """ELBO_S for the modalities given: the image x and/or the labels y (those of the mask `labels`, default
        all), label terms weighted by `label_weight` (default the joint ELBO's)."""
        loc, scale = posterior
        z = loc + scale * noise
        value = -self.beta * gaussian_kl(loc, scale, torch.zeros_like(loc), torch.ones_like(scale)).sum(-1)
        if x is not None:
            value = value + laplace_log_likelihood(x, self.decoder(z))
        if y is not None:
            terms = self.label_log_likelihood(z, y)
            weight = self.label_weight if label_weight is None else label_weight
            value = value + weight * (terms if labels is None else terms[:, labels]).sum(-1)
        return value

    def draw_subsets(self) -> torch.Tensor:
        """k random subsets of the N = L + 1 modalities as a (k, N) boolean mask, column 0 the image: a size drawn
        uniformly from 2 … N − 1, then a subset of that size uniformly (the global random state: reproducible)."""
        modalities = self.spec.num_labels + 1
        masks = torch.zeros(self.subsets, modalities, dtype=torch.bool)
        for row in masks:
            size = int(torch.randint(2, modalities, ()))
            row[torch.randperm(modalities)[:size]] = True
        return masks

    def _single_label_experts(self, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        loc, scale = self.label_experts(y)
        return [(loc[i], scale[i]) for i in range(len(loc))]

    # ----------------------------------------------------------------- objectives
    def supervised_objective(self, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor,
                             subsets: torch.Tensor | None = None) -> torch.Tensor:
        """ELBO_{x,y} + ELBO_x + Σ_i ELBO_{y_i} + Σ_j ELBO_{S_j} per image; noise (2 + E + k, B, D), E label experts,
        k the rows of `subsets` ((k, N) masks from `draw_subsets`; None: none)."""
        image = self.image_expert(x)
        labels = self.label_experts(y)
        experts = len(labels[0])
        total = self._elbo(self.posterior(image, labels), noise[0], x=x, y=y)
        total = total + self._elbo(self.posterior(image, None), noise[1], x=x)
        total = total + self._single_label_elbos(y, labels, noise[2:2 + experts]).sum(0)
        for j, mask in enumerate(subsets if subsets is not None else []):
            chosen = mask[1:].to(labels[0].device)
            posterior = self.posterior(image if mask[0] else None, (labels[0][chosen], labels[1][chosen]))
            total = total + self._elbo(posterior, noise[2 + experts + j], x=x if mask[0] else None, y=y,
                                       labels=chosen, label_weight=1.0)
        return total

    def _single_label_elbos(self, y: torch.Tensor, labels: tuple, noise: torch.Tensor) -> torch.Tensor:
        """ELBO_{y_i} for every label expert i at once, (E, B): q(z|y_i) = PoE(prior, expert i),
        and only label i's term log p(y_i|z) (multi-class: the one expert and log p(y|z))."""
        expert_locs, expert_scales = labels  # (E, B, D) each
        loc, scale = product_of_experts(torch.stack([torch.zeros_like(expert_locs), expert_locs]),
                                        torch.stack([torch.ones_like(expert_scales), expert_scales]))
        z = loc + scale * noise
        kl = gaussian_kl(loc, scale, torch.zeros_like(loc), torch.ones_like(scale)).sum(-1)
        label_terms = self.label_log_likelihood(z, y.expand(len(z), *y.shape))  # (E, B, L) or (E, B, 1)
        own_terms = label_terms.diagonal(dim1=0, dim2=2).T if self.multilabel else label_terms[..., 0]
        return -self.beta * kl + own_terms  # λ_y = 1 here (the celeba19 code's single-label ELBOs)

    def unsupervised_objective(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """ELBO_x per image; noise (B, D)."""
        return self._elbo(self.posterior(self.image_expert(x), None), noise, x=x)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        experts = self.spec.num_labels if self.multilabel else 1
        if y is None:
            objective = self.unsupervised_objective(x, torch.randn(len(x), self.latent_dim, device=x.device,
                                                                   dtype=x.dtype))
        else:
            subsets = self.draw_subsets()
            noise = torch.randn(2 + experts + len(subsets), len(x), self.latent_dim, device=x.device, dtype=x.dtype)
            objective = self.supervised_objective(x, y, noise, subsets)
        return -objective.mean(), {"objective": objective.detach().mean(), "beta": torch.tensor(self.beta)}

    # ----------------------------------------------------------------- interface
    def _image_posterior_mean(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(self.image_expert(x), None)[0]

    def _hard_labels(self, x: torch.Tensor) -> torch.Tensor:
        return hard_labels(self.label_decoder(self._image_posterior_mean(x)), self.multilabel)

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return label_probs(self.label_decoder(self._image_posterior_mean(x)), self.multilabel)

    @torch.no_grad()
    def represent(self, x: torch.Tensor) -> torch.Tensor:
        return self._image_posterior_mean(x)

    def characteristic(self, x: torch.Tensor) -> None:
        return None

    @torch.no_grad()
    def generate(self, y: torch.Tensor, n: int = 1) -> torch.Tensor:
        repeated = y.repeat_interleave(n, 0)
        loc, scale = self.posterior(None, self.label_experts(repeated))
        z = loc + scale * torch.randn_like(loc)
        return self.decoder(z).clamp(0, 1).unflatten(0, (len(y), n))

    @torch.no_grad()
    def intervene(self, x: torch.Tensor, i: int, value: float, stochastic: bool = False) -> torch.Tensor:
        if self.multilabel:
            y = torch.full((len(x), self.spec.num_labels), float(value), device=x.device, dtype=x.dtype)
            expert = self._single_label_experts(y)[i]
        else:
            y = F.one_hot(torch.full((len(x),), i, device=x.device), self.spec.num_labels).to(x.dtype)
            expert = self._single_label_experts(y)[0]
        loc, scale = self.posterior(self.image_expert(x), expert)
        z = loc + scale * torch.randn_like(loc) if stochastic else loc
        return self.decoder(z).clamp(0, 1)

    @torch.no_grad()
    def swap(self, x_char: torch.Tensor, x_ctx: torch.Tensor) -> torch.Tensor:
        loc, _ = self.posterior(self.image_expert(x_ctx), self.label_experts(self._hard_labels(x_char)))
        return self.decoder(loc).clamp(0, 1)

    def traverse(self, x: torch.Tensor, i: int, steps: int) -> None:
        return None
