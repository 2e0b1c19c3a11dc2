"""Video sources: a folder of video files (or .npy clips), WebDataset shards (.tar), or a clip list (.txt: one
"video_path [start_frame]" per line), decoded with PyAV, frames with their timestamps.

A clip is uint8 (t, h, w, 3) RGB, taken from a video by a ClipSpec: `frames` frames, either every `stride`-th
decoded frame, or resampled by timestamps to `fps` (frame k is the decoded frame nearest in time to t_start + k/fps,
ties to the earlier one); starting at frame `start` ("first") or at a start drawn per video from (seed, video key)
("random"). Sources are split across DDP ranks by item index (i % world == rank), so every item is read once.
"""
from __future__ import annotations

import io
import re
import tarfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np

VIDEO_EXTS = (".mp4", ".avi", ".mpg", ".mpeg", ".mov", ".mkv", ".webm", ".gif")
CLIP_EXTS = VIDEO_EXTS + (".npy",)
TIME_TOL = 1e-3   # seconds: a clip "fits" when its last sample time is within this of the last frame


class ClipTooShort(ValueError):
    pass


@dataclass(frozen=True)
class ClipSpec:
    frames: int = 16            # frames per clip (the FVD standard)
    stride: int = 1             # keep every stride-th decoded frame (without fps)
    start: int = 0              # first decoded frame (with offset="first"; the lower bound with "random")
    fps: float | None = None    # resample by timestamps to this frame rate; None: the decoded frames as they come
    offset: str = "first"       # "first" or "random" (per video, seeded by `seed` and the video's key)
    seed: int = 0               # seed of the random offsets

    def __post_init__(self):
        if self.frames < 1 or self.stride < 1 or self.start < 0:
            raise ValueError(f"need frames >= 1, stride >= 1, start >= 0; got {self.frames}, {self.stride}, {self.start}")
        if self.offset not in ("first", "random"):
            raise ValueError(f"offset must be 'first' or 'random', got {self.offset!r}")
        if self.fps is not None and (self.fps <= 0 or self.stride != 1):
            raise ValueError("fps resampling needs fps > 0 and stride 1 (the frame rate sets the spacing)")

    def needed(self) -> int:
        """Frames to decode for a "first" clip without fps."""
        return self.start + (self.frames - 1) * self.stride + 1

    def protocol(self) -> dict:
        return asdict(self)


@dataclass
class Decoded:
    frames: np.ndarray          # (t, h, w, 3) uint8
    times: np.ndarray | None    # (t,) seconds from the first frame; None for .npy clips
    codec: str                  # e.g. "h264 yuv420p crf=18.0", "h264 gbrp qp=0 (lossless)", "npy"


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


