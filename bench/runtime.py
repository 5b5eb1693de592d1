"""Process-wide settings for speed, applied once when a command or a sweep worker starts.

glibc returns every freed block above its mmap threshold (128 KiB, growing to at most 32 MiB)
to the kernel, so on the CPU each training step's activations (a 200×32×32×32 float tensor is
26 MB) come back as fresh pages that the kernel must zero on first touch. Raising the mmap
threshold to its maximum and the trim threshold above any working set keeps those blocks in
the heap for the next step: CCVAE's training step runs about 25 % faster on a 2-core CPU
(`python -m bench perf`; BENCH_MALLOC=default keeps glibc's defaults, to compare).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's upper limit on 64-bit systems
TRIM_THRESHOLD = 1 << 30


def tune_cpu_allocator() -> str:
    """Keep freed tensor memory in the heap; returns "tuned", or "default" where it does not apply."""
    if os.environ.get("BENCH_MALLOC") == "default" or not sys.platform.startswith("linux"):
        return "default"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return "default"
    tuned = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return "tuned" if tuned else "default"

