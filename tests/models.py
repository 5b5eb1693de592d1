"""Models that exist only for tests, given to the CLI as "tests.models:Class"."""

from __future__ import annotations

from bench.ccvae import CCVAE


class BrokenVAE(CCVAE):
    """CCVAE whose training step always fails: a cell that must fail without stopping the sweep."""

    def loss(self, x, y=None):
        raise RuntimeError("deliberately broken model")
