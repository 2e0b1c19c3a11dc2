"""The one error path of every lumiere-pl console script: `@command("lumiere-x")` on its `main(argv)`.

  exit 0    done
  exit 1    internal error (a bug): one line naming the exception; --debug or LUMIERE_DEBUG=1 shows the traceback
  exit 2    bad input: a file, option or config value (InputError, ConfigError, CheckpointError), a file that cannot
            be read or written (OSError, WriteError: disk full, no permission), or bad arguments (argparse)
  exit 130  interrupted (Ctrl-C)
A command may return its own codes besides (lumiere-train: 3 = stopped by non-finite steps).

Errors are printed as one line "PROG: message", never with a traceback unless --debug is given (anywhere on the
command line) or the environment has LUMIERE_DEBUG=1; then the traceback comes first and the exit code is the same.
"""
from __future__ import annotations

import functools
import os
import sys
import traceback
from typing import Callable, List, Optional, Tuple

from lumiere_pl.errors import InputError
from lumiere_pl.utils.allocator import keep_freed_memory

DEBUG_HELP = "on an error, print the traceback too (also: environment LUMIERE_DEBUG=1)"
EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def split_debug(argv: List[str]) -> Tuple[bool, List[str]]:
    """(--debug given or LUMIERE_DEBUG=1, argv without --debug); arguments after a lone "--" are left alone."""
    end = argv.index("--") if "--" in argv else len(argv)
    flag = "--debug" in argv[:end]
    rest = [a for a in argv[:end] if a != "--debug"] + argv[end:]
    return flag or os.environ.get("LUMIERE_DEBUG", "") not in ("", "0"), rest


def _one_line(text: str) -> str:
    lines = [x.strip() for x in str(text).splitlines() if x.strip()]
    return lines[0] if len(lines) == 1 else " ".join(lines)


def explain(err: BaseException) -> Tuple[int, str]:
    """(exit code, one-line message) for an exception that escaped a command."""
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(err, InputError):
        return EXIT_INPUT, _one_line(err)
    if isinstance(err, OSError):
        # raised by the OS (a filename and a reason), or by our code with a full message
        if err.filename is not None:
            return EXIT_INPUT, f"{err.filename}: {err.strerror or err}"
        return EXIT_INPUT, _one_line(err) or type(err).__name__
    msg = _one_line(err)
    if "weights_only" in msg:        # torch's unpickler message: never pass on its advice to switch safety off
        msg = "a file holds Python objects that are not allowed in a checkpoint (refused for safety)"
    return EXIT_INTERNAL, (f"internal error: {type(err).__name__}: {msg}; this is a bug or an input we do not "
                           "check yet: rerun with --debug (or LUMIERE_DEBUG=1) for the traceback and report it")


def command(prog: str) -> Callable[[Callable[[List[str]], int]], Callable[[Optional[List[str]]], int]]:
    """Decorate `main(argv: list) -> int` so that main(argv=None) reads sys.argv and fails well (see above)."""
    def wrap(main: Callable[[List[str]], int]) -> Callable[[Optional[List[str]]], int]:
        @functools.wraps(main)
        def run(argv: Optional[List[str]] = None) -> int:
            debug, args = split_debug(list(sys.argv[1:] if argv is None else [str(a) for a in argv]))
            keep_freed_memory()                          # tensors on the CPU: no page faults per network call
            try:
                return main(args)
            except SystemExit:                           # argparse usage errors (exit 2) and --help (exit 0)
                raise
            except BaseException as err:                 # noqa: BLE001 - the one place every error is reported
                code, msg = explain(err)
                if debug:
                    traceback.print_exc()
                print(f"{prog}: {msg}", file=sys.stderr)
                return code
        return run
    return wrap


__all__ = ["DEBUG_HELP", "command", "explain", "split_debug"]
