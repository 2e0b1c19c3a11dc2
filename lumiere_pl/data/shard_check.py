"""What a run asks of its shards against what lumiere-shards wrote in their manifest.json (its settings: the clips'
short side, frame rate and length). A difference the DataModule bridges (resizing, frame-rate conversion) is said in
one line each; clips too short for data.frames at data.fps, every sample of which would be skipped, are refused.
Shards without a manifest (remote, or written by other tools), or written without re-encoding (the sources' own
sizes and rates), are not compared."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Tuple

from lumiere_pl.data.config import DataConfig
from lumiere_pl.data.tar_reader import MANIFEST, expand
from lumiere_pl.errors import InputError


def manifests(pattern: str) -> List[Tuple[Path, Dict[str, object]]]:
    """(path, settings) of each manifest.json beside the local shards of `pattern`, once each."""
    found: Dict[Path, Dict[str, object]] = {}
    for url in expand(pattern):
        if ":" in url.split("/")[0] and not url.startswith("file:"):
            continue                                                # a remote URL
        man = Path(url[len("file:"):] if url.startswith("file:") else url).parent / MANIFEST
        if man not in found and man.is_file():
            try:
                found[man] = dict(json.loads(man.read_text()).get("settings") or {})
            except (OSError, ValueError, AttributeError):
                continue                                            # not ours: nothing to compare
    return list(found.items())


def check_shards(cfg: DataConfig) -> List[str]:
    """One-line notes where the run's data.size / data.fps differ from the shards'; InputError when their clips
    are shorter than data.frames at data.fps."""
    notes, seen = [], set()
    for key, pattern in (("data.train_shards", cfg.train_shards), ("data.val_shards", cfg.val_shards)):
        for man, s in manifests(pattern) if pattern else []:
            if man in seen:
                continue
            seen.add(man)
            size, fps = int(s.get("size") or 0), float(s.get("fps") or 0)
            clip = int(s.get("frames") or 0) or (round(float(s.get("clip_seconds") or 0) * fps) if fps else 0)
            if size and size != cfg.size:
                notes.append(f"note: {key} holds {size} px clips ({man}); the run resizes them to data.size="
                             f"{cfg.size} px")
            if cfg.images or not fps or cfg.fps <= 0:
                continue
            if fps != cfg.fps:
                how = "skipping frames" if cfg.fps < fps else "repeating frames"
                notes.append(f"note: {key} holds {fps:g} fps clips ({man}); the run takes them at data.fps="
                             f"{cfg.fps:g} ({how})")
            need = math.floor((cfg.frames - 1) * fps / cfg.fps + 1e-6) + 1          # data/video_io.resampled_indices
            if clip and clip < need:
                most = math.floor((clip - 1) * cfg.fps / fps + 1e-6) + 1
                raise InputError(f"{key}: its clips hold {clip} frames at {fps:g} fps ({man}), data.frames="
                                 f"{cfg.frames} at data.fps={cfg.fps:g} needs {need}: every sample would be skipped; "
                                 f"expected data.frames <= {most}, or shards cut into longer clips")
    return notes
