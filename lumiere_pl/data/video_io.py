"""Video bytes <-> frames: decoding is eval/decode.py's (the project's one decoder, its one re-timing rule and list of
extensions), and encoding (lumiere_pl/utils/video.py's, H.264 MP4 with PyAV, all in memory), re-exported here.

Frames are uint8 numpy arrays (t h w c), c = RGB.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import numpy as np

from eval.decode import (VIDEO_EXTS, ClipTooShort, VideoError, VideoInfo, clip_at, count_frames, crop, frames_at,
                         last_start, nominal_times, probe, retimed, scaled_size)
from lumiere_pl.utils.video import encode, from_uint8  # noqa: F401  (encode re-exported)

decode = frames_at            # decode(data, indices=None, short_side=0, seek=True) -> (t h w 3) uint8


def resampled_indices(num_src: int, src_fps: float, fps: float, frames: int, start: Optional[int]) -> List[int]:
    """Source frame indices of `frames` frames at `fps` (fps <= 0: the native rate) from a stream of num_src frames
    at src_fps, by eval/decode.py's rule on the nominal times i / src_fps: output frame j is the frame on screen at
    t_start + j / fps (at half the source rate every other frame; above it frames repeat). start None: centred.
    ClipTooShort when the clip does not fit."""
    if not (fps > 0 and src_fps > 0):
        fps = src_fps = 1.0
    s = clip_start(num_src, src_fps, fps, frames, start)
    return retimed(s, frames, fps, nominal_times(num_src, src_fps)).tolist()


def clip_start(num_src: int, src_fps: float, fps: float, frames: int, start: Optional[int]) -> int:
    """The first frame of a clip of `frames` frames at `fps` from a stream of num_src frames at src_fps: `start`
    clamped to the starts that fit, or (None) the middle one."""
    last = last_start(nominal_times(num_src, src_fps), fps, frames) if num_src else -1
    if last < 0:
        need = math.ceil((frames - 1) * src_fps / fps - 1e-6) + 1
        raise ClipTooShort(f"clip too short: {num_src} frames, need {need} for {frames} frames at {fps:g} fps "
                           f"from {src_fps:g} fps")
    return last // 2 if start is None else min(max(start, 0), last)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 arrays of equal shape."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def read_clip(path: Path, frames: Optional[int] = None, flag: str = "--input-video"):
    """A video file -> ((1 3 t h w) in [-1, 1], centre-cropped to a square; its fps); frames: the first ones only.
    InputError naming `flag` and the file for anything that is not such a video."""
    from lumiere_pl.errors import InputError

    if not path.is_file():
        raise InputError(f"{flag} {path}: file not found; expected a video (MP4, WebM, ...)")
    try:
        fps = probe(path).fps
        x = decode(path, None if frames is None else list(range(frames)))           # t h w 3 uint8
    except VideoError as err:
        need = f" with at least --frames {frames} frames" if frames else ""
        raise InputError(f"{flag} {path}: {err}; expected a video (MP4, WebM, ...){need}") from None
    if frames and len(x) < frames:
        raise InputError(f"{flag} {path}: {len(x)} frames, shorter than --frames {frames}; expected a video with at "
                         "least that many frames")
    x = crop(x, min(x.shape[1], x.shape[2]))
    return from_uint8(x)[None], fps                                                  # (1 3 t h w)


__all__ = ["VIDEO_EXTS", "ClipTooShort", "VideoError", "VideoInfo", "clip_at", "clip_start", "count_frames", "crop",
           "decode", "encode", "probe", "psnr", "read_clip", "resampled_indices", "scaled_size"]
