"""One frame rate for two sets: the real and generated clips are compared at one rate unless --fps says otherwise.

Rule (commands that compare two sets: fvd, compare, ucf101, motion --real --fake): without --fps, the frame rates
the containers declare are read from the first PROBE videos of each set (no decoding). When all of them agree
(within 0.5 %) the clips are taken as they come. When they differ, both sets are resampled by timestamps to the
lowest rate found (eval/video_io.py: frame k is the decoded frame nearest to t0 + k / fps), so no frame is shown
twice, and one line says so. When a rate is unknown (.npy clips, a statistics file made at the native rate without
recorded rates) or --stride is set, nothing is resampled and a warning says why.
"""
from __future__ import annotations

from pathlib import Path

import av

from .video_io import container_rate, iter_items

PROBE = 16          # videos per set whose declared rate is read
SAME_RATE = 5e-3    # relative difference under which two rates count as one


def source_rates(source, limit: int = PROBE) -> list[float | None]:
    """Declared frame rates of the first `limit` items of a video source (None where unknown or unreadable; an
    unreadable video is reported by the extraction itself)."""
    rates = []
    for _, key, src, _ in iter_items(source, limit=limit):
        try:
            rates.append(container_rate(src, key))
        except (av.FFmpegError, OSError, IndexError, ValueError):
            rates.append(None)
    return rates


def stats_rates(protocol: dict) -> list[float | None]:
    """Frame rates behind a statistics file: its fps when it was resampled, else the rates recorded at extraction
    (statistics written by this version record them), else unknown."""
    if protocol.get("fps"):
        return [float(protocol["fps"])]
    return [float(r) if r else None for r in protocol.get("rates") or [None]]


def _describe(rates: list[float]) -> str:
    distinct = sorted({round(r, 3) for r in rates})
    return "/".join(f"{r:g}" for r in distinct) + " fps"


def common_rate(real: list[float | None], fake: list[float | None], stride: int = 1
                ) -> tuple[float | None, str | None, str | None]:
    """(fps to resample both sets to or None, the line that says so, a warning): the module docstring's rule."""
    known = [r for r in real + fake if r]
    if not known:
        return None, None, ("frame rates not compared: neither set declares one (.npy clips or statistics without "
                            "recorded rates); pass --fps F to compare at one rate")
    low, high = min(known), max(known)
    if (high - low) / high <= SAME_RATE and len(known) == len(real) + len(fake):
        return None, None, None
    if len(known) < len(real) + len(fake):
        side = "the real set" if None in real else "the generated set"
        return None, None, (f"frame rates not compared: {side} has videos without a declared rate; "
                            "pass --fps F to compare at one rate")
    what = f"frame rates differ (real {_describe([r for r in real if r])}, generated {_describe([r for r in fake if r])})"
    if stride != 1:
        return None, None, f"{what} but --stride {stride} is set: not resampled; pass --fps F to compare at one rate"
    return low, f"{what}: both resampled to {low:g} fps, the lower rate (--fps F sets another)", None


def _stats_protocol(source) -> dict | None:
    if Path(source).suffix != ".npz":
        return None
    from .cache import load_stats

    return load_stats(source)[1]


def resolve(real, fake, stride: int = 1) -> dict:
    """The frame rate of a two-set command without --fps: {"fps", "line", "warning", "rates": {"real", "fake"}}.
    A statistics file made at a resampled rate fixes the rate (its features were computed there)."""
    protocol = _stats_protocol(real) if real != "local" else None
    if real == "local":
        from .ucf101 import local_real_videos

        real_rates = [r for v in local_real_videos() for r in source_rates(v, 1)]
    else:
        real_rates = stats_rates(protocol) if protocol is not None else source_rates(real)
    fake_rates = source_rates(fake)
    out = {"rates": {"real": real_rates, "fake": fake_rates}}
    if protocol is not None and protocol.get("fps"):
        fps = float(protocol["fps"])
        return {**out, "fps": fps, "warning": None,
                "line": f"{real} holds statistics at {fps:g} fps: the generated clips are resampled to {fps:g} fps"}
    fps, line, warning = common_rate(real_rates, fake_rates, stride)
    return {**out, "fps": fps, "line": line, "warning": warning}
