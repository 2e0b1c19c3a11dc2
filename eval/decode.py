"""The one video decoder of the project (PyAV): lumiere-eval, the training data (lumiere_pl/data), lumiere-shards,
lumiere-sample --input-video and lumiere-apply read frames through it.

Frames are uint8 (t h w 3) RGB. Frame i is a video's i-th frame in presentation order; its time is its presentation
timestamp in seconds from frame 0.

Re-timing, one rule (RETIME): a clip of T frames at `fps` from frame `start` takes, for k = 0..T-1, the frame on
screen at t_start + k / fps: the last frame whose timestamp is at or before that time (shown()). It is what a player
shows and what StyleGAN-V's evaluation does when it changes a video's rate (moviepy's iter_frames(fps): the frame
at int(src_fps * t + 1e-5)); by timestamps, so variable-rate streams and containers whose declared rate is off are
read right. A clip fits when its last time is at most TIME_TOL after the video's last frame (last_start()).

Bounds (eval/limits.py), checked before anything is allocated: the frame size a stream declares (and FFmpeg's own
max_pixels, for streams that declare none before decoding), and the bytes of decoded frames one call holds.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import av
import numpy as np

from .errors import EvalError
from .limits import MIB, Limits, limits as default_limits

VIDEO_EXTS = ("mp4", "avi", "mpg", "mpeg", "webm", "mkv", "mov", "m4v", "ogv", "gif")   # file / tar member suffixes
RETIME = "frame shown at t0 + k/fps (by timestamp)"       # the rule, as recorded in evaluation protocols
TIME_EPS = 1e-6          # seconds: a frame whose time is this close after t counts as shown at t (float rounding)
TIME_TOL = 1e-3          # seconds: a clip fits when its last time is within this of the last frame's


class VideoError(EvalError):
    """Bytes that are not a decodable video, a video over a limit, or a clip too short for the request."""


class ClipTooShort(VideoError):
    """The video has fewer frames (or less time) than the clip needs."""


@dataclass
class VideoInfo:
    fps: float                      # declared (average) rate; 0 when the stream declares none
    frames: int                     # declared frame count; 0 when the container does not say (e.g. MPEG-PS)
    width: int
    height: int


@dataclass
class Decoded:
    frames: np.ndarray              # (t h w 3) uint8
    times: Optional[np.ndarray]     # (t,) seconds from the first frame; None without timestamps (.npy clips)
    codec: str                      # e.g. "h264 yuv420p crf=18.0", "h264 gbrp qp=0 (lossless)", "npy"


# ---------------------------------------------------------------------------------------------------------------------
# The rule


def shown(times: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the frame on screen at each target time: the last frame whose time is <= target (+ TIME_EPS); the
    first frame for a target before it. times: non-decreasing (t,), targets: (k,) seconds."""
    idx = np.searchsorted(np.asarray(times, np.float64), np.asarray(targets, np.float64) + TIME_EPS, side="right")
    return np.maximum(idx - 1, 0)


def last_start(times: np.ndarray, fps: float, frames: int) -> int:
    """The last start frame whose clip of `frames` frames at `fps` fits (-1: none): times[start] + (frames - 1) / fps
    at most TIME_TOL after the last frame's time."""
    span = (frames - 1) / fps
    return int(np.searchsorted(np.asarray(times, np.float64), times[-1] - span + TIME_TOL, side="right")) - 1


def nominal_times(n: int, rate: float) -> np.ndarray:
    """Frame times of a constant-rate stream of n frames (for choosing a start before decoding)."""
    return np.arange(n, dtype=np.float64) / rate


def retimed(start: int, frames: int, fps: float, times: np.ndarray) -> np.ndarray:
    """The frame indices of a clip (see the module docstring) given every frame's time."""
    return shown(times, times[start] + np.arange(frames) / fps)


# ---------------------------------------------------------------------------------------------------------------------
# Opening


def _open(src: str | Path | bytes, lim: Limits, threads: bool = False):
    """(container, video stream), after checking the size the stream declares against the limits."""
    if isinstance(src, (bytes, bytearray, memoryview)) and not len(src):
        raise VideoError("zero-byte video")
    try:
        c = av.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray, memoryview)) else str(src), mode="r")
    except (av.FFmpegError, ValueError, OSError, EOFError) as err:
        raise VideoError(f"not a decodable video: {_ffmpeg_words(err)}") from None
    try:
        if not c.streams.video:
            raise VideoError("no video stream")
        s = c.streams.video[0]
        w, h = s.codec_context.width, s.codec_context.height
        if w * h > lim.frame_pixels:
            raise VideoError(f"declares {w}x{h} frames ({w * h:,} pixels), over {lim.describe('frame_pixels')}")
        # FFmpeg's own bound, for streams that declare no size before decoding (GIF, some MJPEG): it refuses larger
        # frames before allocating them
        s.codec_context.options = {**s.codec_context.options, "max_pixels": str(lim.frame_pixels)}
        if threads:
            s.thread_type = "AUTO"
    except BaseException:
        c.close()
        raise
    return c, s


