"""What a weights file holds, checked before anything is allocated for it.

read_header: the header of a safetensors file, read and checked before the safetensors library (or diffusers) reads the file:
an 8-byte length, then that many bytes of JSON naming each tensor's dtype, shape and byte range. A length past the
header limit (eval/limits.py) or past the file, a header that is not a JSON object, and byte ranges that do not
match their shapes or leave the file are refused with one line naming the file; nothing is allocated but the
header itself. compare_shapes: the tensors a file holds against the ones a config needs (built on the meta device by
the callers: lumiere_pl/checkpoint.py check_fits, lumiere_pl/models/diffusers_folder.py check_weights).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, Tuple

from eval.limits import MIB, limits
from lumiere_pl.errors import CheckpointError

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


def read_header(path: str | Path, expected: str = "a safetensors file") -> Dict[str, dict]:
    """{tensor name: {"dtype", "shape", "data_offsets"}} (and "__metadata__") of a safetensors file, checked."""
    path = Path(path)
    lim = limits()
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: {size} bytes, too short for a safetensors header; expected {expected}")
            n = int.from_bytes(head, "little")
            if n > lim.header_mib * MIB:
                raise CheckpointError(f"{path}: declares a {n:,}-byte header, over {lim.describe('header_mib')}; "
                                      f"expected {expected}")
            if n > size - 8:
                raise CheckpointError(f"{path}: declares a {n:,}-byte header in a {size:,}-byte file (truncated?); "
                                      f"expected {expected}")
            raw = f.read(n)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be read ({err.strerror or err}); expected {expected}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise CheckpointError(f"{path}: its header is not JSON ({type(err).__name__}); expected {expected}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: its header is not a JSON object; expected {expected}")
    data = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape, (start, end) = _entry(path, name, info, expected)
        need = math.prod(shape) * DTYPE_BYTES[info["dtype"]]
        if not 0 <= start <= end <= data or end - start != need:
            raise CheckpointError(f"{path}: tensor {name!r} {info['dtype']} {shape} declares bytes {start}..{end} of "
                                  f"a {data:,}-byte data section (needs {need:,}); expected {expected}")
    return header


def _entry(path: Path, name: str, info: object, expected: str) -> Tuple[tuple, tuple]:
    ok = (isinstance(info, dict) and info.get("dtype") in DTYPE_BYTES and isinstance(info.get("shape"), list)
          and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in info["shape"])
          and isinstance(info.get("data_offsets"), list) and len(info["data_offsets"]) == 2
          and all(isinstance(o, int) and not isinstance(o, bool) for o in info["data_offsets"]))
    if not ok:
        raise CheckpointError(f"{path}: header entry {name!r} is not {{dtype, shape, data_offsets}} ({str(info)[:80]}); "
                              f"expected {expected}")
    return tuple(info["shape"]), tuple(info["data_offsets"])


def shapes(path: str | Path, expected: str = "a safetensors file") -> Dict[str, tuple]:
    """{tensor name: shape} from a checked header."""
    return {k: tuple(v["shape"]) for k, v in read_header(path, expected).items() if k != "__metadata__"}


def compare_shapes(expected: Dict[str, tuple], stored: Dict[str, tuple], path: str | Path, what: str,
                   optional: frozenset = frozenset()) -> None:
    """CheckpointError unless `stored` holds a tensor of the expected shape for every expected key (but `optional`
    ones) and nothing else; `what`: what the expected shapes come from, for the message."""
    wrong = [k for k in expected if k in stored and tuple(stored[k]) != tuple(expected[k])]
    missing = [k for k in expected if k not in stored and k not in optional]
    unexpected = [k for k in stored if k not in expected]
    if not (wrong or missing or unexpected):
        return
    big = sum(math.prod(v) for v in expected.values()) * 4
    held = sum(math.prod(v) for v in stored.values()) * 4
    if wrong:
        k = wrong[0]
        first = f"{k} is {tuple(stored[k])}, {what} says {tuple(expected[k])}"
    else:
        first = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
    raise CheckpointError(f"{path}: its weights do not fit {what} ({first}; {len(wrong)} of another shape, "
                          f"{len(missing)} missing, {len(unexpected)} unexpected; {what} needs {big / 2**20:,.1f} MiB, "
                          f"the file holds {held / 2**20:,.1f} MiB); was the file edited, or written by another "
                          "version?")


__all__ = ["compare_shapes", "read_header", "shapes"]
