"""What every command of the project (lumiere-eval and lumiere_pl's) shares in how it fails: argument errors in one
line, messages cut to one line of bounded length, and foreign libraries' advice to turn a safety off replaced by
ours (it never reaches the user)."""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path
from typing import Callable, NoReturn, Optional

from .errors import EvalError

MAX_MESSAGE = 400                 # characters of an internal error's message shown (the traceback: --debug)

# what foreign libraries suggest when they refuse an unsafe or mismatched input -> what we say instead
ADVICE = (
    (re.compile(r"weights_only\W*(=\s*False|set to\W*False|argument)", re.I), "the file holds Python objects that are not allowed in a checkpoint "
                                        "(refused for safety: checkpoints are read with weights_only=True)"),
    (re.compile(r"ignore_mismatched_sizes", re.I), "its weights do not have the shapes its config describes "
                                                   "(refused: weights are never reinitialised to fit)"),
    (re.compile(r"trust_remote_code\s*=\s*True", re.I), "it asks to run code from the folder (refused: no remote code runs)"),
    (re.compile(r"allow_pickle\s*=\s*True", re.I), "the file holds pickled objects (refused: arrays are read without pickle)"),
)


def one_line(text: object, limit: int = 0) -> str:
    """The lines of `text` joined into one (stripped); cut to `limit` characters when limit > 0."""
    line = " ".join(x.strip() for x in str(text).splitlines() if x.strip())
    return line if not limit or len(line) <= limit else line[:limit - 3].rstrip() + "..."


def without_advice(text: str) -> str:
    """`text`, unless a foreign library advises in it to turn a safety off: then our summary of the refusal."""
    for pattern, ours in ADVICE:
        if pattern.search(text):
            return ours
    return text


def utf8(data: bytes, where: str, expected: str) -> str:
    """`data` as text; EvalError naming `where` and the byte offset of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise EvalError(f"{where}: not UTF-8 text (byte {err.start}: {data[err.start:err.start + 4]!r}); expected "
                        f"{expected}") from None


def read_text(path: str | Path, expected: str, flag: str = "") -> str:
    """A text input file (prompts, captions, configs, lists) as str: EvalError naming the file (and `flag`) when it
    is missing, a folder, larger than the member limit (eval/limits.py) or not UTF-8 (with the byte offset)."""
    from .limits import MIB, limits

    path = Path(path)
    where = f"{flag} {path}".strip()
    if not path.is_file():
        raise EvalError(f"{where}: {'is a folder' if path.is_dir() else 'file not found'}; expected {expected}")
    lim = limits()
    size = os.stat(path).st_size
    if size > lim.member_mib * MIB:
        raise EvalError(f"{where}: {size:,} bytes, over {lim.describe('member_mib')}; expected {expected}")
    return utf8(path.read_bytes(), where, expected)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: "PROG: MESSAGE (PROG --help for the options)", exit 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message} ({self.prog} --help for the options)\n")
        sys.exit(2)


def number(kind: type = float, low: Optional[float] = None, high: Optional[float] = None, *,
           above: bool = False) -> Callable[[str], float]:
    """An argparse `type=`: a finite int or float in [low, high] (above=True: > low); anything else is refused
    before any work (NaN, inf, 1e400, a seed past 2^64, a negative index)."""
    def parse(text: str):
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {_wanted(kind, low, high, above)}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number, {_wanted(kind, low, high, above)}")
        if (low is not None and (value <= low if above else value < low)) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {_wanted(kind, low, high, above)}")
        return value
    parse.__name__ = "integer" if kind is int else "number"          # argparse names the type in its messages
    return parse


def _wanted(kind: type, low, high, above: bool) -> str:
    what = "an integer" if kind is int else "a number"
    show = lambda x: str(x) if isinstance(x, int) else f"{x:g}"          # noqa: E731
    if low is not None and high is not None:
        return f"{what} in {'(' if above else '['}{show(low)}, {show(high)}]"
    if low is not None:
        return f"{what} {'>' if above else '>='} {show(low)}"
    return f"{what} <= {show(high)}" if high is not None else what


__all__ = ["ArgumentParser", "MAX_MESSAGE", "number", "one_line", "read_text", "utf8", "without_advice"]
