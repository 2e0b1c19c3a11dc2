"""Writing WebDataset shards compatible with video2dataset: {key}.mp4 (or the source container), {key}.txt, {key}.json.

Sources are turned into samples by `make_samples` (run in parallel worker processes): either the source bytes as
they are (no cutting, no re-encoding: decoded frames equal the source's), or cut into clips and/or re-encoded
(H.264 MP4) at a target fps / short side. `write_shards` packs samples into tars and writes manifest.json with
counts and per-shard stats (the DataModule reads the sample counts from it).
"""
from __future__ import annotations

import io
import json
import multiprocessing as mp
import re
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from lumiere_pl.data.tar_reader import MANIFEST
from lumiere_pl.errors import InputError
from lumiere_pl.utils.paths import check_name
from lumiere_pl.utils.atomic import commit, discard, new_temp, write_error, write_text
from eval.decode import TIME_TOL, decode_all, retimed
from eval.limits import MIB, limits
from lumiere_pl.data.video_io import VideoError, count_frames, encode, probe, scaled_size


@dataclass
class Caption:
    text: str
    start: float = 0.0              # seconds; the caption holds for clips inside [start, end)
    end: float = float("inf")


@dataclass
class Source:
    """One input video and how to turn it into samples."""
    path: str
    key: str                        # sample key stem (no dots)
    captions: List[Caption]
    label: Optional[int] = None     # class index (UCF101, synthetic)
    source: str = ""                # provenance recorded in the .json


@dataclass
class Options:
    clip_seconds: float = 0.0       # >0: cut into clips of this length (implies re-encoding)
    clip_stride: float = 0.0        # seconds between clip starts (0: clip_seconds, no overlap)
    fps: float = 0.0                # >0: re-encode at this frame rate
    size: int = 0                   # >0: re-encode with this short side (pixels)
    crf: int = 18                   # H.264 quality of re-encoded clips


@dataclass
class Sample:
    key: str
    ext: str
    video: bytes
    caption: str
    meta: Dict[str, object] = field(default_factory=dict)


def safe_key(name: str) -> str:
    """A WebDataset key: no dots (they start the extension), no path separators, no spaces."""
    return re.sub(r"[^A-Za-z0-9_\-]", "_", name)


def _caption_for(captions: List[Caption], start: float, end: float) -> Optional[str]:
    for c in captions:
        if c.start - 1e-6 <= start and end <= c.end + 1e-6:
            return c.text
    return None


def _whole(src: Source, data: bytes) -> List[Sample]:
    info = probe(data)
    n = info.frames or count_frames(data)
    text = _caption_for(src.captions, 0.0, n / info.fps if info.fps else 0.0) or src.captions[0].text
    ext = Path(src.path).suffix.lstrip(".").lower() or "mp4"
    meta = {"fps": info.fps, "frames": n, "width": info.width, "height": info.height, "source": src.source}
    return [Sample(src.key, ext, data, text, _with_label(meta, src.label))]


def _with_label(meta: Dict[str, object], label: Optional[int]) -> Dict[str, object]:
    return {**meta, "label": label} if label is not None else meta


def _clips(src: Source, data: bytes, opt: Options) -> List[Sample]:
    info = probe(data)
    decoded = decode_all(data, short_side=opt.size)                         # (t h w c), all frames, their times
    frames, fps = decoded.frames, opt.fps or info.fps
    if opt.fps and decoded.times is not None:                               # re-timed by eval/decode.py's rule
        count = int(np.floor((decoded.times[-1] + TIME_TOL) * opt.fps)) + 1
        frames = frames[retimed(0, count, opt.fps, decoded.times)]
    n = len(frames)
    length = int(round(opt.clip_seconds * fps)) if opt.clip_seconds else n
    stride = int(round((opt.clip_stride or opt.clip_seconds) * fps)) if opt.clip_seconds else n
    out = []
    for i, s in enumerate(range(0, n - length + 1, max(stride, 1))):
        text = _caption_for(src.captions, s / fps, (s + length) / fps)
        if text is None:
            continue                                                        # clip straddles a caption boundary
        clip = frames[s:s + length]
        _, h, w, _ = clip.shape
        meta = {"fps": fps, "frames": length, "width": w + w % 2, "height": h + h % 2, "source": src.source,
                "start_seconds": round(s / fps, 4)}
        key = f"{src.key}_{i:04d}" if opt.clip_seconds else src.key
        out.append(Sample(key, "mp4", encode(clip, fps, crf=opt.crf), text, _with_label(meta, src.label)))
    return out


def read_source(path: Path) -> bytes:
    """A source video's bytes, refused unread over the member limit (it becomes one tar member)."""
    lim, size = limits(), path.stat().st_size
    if size > lim.member_mib * MIB:
        raise VideoError(f"{size:,} bytes, over {lim.describe('member_mib')}")
    return path.read_bytes()


