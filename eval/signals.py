"""Interrupts, the same in every command: SIGINT (Ctrl-C) and SIGTERM raise Interrupted where the main thread is, so
every `finally` and `except BaseException` runs (temporary files removed, worker processes stopped), and the command
exits with 128 + the signal's number (130, 143) and one line.

A second signal while the first one is being cleaned up after is noted, not raised: cleanup is not cut short.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator, Optional

from .errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list = []              # signals received while handle_interrupts() was active, in order


def _raise(signum: int, frame) -> None:
    _received.append(signum)
    if len(_received) == 1:
        raise Interrupted(signum)


def received() -> Optional[int]:
    """The first signal received while handle_interrupts() was active, or None."""
    return _received[0] if _received else None


@contextlib.contextmanager
def handle_interrupts() -> Iterator[None]:
    """While the block runs (in the main thread), SIGINT and SIGTERM raise Interrupted(signum); the previous handlers
    are restored after. Outside the main thread it does nothing (signals go to the main thread anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    old = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def while_starting(commands: dict) -> None:
    """Called first thing when a package is imported (eval/__init__.py, lumiere_pl/__init__.py), before a command's
    heavy imports (seconds of torch and Lightning): when this process runs one of `commands` ({console script: module},
    as a script or with `python -m`), SIGINT and SIGTERM end it at once with one line and 128 + the signal's number
    (nothing has been written yet); the command's main() then installs handle_interrupts(). A package merely
    imported (by tests, by other code) changes nothing."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else None
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    prog = script if script in commands else next((p for p, m in commands.items() if m == module), None)
    if prog is None or threading.current_thread() is not threading.main_thread():
        return

    def stop(signum: int, frame) -> None:
        how = "interrupted (SIGINT, Ctrl-C)" if signum == signal.SIGINT else "stopped by SIGTERM"
        os.write(2, f"{prog}: {how} while starting; nothing was written\n".encode())
        os._exit(128 + signum)

    for s in SIGNALS:
        signal.signal(s, stop)


def ignore_interrupts() -> None:
    """For worker processes: Ctrl-C reaches the whole process group, and only the main process decides (it stops
    its workers); SIGTERM keeps its default, so a worker stopped by its pool ends at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def interrupted(err: BaseException) -> Optional[Interrupted]:
    """The Interrupted that `err` is, or that caused it (a library may turn Ctrl-C into SystemExit: Lightning);
    None when no signal was received."""
    if isinstance(err, Interrupted):
        return err
    if isinstance(err, KeyboardInterrupt):
        return Interrupted(received() or signal.SIGINT)
    return Interrupted(received()) if received() is not None else None


__all__ = ["handle_interrupts", "ignore_interrupts", "interrupted", "received", "while_starting"]
