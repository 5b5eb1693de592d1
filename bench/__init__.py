"""The harness of the label-structured VAE benchmark: data, networks, CCVAE, trainer, sweep."""

__version__ = "0.2.0"
