"""Video bytes <-> frames with PyAV, all in memory (no temp files): decode, frame-rate resampling, resize, crop, encode.

Frames are uint8 numpy arrays (t h w c), c = RGB.
"""
from __future__ import annotations

import io
import math
import platform
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Sequence

import av
import numpy as np

VIDEO_EXTS = ("mp4", "avi", "mpg", "mpeg", "webm", "mkv", "mov", "m4v", "ogv")   # accepted {key}.EXT members


class VideoError(ValueError):
    """Bytes that are not a decodable video, or a clip too short for the request. The message says why."""


@dataclass
class VideoInfo:
    fps: float
    frames: int                     # 0 when the container does not say (e.g. MPEG-PS)
    width: int
    height: int


def _open(data: bytes) -> av.container.InputContainer:
    if not data:
        raise VideoError("zero-byte video")
    try:
        c = av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, OSError) as err:
        raise VideoError(f"not a decodable video: {err}") from None
    if not c.streams.video:
        c.close()
        raise VideoError("no video stream")
    return c


def probe(data: bytes) -> VideoInfo:
    with _open(data) as c:
        s = c.streams.video[0]
        rate = s.average_rate or s.guessed_rate or 0
        return VideoInfo(float(rate), int(s.frames or 0), s.codec_context.width, s.codec_context.height)


def resampled_indices(num_src: int, src_fps: float, fps: float, frames: int, start: Optional[int]) -> List[int]:
    """Source frame indices for `frames` frames at `fps` (fps <= 0: native rate).

    Output frame j is source frame start + floor(j * src_fps / fps): at half the source rate every other frame,
    above the source rate frames repeat. start None: centred. Raises VideoError if the clip is too short.
    """
    step = src_fps / fps if fps > 0 and src_fps > 0 else 1.0
    offsets = [int(math.floor(j * step + 1e-6)) for j in range(frames)]
    span = offsets[-1] + 1
    if num_src < span:
        raise VideoError(f"clip too short: {num_src} frames, need {span} for {frames} frames at {fps:g} fps "
                         f"from {src_fps:g} fps")
    latest = num_src - span
    s = latest // 2 if start is None else min(max(start, 0), latest)
    return [s + o for o in offsets]


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(w, h) with the short side = short_side, aspect kept, both even-free integers >= 1."""
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def decode(data: bytes, indices: Optional[Sequence[int]] = None, short_side: int = 0, seek: bool = True) -> np.ndarray:
    """Decode the frames at `indices` (None: all) in presentation order; (t h w c) uint8.

    short_side > 0 resizes (area filter) so the short side has that many pixels; only wanted frames are converted,
    and decoding stops after the last wanted frame. seek: start at the last keyframe at or before the first wanted
    frame instead of frame 0 (a clip late in a long video costs its GOP, not the video before it); frame i is the
    one at time i / fps. Streams whose timestamps do not give exact frame numbers decode from frame 0.
    """
    want = None if indices is None else sorted(set(indices))
    if seek and want and want[0] > 0:
        got, _ = _decode_seeking(data, want, short_side)
        if got is not None:
            return np.stack([got[i] for i in indices])
    return _decode_from_start(data, indices, want, short_side)


def _decode_from_start(data: bytes, indices: Optional[Sequence[int]], want: Optional[List[int]],
                       short_side: int) -> np.ndarray:
    last = want[-1] if want else -1
    got: dict[int, np.ndarray] = {}
    with _open(data) as c:
        s = c.streams.video[0]
        size = scaled_size(s.codec_context.width, s.codec_context.height, short_side) if short_side else None
        try:
            for i, frame in enumerate(c.decode(s)):
                if want is None or i in want:
                    got[i] = _rgb(frame, size)
                if want is not None and i >= last:
                    break
        except (av.FFmpegError, ValueError) as err:
            raise VideoError(f"decode failed after {len(got)} frames: {err}") from None
    if not got:
        raise VideoError("no frame could be decoded")
    if want is not None and last not in got:
        raise VideoError(f"clip too short: decoded {max(got) + 1} frames, need {last + 1}")
    order = indices if indices is not None else sorted(got)
    return np.stack([got[i] for i in order])


def _rgb(frame: av.VideoFrame, size: Optional[tuple[int, int]]) -> np.ndarray:
    if size:
        frame = frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA")
    return frame.to_ndarray(format="rgb24")                                  # (h w c)


def _decode_seeking(data: bytes, want: List[int], short_side: int) -> tuple[Optional[dict[int, np.ndarray]], int]:
    """(the wanted frames, how many frames were decoded) after a seek to the keyframe before want[0]; the frames are
    None when this stream cannot be seeked by frame number (no constant rate, no timestamps, or the seek landed after
    the first wanted frame): the caller then decodes from frame 0. Frame numbers come from timestamps:
    round((pts - start) * time_base * rate)."""
    with _open(data) as c:
        s = c.streams.video[0]
        rate, tb = s.average_rate or s.guessed_rate, s.time_base
        if not rate or not tb or s.start_time is None:
            return None, 0
        size = scaled_size(s.codec_context.width, s.codec_context.height, short_side) if short_side else None
        target = s.start_time + round(Fraction(want[0]) / Fraction(rate) / Fraction(tb))   # pts of frame want[0]
        got: dict[int, np.ndarray] = {}
        wanted, n = set(want), 0
        try:
            c.seek(target, stream=s, backward=True, any_frame=False)             # the keyframe at or before it
            for frame in c.decode(s):
                n += 1
                if frame.pts is None:
                    return None, n
                exact = (frame.pts - s.start_time) * Fraction(tb) * Fraction(rate)
                i = round(exact)
                if abs(exact - i) > Fraction(1, 4) or (not got and i > want[0]):
                    return None, n                                               # not frame-exact: decode from 0
                if i in wanted:
                    got[i] = _rgb(frame, size)
                if i >= want[-1]:
                    break
        except (av.FFmpegError, ValueError) as err:
            raise VideoError(f"decode failed after {len(got)} frames: {err}") from None
    return (got if all(i in got for i in want) else None), n   # a gap or an early end: decode from 0 decides


def count_frames(data: bytes) -> int:
    """Exact frame count by decoding (containers such as MPEG-PS carry none)."""
    n = 0
    with _open(data) as c:
        for _ in c.decode(c.streams.video[0]):
            n += 1
    return n


def crop(frames: np.ndarray, size: int, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Square size x size crop of (t h w c): random position with rng, else centred."""
    _, h, w, _ = frames.shape
    if h < size or w < size:
        raise VideoError(f"frames {w}x{h} smaller than the crop {size}")
    y = int(rng.integers(h - size + 1)) if rng is not None else (h - size) // 2
    x = int(rng.integers(w - size + 1)) if rng is not None else (w - size) // 2
    return frames[:, y:y + size, x:x + size]


