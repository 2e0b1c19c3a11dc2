"""Scoring functions behind the CLI: real statistics (cached), FVD, IS, the UCF101 protocol. Plain Python, no
Lightning; under torch.distributed every rank extracts its share and all ranks get the same result."""
from __future__ import annotations

import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .cache import cache_path, load_stats, save_stats
from .detectors import Detector
from .extract import extract, rank_world
from .frechet import FeatureStats, fvd_from_stats
from .inception import inception_score
from .video_io import ClipSpec, source_fingerprint


def environment() -> dict:
    return {"eval_version": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "machine": platform.processor() or platform.machine()}


def stats_protocol(detector: Detector, spec: ClipSpec, source: str | Path, limit: int | None) -> dict:
    return {**detector.protocol(), **spec.protocol(), "max_videos": limit, "source": source_fingerprint(source)}


def source_stats(source: str | Path, detector: Detector, spec: ClipSpec, limit: int | None = None,
                 batch_size: int = 8, cache_dir: str | Path | None = None, use_cache: bool = True,
                 desc: str = "real") -> tuple[FeatureStats, dict]:
    """Statistics of a source: a stats .npz written by `lumiere-eval stats`, the cache, or extracted now."""
    source = Path(source)
    if source.suffix == ".npz":
        stats, protocol = load_stats(source)
        if protocol.get("weights") != detector.protocol()["weights"] or protocol.get("frames") != spec.frames:
            raise ValueError(f"{source}: made with {protocol.get('weights')}, {protocol.get('frames')} frames; "
                             f"this run uses {detector.protocol()['weights']}, {spec.frames} frames")
        return stats, {**protocol, "stats_file": str(source), "cache": "file"}
    protocol = stats_protocol(detector, spec, source, limit)
    path = cache_path(protocol, cache_dir)
    if use_cache and path.is_file():
        stats, _ = load_stats(path, protocol)
        return stats, {**protocol, "n": stats.n, "cache": f"hit {path}"}
    result = extract(source, detector, spec, batch_size, limit, desc=desc)
    stats = result.stats()
    if use_cache and rank_world()[0] == 0:
        save_stats(stats, protocol, path)
    return stats, {**protocol, "n": stats.n, "skipped": len(result.skipped), "cache": f"wrote {path}" if use_cache else "off"}


def fvd(real, fake, detector: Detector, spec: ClipSpec, limit_real=None, limit_fake=None, batch_size=8,
        cache_dir=None, use_cache=True) -> dict:
    t0 = time.perf_counter()
    real_stats, real_protocol = source_stats(real, detector, spec, limit_real, batch_size, cache_dir, use_cache, "real")
    fake_stats, fake_protocol = source_stats(fake, detector, spec, limit_fake, batch_size, cache_dir, False, "fake")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fvd_from_stats(real_stats, fake_stats)
    return {"metric": "fvd", "value": value, "n_real": real_stats.n, "n_fake": fake_stats.n,
            "protocol": {**detector.protocol(), **spec.protocol()}, "real": real_protocol, "fake": fake_protocol,
            "warnings": [str(w.message) for w in caught], "seconds": time.perf_counter() - t0, "env": environment()}


def inception(videos, detector: Detector, spec: ClipSpec, splits=1, repeats=1, seed=42, limit=None,
              batch_size=8) -> dict:
    t0 = time.perf_counter()
    result = extract(videos, detector, spec, batch_size, limit, desc="is")
    probs = result.features.astype(np.float64)                     # (n, k) softmax outputs
    mean, std = inception_score(probs, splits=splits, repeats=repeats, seed=seed)
    label = ("Inception Score (C3D-UCF101, TGAN2 protocol)" if detector.name.startswith("c3d")
             else "I3D-Kinetics-400 Inception Score: NOT the paper's C3D-UCF101 IS, not comparable to Table 1")
    return {"metric": "is" if detector.name.startswith("c3d") else "is_i3d_kinetics", "label": label,
            "value": mean, "std": std, "n": len(probs), "splits": splits, "repeats": repeats, "seed": seed,
            "protocol": {**detector.protocol(), **spec.protocol(), "source": source_fingerprint(videos)},
            "skipped": len(result.skipped), "seconds": time.perf_counter() - t0, "env": environment()}


def ucf101(fake_dir, real, detector: Detector, spec: ClipSpec, c3d=None, prompts=None, splits=1, repeats=1, seed=42,
           limit_real=None, batch_size=8, cache_dir=None, use_cache=True, real_note=None) -> dict:
    """FVD (I3D logits) and IS of a folder of generated videos. IS is C3D-UCF101's when `c3d` (a C3DDetector) is
    given; otherwise the I3D-Kinetics IS from the same I3D pass (softmax of the logits), labelled as such."""
    from .ucf101 import generated_classes

    t0 = time.perf_counter()
    real_stats, real_protocol = source_stats(real, detector, spec, limit_real, batch_size, cache_dir, use_cache, "real")
    fake = extract(fake_dir, detector, spec, batch_size, desc="fake")          # (n, 400) logits
    fake_stats = fake.stats()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fvd_value = fvd_from_stats(real_stats, fake_stats)
    out = {"fvd": {"metric": "fvd", "value": fvd_value, "n_real": real_stats.n, "n_fake": fake_stats.n,
                   "protocol": {**detector.protocol(), **spec.protocol()}, "real": real_protocol,
                   "fake": {"source": source_fingerprint(fake_dir), "skipped": fake.skipped},
                   "warnings": [str(w.message) for w in caught]}}
    if c3d is not None:
        out["is"] = inception(fake_dir, c3d, spec, splits, repeats, seed, batch_size=batch_size)
    else:
        probs = torch.from_numpy(fake.features).double().softmax(-1).numpy()  # (n, 400)
        mean, std = inception_score(probs, splits=splits, repeats=repeats, seed=seed)
        out["is"] = {"metric": "is_i3d_kinetics", "value": mean, "std": std, "n": len(probs), "splits": splits,
                     "repeats": repeats, "seed": seed,
                     "label": "I3D-Kinetics-400 Inception Score: NOT the paper's C3D-UCF101 IS, not comparable to Table 1"}
    out["per_class"] = dict(sorted(generated_classes(fake_dir, prompts).items()))
    out["real_note"] = real_note or f"{real_protocol.get('source', {}).get('path')} (n = {real_stats.n})"
    out["seconds"], out["env"] = time.perf_counter() - t0, environment()
    return out
