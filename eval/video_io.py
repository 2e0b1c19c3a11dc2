"""Video sources: a folder of video files (or .npy clips), WebDataset shards (.tar), or a clip list (.txt: one
"video_path [start_frame]" per line), decoded by eval/decode.py (the project's one decoder).

A clip is uint8 (t, h, w, 3) RGB, taken from a video by a ClipSpec: `frames` frames, either every `stride`-th
decoded frame, or re-timed to `fps` by timestamps (eval/decode.py's rule: frame k is the frame on screen at
t_start + k/fps); starting at frame `start` ("first") or at a start drawn per video from (seed, video key)
("random"). Sources are split across DDP ranks by item index (i % world == rank), so every item is read once.
A tar member larger than the member limit (eval/limits.py) is skipped unread.
"""
from __future__ import annotations

import io
import tarfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from .decode import (RETIME, VIDEO_EXTS, ClipTooShort, Decoded, VideoError, clip_at, codec_of, decode_all,
                     frame_times, last_start, retimed)
from .command import read_text
from .limits import MIB, limits

CLIP_EXTS = tuple(f".{e}" for e in VIDEO_EXTS) + (".npy",)


@dataclass(frozen=True)
class ClipSpec:
    frames: int = 16            # frames per clip (the FVD standard)
    stride: int = 1             # keep every stride-th decoded frame (without fps)
    start: int = 0              # first decoded frame (with offset="first"; the lower bound with "random")
    fps: float | None = None    # re-time by timestamps to this frame rate; None: the decoded frames as they come
    offset: str = "first"       # "first" or "random" (per video, seeded by `seed` and the video's key)
    seed: int = 0               # seed of the random offsets

    def __post_init__(self):
        if self.frames < 1 or self.stride < 1 or self.start < 0:
            raise ValueError(f"need frames >= 1, stride >= 1, start >= 0; got {self.frames}, {self.stride}, {self.start}")
        if self.offset not in ("first", "random"):
            raise ValueError(f"offset must be 'first' or 'random', got {self.offset!r}")
        if self.fps is not None and (not self.fps > 0 or self.stride != 1):
            raise ValueError("fps resampling needs fps > 0 and stride 1 (the frame rate sets the spacing)")

    def needed(self) -> int:
        """Frames to decode for a "first" clip without fps."""
        return self.start + (self.frames - 1) * self.stride + 1

    def protocol(self) -> dict:
        """The clip-sampling fields of an evaluation protocol (with the re-timing rule when clips are re-timed)."""
        return {**asdict(self), **({"retime": RETIME} if self.fps is not None else {})}


def decode(src: str | Path | bytes, max_frames: int | None = None,
           until: tuple[int, float] | None = None) -> Decoded:
    """Frames with timestamps and codec: all, the first max_frames, or (until=(i, s)) up to the first frame at least
    s seconds after frame i (eval/decode.py's decode_all)."""
    return decode_all(src, max_frames, until, threads=True)


def load_frames(src: str | Path | bytes, name: str, max_frames: int | None = None,
                until: tuple[int, float] | None = None) -> Decoded:
    """A video file or an .npy clip (uint8 (t, h, w, 3), loaded without pickle; no timestamps)."""
    if name.endswith(".npy"):
        return Decoded(_npy(src, name)[:max_frames], None, "npy")
    return decode(src, max_frames, until)


def _npy(src, name: str) -> np.ndarray:
    """An .npy clip, its header checked against the clip limit before the array is read."""
    f = io.BytesIO(src) if isinstance(src, bytes) else open(src, "rb")
    with f:
        try:
            version = np.lib.format.read_magic(f)
            shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0) else
                               np.lib.format.read_array_header_2_0(f))
        except ValueError as err:
            raise VideoError(f"{name}: not an .npy array ({err})") from None
        if dtype != np.uint8 or len(shape) != 4 or shape[-1] != 3:
            raise VideoError(f"{name}: .npy clips must be uint8 (t, h, w, 3), got {dtype} {shape}")
        lim = limits()
        if int(np.prod(shape)) > lim.clip_mib * MIB:
            raise VideoError(f"{name}: declares {shape}, over {lim.describe('clip_mib')}")
        f.seek(0)
        return np.load(f, allow_pickle=False)


def _valid_starts(times: np.ndarray | None, n: int, spec: ClipSpec, base: int) -> np.ndarray:
    if spec.fps is None:
        last = n - 1 - (spec.frames - 1) * spec.stride
    else:
        if times is None:
            raise ValueError(f"resampling to {spec.fps} fps needs timestamps; .npy clips have none")
        last = last_start(times, spec.fps, spec.frames)
    return np.arange(base, last + 1)


