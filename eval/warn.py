"""Every warning of a run, on the terminal and in the result: `lumiere-eval` runs each command inside `collect()`,
which prints each warning once, as one line on stderr ("lumiere-eval: warning: ..."), and keeps it; a command's
result JSON then holds them all under "warnings" (`merge`). Warnings that scoring code caught into a result (the
Frechet distance's few-videos and sqrtm warnings) are printed by `merge` when the result is written.
"""
from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Iterator

PREFIX = "lumiere-eval: warning: "
_active: list[list[str]] = []          # the messages of the runs in progress (innermost last)


def emit(message: str) -> None:
    """Print one warning line (once per run) and keep it for the result."""
    message = " ".join(str(message).split())                # one line
    seen = _active[-1] if _active else None
    if seen is not None and message in seen:
        return
    if seen is not None:
        seen.append(message)
    print(PREFIX + message, file=sys.stderr, flush=True)


def _show(message, category, filename, lineno, file=None, line=None) -> None:
    emit(str(message))


@contextlib.contextmanager
def collect() -> Iterator[list[str]]:
    """Route warnings.warn through `emit` while the block runs (the warning filters stay as they are); yields the
    list of messages."""
    seen: list[str] = []
    _active.append(seen)
    try:
        with warnings.catch_warnings():                 # restores showwarning after
            warnings.showwarning = _show
            yield seen
    finally:
        _active.pop()


def merge(result: dict) -> dict:
    """Print the warnings a result holds that were not printed yet, then store every warning of the run in it."""
    held = list(result.get("warnings") or [])
    for message in held:
        emit(message)
    seen = _active[-1] if _active else []
    result["warnings"] = held + [m for m in seen if m not in held]
    return result
