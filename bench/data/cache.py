"""Where cached files live and what they are called: data sets (`bench.data.cached`), oracles and the helpers
evaluators build.

The cache directory is `--cache-dir`, else $BENCH_CACHE, else ~/.cache/ccvae-bench. A file's name is its kind and a
hash of everything that went into it (`cache_key`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CACHE_FORMAT = 1


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("BENCH_CACHE"):
        return Path(os.environ["BENCH_CACHE"]).expanduser()
    return Path.home() / ".cache" / "ccvae-bench"


def cache_key(name: str, params: dict) -> str:
    text = json.dumps({"format": CACHE_FORMAT, "name": name, **params}, sort_keys=True, default=str)
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.pt"
