"""CSVAE (Klys, Snell & Zemel, "Learning latent subspaces in variational autoencoders",
NeurIPS 2018; seeds/004), on this suite's networks and Laplace likelihood.

A label-free latent z and one subspace W_i per label (`subspace_dim` = 2 by default):

    q(z|x)          `bench.nets.Encoder` (dim z = style_dim)
    q(w|x, y)       `bench.nets.Encoder` with y concatenated to the trunk's features
    p(x|w, z)       Laplace(decoder([z, w]), 1)
    p(z)            N(0, I)
    p(w_i|y_i)      fixed: y_i = 1 -> N(0, 0.1²·I), y_i = 0 -> N(3·1, I) (section 4.1; the
                    seed's text keeps "the points labelled 1 mapping near the origin"; the
                    values are options, `prior_present`/`prior_absent` as (loc, scale))
    p(y)            the labelled set's label frequencies
    q_δ(y|z)        the adversary: MLP (dim z → 64 → L), Bernoulli per label (categorical for
                    multi-class data)

Objective (section 3.2), minimised:
    M1 = −β1 E_q log p(x|w, z) + β2 KL(q(w|x,y) || p(w|y)) + β3 KL(q(z|x) || p(z)) − log p(y)
    M2 = β4 E_{q(z|x)} Σ_y q_δ(y|z) log q_δ(y|z)      (the encoder maximises the adversary's entropy)
    N  = β5 E_{q(z|x)} [−log q_δ(y|z)]                 (the adversary learns to predict y from z)
θ, φ minimise M1 + M2; δ minimises N; (β1, …, β5) = (20, 1, 0.2, 10, 1). One reparameterised
sample, KL terms in closed form.

The two optimisers. Both gradients are taken in one backward pass at the same weights:
M2 sees the adversary's parameters detached and N sees z detached, so δ receives exactly ∇N
and θ, φ exactly ∇(M1 + M2). The trainer's Adam keeps per-parameter state, so one Adam step
on these disjoint gradients is the same as the two optimisers stepping simultaneously, and no
loss is ever differentiated through weights another step has already changed (the in-place
update that makes the public re-implementations fail on current PyTorch cannot happen).

Semi-supervision (CSVAE is fully supervised in its paper): an auxiliary classifier
q_aux(y|x) (`bench.nets.ImageClassifier`, its own parameters) is trained on the labelled
images by cross-entropy. For unlabelled images its hard prediction ŷ stands in for y in M1
(q(w|x, ŷ), p(w|ŷ), p(ŷ)) and M2 is applied as usual; N is trained on labelled images only.
classify(x) is q_aux(y|x), at every f.

Interface operations (posterior means; ŷ = the auxiliary classifier's hard prediction):
    classify(x)          q_aux(y|x).
    represent(x)         [E q(z|x), E q(w|x, ŷ)].
    characteristic(x)    E q(w|x, ŷ) as (B, L, subspace_dim): w_i is label i's characteristic.
    generate(y, n)       z ~ p(z), w ~ p(w|y), decode.
    intervene(x, i, v)   w_i := the mean of p(w_i|y_i = v) (a sample when stochastic), the rest
                         of (z, w) from x; multi-class data: the one-hot label's subspaces.
    swap(a, b)           w from a, z from b.
    traverse(x, i, s)    w_i moves in s steps on the line through the two prior means, from
                         μ_0 − 3σ_0·d to μ_1 + 3σ_1·d, d the unit vector from μ_0 to μ_1.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from bench.api import Capabilities, DataSpec
from bench.labels import clipped_label_prior, hard_labels, label_log_terms, label_prior_log_prob, label_probs
from bench.nets import Decoder, Encoder, ImageClassifier, gaussian_kl, laplace_log_likelihood

ADVERSARY_HIDDEN = 64
BETAS = (20.0, 1.0, 0.2, 10.0, 1.0)


class CSVAE(nn.Module):
    capabilities = Capabilities()

    def __init__(
        self,
        spec: DataSpec,
        style_dim: int = 27,
        subspace_dim: int = 2,
        betas: tuple[float, ...] = BETAS,
        prior_present: tuple[float, float] = (0.0, 0.1),
        prior_absent: tuple[float, float] = (3.0, 1.0),
    ):
        super().__init__()
        self.spec = spec
        self.multilabel = spec.task == "multilabel"
        labels = spec.num_labels
        self.style_dim, self.subspace_dim = style_dim, subspace_dim
        self.w_dim = labels * subspace_dim
        self.betas = tuple(float(b) for b in betas)
        self.z_encoder = Encoder(spec.image_shape, style_dim)
        self.w_encoder = Encoder(spec.image_shape, self.w_dim, condition_dim=labels)
        self.decoder = Decoder(spec.image_shape, style_dim + self.w_dim)
        self.adversary = nn.Sequential(
            nn.Linear(style_dim, ADVERSARY_HIDDEN), nn.ReLU(), nn.Linear(ADVERSARY_HIDDEN, labels))
        self.auxiliary = ImageClassifier(spec.image_shape, labels)
        self.register_buffer("label_prior", clipped_label_prior(spec))
        # (2, 2): rows y_i = 0, y_i = 1; columns loc, scale
        self.register_buffer("w_prior", torch.tensor([list(prior_absent), list(prior_present)], dtype=torch.float64))

    # ----------------------------------------------------------------- components
    def w_prior_params(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and scale of p(w|y), each (B, L·subspace_dim)."""
        on = y.unsqueeze(-1).expand(*y.shape, self.subspace_dim)
        loc = on * self.w_prior[1, 0] + (1 - on) * self.w_prior[0, 0]
        scale = on * self.w_prior[1, 1] + (1 - on) * self.w_prior[0, 1]
        return loc.flatten(-2), scale.flatten(-2)

    def log_py(self, y: torch.Tensor) -> torch.Tensor:
        return label_prior_log_prob(y, self.label_prior, self.multilabel).sum(-1)

    def _label_log_probs(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log q(y=1), log q(y=0)) per label, or (log q(class), unused) for multi-class."""
        if self.multilabel:
            return F.logsigmoid(logits), F.logsigmoid(-logits)
        return F.log_softmax(logits, -1), torch.zeros_like(logits)

    def negative_entropy(self, logits: torch.Tensor) -> torch.Tensor:
        """Σ_y q(y|z) log q(y|z) per image (summed over labels for multi-label data)."""
        log_on, log_off = self._label_log_probs(logits)
        if self.multilabel:
            return (log_on.exp() * log_on + log_off.exp() * log_off).sum(-1)
        return (log_on.exp() * log_on).sum(-1)

    def cross_entropy(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """−log q(y|·) per image."""
        return -label_log_terms(logits, y, self.multilabel).sum(-1)

    def _hard_labels(self, x: torch.Tensor) -> torch.Tensor:
        return hard_labels(self.auxiliary(x), self.multilabel)

    # ----------------------------------------------------------------- objectives
    def objective_terms(
        self, x: torch.Tensor, y: torch.Tensor, z_noise: torch.Tensor, w_noise: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """M1, M2 and N per image (each to be minimised) for given N(0, I) noise."""
        beta1, beta2, beta3, beta4, beta5 = self.betas
        z_loc, z_scale = self.z_encoder(x)
        w_loc, w_scale = self.w_encoder(x, y)
        z = z_loc + z_scale * z_noise
        w = w_loc + w_scale * w_noise
        prior_loc, prior_scale = self.w_prior_params(y)
        m1 = (-beta1 * laplace_log_likelihood(x, self.decoder(torch.cat([z, w], -1)))
              + beta2 * gaussian_kl(w_loc, w_scale, prior_loc, prior_scale).sum(-1)
              + beta3 * gaussian_kl(z_loc, z_scale, torch.zeros_like(z_loc), torch.ones_like(z_scale)).sum(-1)
              - self.log_py(y))
        frozen_adversary = {name: p.detach() for name, p in self.adversary.named_parameters()}
        m2 = beta4 * self.negative_entropy(functional_call(self.adversary, frozen_adversary, (z,)))
        n = beta5 * self.cross_entropy(self.adversary(z.detach()), y)
        return {"M1": m1, "M2": m2, "N": n}

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z_noise = torch.randn(len(x), self.style_dim, device=x.device, dtype=x.dtype)
        w_noise = torch.randn(len(x), self.w_dim, device=x.device, dtype=x.dtype)
        labelled = y is not None
        labels = y if labelled else self._hard_labels(x).detach()
        terms = self.objective_terms(x, labels, z_noise, w_noise)
        total = terms["M1"] + terms["M2"]
        if labelled:
            auxiliary = self.cross_entropy(self.auxiliary(x), y)
            total = total + terms["N"] + auxiliary
            terms["auxiliary"] = auxiliary
        else:
            terms.pop("N")
        logged = {name: value.detach().mean() for name, value in terms.items()}
        logged["objective"] = -terms["M1"].detach().mean()
        return total.mean(), logged

    # ----------------------------------------------------------------- interface
    def _posterior_means(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.z_encoder(x)[0], self.w_encoder(x, self._hard_labels(x))[0]

    def _decode(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, w], -1)).clamp(0, 1)

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return label_probs(self.auxiliary(x), self.multilabel)

    @torch.no_grad()
    def represent(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self._posterior_means(x), -1)

    @torch.no_grad()
    def characteristic(self, x: torch.Tensor) -> torch.Tensor:
        return self._posterior_means(x)[1].unflatten(-1, (self.spec.num_labels, self.subspace_dim))

    @torch.no_grad()
    def generate(self, y: torch.Tensor, n: int = 1) -> torch.Tensor:
        repeated = y.repeat_interleave(n, 0)
        loc, scale = self.w_prior_params(repeated)
        w = loc + scale * torch.randn_like(loc)
        z = torch.randn(len(repeated), self.style_dim, device=y.device, dtype=y.dtype)
        return self._decode(z, w).unflatten(0, (len(y), n))

    @torch.no_grad()
    def intervene(self, x: torch.Tensor, i: int, value: float, stochastic: bool = False) -> torch.Tensor:
        z, w = self._posterior_means(x)
        blocks = w.unflatten(-1, (self.spec.num_labels, self.subspace_dim)).clone()
        if self.multilabel:
            targets = {i: int(value)}
        else:  # the one-hot label of class i: subspace i "on", every other subspace "off"
            targets = {j: int(j == i) for j in range(self.spec.num_labels)}
        for label, on in targets.items():
            loc, scale = self.w_prior[on]
            new = torch.full_like(blocks[:, label], float(loc))
            blocks[:, label] = new + scale * torch.randn_like(new) if stochastic else new
        return self._decode(z, blocks.flatten(-2))

    @torch.no_grad()
    def swap(self, x_char: torch.Tensor, x_ctx: torch.Tensor) -> torch.Tensor:
        return self._decode(self._posterior_means(x_ctx)[0], self._posterior_means(x_char)[1])

    @torch.no_grad()
    def traverse(self, x: torch.Tensor, i: int, steps: int) -> torch.Tensor:
        z, w = self._posterior_means(x)
        (loc_off, scale_off), (loc_on, scale_on) = self.w_prior.tolist()
        direction = torch.full((self.subspace_dim,), 1.0, dtype=x.dtype, device=x.device)
        direction = direction * (1.0 if loc_on >= loc_off else -1.0) / self.subspace_dim**0.5
        start = loc_off - 3 * scale_off * direction
        end = loc_on + 3 * scale_on * direction
        fractions = torch.linspace(0, 1, steps, device=x.device, dtype=x.dtype).view(1, steps, 1)
        blocks = w.unflatten(-1, (self.spec.num_labels, self.subspace_dim)).unsqueeze(1).repeat(1, steps, 1, 1)
        blocks[:, :, i] = start + fractions * (end - start)
        images = self._decode(z.unsqueeze(1).expand(-1, steps, -1).flatten(0, 1), blocks.flatten(-2).flatten(0, 1))
        return images.unflatten(0, (len(x), steps))
