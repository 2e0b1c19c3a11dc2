"""Reference statistics cached on disk, keyed by every protocol field (weights id, frames, stride, resolution,
crop, N, source fingerprint). Stored as .npz (no pickle) with the protocol beside the sums; a key mismatch is a miss.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .frechet import FeatureStats


def default_cache_dir() -> Path:
    return Path(os.environ.get("LUMIERE_EVAL_CACHE", Path.home() / ".cache" / "lumiere-eval"))


def cache_key(protocol: dict) -> str:
    canonical = json.dumps(protocol, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def cache_path(protocol: dict, cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / f"stats-{cache_key(protocol)}.npz"


def save_stats(stats: FeatureStats, protocol: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, n=np.int64(stats.n), total=stats.total, total_outer=stats.total_outer,
             protocol=np.array(json.dumps(protocol, sort_keys=True, default=str)))
    tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    return path


def load_stats(path: str | Path, expect_protocol: dict | None = None) -> tuple[FeatureStats, dict]:
    with np.load(path, allow_pickle=False) as f:
        protocol = json.loads(str(f["protocol"]))
        total = f["total"]
        stats = FeatureStats(len(total), int(f["n"]), total.astype(np.float64), f["total_outer"].astype(np.float64))
    if expect_protocol is not None:
        expected = json.loads(json.dumps(expect_protocol, sort_keys=True, default=str))
        if protocol != expected:
            diff = {k: (protocol.get(k), expected.get(k)) for k in set(protocol) | set(expected)
                    if protocol.get(k) != expected.get(k)}
            raise ValueError(f"{path}: cached statistics were made under another protocol: {diff}")
    return stats, protocol
