"""Models that exist only for tests, given to the CLI as "tests.models:Class"."""

from __future__ import annotations

from bench.ccvae import CCVAE


class BrokenVAE(CCVAE):
    """CCVAE whose training step always fails: a cell that must fail without stopping the sweep."""

    def loss(self, x, y=None):
        raise RuntimeError("deliberately broken model")


class DoNothingVAE(CCVAE):
    """A user's model whose interventions and swaps do nothing: they return their input unchanged."""

    def intervene(self, x, i, value, stochastic=False):
        return x.clone()

    def swap(self, x_char, x_ctx):
        return x_ctx.clone()