def _ffmpeg_words(err: BaseException) -> str:
    """FFmpeg's reason without the file path or the C function it came from."""
    reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return re.sub(r":? *'[a-z_0-9]+\(.*?\)' returned -?\d+", "", str(reason)).strip() or type(err).__name__


def _decode_error(err: BaseException, got: int, lim: Limits) -> VideoError:
    words = _ffmpeg_words(err)
    if isinstance(err, av.error.ArgumentError):       # what FFmpeg says of a frame over max_pixels
        return VideoError(f"decode failed after {got} frames ({words}: a frame over {lim.describe('frame_pixels')}, "
                          "or a damaged stream)")
    return VideoError(f"decode failed after {got} frames: {words}")


def probe(src: str | Path | bytes, lim: Optional[Limits] = None) -> VideoInfo:
    """The declared rate, frame count and size, without decoding (VideoError past the limits)."""
    c, s = _open(src, lim or default_limits())
    with c:
        rate = s.average_rate or s.guessed_rate or 0
        return VideoInfo(float(rate), int(s.frames or 0), s.codec_context.width, s.codec_context.height)


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(w, h) with the short side = short_side, aspect kept, both integers >= 1."""
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def crop(frames: np.ndarray, size: int, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Square size x size crop of (t h w c): random position with rng, else centred."""
    _, h, w, _ = frames.shape
    if h < size or w < size:
        raise VideoError(f"frames {w}x{h} smaller than the crop {size}")
    y = int(rng.integers(h - size + 1)) if rng is not None else (h - size) // 2
    x = int(rng.integers(w - size + 1)) if rng is not None else (w - size) // 2
    return frames[:, y:y + size, x:x + size]


class _Budget:
    """Decoded bytes one call may hold (Limits.clip_mib); converts frames to RGB within it."""

    def __init__(self, lim: Limits, short_side: int):
        self.lim, self.short_side, self.held = lim, short_side, 0

    def rgb(self, frame: av.VideoFrame) -> np.ndarray:
        w, h = scaled_size(frame.width, frame.height, self.short_side) if self.short_side else (frame.width,
                                                                                                frame.height)
        self.held += w * h * 3
        if self.held > self.lim.clip_mib * MIB:
            raise VideoError(f"the frames asked for take more than {self.lim.describe('clip_mib')} decoded "
                             f"({w}x{h} each)")
        if self.short_side:
            frame = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA")
        return frame.to_ndarray(format="rgb24")                                # (h w 3)


# ---------------------------------------------------------------------------------------------------------------------
# Frames in presentation order, with their numbers and times


class _Inexact(Exception):
    """After a seek, the timestamps do not give exact frame numbers: decode from frame 0 instead."""


def _frames(c, s, first: int, seek: bool, stats: dict) -> Iterator[tuple[int, Optional[float], av.VideoFrame]]:
    """(i, time, frame) in presentation order: from frame `first` on after a seek to the keyframe at or before it
    (frame numbers from timestamps: round((pts - start) x time_base x rate); _Inexact, before anything is yielded,
    when they are not exact), else from frame 0, counted. time: seconds from frame 0 (None when the stream has no
    timestamps and no rate); never going backwards."""
    rate, tb = s.average_rate or s.guessed_rate, s.time_base
    if seek and first > 0:
        if not (rate and tb and s.start_time is not None):
            raise _Inexact
        target = s.start_time + round(Fraction(first) / Fraction(rate) / Fraction(tb))   # pts of frame `first`
        c.seek(target, stream=s, backward=True, any_frame=False)         # the keyframe at or before it
        yielded = False
        for frame in c.decode(s):
            stats["decoded"] = stats.get("decoded", 0) + 1
            exact = None if frame.pts is None else (frame.pts - s.start_time) * Fraction(tb) * Fraction(rate)
            i = None if exact is None else round(exact)
            if exact is None or abs(exact - i) > Fraction(1, 4) or (not yielded and i > first):
                if yielded:
                    raise VideoError("timestamps that do not give frame numbers after a seek")
                raise _Inexact
            if i >= first:
                yielded = True
                yield i, float((frame.pts - s.start_time) * tb), frame
        return
    first_pts, last_time = None, None
    for i, frame in enumerate(c.decode(s)):
        stats["decoded"] = stats.get("decoded", 0) + 1
        if frame.pts is not None and tb:
            first_pts = frame.pts if first_pts is None else first_pts
            time = float((frame.pts - first_pts) * tb)
        else:
            time = i / float(rate) if rate else None
        if time is not None and last_time is not None:
            time = max(time, last_time)                                 # never backwards (damaged timestamps)
        last_time = time
        yield i, time, frame


