"""Errors a user can fix. Their message is the whole story: it names the file, key or option, says what is wrong
and what is expected. The command-line tools print it as one line and exit 2 (lumiere_pl/cli/errors.py); anything
else that escapes is an internal error (exit 1). The base types are eval's (eval/errors.py), shared by every command.
"""
from __future__ import annotations

from eval.errors import EvalError, Interrupted, WriteError


class InputError(EvalError):
    """A bad input file, option or value (a ValueError, so code that catches those keeps working)."""


class CheckpointError(InputError):
    """A file that is not a readable lumiere-pl checkpoint, or a checkpoint of another model than the one expected."""


__all__ = ["CheckpointError", "InputError", "Interrupted", "WriteError"]
