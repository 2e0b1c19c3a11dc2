"""Run detectors over a video source: DataLoader workers decode each clip once (and, on the CPU, preprocess it for
every detector) while the main process runs the networks; split across DDP ranks, gathered back in source order.

On a CUDA device the workers hand over uint8 clips and the preprocessing (crop, resize, scaling) runs on the device.
Unreadable items are skipped and counted; a source with nothing readable is an EvalError naming it.
"""
from __future__ import annotations

import os
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from .detectors import Detector
from .errors import EvalError
from .frechet import FeatureStats
from .preprocess import Preprocess
from .video_io import CLIP_EXTS, ClipSpec, ClipTooShort, count_items, iter_items, read_clip

SHOW_SKIPPED = 3   # unreadable items named in messages


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def default_workers() -> int:
    """Decode workers: one core stays with the main process (the networks)."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


@dataclass
class Extracted:
    features: dict[str, np.ndarray]     # detector name -> (n, d) float32, in source order
    keys: list[str]
    skipped: list[str] = field(default_factory=list)    # "key: reason" of unreadable / too short items
    codecs: dict[str, int] = field(default_factory=dict)  # "h264 yuv420p crf=18.0" -> number of items

    def stats(self, name: str) -> FeatureStats:
        x = self.features[name]
        return FeatureStats(x.shape[1]).update(x, keep_rows=True)

    def record(self) -> dict:
        return {"n": len(self.keys), "skipped": len(self.skipped), "skipped_first": self.skipped[:SHOW_SKIPPED],
                "codecs": self.codecs}


class ClipDataset(IterableDataset):
    """Yields ("ok", index, key, inputs, codec) or ("skip", index, key, reason). inputs: one float tensor per
    preprocess (CPU preprocessing), or the uint8 clip (t, h, w, 3) when `preprocesses` is empty."""

    def __init__(self, source, spec: ClipSpec, preprocesses: list[Preprocess], rank: int, world: int,
                 limit: int | None):
        self.source, self.spec, self.preprocesses = source, spec, preprocesses
        self.rank, self.world, self.limit = rank, world, limit

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        for i, key, src, start in iter_items(self.source, self.rank * nw + wid, self.world * nw, self.limit):
            try:
                clip, codec = read_clip(src, key, self.spec, key, start)        # (t, h, w, 3) uint8
            except av.FFmpegError as err:     # FFmpeg's own words, without the path (the key names the file)
                yield "skip", i, key, f"not decodable ({err.strerror or type(err).__name__})"
                continue
            except (ClipTooShort, ValueError, OSError, IndexError) as err:
                yield "skip", i, key, str(err) if isinstance(err, ClipTooShort) else f"{type(err).__name__}: {err}"
                continue
            clip = torch.from_numpy(np.ascontiguousarray(clip))
            inputs = [p(clip) for p in self.preprocesses] if self.preprocesses else clip
            yield "ok", i, key, inputs, codec


def check_source(source) -> None:
    """A source that exists and holds at least one video (before any network is loaded)."""
    path = Path(source)
    if not path.exists():
        raise EvalError(f"{path}: no such file or folder")
    if count_items(path) == 0:
        raise EvalError(f"{path}: no videos found (looked for {', '.join(CLIP_EXTS)} files, or .tar shards)")


def extract(source, detectors: dict[str, Detector], spec: ClipSpec = ClipSpec(), batch_size: int = 8,
            limit: int | None = None, workers: int | None = None, progress: bool = True,
            desc: str = "features") -> Extracted:
    """Features of one clip of every video in `source` (folder of videos / .npy clips, .tar shards, clip list),
    for every detector, from one decode per clip."""
    check_source(source)
    rank, world = rank_world()
    workers = default_workers() if workers is None else workers
    on_cpu = all(d.device.type == "cpu" for d in detectors.values())
    preprocesses = list(dict.fromkeys(d.preprocess for d in detectors.values())) if on_cpu else []
    dataset = ClipDataset(source, spec, preprocesses, rank, world, limit)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, persistent_workers=False,
                        pin_memory=not on_cpu)
    total = count_items(source)
    total = min(total, limit) if (total is not None and limit is not None) else (total or limit)
    bar = tqdm(total=None if total is None else -(-total // world), desc=f"{desc} [rank {rank}/{world}]",
               unit="clip", disable=not progress or rank != 0, file=sys.stderr)
    feats = {name: [] for name in detectors}
    pending = {name: [] for name in detectors}
    idx, keys, skipped, codecs, batch_meta = [], [], [], Counter(), []

    def flush():
        if batch_meta:
            for name, det in detectors.items():
                feats[name].append(det.features(torch.stack(pending[name])).numpy())   # (b, d)
                pending[name].clear()
            idx.extend(i for i, _ in batch_meta)
            keys.extend(k for _, k in batch_meta)
            bar.update(len(batch_meta))
            batch_meta.clear()

    for item in loader:
        if item[0] == "skip":
            skipped.append((item[1], f"{item[2]}: {item[3]}"))
            bar.update(1)
            continue
        _, i, key, inputs, codec = item
        for name, det in detectors.items():
            if on_cpu:
                pending[name].append(inputs[preprocesses.index(det.preprocess)])      # (3, t, s, s)
            else:
                pending[name].append(det.preprocess(inputs.to(det.device, non_blocking=True)))
        batch_meta.append((i, key))
        codecs[codec] += 1
        if len(batch_meta) == batch_size:
            flush()
    flush()
    bar.close()
    out = {name: np.concatenate(f) if f else np.zeros((0, detectors[name].feature_dim), np.float32)
           for name, f in feats.items()}
    out, keys, skipped, codecs = _gather(out, idx, keys, skipped, codecs, world)
    result = Extracted(out, keys, [s for _, s in sorted(skipped)], dict(codecs))
    if not result.keys:
        raise EvalError(f"{source}: none of the {len(result.skipped)} videos could be read "
                        f"({_first(result.skipped)})")
    if result.skipped:
        warnings.warn(f"{source}: {len(result.skipped)} of {len(result.skipped) + len(result.keys)} videos skipped "
                      f"({_first(result.skipped)})", UserWarning)
    return result


def _first(skipped: list[str]) -> str:
    more = f"; and {len(skipped) - SHOW_SKIPPED} more" if len(skipped) > SHOW_SKIPPED else ""
    return "; ".join(skipped[:SHOW_SKIPPED]) + more


def _gather(feats: dict[str, np.ndarray], idx: list[int], keys: list[str], skipped: list, codecs: Counter,
            world: int):
    """All ranks' features, re-ordered by source index so the result equals a single-process run."""
    order = np.argsort(np.asarray(idx, np.int64), kind="stable")
    if world > 1:
        parts = [None] * world
        dist.all_gather_object(parts, (feats, idx, keys, skipped, codecs))
        feats = {name: np.concatenate([p[0][name] for p in parts]) for name in feats}
        idx = np.concatenate([np.asarray(p[1], np.int64) for p in parts])
        keys = [k for p in parts for k in p[2]]
        skipped = [s for p in parts for s in p[3]]
        codecs = sum((p[4] for p in parts), Counter())
        order = np.argsort(idx, kind="stable")
    return {name: f[order] for name, f in feats.items()}, [keys[j] for j in order], skipped, codecs
