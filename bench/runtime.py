"""Process-wide settings: for speed, applied once when a command or a sweep worker starts, and for exactness
(`deterministic_kernels`, around a training run with `--deterministic`).

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
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

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



CUBLAS_WORKSPACE = ":4096:8"  # what cuBLAS needs for reproducible matrix products (CUDA ≥ 10.2)


@contextmanager
def deterministic_kernels(enabled: bool) -> Iterator[None]:
    """With `enabled`, deterministic algorithms for the block (`torch.use_deterministic_algorithms`: an operation
    without one raises instead of running; cuDNN deterministic and without benchmarking; cuBLAS's workspace
    configured), restored afterwards. On the CPU the trainer's numbers are exact without it; on a GPU, atomic
    adds in backward passes and cuDNN's algorithm search make runs differ in the last digits unless it is on."""
    if not enabled:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = before[3] or CUBLAS_WORKSPACE
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1], before[2]
        if before[3] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "neon",
             "asimd")
"""The CPU features that decide which kernels oneDNN and MKL run, and so a result's last digits."""


def _cpuinfo_field(name: str) -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() == name:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what `platform` knows: another CPU gives other last digits."""
    return _cpuinfo_field("model name") or platform.processor() or "unknown"


def environment(device: torch.device | str | None = None, deterministic: bool | None = None) -> dict[str, Any]:
    """Where a number was measured: library versions, the CPU (name, kernel-relevant flags), threads, the device and
    GPU, the math libraries' settings and whether deterministic kernels were on. Recorded with every run
    (`environment.json`) and every stored set, and compared by `bench check` when it reports a regression."""
    import numpy
    import scipy

    present = set((_cpuinfo_field("flags") or _cpuinfo_field("Features")).split())
    device = torch.device(device) if device is not None else None
    cuda = device is not None and device.type == "cuda" and torch.cuda.is_available()
    return {
        "torch": torch.__version__, "numpy": numpy.__version__, "scipy": scipy.__version__,
        "python": platform.python_version(), "machine": platform.machine(), "cpu": cpu_name(),
        "cpu_flags": " ".join(flag for flag in CPU_FLAGS if flag in present), "threads": torch.get_num_threads(),
        "device": str(device) if device is not None else "", "gpu": torch.cuda.get_device_name(device) if cuda else "",
        "cuda": torch.version.cuda or "", "cudnn": str(torch.backends.cudnn.version() or "") if cuda else "",
        "mkl": torch.backends.mkl.is_available(), "mkldnn": torch.backends.mkldnn.is_available(),
        "MKL_CBWR": os.environ.get("MKL_CBWR", ""), "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        "deterministic": deterministic,
    }


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block (or, as `@one_thread()`, the function) on one CPU thread. What every run of a data set shares
    (the oracle, the factor reader, the GP head) is trained this way: a float reduction's order depends on the
    thread count, so a fit on one thread is the same whichever process builds it (a sweep's worker or
    `bench oracle`) and however many cores it has."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