def decode(src: str | Path | bytes, max_frames: int | None = None,
           until: tuple[int, float] | None = None) -> Decoded:
    """Frames with timestamps and codec: all, the first max_frames, or (until=(i, s)) up to the first frame at least
    s seconds after frame i."""
    frames, times, codec = [], [], ""
    with av.open(io.BytesIO(src) if isinstance(src, bytes) else str(src)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        ctx = stream.codec_context
        rate = float(stream.average_rate) if stream.average_rate else None
        for packet in container.demux(stream):
            if not codec and packet.size:
                codec = " ".join(x for x in (ctx.name, ctx.format.name if ctx.format else "", _x264_settings(bytes(packet))) if x)
            for frame in packet.decode():
                t = frame.time if frame.time is not None else (len(frames) / rate if rate else None)
                frames.append(frame.to_ndarray(format="rgb24"))          # (h, w, 3)
                times.append(np.nan if t is None else t)
            if (max_frames is not None and len(frames) >= max_frames) or (
                    until is not None and len(times) > until[0] and times[-1] - times[until[0]] >= until[1]):
                break
    if not frames:
        raise ClipTooShort(f"no decodable frames in {src if not isinstance(src, bytes) else '<bytes>'}")
    times = np.asarray(times, np.float64)
    order = np.argsort(times, kind="stable") if not np.isnan(times).any() else np.arange(len(frames))
    frames = np.stack(frames)[order][:max_frames]                       # (t, h, w, 3) in display order
    times = None if np.isnan(times).any() else times[order][:max_frames] - times[order][0]
    return Decoded(frames, times, codec or "unknown")


def load_frames(src: str | Path | bytes, name: str, max_frames: int | None = None,
                until: tuple[int, float] | None = None) -> Decoded:
    """A video file or an .npy clip (uint8 (t, h, w, 3), loaded without pickle; no timestamps)."""
    if name.endswith(".npy"):
        clip = np.load(io.BytesIO(src) if isinstance(src, bytes) else src, allow_pickle=False)
        if clip.dtype != np.uint8 or clip.ndim != 4 or clip.shape[-1] != 3:
            raise ValueError(f"{name}: .npy clips must be uint8 (t, h, w, 3), got {clip.dtype} {clip.shape}")
        return Decoded(clip[:max_frames], None, "npy")
    return decode(src, max_frames, until)


def _sample_times(times: np.ndarray, start: int, spec: ClipSpec) -> np.ndarray:
    """Indices of the frames nearest to times[start] + k/fps (ties to the earlier frame)."""
    target = times[start] + np.arange(spec.frames) / spec.fps                  # (frames,)
    right = np.clip(np.searchsorted(times, target, side="left"), 1, len(times) - 1)
    left = right - 1
    return np.where(target - times[left] <= times[right] - target, left, right) if len(times) > 1 else np.zeros(spec.frames, int)


def _valid_starts(decoded: Decoded, spec: ClipSpec, base: int) -> np.ndarray:
    n = len(decoded.frames)
    if spec.fps is None:
        last = n - 1 - (spec.frames - 1) * spec.stride
    else:
        if decoded.times is None:
            raise ValueError(f"resampling to {spec.fps} fps needs timestamps; .npy clips have none")
        span = (spec.frames - 1) / spec.fps
        last = int(np.searchsorted(decoded.times, decoded.times[-1] - span + TIME_TOL, side="right")) - 1
    return np.arange(base, last + 1)


def take_clip(decoded: Decoded, spec: ClipSpec, key: str = "", offset: int = 0) -> np.ndarray:
    """(spec.frames, h, w, 3) from a decoded video: from spec.start + offset, or a seeded random start after it."""
    starts = _valid_starts(decoded, spec, spec.start + offset)
    if len(starts) == 0:
        need = f"{(spec.frames - 1) / spec.fps:.2f} s at {spec.fps} fps" if spec.fps else f"frame {spec.needed() + offset - 1}"
        raise ClipTooShort(f"need {need} from frame {spec.start + offset}, video has {len(decoded.frames)} frames")
    if spec.offset == "random":
        rng = np.random.default_rng([spec.seed, zlib.crc32(key.encode())])
        start = int(starts[rng.integers(len(starts))])
    else:
        start = int(starts[0])
    if spec.fps is None:
        return decoded.frames[start + spec.stride * np.arange(spec.frames)]
    return decoded.frames[_sample_times(decoded.times, start, spec)]


def _decode_for(src, name: str, spec: ClipSpec, offset: int) -> Decoded:
    """Decode only what a clip needs."""
    if spec.offset == "random":
        return load_frames(src, name)
    if spec.fps is None:
        return load_frames(src, name, max_frames=spec.needed() + offset)
    return load_frames(src, name, until=(spec.start + offset, (spec.frames - 1) / spec.fps))


def read_clip(src, name: str, spec: ClipSpec, key: str = "", offset: int = 0) -> tuple[np.ndarray, str]:
    """Decode only what the clip needs, then take it: (clip (frames, h, w, 3) uint8, codec)."""
    decoded = _decode_for(src, name, spec, offset)
    return take_clip(decoded, spec, key, offset), decoded.codec


def clip_rate(decoded: Decoded, spec: ClipSpec) -> float | None:
    """Frame rate of the clips `spec` takes from a video: spec.fps, else the decoded rate (1 / median frame interval)
    over spec.stride; None without timestamps (.npy clips) or with a single frame."""
    if spec.fps is not None:
        return float(spec.fps)
    if decoded.times is None or len(decoded.times) < 2:
        return None
    step = float(np.median(np.diff(decoded.times)))
    return 1.0 / (step * spec.stride) if step > 0 else None


def read_clip_rate(src, name: str, spec: ClipSpec, key: str = "",
                   offset: int = 0) -> tuple[np.ndarray, str, float | None]:
    """read_clip plus the clip's frame rate (clip_rate)."""
    decoded = _decode_for(src, name, spec, offset)
    return take_clip(decoded, spec, key, offset), decoded.codec, clip_rate(decoded, spec)


def container_rate(src, name: str) -> float | None:
    """The frame rate a video's container declares (its stream's average rate), without decoding; None for .npy
    clips and streams that declare none."""
    if name.lower().endswith(".npy"):
        return None
    with av.open(io.BytesIO(src) if isinstance(src, bytes) else str(src)) as container:
        rate = container.streams.video[0].average_rate
    return float(rate) if rate else None


def clips_from_video(src: str | Path, spec: ClipSpec, n_clips: int, step: int | None = None) -> list[np.ndarray]:
    """n_clips disjoint clips from one video, each starting `step` frames after the previous (default: no overlap)."""
    step = step if step is not None else spec.frames * spec.stride
    decoded = decode(src, spec.needed() + step * (n_clips - 1))
    return [take_clip(decoded, spec, offset=i * step) for i in range(n_clips)]


def is_shards(path: str | Path) -> bool:
    path = Path(path)
    return path.suffix == ".tar" or (path.is_dir() and any(path.glob("*.tar")) and not _video_files(path))


def _video_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in CLIP_EXTS and p.is_file())


