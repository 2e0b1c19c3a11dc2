"""What each lumiere-eval command will write, checked before any video is read: an output that exists is replaced
only when it is an earlier output of lumiere-eval, or with --overwrite; anything else (a folder, a file of the user's)
is refused, never written over.

An earlier output is recognised by its content: a JSON object with a "metric" (results, the record beside a stats
file) or a "prompt_set" (the .meta.json of ucf101-prompts); a JSONL whose first line is a prompt of ucf101-prompts;
an .npz of statistics (a "protocol" entry); a markdown file starting with MD_MARK; a PNG whose "Software" text is
SOFTWARE (the charts write it).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

from .errors import EvalError

SOFTWARE = "lumiere-eval"                 # the "Software" text of the PNG charts
MD_MARK = "<!-- lumiere-eval -->"         # the first line of every markdown file written


def _json(path: Path):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read(64 * 2 ** 20).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def ours(path: Path) -> bool:
    """Whether the existing file `path` is an earlier output of lumiere-eval (see the module docstring)."""
    if not path.is_file() or path.is_symlink():
        return False
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = _json(path)
        return isinstance(data, dict) and ("metric" in data or "prompt_set" in data)
    if suffix == ".jsonl":
        try:
            with open(path, encoding="utf-8") as f:
                first = json.loads(f.readline())
        except (OSError, ValueError, RecursionError):
            return False
        return isinstance(first, dict) and {"prompt", "class_name"} <= set(first)
    if suffix == ".npz":
        import zipfile

        try:
            return "protocol.npy" in zipfile.ZipFile(path).namelist()
        except (OSError, zipfile.BadZipFile):
            return False
    if suffix == ".md":
        try:
            with open(path, encoding="utf-8") as f:
                return f.readline().strip() == MD_MARK
        except (OSError, ValueError):
            return False
    if suffix == ".png":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                return im.info.get("Software") == SOFTWARE
        except (OSError, UnidentifiedImageError, ValueError):
            return False
    return False


def check(outputs: Iterable[tuple[str, Optional[str | Path]]], overwrite: bool) -> None:
    """EvalError for the first output (flag, path) that exists and may not be replaced."""
    for flag, path in outputs:
        if path is None:
            continue
        path = Path(path)
        if path.is_dir():
            raise EvalError(f"{flag} {path}: is a folder; expected a file name")
        if (path.exists() or path.is_symlink()) and not overwrite and not ours(path):
            raise EvalError(f"{flag} {path}: exists and is not an earlier output of lumiere-eval; add --overwrite to "
                            "replace it, or choose another name")


__all__ = ["MD_MARK", "SOFTWARE", "check", "ours"]