def _run(src, lim: Limits, first: int, seek: bool, stats: dict, body, threads: bool = False):
    """body(frames) on the opened video, body's errors made VideoErrors; again from frame 0 when the seek is not
    frame-exact. body(frames, progress) gets a list it appends to (for the message of a decode error)."""
    for attempt in ((True, False) if seek and first > 0 else (False,)):
        c, s = _open(src, lim, threads)
        progress: list = []
        with c:
            try:
                return body(_frames(c, s, first, attempt, stats), progress)
            except _Inexact:
                continue
            except VideoError:
                raise
            except (av.FFmpegError, ValueError, EOFError) as err:
                raise _decode_error(err, len(progress), lim) from None
    raise AssertionError("unreachable: the attempt without seeking raises no _Inexact")


# ---------------------------------------------------------------------------------------------------------------------
# Reading


def frames_at(src: str | Path | bytes, indices: Optional[Sequence[int]] = None, short_side: int = 0,
              seek: bool = True, lim: Optional[Limits] = None, stats: Optional[dict] = None) -> np.ndarray:
    """The frames at `indices` (None: all; repeats and any order allowed) -> (t h w 3) uint8. short_side > 0 resizes
    (area filter) so the short side has that many pixels; only wanted frames are converted, and decoding stops after
    the last one. seek: start at the keyframe before the first wanted frame (a clip late in a long video costs its
    GOP, not the video before it). stats["decoded"]: frames decoded."""
    return _pick(src, indices, short_side, seek, lim, stats)[0]


def _pick(src, indices: Optional[Sequence[int]], short_side: int, seek: bool, lim: Optional[Limits],
          stats: Optional[dict], threads: bool = False) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """frames_at, with the picked frames' times (None when a time is unknown)."""
    lim, stats = lim or default_limits(), stats if stats is not None else {}
    want = None if indices is None else sorted(set(int(i) for i in indices))
    if want is not None and (not want or want[0] < 0):
        raise VideoError(f"frame indices must be >= 0, got {list(indices)[:8]}")
    budget = _Budget(lim, short_side)

    def body(frames, progress: list) -> dict:
        got: dict = {}
        for i, time, frame in frames:
            if want is None or i in want:
                got[i] = (budget.rgb(frame), time)
                progress.append(i)
            if want is not None and i >= want[-1]:
                break
        return got

    got = _run(src, lim, want[0] if want else 0, seek, stats, body, threads)
    if not got:
        raise VideoError("no frame could be decoded")
    if want is not None and want[-1] not in got:
        raise ClipTooShort(f"clip too short: decoded {max(got) + 1} frames, need {want[-1] + 1}")
    order = list(indices) if indices is not None else sorted(got)
    times = [got[i][1] for i in order]
    return (np.stack([got[i][0] for i in order]),
            None if any(t is None for t in times) else np.asarray(times, np.float64))