def read_clip_list(path: str | Path) -> list[tuple[Path, int]]:
    """Lines "video_path [start_frame]" (relative paths from the list's folder); '#' starts a comment."""
    path = Path(path)
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, start = line.rpartition(" ") if line.rsplit(" ", 1)[-1].isdigit() else (line, "", "0")
            out.append(((path.parent / name.strip()).resolve(), int(start)))
    return out


def write_clip_list(path: str | Path, clips: list[tuple[Path, int]]) -> Path:
    from .atomic import write_text

    return write_text(path, "".join(f"{Path(p).resolve()} {start}\n" for p, start in clips))


def iter_items(path: str | Path, rank: int = 0, world: int = 1,
               limit: int | None = None) -> Iterator[tuple[int, str, object, int]]:
    """(index, key, source, start offset) for this share; source is a Path or, in shards, the member's bytes."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if is_shards(path):
        items = ((key, src, 0) for key, src in _iter_shard_members(sorted(path.glob("*.tar")) if path.is_dir() else [path]))
    elif path.is_dir():
        items = ((str(p.relative_to(path)), p, 0) for p in _video_files(path))
    elif path.suffix == ".txt":
        items = ((f"{p.name}@{start}", p, start) for p, start in read_clip_list(path))
    else:
        items = iter([(path.name, path, 0)])
    for i, (key, src, start) in enumerate(items):
        if limit is not None and i >= limit:
            return
        if i % world == rank:
            yield i, key, (src() if callable(src) else src), start


def _iter_shard_members(shards: list[Path]):
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.isfile() and member.name.lower().endswith(CLIP_EXTS):
                    yield f"{shard.name}/{member.name}", (lambda m=member, t=tar: t.extractfile(m).read())


def count_items(path: str | Path) -> int | None:
    """Number of clips in a source (None for shards: not known without reading them)."""
    path = Path(path)
    if is_shards(path):
        return None
    if path.suffix == ".txt":
        return len(read_clip_list(path))
    return len(_video_files(path)) if path.is_dir() else 1


def source_fingerprint(path: str | Path) -> dict:
    """Identity of a source for cache keys: absolute path plus a hash of (name, size) of every file."""
    import hashlib

    path = Path(path).resolve()
    files = sorted(path.glob("*.tar")) if is_shards(path) and path.is_dir() else (
        _video_files(path) if path.is_dir() else [path])
    h = hashlib.sha256()
    if path.suffix == ".txt":  # a clip list: its lines and the videos they name
        h.update(path.read_bytes())
        files = sorted({p for p, _ in read_clip_list(path)})
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path) if path.is_dir() else f.name}|{st.st_size}\n".encode())
    return {"path": str(path), "files": len(files), "content": h.hexdigest()[:16]}
