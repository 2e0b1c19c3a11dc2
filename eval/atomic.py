"""Atomic file writes, the one writer of the project (eval and lumiere_pl alike): a reader, a kill or a full disk
never sees half a file.

Every file is written to a new temporary file beside it (`.NAME.RANDOM.tmp.SUFFIX`: unique, so two writers never
share one, and with the target's suffix, which np.savez and savefig go by), flushed and fsynced, then renamed over
the target (os.replace, atomic on POSIX and Windows) and the folder fsynced so the rename survives a power loss.
Until the rename the target is the previous file, if any. On any exception (KeyboardInterrupt and SIGTERM included,
eval/signals.py) the temporary file is removed; an OSError becomes a WriteError naming the target: "no space left on
DEVICE while writing FILE" for a full disk, also when the writer (torch.save, PyAV) reports it in its own words.
"""
from __future__ import annotations

import contextlib
import errno as errnos
import json
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

from .errors import WriteError

TMP_MARK = ".tmp"             # in the name of every temporary file: `.NAME.RANDOM.tmp.SUFFIX`


def new_temp(path: str | Path) -> Path:
    """A new, empty temporary file beside `path` (its folder made first), with the mode a plain open() gives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{TMP_MARK}{path.suffix}", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)                     # mkstemp makes it 0600
    return Path(tmp)


def _fsync(path: Path, folder: bool = False) -> None:
    if folder and not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(path, (os.O_RDONLY | os.O_DIRECTORY) if folder else os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:                            # /dev/full and some file systems cannot fsync: not a failure
        if err.errno not in (errnos.EINVAL, errnos.ENOTSUP, errnos.EROFS):
            raise
    finally:
        os.close(fd)


def commit(tmp: Path, path: Path) -> None:
    """Make the complete temporary file `tmp` the file `path`: fsync, rename, fsync the folder."""
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(path.parent, folder=True)


def discard(tmp: Optional[Path]) -> None:
    """Remove a temporary file (no error when it is gone)."""
    if tmp is not None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def device_of(path: Path) -> str:
    """The mount point holding `path` and its file system type, e.g. "/data (ext4)"; "its device" when unknown."""
    try:
        where = Path(os.path.realpath(path))
        while not where.exists():
            where = where.parent
        while not os.path.ismount(where):
            where = where.parent
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            types = {fields[1]: fields[2] for fields in (line.split() for line in f) if len(fields) > 2}
        return f"{where} ({types[str(where)]})" if str(where) in types else str(where)
    except OSError:
        return "its device"


def write_error(path: Path, err: OSError) -> WriteError:
    """The one-line WriteError of a failed write of `path`."""
    if isinstance(err, WriteError):
        return err
    code = err.errno
    if code in (errnos.ENOSPC, errnos.EDQUOT):
        what = "no space left" if code == errnos.ENOSPC else "disk quota exceeded"
        return WriteError(f"{what} on {device_of(path.parent)} while writing {path}; free some space or write "
                          "elsewhere (any previous file is kept)", code)
    if code == errnos.EFBIG:
        return WriteError(f"{path}: file too large for {device_of(path.parent)} or this process's file size limit "
                          "(any previous file is kept)", code)
    return WriteError(f"{path}: cannot write ({err.strerror or err}); expected a writable folder with free space "
                      "(any previous file is kept)", code)


def _disk_full(folder: Path) -> bool:
    """Whether the file system of `folder` has no block left for this process (a writer that failed in its own
    words, e.g. torch's "enforce fail", most likely met a full disk)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail == 0


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """`with atomic_path(path) as tmp: writer(tmp)`, for writers that take a file name: `path` appears, complete,
    when the block ends without error."""
    path = Path(path)
    tmp = None
    try:
        tmp = new_temp(path)
        yield tmp
        commit(tmp, path)
    except BaseException as err:
        discard(tmp)
        if isinstance(err, OSError):
            raise write_error(path, err) from err
        if isinstance(err, Exception) and _disk_full(path.parent):
            raise write_error(path, OSError(errnos.ENOSPC, os.strerror(errnos.ENOSPC))) from err
        raise


class _Recording:
    """A file object that remembers the OSError of a failed write: writers such as torch.save replace it with their
    own words ("enforce fail at inline_container.cc"), which name neither the file nor the cause."""

    def __init__(self, f: BinaryIO):
        self._f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name):
        return getattr(self._f, name)


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """`with atomic_open(path) as f: f.write(...)`: `path` appears, complete, when the block ends without error."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw:
            f = _Recording(raw)
            try:
                yield f                                               # type: ignore[misc]
            except Exception as err:
                if f.error is not None and not isinstance(err, OSError):
                    raise f.error from err
                raise


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
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


__all__ = ["TMP_MARK", "atomic_open", "atomic_path", "commit", "device_of", "discard", "new_temp", "unwritable",
           "write_bytes", "write_error", "write_json", "write_text"]