def clip_at(src: str | Path | bytes, start: int, frames: int, fps: Optional[float] = None, stride: int = 1,
            short_side: int = 0, seek: bool = True, lim: Optional[Limits] = None, threads: bool = False,
            stats: Optional[dict] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """A clip of `frames` frames from frame `start`: every stride-th frame (fps None), or re-timed to `fps` by the
    rule of this module. Returns ((frames h w 3) uint8, the chosen frames' times from the first; None when the
    stream has none). Holds only the clip's frames; stops decoding after its last one. ClipTooShort when the video ends first."""
    if frames < 1 or stride < 1 or start < 0 or (fps is not None and not fps > 0):
        raise VideoError(f"a clip needs frames >= 1, stride >= 1, start >= 0 and fps > 0; got {frames}, {stride}, "
                         f"{start}, {fps}")
    lim, stats = lim or default_limits(), stats if stats is not None else {}
    if fps is None:
        clip, times = _pick(src, [start + stride * k for k in range(frames)], short_side, seek, lim, stats, threads)
        return clip, None if times is None else times - times[0]
    budget = _Budget(lim, short_side)

    def body(decoded, out: list) -> tuple:
        times: List[float] = []
        prev, prev_rgb, t0 = None, None, None     # prev: the frame on screen so far (i, time, frame); its RGB once made

        def emit():
            nonlocal prev_rgb
            prev_rgb = prev_rgb if prev_rgb is not None else budget.rgb(prev[2])
            out.append(prev_rgb)
            times.append(prev[1])

        for i, time, frame in decoded:
            if i < start:
                continue
            if time is None:
                raise VideoError(f"re-timing to {fps:g} fps needs timestamps or a frame rate; this stream has "
                                 "neither")
            t0 = time if t0 is None else t0
            while len(out) < frames and time > t0 + len(out) / fps + TIME_EPS:
                emit()                                               # prev was on screen at that time
            if len(out) == frames:
                break
            prev, prev_rgb = (i, time, frame), None
        if prev is None:
            raise ClipTooShort(f"clip too short: no frame {start}")
        while len(out) < frames and t0 + len(out) / fps <= prev[1] + TIME_TOL:     # on the video's last frame
            emit()
        if len(out) < frames:
            raise ClipTooShort(f"clip too short: need {(frames - 1) / fps:.2f} s at {fps:g} fps from frame {start}, "
                               f"the video has {prev[1] - t0:.2f} s after it")
        return np.stack(out), np.asarray(times) - times[0]

    return _run(src, lim, start, seek, stats, body, threads)


def decode_all(src: str | Path | bytes, max_frames: Optional[int] = None, until: Optional[tuple[int, float]] = None,
               short_side: int = 0, lim: Optional[Limits] = None, threads: bool = False) -> Decoded:
    """Frames with their times and codec: all, the first max_frames, or (until=(i, s)) up to the first frame at least
    s seconds after frame i; within Limits.clip_mib of decoded frames."""
    lim = lim or default_limits()
    budget = _Budget(lim, short_side)

    def body(decoded, frames: list) -> tuple:
        times: List[Optional[float]] = []
        for i, time, frame in decoded:
            frames.append(budget.rgb(frame))
            times.append(time)
            if (max_frames is not None and len(frames) >= max_frames) or (
                    until is not None and len(times) > until[0] and times[-1] is not None
                    and times[-1] - times[until[0]] >= until[1]):
                break
        return frames, times

    frames, times = _run(src, lim, 0, False, {}, body, threads)
    if not frames:
        raise ClipTooShort(f"no decodable frames in {src if not isinstance(src, bytes) else '<bytes>'}")
    has_times = all(t is not None for t in times)
    return Decoded(np.stack(frames), np.asarray(times, np.float64) if has_times else None, codec_of(src, lim))


def frame_times(src: str | Path | bytes, lim: Optional[Limits] = None) -> np.ndarray:
    """Every frame's time (seconds from frame 0; NaN without timestamps), decoding without converting a frame."""
    def body(decoded, progress) -> list:
        for _, time, _ in decoded:
            progress.append(np.nan if time is None else time)
        return progress

    times = _run(src, lim or default_limits(), 0, False, {}, body)
    if not times:
        raise ClipTooShort("no decodable frames")
    return np.asarray(times, np.float64)


def count_frames(src: str | Path | bytes, lim: Optional[Limits] = None) -> int:
    """Exact frame count by decoding (containers such as MPEG-PS carry none)."""
    return len(frame_times(src, lim))


def _x264_settings(packet: bytes) -> str:
    """Rate control from the x264 version SEI that libx264 writes into the first packet ("" if absent)."""
    if b"x264 - core" not in packet:
        return ""
    text = packet[packet.find(b"x264 - core"):].split(b"\x00", 1)[0].decode("ascii", "replace")
    rc = re.search(r"\brc=(\w+)", text)
    if rc and rc.group(1) == "crf":
        crf = re.search(r"\bcrf=([\d.]+)", text)
        return f"crf={crf.group(1)}" if crf else "crf"
    qp = re.search(r"\bqp=(\d+)", text)
    if qp:
        return f"qp={qp.group(1)}" + (" (lossless)" if qp.group(1) == "0" else "")
    return f"rc={rc.group(1)}" if rc else ""


def codec_of(src: str | Path | bytes, lim: Optional[Limits] = None) -> str:
    """"h264 yuv420p crf=18.0": the codec, pixel format and rate control (x264's SEI) from the first packet."""
    c, s = _open(src, lim or default_limits())
    first = b""
    with c:
        try:
            for packet in c.demux(s):
                if packet.size:
                    first = bytes(packet)
                    break
        except (av.FFmpegError, ValueError, EOFError):
            pass
        ctx = s.codec_context
        fmt = ctx.format.name if ctx.format else ""
        return " ".join(x for x in (ctx.name, fmt, _x264_settings(first)) if x) or "unknown"


__all__ = ["ClipTooShort", "Decoded", "RETIME", "TIME_TOL", "VIDEO_EXTS", "VideoError", "VideoInfo", "clip_at",
           "codec_of", "count_frames", "crop", "decode_all", "frame_times", "frames_at", "last_start",
           "nominal_times", "probe", "retimed", "scaled_size", "shown"]
