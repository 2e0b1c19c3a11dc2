"""The error types of bad input and failed writes, shared by eval and lumiere_pl (which imports them from here).

EvalError: bad input; its message names the input, what is wrong and what is expected. `lumiere-eval` prints it on
one line and exits with code 2 (a traceback only under --debug or LUMIERE_DEBUG=1); lumiere_pl's InputError is one.
WriteError: an output that could not be written (a full disk, no permission); the previous file, if any, is kept.
Interrupted: SIGTERM or SIGINT, raised where the process was (eval/signals.py); a KeyboardInterrupt, so whatever
cleans up after Ctrl-C cleans up after SIGTERM too.
"""
from __future__ import annotations

import signal


class EvalError(ValueError):
    """Bad input (a ValueError, so code that catches those keeps working)."""


class WriteError(OSError):
    """An output file could not be written (disk full, no permission, ...). Nothing half-written is left behind:
    the previous file, if any, is kept."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)               # one argument: str(err) is the message, without "[Errno N]"
        self.errno = errno


class Interrupted(KeyboardInterrupt):
    """The process received `signum` (SIGINT: Ctrl-C; SIGTERM: kill, a scheduler's preemption)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)           # the shell's convention: 130 for SIGINT, 143 for SIGTERM


__all__ = ["EvalError", "Interrupted", "WriteError"]
