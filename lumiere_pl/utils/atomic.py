"""Atomic file writes: a reader, a kill or a full disk never sees half a file.

Every file is written to `tmp_path(path)` (`<name>.tmp` beside it), flushed and fsynced, then renamed over `path`
(os.replace is atomic on POSIX and Windows) and the folder fsynced so the rename survives a power loss. Until the
rename `path` is the previous file, if any. A failed write removes its temporary file and raises WriteError naming
`path`; a temporary file left by a killed process is overwritten by the next write.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from eval.atomic import unwritable
from lumiere_pl.errors import WriteError


def tmp_path(path: str | Path) -> Path:
    """Where `path` is written before it is renamed into place."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


def _fsync_dir(folder: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):                      # POSIX: make the rename itself durable
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """`with atomic_path(path) as tmp: writer(tmp)`, for writers that take a file name: path appears, complete, when
    the block ends without error."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        commit(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise write_error(path, err) from err
        raise


def commit(tmp: Path, path: Path) -> None:
    """Make the complete temporary file `tmp` the file `path`: fsync, rename, fsync the folder."""
    _fsync_file(tmp)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_error(path: Path, err: OSError) -> WriteError:
    return WriteError(f"{path}: cannot write ({err.strerror or err}); expected a writable folder with free space "
                      "(any previous file is kept)", err.errno)


def check_writable(target: str | Path, flag: str, file: bool = False) -> Path:
    """Fail before any heavy work when the folder `target` (or the file `target`, with file=True) could not be
    written (eval.atomic.unwritable: nothing is created); WriteError naming `flag` and `target`."""
    why = unwritable(target, file)
    if why:
        raise WriteError(f"{flag} {target}: cannot write there ({why}); expected a writable folder")
    return Path(target)


@contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """`with atomic_open(path) as f: f.write(...)`: path appears, complete, when the block ends without error."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


__all__ = ["atomic_open", "atomic_path", "check_writable", "commit", "tmp_path", "write_error", "write_bytes",
           "write_text"]
