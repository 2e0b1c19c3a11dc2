"""Video sources: a folder of video files (or .npy clips), WebDataset shards (.tar), or a clip list (.txt:
one "video_path [start_frame]" per line, e.g. several clips of one long video), decoded with PyAV.

A clip is uint8 (t, h, w, c) RGB: `frames` frames taken every `stride`-th decoded frame from `start`.
Sources are split across DDP ranks by item index (i % world == rank) so every item is read exactly once.
"""
from __future__ import annotations

import io
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np

VIDEO_EXTS = (".mp4", ".avi", ".mpg", ".mpeg", ".mov", ".mkv", ".webm", ".gif")
CLIP_EXTS = VIDEO_EXTS + (".npy",)


class ClipTooShort(ValueError):
    pass


@dataclass(frozen=True)
class ClipSpec:
    frames: int = 16    # frames per clip (the FVD standard)
    stride: int = 1     # keep every stride-th decoded frame (frame-rate subsampling)
    start: int = 0      # first decoded frame index

    def needed(self) -> int:
        return self.start + (self.frames - 1) * self.stride + 1

    def protocol(self) -> dict:
        return asdict(self)


def decode(src: str | Path | bytes, max_frames: int | None = None) -> np.ndarray:
    """All (or the first max_frames) frames of a video as uint8 (t, h, w, 3) RGB."""
    frames = []
    with av.open(io.BytesIO(src) if isinstance(src, bytes) else str(src)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))   # (h, w, 3)
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise ClipTooShort(f"no decodable frames in {src if not isinstance(src, bytes) else '<bytes>'}")
    return np.stack(frames)                                     # (t, h, w, 3)


def load_frames(src: str | Path | bytes, name: str, max_frames: int | None = None) -> np.ndarray:
    """Frames of a video file or an .npy clip (uint8 (t, h, w, 3), loaded without pickle)."""
    if name.endswith(".npy"):
        clip = np.load(io.BytesIO(src) if isinstance(src, bytes) else src, allow_pickle=False)
        if clip.dtype != np.uint8 or clip.ndim != 4 or clip.shape[-1] != 3:
            raise ValueError(f"{name}: .npy clips must be uint8 (t, h, w, 3), got {clip.dtype} {clip.shape}")
        return clip[:max_frames]
    return decode(src, max_frames)


def take_clip(frames: np.ndarray, spec: ClipSpec, offset: int = 0) -> np.ndarray:
    """(t_all, h, w, c) -> (spec.frames, h, w, c) starting at spec.start + offset."""
    first = spec.start + offset
    idx = first + spec.stride * np.arange(spec.frames)
    if idx[-1] >= len(frames):
        raise ClipTooShort(f"need frame {idx[-1]}, video has {len(frames)}")
    return frames[idx]


def clips_from_video(src: str | Path, spec: ClipSpec, n_clips: int, step: int | None = None) -> list[np.ndarray]:
    """n_clips disjoint clips from one video, each starting `step` frames after the previous (default: no overlap)."""
    step = step if step is not None else spec.frames * spec.stride
    frames = decode(src, spec.needed() + step * (n_clips - 1))
    return [take_clip(frames, spec, i * step) for i in range(n_clips)]


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{Path(p).resolve()} {start}\n" for p, start in clips))
    return path


def iter_items(path: str | Path, rank: int = 0, world: int = 1,
               limit: int | None = None) -> Iterator[tuple[int, str, object, int]]:
    """(index, key, source, start offset) for this rank's share; source is a Path or, in shards, the member's bytes."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(path)
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
    """Number of clips in a folder (None for shards: not known without reading them)."""
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
