"""Writing videos: MP4 files with PyAV (H.264) and animated GIFs in TensorBoard (no moviepy needed)."""
from __future__ import annotations

import io
import platform
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np
import torch
from PIL import Image
from torch import Tensor


def from_uint8(frames: np.ndarray) -> Tensor:
    """(t h w c) uint8 -> (c t h w) float32 in [-1, 1]: the batch contract's pixels (inverse of to_uint8)."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div_(127.5).sub_(1.0)


def to_uint8(video: Tensor) -> np.ndarray:
    """(c t h w) or (c h w) float in [-1, 1] -> (t h w c) uint8."""
    if video.ndim == 3:
        video = video[:, None]
    x = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


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


def write_mp4(path: str | Path, frames: np.ndarray, fps: float = 8.0, crf: int = 18, lossless: bool = False) -> Path:
    """frames (t h w 3) uint8 -> H.264 MP4 (yuv420p at `crf`; lossless: RGB qp 0, bit-exact; odd sizes are padded by
    one pixel): `encode`, written to a temporary name and renamed, so a reader never sees half
    a file (lumiere_pl/utils/atomic.py)."""
    from lumiere_pl.utils.atomic import write_bytes

    path = Path(path)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"write_mp4 expects uint8 frames (t h w 3), got {frames.dtype} {frames.shape}")
    return write_bytes(path, encode(frames, fps, crf=crf, lossless=lossless))


def encode_gif(frames: np.ndarray, fps: float = 8.0) -> bytes:
    """frames (t h w 3) uint8 -> animated GIF bytes (looping)."""
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return buf.getvalue()


def tile(videos: Sequence[np.ndarray]) -> np.ndarray:
    """Side by side: list of (t h w 3) with equal t and h -> (t h sum(w) 3)."""
    return np.concatenate(list(videos), axis=2)


def write_sheet(path: str | Path, rows: Sequence[np.ndarray], every: int = 1, scale: int = 1, gap: int = 2) -> Path:
    """A PNG contact sheet: one row per video ((t h w 3) uint8, equal sizes), every `every`-th frame, each pixel
    repeated `scale` times, `gap` white pixels between frames and rows; written atomically."""
    from lumiere_pl.utils.atomic import write_bytes

    if not rows or len({r.shape for r in rows}) != 1:
        raise ValueError(f"write_sheet expects videos of one shape, got {[r.shape for r in rows]}")
    t, h, w, _ = rows[0].shape
    frames = range(0, t, every)
    hs, ws = h * scale, w * scale
    sheet = np.full((len(rows) * (hs + gap) - gap, len(frames) * (ws + gap) - gap, 3), 255, np.uint8)
    for i, video in enumerate(rows):
        for j, f in enumerate(frames):
            tile_ = video[f].repeat(scale, 0).repeat(scale, 1)
            sheet[i * (hs + gap):i * (hs + gap) + hs, j * (ws + gap):j * (ws + gap) + ws] = tile_
    buf = io.BytesIO()
    Image.fromarray(sheet).save(buf, format="PNG")
    return write_bytes(path, buf.getvalue())


def log_video(writer, tag: str, frames: np.ndarray, step: int, fps: float = 8.0) -> None:
    """Log (t h w 3) uint8 to a TensorBoard SummaryWriter as an animated GIF (TensorBoard's video format)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    t, h, w, c = frames.shape
    image = Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=encode_gif(frames, fps))
    # _get_file_writer, as SummaryWriter's own add_* do: it reopens a writer closed by an earlier end of training
    # (lumiere-train's last validation runs after fit, when Lightning has closed the logger)
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