# x264's SIMD level for encoding: the same frames give the same bytes in any process, and on any machine with the
# same x264. With the AVX-512 functions x264 picks by itself (libx264 core 165 of PyAV 18.1), one process encoding
# the same 96 x 96 px, 8-frame clip 25 times got 6 different files (decoded frames up to 27 levels apart; one file
# with mbtree off, or with x264's SIMD up to AVX2 or SSE2); x264's SSE2 functions give its C code's output bit for
# bit, the C code itself elsewhere. Encoding takes 1.0-1.6x the time of x264's default
# (docs/results/2026-12-07-video-encode.md).
X264_PARAMS = "asm=MMX2,SSE,SSE2" if platform.machine().lower() in ("x86_64", "amd64") else "no-asm=1"


def encode(frames: np.ndarray, fps: float, codec: str = "libx264", crf: int = 18, lossless: bool = False) -> bytes:
    """(t h w c) uint8 -> MP4 bytes. H.264 needs even sizes: odd sizes are padded by repeating the edge.
    lossless: H.264 in RGB (libx264rgb, qp 0): decodes back to the exact input frames. The same frames give the same
    bytes in any process (one encoder thread)."""
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as c:
        rate = Fraction(fps).limit_denominator(1001)
        s = c.add_stream("libx264rgb" if lossless else codec, rate=rate)
        s.codec_context.thread_count = 1       # x264's output depends on its thread count (by default, the CPUs')
        s.width, s.height = frames.shape[2], frames.shape[1]
        s.pix_fmt = "rgb24" if lossless else "yuv420p"
        s.options = {"qp": "0"} if lossless else {"crf": str(crf)}
        if s.codec_context.name.startswith("libx264"):
            s.options = {**s.options, "x264-params": X264_PARAMS}
        for x in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(x), format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return buf.getvalue()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 arrays of equal shape."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def read_clip(path: Path, frames: Optional[int] = None, flag: str = "--input-video"):
    """A video file -> ((1 3 t h w) in [-1, 1], centre-cropped to a square; its fps); frames: the first ones only.
    InputError naming `flag` and the file for anything that is not such a video."""
    from lumiere_pl.errors import InputError
    from lumiere_pl.utils.video import from_uint8

    if not path.is_file():
        raise InputError(f"{flag} {path}: file not found; expected a video (MP4, WebM, ...)")
    data = path.read_bytes()
    try:
        fps = probe(data).fps
        x = decode(data, None if frames is None else list(range(frames)))           # t h w 3 uint8
    except VideoError as err:
        need = f" with at least --frames {frames} frames" if frames else ""
        raise InputError(f"{flag} {path}: {err}; expected a video (MP4, WebM, ...){need}") from None
    if frames and len(x) < frames:
        raise InputError(f"{flag} {path}: {len(x)} frames, shorter than --frames {frames}; expected a video with at "
                         "least that many frames")
    x = crop(x, min(x.shape[1], x.shape[2]))
    return from_uint8(x)[None], fps                                                  # (1 3 t h w)
