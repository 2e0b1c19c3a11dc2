"""Protocol cards: every field that moves a result's number, in one flat dict stored as "card" in each result JSON.
`lumiere-eval compare-results` puts results side by side only when their cards are equal (or with --allow-mixed).

An FVD card holds: the detector and feature kind, the weights id and the sha256 of the weights file, the whole
preprocessing (size, resize, crop, short side, scaling), the numerics (dtype, TF32; not the device type: CPU and
CUDA features agree to ~1e-5, far inside the bootstrap interval), the clip sampling (frames, stride, fps, start,
offset; the seed only with random offsets), the native frame rates when clips are not resampled, the preset and its
covariance estimator, N real and N generated, and the real set (its content hash, and its UCF101 split fields).
The generated set's identity is not in the card: comparing generated sets is what cards are for.
A result's headline numbers are its "figures": [{"name", "value", "low", "high", "n", ...}].
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

REAL_FIELDS = ("ucf101_split", "split_index", "split_sha256", "n_videos", "subset", "max_videos")


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path | None) -> str | None:
    """sha256 of a file (hashed once per process per (path, size, mtime)); None for None."""
    if path is None:
        return None
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def detector_fields(detector) -> dict:
    """The detector's part of a card: name, weights id and file hash, preprocessing, numerics without the device."""
    protocol = detector.protocol()
    numerics = {k: v for k, v in protocol.pop("numerics", {}).items() if k != "device"}
    return {**protocol, **numerics, "weights_sha256": file_sha256(detector.weights_file())}


def clip_fields(spec_protocol: dict, rates: dict | None = None) -> dict:
    """Clip sampling; the seed only when offsets are random; native rates only when clips are not resampled."""
    out = {k: v for k, v in spec_protocol.items() if k != "seed" or spec_protocol.get("offset") == "random"}
    if spec_protocol.get("fps") is None and rates:
        out["native_rates"] = {side: sorted({round(r, 3) for r in values if r}) or None
                               for side, values in rates.items()}
    return out


def real_fields(real_protocol: dict) -> dict:
    """The real set: the content hash of its files (not their path) and its split fields."""
    source = real_protocol.get("source") or {}
    out = {"real_content": source.get("content"), "real_files": source.get("files")}
    return {**out, **{f"real_{k}": real_protocol[k] for k in REAL_FIELDS if k in real_protocol}}


def differing(cards: list[dict]) -> list[str]:
    """Fields whose values are not the same in every card (a field missing from a card counts as None)."""
    keys = sorted(set().union(*cards)) if cards else []
    return [k for k in keys if any(c.get(k) != cards[0].get(k) for c in cards[1:])]


def format_figure(fig: dict, digits: int = 4) -> str:
    """'value [low, high]', 'value ± std' or 'value'."""
    def num(x):
        return "nan" if x is None or x != x else f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.1f}"

    if fig.get("low") is not None and fig.get("high") is not None:
        return f"{num(fig['value'])} [{num(fig['low'])}, {num(fig['high'])}]"
    if fig.get("std") is not None:
        return f"{num(fig['value'])} ± {num(fig['std'])}"
    return num(fig["value"])
