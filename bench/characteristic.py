"""The latent structure shared by CCVAE, MCCVAE and modified DIVA, and their interface operations.

Latent z = {z_c, z_\\c}. For multi-label data z_c holds k = `latents_per_label` coordinates
per label, z_c^i being label i's block.

    p(y)            factorised Bernoulli (multi-label) or categorical (multi-class) with the
                    labelled set's label frequencies (clipped to [1e-3, 1 - 1e-3]).
    p_ψ(z_c^i|y_i)  N(μ_{i,y_i}, diag σ²_{i,y_i}): a learned mean and scale (softplus, ≥ 1e-3)
                    per label and label value, each a vector of length k; initialised at ∓2
                    and softplus(1) as in the CCVAE authors' code.
    p(z_\\c)        N(0, I).
    p_θ(x|z)        Laplace(decoder(z), 1) over pixels (`bench.nets`).
    q_φ(z|x)        `bench.nets.Encoder`.
    q_ϕ(y|z_c)      Π_i Ber(y_i | σ(w_i·z_c^i + b_i)): a diagonal (k = 1) or block-diagonal
                    (k > 1) map, label i sees only z_c^i.

Multi-class data (the CCVAE paper's appendix D.6): one label with C values, so the diagonal
structure does not apply; z_c has k·C coordinates and p(z_c|y = c) = N(μ_c, diag σ²_c) with
learned per-class vectors. The paper leaves q(y|z_c) open ("parameterized by a function F:
R^N → R^M"). It is derived here from the model's own joint p(y) p(z_c|y), the Bayes classifier
of the class-conditional prior:

    q(y = c | z_c) = softmax_c [ log π_c + log N(z_c; μ_c, σ²_c) ],

so that prior and classifier agree by construction, from the first step to the last: a sample of
p(z_c | y = c) is classified as c wherever the classes' Gaussians are apart. (A separate linear
classifier, initialised at random, disagreed with the randomly placed class means, and Adam moves
each mean by about the learning rate per step while the encoder places the classes wherever the
classifier wants them: after the quick budget the model's own classifier labelled about 2 % of the
samples of p(z_c|y = c) as c, and conditional generation sat at chance.) The exact sum over classes
in eq. (5) then equals log Σ_c π_c N(z_c; μ_c, σ²_c) in value: the unsupervised term is that of a
VAE with a mixture-of-Gaussians prior.

The class means start as the multi-label prior does, read on the one-hot label: class c's own
block of k coordinates at +a, every other block at −a, with a = 6√2 / (2√(2k)) (±3 at k = 1,
±2.12 at k = 2), so any two means are 6√2 ≈ 8.5 apart and 3√C from the origin whatever k; scales
at softplus(1). Measured on the quick preset, Fashion-MNIST, one seed: random means (2·N(0, I))
left MCCVAE at 0.34 test accuracy, the structured ones 0.71–0.75 (CCVAE 0.73–0.76); the multi-label
offset ±2 at k = 1 leaves the ten classes' Gaussians overlapping (9 % of prior samples
misclassified at initialisation), this separation 0.5 %.

Interface operations (`bench.api`); all use posterior means, and images are decoder means:
    classify(x)           q(y | z_c = E[z_c | x]).
    represent(x)          E[z | x], (B, k·L + style_dim).
    characteristic(x)     E[z_c | x] as (B, L, k); (B, 1, k·C) for multi-class.
    generate(y, n)        z_c ~ p(z_c | y), z_\\c ~ N(0, I).
    intervene(x, i, v)    z_c^i := μ_{i,v} (or a sample of p(z_c^i | y_i = v) when stochastic),
                          everything else from E[z | x]; multi-class: z_c := μ_i (class i).
    swap(a, b)            z_c from a, z_\\c from b.
    traverse(x, i, s)     z_c^i moves in s steps on the line from μ_{i,0} − 3σ_{i,0}·d to
                          μ_{i,1} + 3σ_{i,1}·d, d = sign(μ_{i,1} − μ_{i,0}) (the authors' walk);
                          multi-class: from E[z_c | x] to μ_i.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from bench.api import Capabilities, DataSpec
from bench.labels import clipped_label_prior, label_log_terms, label_prior_log_prob, label_probs
from bench.nets import MIN_SCALE, Decoder, Encoder, laplace_log_likelihood, normal_log_prob

MULTICLASS_PRIOR_SEPARATION = 6 * math.sqrt(2)
"""Distance between any two multi-class prior means at initialisation, whatever k (±3 at k = 1); see the module
docstring."""


class CharacteristicVAE(nn.Module):
    """Latent z = {z_c, z_\\c} with label blocks z_c^i, a (block-)diagonal classifier q(y|z_c),
    a conditional prior p(z_c|y), p(z_\\c) = N(0, I), and the interface operations.

    Subclasses add their objective (`loss`).
    """

    capabilities = Capabilities()

    def __init__(
        self,
        spec: DataSpec,
        latents_per_label: int = 1,
        style_dim: int = 27,
    ):
        super().__init__()
        if latents_per_label < 1 or style_dim < 0:
            raise ValueError("latents_per_label must be ≥ 1 and style_dim ≥ 0")
        self.spec = spec
        self.multilabel = spec.task == "multilabel"
        self.latents_per_label = latents_per_label
        num_labels = spec.num_labels
        self.char_dim = latents_per_label * num_labels
        self.style_dim = style_dim
        latent_dim = self.char_dim + style_dim
        self.encoder = Encoder(spec.image_shape, latent_dim)
        self.decoder = Decoder(spec.image_shape, latent_dim)
        if self.multilabel:
            shape = (num_labels, latents_per_label)
            self.classifier_weight = nn.Parameter(torch.ones(shape))
            self.classifier_bias = nn.Parameter(torch.zeros(num_labels))
            # index 0: y_i = 0, index 1: y_i = 1
            self.prior_loc = nn.Parameter(torch.stack([-2 * torch.ones(shape), 2 * torch.ones(shape)], 1))
            self.prior_scale_raw = nn.Parameter(torch.ones(num_labels, 2, latents_per_label))
        else:  # the classifier is derived from these (`label_logits`); class c's own block +, the others −
            own_block = torch.eye(num_labels).repeat_interleave(latents_per_label, 1)
            offset = MULTICLASS_PRIOR_SEPARATION / (2 * math.sqrt(2 * latents_per_label))
            self.prior_loc = nn.Parameter(offset * (2 * own_block - 1))
            self.prior_scale_raw = nn.Parameter(torch.ones(num_labels, self.char_dim))
        self.register_buffer("label_prior", clipped_label_prior(spec))

    # ----------------------------------------------------------------- model components
    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z -> (z_c, z_\\c) along the last dimension."""
        return z[..., : self.char_dim], z[..., self.char_dim :]

    def blocks(self, z_c: torch.Tensor) -> torch.Tensor:
        """(..., k·L) -> (..., L, k): label i's characteristic block z_c^i."""
        return z_c.unflatten(-1, (self.spec.num_labels, self.latents_per_label))

    def label_logits(self, z_c: torch.Tensor) -> torch.Tensor:
        """Logits of q(y | z_c): per label (block-diagonal map), or per class log π_c + log N(z_c; μ_c, σ²_c)
        (the Bayes classifier of the class-conditional prior; a softmax of these is q(y | z_c))."""
        if self.multilabel:
            return (self.blocks(z_c) * self.classifier_weight).sum(-1) + self.classifier_bias
        return self.class_log_joint(z_c)

    def class_log_joint(self, z_c: torch.Tensor) -> torch.Tensor:
        """log π_c + log N(z_c; μ_c, σ²_c) for every class c: (..., C)."""
        log_pzc_c = normal_log_prob(z_c.unsqueeze(-2), self.prior_loc, self.prior_scale()).sum(-1)
        return log_pzc_c + self.label_prior.log()

    def label_log_prob(self, z_c: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log q(y | z_c), summed over labels: shape z_c.shape[:-1]."""
        logits = self.label_logits(z_c)
        return label_log_terms(logits, y.expand_as(logits), self.multilabel).sum(-1)

    def prior_scale(self) -> torch.Tensor:
        return F.softplus(self.prior_scale_raw).clamp(min=MIN_SCALE)

    def conditional_prior(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and scale of p_ψ(z_c | y), each (B, k·L)."""
        scale = self.prior_scale()
        if self.multilabel:
            on = y.unsqueeze(-1)
            loc = on * self.prior_loc[:, 1] + (1 - on) * self.prior_loc[:, 0]
            return loc.flatten(-2), (on * scale[:, 1] + (1 - on) * scale[:, 0]).flatten(-2)
        return y @ self.prior_loc, y @ scale

    def label_prior_log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """log p(y) per label (B, L) for multi-label; per class weight for multi-class."""
        return label_prior_log_prob(y, self.label_prior, self.multilabel)

    def expectation_over_classes(self, z_c: torch.Tensor, q: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        """Σ_c q(c|z_c) [log p(z_c|c) + log p(c) − log q(c|z_c)], exactly, per image (multi-class data).

        `q` and `log_q` (B, C) are passed as each objective computes them (CCVAE: softmax and
        log_softmax of the logits; DIVA: log_softmax and its exp), which keeps each objective's arithmetic."""
        return (q * (self.class_log_joint(z_c) - log_q)).sum(-1)

    # ----------------------------------------------------------------- objectives
    def _latent_terms(self, x: torch.Tensor, noise: torch.Tensor):
        """Encode, sample z = loc + scale·noise, and the terms every objective shares."""
        loc, scale = self.encoder(x)
        z = loc + scale * noise
        z_c, z_style = self.split(z)
        log_qz_x = normal_log_prob(z, loc, scale).sum(-1)
        log_px_z = laplace_log_likelihood(x, self.decoder(z))
        log_pz_style = normal_log_prob(z_style, torch.zeros_like(z_style), torch.ones_like(z_style)).sum(-1)
        return loc, scale, z_c, log_qz_x, log_px_z, log_pz_style

    # ----------------------------------------------------------------- interface
    def _posterior_mean(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[0]

    def _decode(self, z_c: torch.Tensor, z_style: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z_c, z_style], -1)).clamp(0, 1)

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return label_probs(self.label_logits(self.split(self._posterior_mean(x))[0]), self.multilabel)

    @torch.no_grad()
    def represent(self, x: torch.Tensor) -> torch.Tensor:
        return self._posterior_mean(x)

    @torch.no_grad()
    def characteristic(self, x: torch.Tensor) -> torch.Tensor:
        z_c = self.split(self._posterior_mean(x))[0]
        return self.blocks(z_c) if self.multilabel else z_c.unsqueeze(1)

    @torch.no_grad()
    def generate(self, y: torch.Tensor, n: int = 1) -> torch.Tensor:
        repeated = y.repeat_interleave(n, 0)
        loc, scale = self.conditional_prior(repeated)
        z_c = loc + scale * torch.randn_like(loc)
        z_style = torch.randn(repeated.shape[0], self.style_dim, device=y.device)
        return self._decode(z_c, z_style).unflatten(0, (y.shape[0], n))

    @torch.no_grad()
    def intervene(self, x: torch.Tensor, i: int, value: float, stochastic: bool = False) -> torch.Tensor:
        z_c, z_style = self.split(self._posterior_mean(x))
        scale = self.prior_scale()
        if self.multilabel:
            blocks = self.blocks(z_c).clone()
            new = self.prior_loc[i, int(value)].expand_as(blocks[:, i])
            if stochastic:
                new = new + scale[i, int(value)] * torch.randn_like(new)
            blocks[:, i] = new
            return self._decode(blocks.flatten(-2), z_style)
        new = self.prior_loc[i].expand_as(z_c)
        if stochastic:
            new = new + scale[i] * torch.randn_like(new)
        return self._decode(new, z_style)

    @torch.no_grad()
    def swap(self, x_char: torch.Tensor, x_ctx: torch.Tensor) -> torch.Tensor:
        z_c = self.split(self._posterior_mean(x_char))[0]
        z_style = self.split(self._posterior_mean(x_ctx))[1]
        return self._decode(z_c, z_style)

    @torch.no_grad()
    def traverse(self, x: torch.Tensor, i: int, steps: int) -> torch.Tensor:
        z_c, z_style = self.split(self._posterior_mean(x))
        fractions = torch.linspace(0, 1, steps, device=x.device).view(1, steps, 1)
        if self.multilabel:
            loc, scale = self.prior_loc[i], self.prior_scale()[i]
            direction = torch.sign(loc[1] - loc[0])
            start, end = loc[0] - 3 * scale[0] * direction, loc[1] + 3 * scale[1] * direction
            path = start + fractions * (end - start)  # (1, steps, k)
            blocks = self.blocks(z_c).unsqueeze(1).repeat(1, steps, 1, 1)
            blocks[:, :, i] = path
            new_c = blocks.flatten(-2)
        else:
            start = z_c.unsqueeze(1)
            new_c = start + fractions * (self.prior_loc[i] - start)
        new_style = z_style.unsqueeze(1).expand(-1, steps, -1)
        images = self._decode(new_c.flatten(0, 1), new_style.flatten(0, 1))
        return images.unflatten(0, (x.shape[0], steps))
