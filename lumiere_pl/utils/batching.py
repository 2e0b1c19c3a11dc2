"""Batches that fit: work over consecutive batches, halved when the device runs out of memory.

Rendering for evaluation wants the largest batch the device holds; clips are seeded per clip, so the batch size
changes the speed, never the videos.
"""
from __future__ import annotations

from typing import Callable, Iterator, List, Sequence, Tuple, TypeVar

import torch

T = TypeVar("T")
CPU_AUTO = 16    # "auto" on the CPU: Linux kills a process that over-allocates instead of failing the allocation


def is_oom(err: BaseException) -> bool:
    """A CUDA out-of-memory error, or the CPU allocator's refusal."""
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "can't allocate memory" in str(err))


def auto_batch_size(n: int, device: torch.device | str) -> int:
    """Where "auto" starts: all n items on a GPU (halved on out-of-memory), CPU_AUTO on the CPU."""
    return max(1, n if torch.device(device).type == "cuda" else min(n, CPU_AUTO))


def fitting_batches(items: Sequence, size: int, run: Callable[[List], T]) -> Iterator[Tuple[List, T]]:
    """(batch, run(batch)) over consecutive batches of at most `size` items. A batch that runs out of memory is
    retried at half its size, rounded up (a single item re-raises); later batches keep the size that fitted."""
    i = 0
    while i < len(items):
        batch = list(items[i:i + size])
        try:
            out = run(batch)
        except RuntimeError as err:                      # torch.OutOfMemoryError is a RuntimeError
            if not is_oom(err) or len(batch) == 1:
                raise
            size = (len(batch) + 1) // 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        yield batch, out
        i += len(batch)
