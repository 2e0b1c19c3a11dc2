"""Interrupts, the same in every command: SIGINT (Ctrl-C) and SIGTERM raise Interrupted where the main thread is, so
every `finally` and `except BaseException` runs (temporary files removed, worker processes stopped), and the command
exits with 128 + the signal's number (130, 143) and one line.

A second signal while the first one is being cleaned up after is noted, not raised: cleanup is not cut short.
"""
from __future__ import annotations

import contextlib
import signal
import threading
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


__all__ = ["handle_interrupts", "ignore_interrupts", "interrupted", "received"]
