"""Errors a user can fix. Their message is the whole story: it names the file, key or option, says what is wrong
and what is expected. The command-line tools print it as one line and exit 2 (lumiere_pl/cli/errors.py); anything
else that escapes is an internal error (exit 1).
"""
from __future__ import annotations


class InputError(ValueError):
    """A bad input file, option or value (a ValueError, so code that catches those keeps working)."""


class CheckpointError(InputError):
    """A file that is not a readable lumiere-pl checkpoint, or a checkpoint of another model than the one expected."""


class WriteError(OSError):
    """An output file could not be written (disk full, no permission, ...). Nothing half-written is left behind:
    the previous file, if any, is kept."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)               # one argument: str(err) is the message, without "[Errno N]"
        self.errno = errno


__all__ = ["CheckpointError", "InputError", "WriteError"]
