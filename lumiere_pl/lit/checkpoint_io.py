"""Atomic checkpoint writes: a kill (or a full disk) during a save never leaves a truncated checkpoint in place.

The checkpoint is written to a new temporary file beside `<path>` (eval/atomic.py: `.NAME.RANDOM.tmp.ckpt`),
flushed and fsynced, then renamed over `<path>` (os.replace is atomic on POSIX and Windows) and the folder is fsynced
so the rename survives a power loss. Until the rename, `<path>` is the previous, complete checkpoint. Ctrl-C and
SIGTERM remove the temporary file; one left by a SIGKILL or a power loss is removed by the next save of the same path
(one process writes a run's checkpoints: rank 0).
"""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lumiere_pl.utils.atomic import TMP_MARK, atomic_open


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    path = Path(path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*{TMP_MARK}{glob.escape(path.suffix)}"):
        stale.unlink(missing_ok=True)                   # left by a killed save of this path
    with atomic_open(path) as f:                        # a temporary file beside it, fsync, rename, fsync the folder
        torch.save(obj, f)


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local saves go through atomic_torch_save (remote URLs: Lightning's own writer)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)
