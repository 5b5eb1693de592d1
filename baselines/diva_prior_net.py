"""Modified DIVA with DIVA's own conditional prior: p_θ(z_c | y) a network of the whole label vector (Ilse et al.
2019, §3: p_θy(z_y | y) = N(μ_θy(y), σ²_θy(y))), instead of CCVAE's per-label prior.

The CCVAE paper's C.4 writes modified DIVA's prior as p_ψ(z_c | y), the symbol of CCVAE's own per-label prior
p_ψ(z_c^i | y_i), which is the reading `baselines.diva` takes (the default grid's `diva`). This model is the other
reading, registered as `diva-prior-net` outside the default grid: everything of `baselines.diva.DIVA` (the
objective, β, α, the factorised classifier q(y|z_c) = Π_i q(y_i|z_c^i)) except the prior, which is

    p_θ(z_c | y) = N(μ_θ(y), diag σ²_θ(y)),  [μ_θ, log-softplus σ_θ] = W₂ LeakyReLU(W₁ y + b₁) + b₂

with y the label vector (multi-label) or the one-hot class (multi-class), 64 hidden units (DIVA's network has a
batch norm between; left out so that a single image's prior does not depend on its batch).

Unsupervised (C.4, L_UDIVA) with this prior: the expectation over y ∈ {0, 1}^L no longer splits per label, so

    E_{q(y|z_c)} [log p_θ(z_c|y) + log p(y) − log q(y|z_c)]
        = E_{q(y|z_c)} log p_θ(z_c|y) − KL(q(y|z_c) || p(y))

takes the KL in closed form (both factorise per label) and the first term from `label_samples` samples of
q(y|z_c), with the score-function estimator (leave-one-out baseline, `bench.labels.score_function_term`) for its
gradient with respect to q. Multi-class data sum over the C classes exactly, the classifier being the Bayes
classifier of this prior (as `bench.characteristic` derives it).

Interface operations differ only where the prior is read: generate(y) samples p_θ(z_c | y); intervene(x, i, v)
sets z_c^i to block i of μ_θ(ŷ with ŷ_i = v), ŷ the model's own labels of x (the others stay E[z_c | x]);
traverse(x, i, s) walks block i from μ_θ(ŷ_{i=0}) − 3σ·d to μ_θ(ŷ_{i=1}) + 3σ·d per image (the per-label
prior's walk); multi-class: the class means μ_θ(e_c).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from baselines.diva import DIVA
from bench.api import DataSpec
from bench.labels import hard_labels, score_function_term
from bench.nets import MIN_SCALE, normal_log_prob

PRIOR_HIDDEN = 64


class DIVAPriorNet(DIVA):
    def __init__(self, spec: DataSpec, latents_per_label: int = 1, style_dim: int = 27, beta: float = 1.0,
                 alpha: float | None = None, label_samples: int = 8):
        super().__init__(spec, latents_per_label, style_dim, beta, alpha)
        del self.prior_loc, self.prior_scale_raw  # the per-label prior's parameters: this model has a network
        self.prior_net = nn.Sequential(nn.Linear(spec.num_labels, PRIOR_HIDDEN), nn.LeakyReLU(),
                                       nn.Linear(PRIOR_HIDDEN, 2 * self.char_dim))
        self.label_samples = label_samples

    # ----------------------------------------------------------------- the prior
    def conditional_prior(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and scale of p_θ(z_c | y), each (..., k·L)."""
        loc, raw = self.prior_net(y).chunk(2, -1)
        return loc, F.softplus(raw).clamp(min=MIN_SCALE)

    def class_log_joint(self, z_c: torch.Tensor) -> torch.Tensor:
        """log π_c + log p_θ(z_c | e_c) for every class c (multi-class): (..., C)."""
        classes = torch.eye(self.spec.num_labels, device=z_c.device, dtype=z_c.dtype)
        loc, scale = self.conditional_prior(classes)
        return normal_log_prob(z_c.unsqueeze(-2), loc, scale).sum(-1) + self.label_prior.log()

    # ----------------------------------------------------------------- the unsupervised objective
    def unsupervised_objective(self, x: torch.Tensor, noise: torch.Tensor,
                               label_noise: torch.Tensor | None = None) -> torch.Tensor:
        """L_U(x) per image; multi-label: the expectation of log p_θ(z_c|y) over S samples y ~ q(y|z_c) drawn by
        thresholding `label_noise` (S, B, L) uniform in [0, 1) (default: drawn here), KL(q(y|z_c) || p(y))
        exact."""
        if not self.multilabel:
            return super().unsupervised_objective(x, noise)
        z_c, loc_c, scale_c, log_px_z, kl_style = self._reconstruction_and_style(x, noise)
        log_qzc_x = normal_log_prob(z_c, loc_c, scale_c).sum(-1)
        logits = self.label_logits(z_c)
        q = torch.sigmoid(logits)
        if label_noise is None:
            label_noise = torch.rand(self.label_samples, *logits.shape, device=x.device, dtype=x.dtype)
        y = (label_noise < q.detach()).to(x.dtype)  # (S, B, L) samples of q(y | z_c)
        prior_loc, prior_scale = self.conditional_prior(y)
        log_pzc_y = normal_log_prob(z_c, prior_loc, prior_scale).sum(-1)  # (S, B)
        log_qy = (y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits)).sum(-1)
        expectation = log_pzc_y.mean(0) + score_function_term(log_qy, log_pzc_y).mean(0)
        prior = self.label_prior
        kl_y = (q * (q.clamp_min(1e-12).log() - prior.log())
                + (1 - q) * ((1 - q).clamp_min(1e-12).log() - (1 - prior).log())).sum(-1)
        return log_px_z - self.beta * kl_style + self.beta * (expectation - kl_y - log_qzc_x)  # L_UDIVA (C.4)

    # ----------------------------------------------------------------- interface
    def _prior_block(self, labels: torch.Tensor, i: int, value: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Block i of p_θ(z_c | labels with label i set to `value`): (loc, scale), each (B, k)."""
        labels = labels.clone()
        labels[:, i] = value
        loc, scale = self.conditional_prior(labels)
        return self.blocks(loc)[:, i], self.blocks(scale)[:, i]

    def _own_labels(self, z_c: torch.Tensor) -> torch.Tensor:
        return hard_labels(self.label_logits(z_c), self.multilabel)

    @torch.no_grad()
    def intervene(self, x: torch.Tensor, i: int, value: float, stochastic: bool = False) -> torch.Tensor:
        z_c, z_style = self.split(self._posterior_mean(x))
        if not self.multilabel:
            loc, scale = self.conditional_prior(F.one_hot(torch.full((len(x),), i, device=x.device),
                                                          self.spec.num_labels).to(x.dtype))
            return self._decode(loc + scale * torch.randn_like(loc) if stochastic else loc, z_style)
        blocks = self.blocks(z_c).clone()
        loc, scale = self._prior_block(self._own_labels(z_c), i, float(value))
        blocks[:, i] = loc + scale * torch.randn_like(loc) if stochastic else loc
        return self._decode(blocks.flatten(-2), z_style)

    @torch.no_grad()
    def traverse(self, x: torch.Tensor, i: int, steps: int) -> torch.Tensor:
        z_c, z_style = self.split(self._posterior_mean(x))
        fractions = torch.linspace(0, 1, steps, device=x.device).view(1, steps, 1)
        if self.multilabel:
            labels = self._own_labels(z_c)
            (loc0, scale0), (loc1, scale1) = self._prior_block(labels, i, 0.0), self._prior_block(labels, i, 1.0)
            direction = torch.sign(loc1 - loc0)
            start, end = loc0 - 3 * scale0 * direction, loc1 + 3 * scale1 * direction  # (B, k)
            path = start.unsqueeze(1) + fractions * (end - start).unsqueeze(1)  # (B, steps, k)
            blocks = self.blocks(z_c).unsqueeze(1).repeat(1, steps, 1, 1)
            blocks[:, :, i] = path
            new_c = blocks.flatten(-2)
        else:
            target, _ = self.conditional_prior(F.one_hot(torch.tensor(i, device=x.device),
                                                         self.spec.num_labels).to(x.dtype))
            start = z_c.unsqueeze(1)
            new_c = start + fractions * (target - start)
        new_style = z_style.unsqueeze(1).expand(-1, steps, -1)
        images = self._decode(new_c.flatten(0, 1), new_style.flatten(0, 1))
        return images.unflatten(0, (x.shape[0], steps))

