"""`lumiere-eval motion` behind the CLI: the motion metrics (eval/motion.py) of every clip of a source, in DataLoader
workers (OpenCV single-threaded in each), split across DDP ranks and gathered in source order; then the set
summaries with bootstrap intervals, the flow Frechet distance of two sets, the protocol card and the table.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import av
import numpy as np
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from . import card
from .bootstrap import DEFAULT_B_FRECHET, DEFAULT_B_MEAN
from .errors import EvalError
from .extract import SHOW_SKIPPED, _first, check_source, default_workers, rank_world
from .flow import FLOW_SHORT_SIDE, DISFlow
from .motion import FEATURE_DIM, MIN_FRAMES, SEGMENTS, SPEED_EDGES, flow_frechet, motion_stats, summarise
from .video_io import ClipSpec, ClipTooShort, count_items, iter_items, read_clip_rate, source_fingerprint


@dataclass
class MotionSet:
    keys: list[str]
    stats: list[dict]                                   # motion_stats per readable clip, in source order
    skipped: list[str] = field(default_factory=list)    # "key: reason"
    codecs: dict[str, int] = field(default_factory=dict)

    def record(self) -> dict:
        return {"n": len(self.keys), "skipped": len(self.skipped), "skipped_first": self.skipped[:SHOW_SKIPPED],
                "codecs": self.codecs}


def _single_thread(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)


def _as_is(item):
    return item


class MotionDataset(IterableDataset):
    """Yields ("ok", index, key, stats, codec) or ("skip", index, key, reason)."""

    def __init__(self, source, spec: ClipSpec, short_side: int, rank: int, world: int, limit: int | None,
                 npy_fps: float | None):
        self.source, self.spec, self.short_side = source, spec, short_side
        self.rank, self.world, self.limit, self.npy_fps = rank, world, limit, npy_fps

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        flow = DISFlow()
        for i, key, src, start in iter_items(self.source, self.rank * nw + wid, self.world * nw, self.limit):
            try:
                clip, codec, fps = read_clip_rate(src, key, self.spec, key, start)     # (t h w 3) uint8
                fps = fps or self.npy_fps
                if fps is None:
                    raise ValueError("no frame rate (an .npy clip has no timestamps): pass --npy-fps F")
                yield "ok", i, key, motion_stats(clip, fps, self.short_side, flow), codec
            except av.FFmpegError as err:
                yield "skip", i, key, f"not decodable ({err.strerror or type(err).__name__})"
            except (ClipTooShort, ValueError, OSError, IndexError) as err:
                yield "skip", i, key, str(err) if isinstance(err, (ClipTooShort, ValueError)) else f"{type(err).__name__}: {err}"


def measure(source, spec: ClipSpec, short_side: int = FLOW_SHORT_SIDE, limit: int | None = None,
            workers: int | None = None, npy_fps: float | None = None, desc: str = "motion") -> MotionSet:
    """motion_stats of one clip of every video of a source (folder, shards, clip list)."""
    import cv2

    check_source(source)
    rank, world = rank_world()
    workers = default_workers() if workers is None else workers
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)                                # in this process too (workers = 0); restored below
    try:
        return _measure(source, spec, short_side, limit, workers, npy_fps, desc, rank, world)
    finally:
        cv2.setNumThreads(threads)


def _measure(source, spec: ClipSpec, short_side: int, limit: int | None, workers: int, npy_fps: float | None,
             desc: str, rank: int, world: int) -> MotionSet:
    loader = DataLoader(MotionDataset(source, spec, short_side, rank, world, limit, npy_fps), batch_size=None,
                        num_workers=workers, worker_init_fn=_single_thread, collate_fn=_as_is)
    total = count_items(source)
    total = min(total, limit) if (total is not None and limit is not None) else (total or limit)
    bar = tqdm(total=None if total is None else -(-total // world), desc=f"{desc} [rank {rank}/{world}]",
               unit="clip", disable=rank != 0, file=sys.stderr)
    done, skipped, codecs = [], [], Counter()
    for item in loader:
        if item[0] == "skip":
            skipped.append((item[1], f"{item[2]}: {item[3]}"))
        else:
            done.append((item[1], item[2], item[3]))
            codecs[item[4]] += 1
        bar.update(1)
    bar.close()
    if world > 1:
        parts = [None] * world
        dist.all_gather_object(parts, (done, skipped, codecs))
        done = [d for p in parts for d in p[0]]
        skipped = [s for p in parts for s in p[1]]
        codecs = sum((p[2] for p in parts), Counter())
    done.sort(key=lambda d: d[0])
    out = MotionSet([k for _, k, _ in done], [s for _, _, s in done], [s for _, s in sorted(skipped)], dict(codecs))
    if not out.keys:
        raise EvalError(f"{source}: none of the {len(out.skipped)} videos could be read ({_first(out.skipped)})")
    if out.skipped:
        import warnings

        warnings.warn(f"{source}: {len(out.skipped)} of {len(out.skipped) + len(out.keys)} videos skipped "
                      f"({_first(out.skipped)})", UserWarning)
    return out


def motion_card(spec: ClipSpec, short_side: int, sets: dict[str, MotionSet], rates: dict | None) -> dict:
    """Every field that moves the motion figures (eval/card.py)."""
    return {"metric": "motion", **DISFlow.describe(), "flow_short_side": short_side,
            "flow_features": f"speed {len(SPEED_EDGES) + 1} + direction 8 bins x {SEGMENTS} segments ({FEATURE_DIM}-d)",
            "dynamic_rule": "vbench", **card.clip_fields(spec.protocol(), (rates or {}).get("rates")),
            **{f"n_{name}": len(s.keys) for name, s in sets.items()}}


def _per_video(s: MotionSet) -> list[dict]:
    return [{"key": k, **{n: v for n, v in st.items() if n != "features"}} for k, st in zip(s.keys, s.stats)]


def result(sets: dict[str, MotionSet], sources: dict[str, str], spec: ClipSpec, short_side: int = FLOW_SHORT_SIDE,
           b: int = DEFAULT_B_MEAN, b_frechet: int = DEFAULT_B_FRECHET, seed: int = 0, rates: dict | None = None,
           t0: float | None = None) -> dict:
    """The motion JSON: per set its summary (value, low, high, n per metric) and per-video values; with "real" and
    "fake" sets, the flow Frechet distance; the card and the figures of the generated (or only) set."""
    out = {"metric": "motion", "flow": {**DISFlow.describe(), "flow_short_side": short_side,
                                        "note": "OpenCV DIS flow, not RAFT: not comparable to VBench's or "
                                                "EvalCrafter's published values"},
           "bootstrap": {"b": b, "b_frechet": b_frechet, "seed": seed, "confidence": 0.95,
                         "method": "percentile bootstrap over videos (eval/bootstrap.py)"},
           "sets": {}}
    for name, s in sets.items():
        out["sets"][name] = {"source": source_fingerprint(sources[name]), **s.record(),
                             "summary": summarise(s.stats, b, seed), "per_video": _per_video(s)}
    if "real" in sets and "fake" in sets:
        if min(len(sets["real"].keys), len(sets["fake"].keys)) >= 2:
            out["flow_frechet"] = flow_frechet(sets["real"].stats, sets["fake"].stats, b_frechet, seed)
        else:
            out["flow_frechet"] = None
    out["card"] = motion_card(spec, short_side, sets, rates)
    if rates:
        out["frame_rate"] = rates
    main = out["sets"]["fake" if "fake" in sets else next(iter(sets))]["summary"]
    out["figures"] = [{"name": m["label"], "value": m["value"], "low": m["low"], "high": m["high"], "n": str(m["n"])}
                      for m in main.values()]
    if out.get("flow_frechet"):
        f = out["flow_frechet"]
        out["figures"].append({"name": "flow Frechet distance", "value": f["value"], "low": f["low"],
                               "high": f["high"], "n": f"real {f['n_real']}, fake {f['n_fake']}"})
    if t0 is not None:
        out["seconds"] = time.perf_counter() - t0
    return out


def table(res: dict) -> str:
    """Markdown: one row per metric, value [low, high] and N per set; then the flow Frechet distance."""
    names = list(res["sets"])
    heads = {"real": "real", "fake": "generated", "videos": "videos"}
    b = res["bootstrap"]["b"]
    how = f"95% bootstrap intervals over videos, B = {b}, seed {res['bootstrap']['seed']}" if b > 0 else "no intervals"
    lines = [f"Motion metrics (OpenCV DIS flow, not RAFT; {how})", "",
             "| metric | " + " | ".join(f"{heads.get(n, n)} [95% interval] | N" for n in names) + " |",
             "|---|" + "---|---|" * len(names)]
    for metric in next(iter(res["sets"].values()))["summary"]:
        cells = []
        for n in names:
            m = res["sets"][n]["summary"][metric]
            cells += [card.format_figure(m), str(m["n"])]
        lines.append(f"| {res['sets'][names[0]]['summary'][metric]['label']} | " + " | ".join(cells) + " |")
    f = res.get("flow_frechet")
    if f:
        lines += ["", f"flow Frechet distance (real vs generated, {f['feature_dim']}-d flow statistics): "
                      f"{card.format_figure(f)}  (N real {f['n_real']}, generated {f['n_fake']}"
                      + (f"; B = {f['interval']['b']})" if f["low"] is not None else "; no interval)")]
    elif "flow_frechet" in res:
        lines += ["", f"flow Frechet distance: not computed (needs >= 2 clips of >= {MIN_FRAMES} frames per set)"]
    return "\n".join(lines) + "\n"