def _start(times: np.ndarray | None, n: int, spec: ClipSpec, key: str, offset: int) -> int:
    """The clip's first frame: spec.start + offset, or a seeded random start after it."""
    starts = _valid_starts(times, n, spec, spec.start + offset)
    if len(starts) == 0:
        need = f"{(spec.frames - 1) / spec.fps:.2f} s at {spec.fps} fps" if spec.fps else f"frame {spec.needed() + offset - 1}"
        raise ClipTooShort(f"need {need} from frame {spec.start + offset}, video has {n} frames")
    if spec.offset == "random":
        rng = np.random.default_rng([spec.seed, zlib.crc32(key.encode())])
        return int(starts[rng.integers(len(starts))])
    return int(starts[0])


def take_clip(decoded: Decoded, spec: ClipSpec, key: str = "", offset: int = 0) -> np.ndarray:
    """(spec.frames, h, w, 3) from a decoded video: from spec.start + offset, or a seeded random start after it."""
    start = _start(decoded.times, len(decoded.frames), spec, key, offset)
    if spec.fps is None:
        return decoded.frames[start + spec.stride * np.arange(spec.frames)]
    return decoded.frames[retimed(start, spec.frames, spec.fps, decoded.times)]


def _read(src, name: str, spec: ClipSpec, key: str, offset: int) -> tuple[np.ndarray, str, np.ndarray | None]:
    """(clip, codec, the clip's frame times or None): only the clip's frames are held; a random start first reads
    every frame's time (decoding without converting)."""
    if isinstance(src, Unreadable):
        raise src.err
    if name.lower().endswith(".npy"):
        decoded = load_frames(src, name)
        return take_clip(decoded, spec, key, offset), decoded.codec, None
    start = spec.start + offset
    if spec.offset == "random":
        times = frame_times(src)
        start = _start(None if np.isnan(times).any() else times, len(times), spec, key, offset)
    clip, times = clip_at(src, start, spec.frames, spec.fps, spec.stride, threads=True)
    return clip, codec_of(src), times


def read_clip(src, name: str, spec: ClipSpec, key: str = "", offset: int = 0) -> tuple[np.ndarray, str]:
    """Decode only what the clip needs, then take it: (clip (frames, h, w, 3) uint8, codec)."""
    clip, codec, _ = _read(src, name, spec, key, offset)
    return clip, codec


def clip_rate(times: np.ndarray | None, spec: ClipSpec) -> float | None:
    """Frame rate of the clips `spec` takes: spec.fps, else 1 / the median interval of the clip's frames; None without
    timestamps (.npy clips) or with a single frame."""
    if spec.fps is not None:
        return float(spec.fps)
    if times is None or len(times) < 2:
        return None
    step = float(np.median(np.diff(times)))
    return 1.0 / step if step > 0 else None


def read_clip_rate(src, name: str, spec: ClipSpec, key: str = "",
                   offset: int = 0) -> tuple[np.ndarray, str, float | None]:
    """read_clip plus the clip's frame rate (clip_rate)."""
    clip, codec, times = _read(src, name, spec, key, offset)
    return clip, codec, clip_rate(times, spec)


def container_rate(src, name: str) -> float | None:
    """The frame rate a video's container declares (its stream's average rate), without decoding; None for .npy
    clips and streams that declare none."""
    if name.lower().endswith(".npy") or isinstance(src, Unreadable):
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
    for line in read_text(path, 'a clip list: "video_path [start_frame]" lines').splitlines():
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
            if callable(src):
                try:
                    src = src()
                except VideoError as err:                   # an item over a limit: skipped by its reader, named
                    src = Unreadable(err)
            yield i, key, src, start


class Unreadable:
    """An item that could not be read (a tar member over the member limit): its readers raise `err`."""

    def __init__(self, err: Exception):
        self.err = err


def _iter_shard_members(shards: list[Path]):
    """(key, a callable reading the member) of every video member; a shard that breaks (truncated, a header that
    lies) ends with one unreadable item naming where, its complete members before kept."""
    bound = limits().member_mib * MIB
    for shard in shards:
        last = "its start"
        try:
            with tarfile.open(shard) as tar:
                for member in tar:
                    last = member.name
                    if member.isfile() and member.name.lower().endswith(CLIP_EXTS):
                        yield f"{shard.name}/{member.name}", (lambda m=member, t=tar: _member(t, m, bound))
        except (tarfile.TarError, OSError, EOFError) as err:
            yield f"{shard.name}", _broken(f"the shard breaks after {last} ({err}): the rest of it is lost")


def _broken(why: str):
    def read() -> bytes:
        raise VideoError(why)
    return read


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo, bound: int) -> bytes:
    """A tar member's bytes, refused unread when its header declares more than the member limit (a lying or
    sparse header costs nothing)."""
    if member.size > bound or member.issparse():
        what = "a sparse member" if member.issparse() else f"{member.size:,} bytes"
        raise VideoError(f"declares {what}, over {limits().describe('member_mib')}")
    try:
        return tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise VideoError(f"cut short ({err}): the shard is truncated or damaged") from None


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
