"""M2 (Kingma, Rezende, Mohamed & Welling, "Semi-supervised learning with deep generative
models", NeurIPS 2014, section 3.1.2), with this suite's networks and Laplace likelihood.

The labels are part of the latent space: z is label-free, y is observed or inferred.

    q(y|x)      `bench.nets.ImageClassifier`: Π_i Ber(y_i) (multi-label) or Cat(y) (multi-class)
    q(z|x,y)    `bench.nets.Encoder` with y concatenated to the trunk's features
    p(x|y,z)    Laplace(decoder([z, y]), 1)
    p(z)        N(0, I), dim z = style_dim + L (the same number of continuous latents as CCVAE)
    p(y)        the labelled set's label frequencies

    ELBO(x, y) = E_{q(z|x,y)} log p(x|y,z) + log p(y) − KL(q(z|x,y) || p(z))      (eq. 6)
    labelled:    L(x, y) = ELBO(x, y) + α log q(y|x)                              (eq. 9)
                 α = alpha_scale · (N / N_labelled) · (C·H·W / 784), alpha_scale = 0.1

α: Kingma et al. use α = 0.1·N against an ELBO summed over the data set, i.e. 0.1·N/N_labelled
per labelled image, tuned for 784 Bernoulli pixels. The ELBO grows with the number of pixel
terms while log q(y|x) does not, so with the literal setting the classifier's gradient is
swamped on 64×64 RGB images: at f = 0.06 on synthfaces (ci preset, 32 px) it stays at the
majority baseline, where the scaled α reaches 0.76–0.80. As for DIVA's α (see
`baselines/diva.py`), the default keeps the per-pixel weight of the original:
`pixel_scaled_alpha=False` gives the literal 0.1·N/N_labelled; `alpha_scale` is an option.
    unlabelled:  U(x) = Σ_y q(y|x) ELBO(x, y) + H[q(y|x)]                          (eq. 7)

U(x) is computed exactly over the C classes for multi-class data (one decoder pass per class,
shared noise). For multi-label data the 2^L sum is infeasible: two label vectors y¹, y² are
sampled from q(y|x) per image and U(x) ≈ ½ Σ_s [ELBO(x, yˢ) − log q(yˢ|x)]; the gradient for
q(y|x) is the leave-one-out score-function estimator (REINFORCE with the other sample's value
as baseline; Kool, van Hoof & Welling 2019), which is unbiased. The reported value is U(x).

Interface operations. ŷ is q(y|x)'s hard prediction (0.5 threshold, or the argmax class):
    classify(x)          q(y|x).
    represent(x)         [E q(z|x, ŷ), q(y|x)].
    characteristic(x)    None: M2 has no characteristic latent.
    generate(y, n)       z ~ p(z), decode([z, y]).
    intervene(x, i, v)   z = E q(z|x, ŷ) (a sample when stochastic), decode([z, ŷ with ŷ_i = v]);
                         multi-class: ŷ = class i.
    swap(a, b)           decode([E q(z|b, ŷ_b), ŷ_a]): only the label *values* of a move, not
                         their characteristics.
    traverse             impossible ("no such traversals are possible for M2", section 6.1).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from bench.api import Capabilities, DataSpec
from bench.labels import (
    clipped_label_prior,
    hard_labels,
    label_log_terms,
    label_prior_log_prob,
    label_probs,
    score_function_term,
)
from bench.nets import Decoder, Encoder, ImageClassifier, gaussian_kl, laplace_log_likelihood

LABEL_SAMPLES = 2


class M2(nn.Module):
    capabilities = Capabilities(characteristic=False, traverse=False)

    def __init__(
        self, spec: DataSpec, style_dim: int = 27, alpha_scale: float = 0.1, pixel_scaled_alpha: bool = True
    ):
        super().__init__()
        self.spec = spec
        self.multilabel = spec.task == "multilabel"
        labels = spec.num_labels
        self.latent_dim = style_dim + labels
        self.classifier = ImageClassifier(spec.image_shape, labels)
        self.encoder = Encoder(spec.image_shape, self.latent_dim, condition_dim=labels)
        self.decoder = Decoder(spec.image_shape, self.latent_dim + labels)
        pixels = spec.image_shape[0] * spec.image_shape[1] * spec.image_shape[2]
        self.alpha = alpha_scale * spec.n_train / max(spec.n_labelled, 1) * (pixels / 784 if pixel_scaled_alpha else 1)
        self.register_buffer("label_prior", clipped_label_prior(spec))

    # ----------------------------------------------------------------- components
    def label_log_prob(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log q(y|x), summed over labels; y may carry a leading axis of samples."""
        return label_log_terms(logits.expand_as(y), y, self.multilabel).sum(-1)

    def log_py(self, y: torch.Tensor) -> torch.Tensor:
        return label_prior_log_prob(y, self.label_prior, self.multilabel).sum(-1)

    def elbo(self, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """ELBO(x, y) per image (eq. 6) with z = loc + scale·noise.

        y and noise may carry a leading axis of S label values per image, (S, B, ·), giving (S, B):
        the encoder's trunk then runs once for x and the decoder once on all S·B latents.
        """
        loc, scale = self.encoder.heads(self.encoder.features(x).expand(*y.shape[:-1], -1), y)
        z = loc + scale * noise
        means = self.decoder(torch.cat([z, y], -1).reshape(-1, z.shape[-1] + y.shape[-1]))  # (S·B, C, H, W)
        log_px = laplace_log_likelihood(x.repeat(len(means) // len(x), 1, 1, 1), means).view(y.shape[:-1])
        kl = gaussian_kl(loc, scale, torch.zeros_like(loc), torch.ones_like(scale)).sum(-1)
        return log_px + self.log_py(y) - kl

    # ----------------------------------------------------------------- objectives
    def supervised_objective(
        self, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ELBO(x, y), log q(y|x)) per image; the objective is ELBO + α log q(y|x)."""
        return self.elbo(x, y, noise), self.label_log_prob(self.classifier(x), y)

    def unsupervised_objective(
        self, x: torch.Tensor, noise: torch.Tensor, uniform: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(U(x), surrogate) per image. noise: (S, B, D); uniform: (S, B, L) draws y ~ q(y|x).

        Multi-class: U(x) is exact over the classes (noise[0] shared by all; uniform unused).
        """
        logits = self.classifier(x)
        if not self.multilabel:
            log_q = F.log_softmax(logits, -1)
            classes = torch.eye(self.spec.num_labels, dtype=x.dtype, device=x.device)
            every_class = classes.unsqueeze(1).expand(-1, len(x), -1)  # (C, B, C): each image with each class
            elbos = self.elbo(x, every_class, noise[0].expand(len(classes), -1, -1)).transpose(0, 1)  # (B, C)
            value = (log_q.exp() * (elbos - log_q)).sum(-1)  # eq. (7), exact
            return value, value
        samples = (uniform < torch.sigmoid(logits)).to(x.dtype)  # (S, B, L), y ~ q(y|x)
        log_q = self.label_log_prob(logits, samples)  # (S, B)
        rewards = self.elbo(x, samples, noise) - log_q  # (S, B)
        value = rewards.mean(0)
        score = score_function_term(log_q, rewards).mean(0)  # value 0; leave-one-out across the samples
        return value, value + score

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if y is not None:
            noise = torch.randn(len(x), self.latent_dim, device=x.device, dtype=x.dtype)
            elbo, log_qy_x = self.supervised_objective(x, y, noise)
            total = elbo + self.alpha * log_qy_x
            logged = {"objective": elbo.detach().mean(), "log_qy_x": log_qy_x.detach().mean()}
            return -total.mean(), logged
        noise = torch.randn(LABEL_SAMPLES, len(x), self.latent_dim, device=x.device, dtype=x.dtype)
        uniform = torch.rand(LABEL_SAMPLES, len(x), self.spec.num_labels, device=x.device, dtype=x.dtype)
        value, surrogate = self.unsupervised_objective(x, noise, uniform)
        return -surrogate.mean(), {"objective": value.detach().mean()}

    # ----------------------------------------------------------------- interface
    def _hard_labels(self, x: torch.Tensor) -> torch.Tensor:
        return hard_labels(self.classifier(x), self.multilabel)

    def _decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, y], -1)).clamp(0, 1)

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return label_probs(self.classifier(x), self.multilabel)

    @torch.no_grad()
    def represent(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.encoder(x, self._hard_labels(x))[0], self.classify(x)], -1)

    def characteristic(self, x: torch.Tensor) -> None:
        return None

    @torch.no_grad()
    def generate(self, y: torch.Tensor, n: int = 1) -> torch.Tensor:
        repeated = y.repeat_interleave(n, 0)
        z = torch.randn(len(repeated), self.latent_dim, device=y.device, dtype=y.dtype)
        return self._decode(z, repeated).unflatten(0, (len(y), n))

    @torch.no_grad()
    def intervene(self, x: torch.Tensor, i: int, value: float, stochastic: bool = False) -> torch.Tensor:
        y = self._hard_labels(x)
        loc, scale = self.encoder(x, y)
        z = loc + scale * torch.randn_like(loc) if stochastic else loc
        y = y.clone()
        if self.multilabel:
            y[:, i] = value
        else:
            y = F.one_hot(torch.full((len(x),), i, device=x.device), self.spec.num_labels).to(x.dtype)
        return self._decode(z, y)

    @torch.no_grad()
    def swap(self, x_char: torch.Tensor, x_ctx: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x_ctx, self._hard_labels(x_ctx))[0]
        return self._decode(z, self._hard_labels(x_char))

    def traverse(self, x: torch.Tensor, i: int, steps: int) -> None:
        return None
