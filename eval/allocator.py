"""glibc's allocator, tuned for tensors on the CPU.

By default glibc serves every allocation above a (dynamic, at most 32 MiB) threshold with its own mmap and returns it
to the OS when freed, so each large activation of each network call costs fresh zeroed pages: page faults, kernel
time. Keeping freed memory in the heap (no mmap for single allocations, no trimming) removes that; measured
(docs/results/2026-12-03-benchmarks-allocator.md): 0.55x the time of guided sampling, 0.90x a train step at
64 px, identical outputs, up to 1.3x the peak memory; 0.62-0.86x the time of an I3D batch for FVD. Called by
every lumiere-* command, lumiere-eval included (lumiere_pl.utils.allocator re-exports it: this package imports
nothing of lumiere_pl); LUMIERE_MALLOC=system keeps glibc's defaults. Without glibc (macOS, musl) it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3       # mallopt parameters (glibc malloc.h)
KEEP = 2 ** 31 - 1                                # the largest value mallopt takes: never mmap, never trim


def keep_freed_memory() -> bool:
    """Tune glibc's malloc for this process (idempotent); True when it took effect."""
    if os.environ.get("LUMIERE_MALLOC", "").lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):                # no glibc: nothing to tune
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP))
