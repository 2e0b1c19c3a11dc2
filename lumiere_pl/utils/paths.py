"""Paths built from user input stay inside their root: the one check of every command (run names, sweep variant
names and grid values, prompt indices, shard keys, export names, diffusers variants).

A name is one or more path components, each a non-empty string of at most 255 bytes without a separator, NUL or
control character, and not "." or ".."; `inside(root, *names)` joins them and also refuses a result that leaves root
once symbolic links are followed (a link inside root that points out of it).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from lumiere_pl.errors import InputError

_BAD = re.compile(r"[\x00-\x1f\x7f/\\]")


def check_name(name: object, what: str, parts: bool = False) -> str:
    """`name` as a file or folder name (parts=True: a relative path of such names, "a/b"); InputError naming `what`
    and the name otherwise."""
    if not isinstance(name, str) or not name:
        raise InputError(f"{what} {name!r}: expected a non-empty name")
    for part in (name.split("/") if parts else [name]):
        why = None
        if part in ("", ".", ".."):
            why = "a path component that leaves or stays at its folder" if part else "an empty path component"
        elif _BAD.search(part):
            why = "a path separator or control character"
        elif len(part.encode("utf-8", "surrogatepass")) > 255:
            why = "more than 255 bytes"
        if why:
            raise InputError(f"{what} {name!r}: holds {why}; expected a plain name (letters, digits, _ - .)")
    if parts and os.path.isabs(name):
        raise InputError(f"{what} {name!r}: an absolute path; expected a name inside its folder")
    return name


def inside(root: str | Path, *names: str, what: str = "name") -> Path:
    """root / names..., each name checked (check_name, "a/b" allowed), and the result inside root with symbolic
    links followed."""
    root = Path(root)
    path = root
    for name in names:
        path = path / check_name(name, what, parts=True)
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if real != real_root and real_root not in real.parents:
        raise InputError(f"{what} {'/'.join(names)!r}: {path} leads to {real}, outside {root} (through a symbolic "
                         "link); expected a name inside it")
    return path


__all__ = ["check_name", "inside"]
