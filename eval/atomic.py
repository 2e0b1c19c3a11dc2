"""Atomic file writes: a temporary file beside the target, renamed over it when complete, removed when not.
A reader (or an interrupted run) sees the old file or the new one, never half of one."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path with the target's suffix (np.savez, savefig go by it); rename on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)                     # as a plain open() would create it (mkstemp makes it 0600)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def unwritable(target: str | Path, file: bool = False) -> str | None:
    """Why the folder `target` (the file `target`, with file=True) could not be written, or None: the nearest part of
    its path that exists must be a folder this process may write to (the rest is made when the first file is
    written). Nothing is created. For checking outputs before any heavy work (lumiere-eval, lumiere_pl's commands)."""
    target = Path(target)
    existing = target.parent if file else target
    while not existing.exists():                                     # "/" and "." always exist
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is a folder this process may not write to"
    return None


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, default=str) + "\n")
