"""Reference statistics on disk, keyed by every protocol field (weights id, preprocessing, clip sampling, numerics,
N, source fingerprint). Stored as .npz (no pickle) with the protocol beside the sums, written atomically; the
per-video features ("rows", float32) are stored too when known, so FVD's bootstrap can resample the real set.

A stats file given by the user (`--real FILE.npz`) is reused only when every field that changes the features
(FEATURE_FIELDS) equals this run's; the cache itself misses on any difference (the key is a hash of all fields).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import EvalError
from .frechet import FeatureStats

# fields of a stats protocol that change the features (the rest describe the source: path, N, split, ...)
FEATURE_FIELDS = ("detector", "weights", "size", "resize", "crop", "short_side", "scale", "frames_used",
                  "frames", "stride", "start", "fps", "offset", "seed", "numerics")


def default_cache_dir() -> Path:
    return Path(os.environ.get("LUMIERE_EVAL_CACHE", Path.home() / ".cache" / "lumiere-eval"))


def _canonical(protocol: dict) -> dict:
    return json.loads(json.dumps(protocol, sort_keys=True, default=str))


def cache_key(protocol: dict) -> str:
    canonical = json.dumps(_canonical(protocol), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def cache_path(protocol: dict, cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / f"stats-{cache_key(protocol)}.npz"


def save_stats(stats: FeatureStats, protocol: dict, path: str | Path, record: dict | None = None) -> Path:
    """`record`: what the extraction found (N, skipped, codecs), kept beside the protocol, not part of it."""
    with atomic_path(path) as tmp:   # a concurrent reader never sees half a file
        rows = {} if stats.rows is None else {"rows": stats.rows}      # per-video features: the bootstrap's input
        np.savez(tmp, n=np.int64(stats.n), total=stats.total, total_outer=stats.total_outer,
                 protocol=np.array(json.dumps(protocol, sort_keys=True, default=str)),
                 record=np.array(json.dumps(record or {}, sort_keys=True, default=str)), **rows)
    return Path(path)


def load_stats(path: str | Path, expect_protocol: dict | None = None) -> tuple[FeatureStats, dict]:
    """Statistics and their protocol (with the extraction record added after the check); with expect_protocol,
    any difference in any protocol field is an EvalError."""
    try:
        with np.load(path, allow_pickle=False) as f:
            protocol = json.loads(str(f["protocol"]))
            record = json.loads(str(f["record"])) if "record" in f.files else {}
            total = f["total"]
            rows = f["rows"] if "rows" in f.files else None
            stats = FeatureStats(len(total), int(f["n"]), total.astype(np.float64), f["total_outer"].astype(np.float64),
                                 rows if rows is not None and rows.shape == (int(f["n"]), len(total)) else None)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise EvalError(f"{path}: not a statistics file of lumiere-eval stats ({type(err).__name__}: {err})") from None
    if expect_protocol is not None:
        diff = _diff(protocol, _canonical(expect_protocol), set(protocol) | set(_canonical(expect_protocol)))
        if diff:
            raise EvalError(f"{path}: cached statistics were made under another protocol: {diff}")
    return stats, {**protocol, **record}


def check_stats_file(path: str | Path, protocol: dict, run_protocol: dict) -> None:
    """A user's stats file against this run: every FEATURE_FIELD must match (a different device only warns)."""
    run = _canonical(run_protocol)
    fields = set(FEATURE_FIELDS) & (set(protocol) | set(run))
    if protocol.get("offset", "first") == run.get("offset") == "first":
        fields.discard("seed")                          # the seed only draws random offsets
    diff = _diff(protocol, run, fields)
    numerics = diff.pop("numerics", None)
    if diff:
        raise EvalError(f"{path}: made under another protocol ({'; '.join(f'{k}: file {a!r}, this run {b!r}' for k, (a, b) in diff.items())}); "
                        "recompute it with `lumiere-eval stats` and this run's options")
    if numerics is not None:
        if {k: v for k, v in (numerics[0] or {}).items() if k != "device"} != {k: v for k, v in (numerics[1] or {}).items() if k != "device"}:
            raise EvalError(f"{path}: made with numerics {numerics[0]}, this run uses {numerics[1]}")
        warnings.warn(f"{path}: made on {numerics[0]['device']}, this run is on {numerics[1]['device']} "
                      "(float32 without TF32 on both: features agree to about 1e-5)", UserWarning)


def _diff(a: dict, b: dict, fields) -> dict:
    return {k: (a.get(k), b.get(k)) for k in sorted(fields) if a.get(k) != b.get(k)}
