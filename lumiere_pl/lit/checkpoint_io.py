"""Atomic checkpoint writes: a kill (or a full disk) during a save never leaves a truncated checkpoint in place.

The checkpoint is written to `<path>.tmp`, flushed and fsynced, then renamed over `<path>` (os.replace is atomic on
POSIX and Windows) and the folder is fsynced so the rename survives a power loss. Until the rename, `<path>` is the
previous, complete checkpoint.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lumiere_pl.utils.atomic import atomic_open


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    with atomic_open(path) as f:                        # <path>.tmp, fsync, rename, fsync the folder
        torch.save(obj, f)


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local saves go through atomic_torch_save (remote URLs: Lightning's own writer)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)
