"""Modified DIVA (Ilse et al. 2019, as modified in the CCVAE paper's appendix C.4).

The modifications of C.4: no domain latent z_d, z = {z_c, z_\\c}, and CCVAE's factorisation
q(y|z_c) = Π_i q(y_i|z_c^i) with a per-label prior p(z_c^i|y_i). The latent structure, priors,
classifier and interface operations are therefore exactly those of
`bench.characteristic.CharacteristicVAE`; only the objective differs from CCVAE's.

Supervised (C.4, L_SDIVA), per labelled image:
    L_S(x, y) = E_{q(z|x)} log p(x|z) − β KL(q(z_\\c|x) || p(z_\\c)) − β KL(q(z_c|x) || p(z_c|y))
Unsupervised (C.4, L_UDIVA), y imputed by q(y|z_c):
    L_U(x) = E_{q(z|x)} log p(x|z) − β KL(q(z_\\c|x) || p(z_\\c))
             + β E_{q(z_c|x) q(y|z_c)} [log p(z_c|y) − log q(z_c|x)]
             + β E_{q(z_c|x) q(y|z_c)} [log p(y) − log q(y|z_c)]
Total: Σ_S L_S + Σ_U L_U + α Σ_S E_{q(z_c|x)} log q(y|z_c).

Estimation: one reparameterised sample z; the KL terms in closed form. With per-label factors
the expectation over y splits into L two-state sums (Σ_i Σ_{y_i ∈ {0,1}} q(y_i|z_c^i)·(…)),
computed exactly; multi-class data sum over the C classes exactly. The classifier sees the
reparameterised z_c (DIVA has no C.3.1 trick).

β = 1 (C.4). α: the original DIVA used α = 3500 for 28×28 images, i.e. about 4.5 per pixel of
log-likelihood; to keep the classifier's weight relative to the reconstruction term the
same, the default is α = 3500 · (C·H·W) / 784 (54,857 for 64×64 RGB, 4,571 for 32×32 grey).
Both are options (`beta`, `alpha`).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from bench.api import DataSpec
from bench.characteristic import CharacteristicVAE
from bench.nets import gaussian_kl, laplace_log_likelihood, normal_log_prob

ORIGINAL_ALPHA = 3500.0
ORIGINAL_PIXELS = 28 * 28


class DIVA(CharacteristicVAE):
    def __init__(
        self,
        spec: DataSpec,
        latents_per_label: int = 1,
        style_dim: int = 27,
        beta: float = 1.0,
        alpha: float | None = None,
    ):
        super().__init__(spec, latents_per_label, style_dim)
        self.beta = beta
        self.alpha = ORIGINAL_ALPHA * math.prod(spec.image_shape) / ORIGINAL_PIXELS if alpha is None else alpha

    def _reconstruction_and_style(self, x: torch.Tensor, noise: torch.Tensor):
        loc, scale = self.encoder(x)
        z = loc + scale * noise
        (loc_c, loc_s), (scale_c, scale_s) = self.split(loc), self.split(scale)
        log_px_z = laplace_log_likelihood(x, self.decoder(z))
        kl_style = gaussian_kl(loc_s, scale_s, torch.zeros_like(loc_s), torch.ones_like(scale_s)).sum(-1)
        return self.split(z)[0], loc_c, scale_c, log_px_z, kl_style

    def supervised_objective(
        self, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_S(x, y), log q(y|z_c)) per image for given N(0, I) noise (B, D)."""
        z_c, loc_c, scale_c, log_px_z, kl_style = self._reconstruction_and_style(x, noise)
        prior_loc, prior_scale = self.conditional_prior(y)
        kl_c = gaussian_kl(loc_c, scale_c, prior_loc, prior_scale).sum(-1)
        objective = log_px_z - self.beta * kl_style - self.beta * kl_c  # L_SDIVA (C.4)
        return objective, self.label_log_prob(z_c, y)

    def unsupervised_objective(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """L_U(x) per image, the expectation over y computed exactly."""
        z_c, loc_c, scale_c, log_px_z, kl_style = self._reconstruction_and_style(x, noise)
        log_qzc_x = normal_log_prob(z_c, loc_c, scale_c).sum(-1)
        logits = self.label_logits(z_c)
        if self.multilabel:
            expectation = 0
            for value, log_q in ((1.0, F.logsigmoid(logits)), (0.0, F.logsigmoid(-logits))):
                y = torch.full_like(logits, value)
                prior_loc, prior_scale = self.conditional_prior(y)
                log_pzc_y = self.blocks(normal_log_prob(z_c, prior_loc, prior_scale)).sum(-1)  # (B, L)
                expectation = expectation + (log_q.exp() * (log_pzc_y + self.label_prior_log_prob(y) - log_q)).sum(-1)
        else:
            log_q = F.log_softmax(logits, -1)
            expectation = self.expectation_over_classes(z_c, log_q.exp(), log_q)
        return log_px_z - self.beta * kl_style + self.beta * (expectation - log_qzc_x)  # L_UDIVA (C.4)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        noise = torch.randn(x.shape[0], self.char_dim + self.style_dim, device=x.device, dtype=x.dtype)
        if y is None:
            objective = self.unsupervised_objective(x, noise)
            total = objective
            logged = {}
        else:
            objective, classifier = self.supervised_objective(x, y, noise)
            total = objective + self.alpha * classifier
            logged = {"log_qy_zc": classifier.detach().mean()}
        logged["objective"] = objective.detach().mean()
        return -total.mean(), logged
