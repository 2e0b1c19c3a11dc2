"""Hostile, huge, half-broken inputs for the robustness battery (tests/test_hostile.py, tests/test_fuzz_inputs.py),
each a few bytes to a few KB, and the checks every case makes: the tree outside the output folder unchanged, no
temporary file left, one line."""
from __future__ import annotations

import hashlib
import io
import re
import struct
import tarfile
import zlib
from pathlib import Path
from typing import Dict, Tuple

import torch

UNSAFE_ADVICE = ("weights_only=False", "weights_only` set to `False", "ignore_mismatched_sizes",
                 "trust_remote_code=True", "allow_pickle=True")
PROGRESS = ("rendering", "sharding", "synthetic", "features", "motion", "sampling", "note:", "lumiere-eval: frame rate")


def snapshot(*roots: Path, skip: Tuple[Path, ...] = ()) -> Dict[str, tuple]:
    """{path: (kind, size, sha256 of the first MiB)} of every entry under roots, but those under `skip`."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if any(p == s or s in p.parents for s in skip):
                continue
            if p.is_symlink() or not p.exists():
                out[str(p)] = ("link", str(p.readlink()) if p.is_symlink() else "", "")
            elif p.is_dir():
                out[str(p)] = ("dir", 0, "")
            else:
                with open(p, "rb") as f:
                    out[str(p)] = ("file", p.stat().st_size, hashlib.sha256(f.read(2 ** 20)).hexdigest())
    return out


def temporaries(root: Path) -> list:
    """Temporary files of the atomic writer (eval/atomic.py: .NAME.RANDOM.tmp.SUFFIX) or of a folder export."""
    return [p for p in root.rglob("*") if ".tmp" in p.name]


TQDM = re.compile(r"\[\d+:\d\d|\d+%\|")        # a progress bar's elapsed time or percentage


def error_lines(err: str) -> list:
    """The lines of stderr that are not progress bars, notes or per-item lines (skipped sources)."""
    return [x for x in err.splitlines() if x.strip() and not TQDM.search(x)
            and not x.strip().startswith(PROGRESS) and not x.startswith(("  ", "skipped ", "validation split"))]


# ---------------------------------------------------------------------------------------------------------------------
# Files that lie about their sizes


def huge_gif(side: int = 16000, frames: int = 3) -> bytes:
    """89 bytes: a GIF whose screen is side x side pixels (one opaque pixel per frame); decoded, each frame would be
    side^2 x 4 bytes (1 GB at 16000)."""
    head = b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = (b"\x21\xf9\x04\x00\x0a\x00\x00\x00" + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
             + b"\x02\x02\x44\x01\x00")
    return head + frame * frames + b"\x3b"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(side: int = 10000) -> bytes:
    """A PNG whose header declares side x side RGB pixels (300 MB decoded at 10000) over a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        _chunk(b"IEND", b"")


def lying_tar(declared: int = 10 ** 12, key: str = "clip") -> bytes:
    """A tar whose first member (KEY.mp4) declares `declared` bytes but holds 512, then a caption."""
    info = tarfile.TarInfo(f"{key}.mp4")
    info.size, info.mtime, info.mode = declared, 0, 0o644
    head = info.tobuf(format=tarfile.GNU_FORMAT)
    return head + b"\x00" * 512


def lying_safetensors(declared: int = 2 ** 40) -> bytes:
    """A safetensors file whose 8-byte header length declares `declared` bytes of JSON."""
    return struct.pack("<Q", declared) + b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}' + b"\0" * 4


def checkpoint(config: dict, state: dict | None = None, extra: dict | None = None) -> bytes:
    """A lumiere-pl checkpoint (weights_only-loadable) holding `config` and `state` (default: one tiny tensor)."""
    buf = io.BytesIO()
    torch.save({"state_dict": state if state is not None else {"net.w": torch.zeros(2)},
                "hyper_parameters": {"config": config}, "global_step": 1, **(extra or {})}, buf)
    return buf.getvalue()


def deep_json(depth: int = 100_000) -> str:
    """A JSON line nested deeper than any parser's recursion limit."""
    return "[" * depth + "]" * depth


def not_utf8(prefix: str, bad: bytes = b"\xff\xfe", suffix: str = "") -> Tuple[bytes, int]:
    """(bytes with an invalid UTF-8 sequence after `prefix`, its byte offset)."""
    raw = prefix.encode("utf-8")
    return raw + bad + suffix.encode("utf-8"), len(raw)


__all__ = ["UNSAFE_ADVICE", "checkpoint", "deep_json", "error_lines", "huge_gif", "huge_png", "lying_safetensors",
           "lying_tar", "not_utf8", "snapshot", "temporaries"]