def make_samples(job: Tuple[Source, Options]) -> Tuple[Source, List[Sample], Optional[str]]:
    """(source, samples, error): error names why the source was skipped (it is then not a decodable video)."""
    src, opt = job
    try:
        data = read_source(Path(src.path))
        if opt.clip_seconds or opt.fps or opt.size:
            return src, _clips(src, data, opt), None
        return src, _whole(src, data), None
    except (VideoError, OSError) as err:
        return src, [], f"{type(err).__name__}: {err}"


class ShardWriter:
    """Packs samples into {out_dir}/{prefix}-NNNNNN.tar, per_shard samples each; members are in a fixed order.

    Each tar is written under a temporary name and renamed when complete (lumiere_pl/utils/atomic.py): an
    interrupted run leaves whole shards only. The folder is created with the first sample; abort() drops the shard
    being written."""

    def __init__(self, out_dir: Path, prefix: str = "train", per_shard: int = 100):
        self.out_dir, self.prefix, self.per_shard = Path(out_dir), prefix, per_shard
        self.stats: List[Dict[str, object]] = []
        self._tar: Optional[tarfile.TarFile] = None
        self._path: Optional[Path] = None                   # the shard being written ...
        self._tmp: Optional[Path] = None                    # ... under this temporary name (eval/atomic.py)

    def _add(self, name: str, payload: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(payload), 0, 0o644
        self._tar.addfile(info, io.BytesIO(payload))

    def write(self, s: Sample) -> None:
        check_name(f"{check_name(s.key, 'shard key')}.{s.ext}", "shard member")      # stays a plain tar member name
        try:
            if self._tar is None or self.stats[-1]["samples"] >= self.per_shard:
                self._close_tar()
                name = f"{self.prefix}-{len(self.stats):06d}.tar"
                self._path = self.out_dir / name
                if not self.stats and _our_manifest(self.out_dir / MANIFEST):
                    (self.out_dir / MANIFEST).unlink()      # an earlier run's: it no longer describes the folder
                self._tmp = new_temp(self._path)
                self._tar = tarfile.open(self._tmp, "w")
                self.stats.append({"file": name, "samples": 0, "video_bytes": 0, "frames": 0, "seconds": 0.0})
            self._add(f"{s.key}.{s.ext}", s.video)
            self._add(f"{s.key}.txt", s.caption.encode("utf-8"))
            self._add(f"{s.key}.json", json.dumps({**s.meta, "key": s.key}, sort_keys=True).encode("utf-8"))
        except OSError as err:
            path = self._path or self.out_dir
            self.abort()
            raise write_error(path, err) from err
        st = self.stats[-1]
        st["samples"] += 1
        st["video_bytes"] += len(s.video)
        st["frames"] += int(s.meta.get("frames", 0))
        st["seconds"] = round(st["seconds"] + int(s.meta.get("frames", 0)) / float(s.meta.get("fps") or 1), 3)

    def _close_tar(self) -> None:
        if self._tar is not None:
            tar, path, tmp, self._tar, self._tmp = self._tar, self._path, self._tmp, None, None
            try:
                tar.close()
                commit(tmp, path)
            except OSError as err:
                discard(tmp)
                raise write_error(path, err) from err
            except BaseException:
                discard(tmp)
                raise

    def close(self) -> List[Dict[str, object]]:
        self._close_tar()
        return self.stats

    def abort(self) -> None:
        """Drop the shard being written (its temporary file); shards already closed stay."""
        tar, tmp, self._tar, self._tmp = self._tar, self._tmp, None, None
        if tar is not None:
            try:
                tar.close()
            except OSError:
                pass                                        # a full disk: the file is removed next
            self.stats.pop()
        discard(tmp)


def run_jobs(jobs: Sequence[Tuple[Source, Options]], workers: int, desc: str) -> Iterator[Tuple[Source, List[Sample], Optional[str]]]:
    """make_samples over jobs, in order, on `workers` processes, with a progress bar. The workers ignore Ctrl-C (the
    whole process group gets it): this process decides, and on any exception (Ctrl-C, SIGTERM: eval/signals.py)
    terminates them at once, so none is left behind; at the end they are closed and joined."""
    from eval.signals import ignore_interrupts

    bar = tqdm(total=len(jobs), desc=desc, unit="video")
    if workers <= 1:
        results: Iterable = map(make_samples, jobs)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(workers, initializer=ignore_interrupts)
        results = pool.imap(make_samples, jobs)
    done = False
    try:
        for r in results:
            bar.update(1)
            yield r
        done = True
    finally:
        bar.close()
        if pool is not None:
            if done:
                pool.close()
            else:
                pool.terminate()                    # SIGTERM to each worker: they end mid-video
            pool.join()


SHARD_NAME = re.compile(r"^(train|val)-\d{6}\.tar$")
TEMP_NAME = re.compile(r"^\.(train|val)-\d{6}\.tar\..*\.tmp\.tar$")
MANIFEST_FORMAT = "webdataset: {key}.<video ext>, {key}.txt (caption), {key}.json (fps, frames, size, source, label)"


def _our_shard(path: Path) -> bool:
    """A tar lumiere-shards wrote: named PREFIX-NNNNNN.tar, its first member written with mtime 0 and mode 0644."""
    try:
        with tarfile.open(path, "r:") as tar:
            first = tar.next()
        return first is not None and first.mtime == 0 and first.mode == 0o644
    except (tarfile.TarError, OSError, EOFError):
        return False


def _our_manifest(path: Path) -> bool:
    try:
        man = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(man, dict) and man.get("format") == MANIFEST_FORMAT


def check_out_dir(out_dir: Path) -> List[Path]:
    """The output folder is new, empty, or holds only an earlier lumiere-shards output (shards named
    PREFIX-NNNNNN.tar whose first member has mtime 0 and mode 0644, its manifest.json, temporary shards of an
    interrupted run): anything else is refused, never written over. Returns that earlier output's files (replaced
    by this run: write_manifest removes those the new manifest does not list)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    ours, foreign = [], []
    for p in sorted(out_dir.iterdir()):
        mine = (p.is_file() and not p.is_symlink() and (
            (SHARD_NAME.match(p.name) and _our_shard(p)) or TEMP_NAME.match(p.name)
            or (p.name == MANIFEST and _our_manifest(p))))
        (ours if mine else foreign).append(p)
    if foreign:
        names = ", ".join(p.name for p in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise InputError(f"{out_dir}: holds files lumiere-shards did not write ({names}); expected a new or empty "
                         "folder, or one holding an earlier lumiere-shards output (which is replaced)")
    return ours


def write_manifest(out_dir: Path, shards: List[Dict[str, object]], skipped: List[Dict[str, str]],
                   settings: Dict[str, object]) -> Path:
    man = {
        "format": MANIFEST_FORMAT,
        "samples": sum(int(s["samples"]) for s in shards),
        "shards": shards,
        "skipped_sources": skipped,
        "settings": settings,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path = write_text(Path(out_dir) / MANIFEST, json.dumps(man, indent=1))
    keep = {str(s["file"]) for s in shards} | {MANIFEST}
    for old in check_out_dir(out_dir):                      # an earlier run's shards this one did not write again
        if old.name not in keep:
            old.unlink(missing_ok=True)
    return path


def skipped_summary(skipped: List[Dict[str, str]], show: int = 3) -> str:
    """"2 not a decodable video (a.mp4, b.mp4), 1 no caption (c.mp4)": skipped sources grouped by reason."""
    groups: Dict[str, List[str]] = {}
    for s in skipped:
        groups.setdefault(short_reason(s["reason"]), []).append(Path(s["source"]).name)
    parts = []
    for reason, names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        more = f", ... {len(names) - show} more" if len(names) > show else ""
        parts.append(f"{len(names)} {reason} ({', '.join(names[:show])}{more})")
    return ", ".join(parts)


def short_reason(reason: str) -> str:
    """"VideoError: not a decodable video: [Errno ...] ..." -> "not a decodable video"."""
    parts = [p.strip() for p in reason.split(": ")]
    if len(parts) > 1 and parts[0].endswith("Error"):
        parts = parts[1:]
    return re.sub(r"\s*\(.*\)$", "", parts[0]) or reason


def build(jobs: Sequence[Tuple[Source, Options]], out_dir: Path, per_shard: int, workers: int,
          split_of=None, settings: Optional[Dict[str, object]] = None,
          skipped: Sequence[Dict[str, str]] = ()) -> Dict[str, object]:
    """Run jobs and write shards; split_of(sample) -> shard prefixes the sample goes to (default ["train"]).
    skipped: sources left out before (e.g. no caption), recorded with those that fail here. Returns the manifest.

    When no sample can be made, nothing is written (no folder, no manifest) and InputError says why."""
    writers: Dict[str, ShardWriter] = {}
    skipped = list(skipped)
    total = len(jobs) + len(skipped)
    try:
        for src, samples, err in run_jobs(jobs, workers, f"sharding -> {out_dir}"):
            if err is None and not samples:
                err = "no clip: shorter than --clip-seconds, or no caption covers a whole clip"
            if err is not None:
                tqdm.write(f"skipped {src.path}: {err}")
                skipped.append({"source": src.path, "reason": err})
                continue
            for s in samples:
                for prefix in split_of(s) if split_of else ["train"]:
                    if prefix not in writers:
                        writers[prefix] = ShardWriter(out_dir, prefix, per_shard)
                    writers[prefix].write(s)
        shards = [st for w in writers.values() for st in w.close()]
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    if not shards:
        raise InputError(f"0 samples written, {len(skipped)} of {total} sources skipped: {skipped_summary(skipped)}; "
                         f"nothing written to {out_dir} (expected at least one decodable, captioned video)")
    opts = {k: v for k, v in asdict(jobs[0][1]).items()} if jobs else {}
    path = write_manifest(out_dir, shards, skipped, {**opts, "per_shard": per_shard, **(settings or {})})
    return json.loads(path.read_text())


__all__ = ["Caption", "Options", "Sample", "ShardWriter", "Source", "build", "make_samples", "safe_key",
           "scaled_size", "skipped_summary", "write_manifest"]
