"""The harness of the label-structured VAE benchmark: data, networks, CCVAE, trainer, sweep."""

import os

__version__ = "0.2.0"

# MKL's strict conditional numerical reproducibility, unless the user chose another mode. Without it, on an
# AVX-512 CPU the last digits of a matrix product depend on the memory alignment of its operands, so one
# evaluation gave 1.5204992 inside `bench run` and 1.5204995 in a fresh `bench eval` process. MKL reads the
# variable at its first call: importing any `bench` module before torch runs a product is early enough.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
