"""Run a detector over a video source: decode, batch, extract; split across DDP ranks, gathered in input order."""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field

import av
import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from .detectors import Detector
from .frechet import FeatureStats
from .video_io import ClipSpec, ClipTooShort, count_items, iter_items, load_frames, take_clip


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass
class Extracted:
    features: np.ndarray            # (n, d) float32, in source order
    keys: list[str]
    skipped: list[str] = field(default_factory=list)   # too short / undecodable, with the reason

    def stats(self) -> FeatureStats:
        return FeatureStats(self.features.shape[1]).update(self.features)


def extract(source, detector: Detector, spec: ClipSpec = ClipSpec(), batch_size: int = 8,
            limit: int | None = None, progress: bool = True, desc: str = "features") -> Extracted:
    """Features of the first clip of every video in `source` (folder of videos/.npy clips or .tar shards)."""
    rank, world = rank_world()
    total = count_items(source)
    total = min(total, limit) if (total is not None and limit is not None) else (total or limit)
    bar = tqdm(total=None if total is None else -(-total // world), desc=f"{desc} [rank {rank}/{world}]",
               unit="clip", disable=not progress or rank != 0, file=sys.stderr)
    feats, idx, keys, skipped, batch, meta = [], [], [], [], [], []

    def flush():
        if batch:
            feats.append(detector.features(torch.stack(batch)).numpy())
            idx.extend(i for i, _ in meta)
            keys.extend(k for _, k in meta)
            bar.update(len(batch))
            batch.clear()
            meta.clear()

    for i, key, src, start in iter_items(source, rank, world, limit):
        try:
            clip = take_clip(load_frames(src, key, spec.needed() + start), spec, start)   # (t, h, w, 3)
        except (ClipTooShort, av.FFmpegError, ValueError, OSError) as err:
            skipped.append(f"{key}: {err}")
            continue
        batch.append(detector.prepare(clip))
        meta.append((i, key))
        if len(batch) == batch_size:
            flush()
    flush()
    bar.close()
    dim = detector.feature_dim
    out = np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)
    out, keys, skipped = _gather(out, idx, keys, skipped, world)
    if skipped:
        warnings.warn(f"{len(skipped)} videos skipped (first: {skipped[0]})", UserWarning)
    return Extracted(out, keys, skipped)


def _gather(feats: np.ndarray, idx: list[int], keys: list[str], skipped: list[str], world: int):
    """All ranks' features, re-ordered by source index so the result equals a single-process run."""
    if world == 1:
        return feats, keys, skipped
    parts = [None] * world
    dist.all_gather_object(parts, (feats, idx, keys, skipped))
    feats = np.concatenate([p[0] for p in parts])
    idx = np.concatenate([np.asarray(p[1], np.int64) for p in parts])
    keys = [k for p in parts for k in p[2]]
    order = np.argsort(idx, kind="stable")
    return feats[order], [keys[j] for j in order], [s for p in parts for s in p[3]]
