"""The one error path of every lumiere-pl console script: `@command("lumiere-x")` on its `main(argv)`.

  exit 0    done
  exit 1    internal error (a bug): one line naming the exception; --debug or LUMIERE_DEBUG=1 shows the traceback
  exit 2    bad input: a file, option or config value (InputError, ConfigError, CheckpointError), a file that cannot
            be read or written (OSError, WriteError: "no space left on DEVICE while writing FILE"), or bad arguments
            (argparse, in one line)
  exit 130  interrupted by SIGINT (Ctrl-C); exit 143: by SIGTERM. Temporary files are removed and worker processes
            stopped on the way out (eval/signals.py)
A command may return its own codes besides (lumiere-train: 3 = stopped by non-finite steps).

Errors are printed as one line "PROG: message", never with a traceback unless --debug is given (anywhere on the
command line) or the environment has LUMIERE_DEBUG=1; then the traceback comes first and the exit code is the same.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
import traceback
from typing import Callable, List, Optional, Tuple

from eval.command import MAX_MESSAGE, ArgumentParser, number, one_line, without_advice
from eval.signals import handle_interrupts, interrupted, received
from lumiere_pl.errors import EvalError, Interrupted
from lumiere_pl.utils.allocator import keep_freed_memory

DEBUG_HELP = "on an error, print the traceback too (also: environment LUMIERE_DEBUG=1)"
EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2
EXIT_INTERRUPTED = 128 + signal.SIGINT


def split_debug(argv: List[str]) -> Tuple[bool, List[str]]:
    """(--debug given or LUMIERE_DEBUG=1, argv without --debug); arguments after a lone "--" are left alone."""
    end = argv.index("--") if "--" in argv else len(argv)
    flag = "--debug" in argv[:end]
    rest = [a for a in argv[:end] if a != "--debug"] + argv[end:]
    return flag or os.environ.get("LUMIERE_DEBUG", "") not in ("", "0"), rest


def explain(err: BaseException) -> Tuple[int, str]:
    """(exit code, one-line message) for an exception that escaped a command."""
    stop = interrupted(err) if isinstance(err, KeyboardInterrupt) else None
    if stop is not None:
        how = "interrupted (SIGINT, Ctrl-C)" if stop.signum == signal.SIGINT else f"stopped by {stop.args[0]}"
        return stop.exit_code, how
    if isinstance(err, EvalError):                      # InputError, ConfigError, CheckpointError: bad input
        return EXIT_INPUT, without_advice(one_line(err))
    if isinstance(err, OSError):
        # raised by the OS (a filename and a reason), or by our code with a full message
        if err.filename is not None:
            return EXIT_INPUT, f"{err.filename}: {err.strerror or err}"
        return EXIT_INPUT, without_advice(one_line(err)) or type(err).__name__
    msg = without_advice(one_line(err, MAX_MESSAGE))
    return EXIT_INTERNAL, (f"internal error: {type(err).__name__}: {msg}; this is a bug or an input we do not "
                           "check yet: rerun with --debug (or LUMIERE_DEBUG=1) for the traceback and report it")


def command(prog: str) -> Callable[[Callable[[List[str]], int]], Callable[[Optional[List[str]]], int]]:
    """Decorate `main(argv: list) -> int` so that main(argv=None) reads sys.argv and fails well (see above)."""
    def wrap(main: Callable[[List[str]], int]) -> Callable[[Optional[List[str]]], int]:
        @functools.wraps(main)
        def run(argv: Optional[List[str]] = None) -> int:
            debug, args = split_debug(list(sys.argv[1:] if argv is None else [str(a) for a in argv]))
            keep_freed_memory()                          # tensors on the CPU: no page faults per network call
            with handle_interrupts():                    # SIGINT, SIGTERM -> Interrupted, wherever the command is
                try:
                    return main(args)
                except SystemExit as err:                # argparse (exit 2), --help (0); or a library's exit
                    if received() is None or err.code in (0, None):   # after Ctrl-C (Lightning: exit 1)
                        raise
                    return _report(prog, Interrupted(received()), debug)
                except BaseException as err:             # noqa: BLE001 - the one place every error is reported
                    return _report(prog, err, debug)
        return run
    return wrap


def _report(prog: str, err: BaseException, debug: bool) -> int:
    code, msg = explain(err)
    if debug:
        traceback.print_exception(err)
    print(f"{prog}: {msg}", file=sys.stderr, flush=True)
    return code


__all__ = ["ArgumentParser", "DEBUG_HELP", "command", "explain", "number", "split_debug"]
