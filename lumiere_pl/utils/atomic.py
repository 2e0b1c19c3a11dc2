"""Atomic file writes for lumiere_pl: the project's one writer, eval/atomic.py (unique temporary file beside the
target, fsync, rename, fsync the folder; removed on any exception, Ctrl-C and SIGTERM included; WriteError naming
the file, "no space left on DEVICE while writing FILE" for a full disk), plus check_writable for the commands.
"""
from __future__ import annotations

from pathlib import Path

from eval.atomic import (TMP_MARK, atomic_open, atomic_path, commit, discard, new_temp, unwritable, write_bytes,
                         write_error, write_json, write_text)
from lumiere_pl.errors import WriteError


def check_writable(target: str | Path, flag: str, file: bool = False) -> Path:
    """Fail before any heavy work when the folder `target` (or the file `target`, with file=True) could not be
    written (eval.atomic.unwritable: nothing is created); WriteError naming `flag` and `target`."""
    why = unwritable(target, file)
    if why:
        raise WriteError(f"{flag} {target}: cannot write there ({why}); expected a writable folder")
    return Path(target)


__all__ = ["TMP_MARK", "atomic_open", "atomic_path", "check_writable", "commit", "discard", "new_temp",
           "write_bytes", "write_error", "write_json", "write_text"]
