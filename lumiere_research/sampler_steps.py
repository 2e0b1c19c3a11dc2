"""Sampler x steps on the moving-shapes model: at how many network calls does each sampler match DDIM-25?

Every checkpoint (one per training seed: the seed-to-seed spread) samples the captions of the same N unseen test
clips from the same noise (seeds 0..N-1) with each (sampler, steps) of the grid, guidance as trained. Scored as
`make ablation` scores: direction match and jerk (lumiere_research/shapes_motion.py) and FVD (I3D) against the first
n_real test clips. A (sampler, steps) matches the reference when each metric's mean over the checkpoints lies within
the reference's seed-to-seed standard deviation of its mean. Cost is counted in network calls (each the same guided
batch): the seconds per video in the JSONs are wall time on whatever else the machine ran, not a speed figure
(bench/bench_render.py times the calls). Resumable: one JSON per (checkpoint, sampler, steps).

  python -m lumiere_research.sampler_steps --ckpt runs/sweeps/ablation/train/stunet/seed{0,1,2}/model/checkpoints/\\
      sweep_step0006000.ckpt --real runs/sweeps/ablation/real --out runs/sampler_steps
  (results: docs/results/2026-12-02-sampler-steps.md)

Writes {out}/table.md and table.json; prints the table with the machine and versions.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from lumiere_pl.diffusion.samplers import network_calls

GRID = ("ddim:25,12", "dpmpp_2m:15,10,6", "dpmpp_3m:15,10,6", "heun:5")
METRICS = ("direction_match", "jerk", "fvd")


def score(pipe, ckpt: str, sampler: str, steps: int, n: int, real: Path, folder: Path, batch: int) -> dict:
    from lumiere_pl.utils.video import write_mp4
    from lumiere_research import probes
    from lumiere_research.sweep.scoring import fvd_score

    clips = probes.test_clips(pipe.config, n)
    prompts = [c.caption for c in clips]
    pipe(prompts[:1], steps=2, sampler=sampler)                  # warm-up: first calls allocate, not timed
    t0 = time.perf_counter()
    videos = probes.sample(pipe, prompts, list(range(n)), batch, steps=steps, sampler=sampler)
    seconds = (time.perf_counter() - t0) / n
    d = pipe.config.data
    for i, v in enumerate(videos):
        write_mp4(folder / f"{i:06d}.mp4", v, fps=d.fps, lossless=True)
    motion = probes.motion(videos, prompts, background=d.synthetic.background)
    fvd = fvd_score(real, folder, real.parent / "cache", d.frames, d.fps)
    return {"ckpt": ckpt, "sampler": sampler, "steps": steps, "calls": network_calls(sampler, steps), "n": n,
            "seconds_per_video": seconds, "batch": batch, "direction_match": motion["direction_match"],
            "jerk": motion["jerk"], "fvd": fvd["value"]}


def table(rows: list, ref: tuple) -> tuple[str, list]:
    """Mean and seed-to-seed std per (sampler, steps); match = every metric within the reference's std."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["sampler"], r["steps"]), []).append(r)
    stats = {k: {m: (float(np.mean([r[m] for r in v])), float(np.std([r[m] for r in v], ddof=1)) if len(v) > 1
                     else float("nan")) for m in (*METRICS, "seconds_per_video")} for k, v in groups.items()}
    base = stats.get(ref)
    out, lines = [], ["| sampler | steps | calls | calls vs reference | direction match | jerk | FVD | "
                      f"matches {ref[0]}-{ref[1]} |", "|---|---|---|---|---|---|---|---|"]
    for key in sorted(stats, key=lambda k: (k[0] != ref[0], k[0], -k[1])):
        s, (sampler, steps) = stats[key], key
        match = base is not None and all(abs(s[m][0] - base[m][0]) <= base[m][1] for m in METRICS)
        ratio = network_calls(sampler, steps) / network_calls(*ref)
        row = {"sampler": sampler, "steps": steps, "calls": network_calls(sampler, steps), "seeds": len(groups[key]),
               **{m: {"mean": s[m][0], "std": s[m][1]} for m in (*METRICS, "seconds_per_video")},
               "calls_vs_reference": ratio, "matches_reference": bool(match)}
        out.append(row)
        lines.append(f"| {sampler} | {steps} | {row['calls']} | {ratio:.2f}x | {s['direction_match'][0]:.1%} +- "
                     f"{s['direction_match'][1]:.1%} | {s['jerk'][0]:.3f} +- {s['jerk'][1]:.3f} | "
                     f"{s['fvd'][0]:.1f} +- {s['fvd'][1]:.1f} | {'yes' if match else 'no'} |")
    return "\n".join(lines), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", nargs="+", required=True, help="one moving-shapes STUNet checkpoint per training seed")
    ap.add_argument("--grid", nargs="+", default=list(GRID), help="sampler:steps,steps,... (default: %(default)s)")
    ap.add_argument("--reference", default="ddim:25")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--n-real", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--real", type=Path, help="a folder of the set's first test clips (lumiere-sweep's {root}/real, "
                                              "whose features it caches beside it); default: rendered under --out")
    ap.add_argument("--only", type=int, help="score only the checkpoint at this index (one process per core), no table")
    ap.add_argument("--out", default="runs/sampler_steps")
    args = ap.parse_args()
    out = Path(args.out)
    from lumiere_pl.checkpoint import read_model
    from lumiere_pl.pipeline import LumierePipeline
    from lumiere_pl.utils.atomic import write_text
    from lumiere_research.sweep.runner import write_test_clips

    real = args.real
    if real is None:
        real = out / "real"
        write_test_clips(read_model(args.ckpt[0])[0].data, args.n_real, real)
    grid = [(name, int(k)) for item in args.grid for name, ks in [item.split(":")] for k in ks.split(",")]
    rows = []
    for c, ckpt in enumerate(args.ckpt):
        if args.only is not None and c != args.only:
            continue
        pipe = None                                              # loaded once, when a score is missing
        for sampler, steps in grid:
            path = out / "scores" / f"ckpt{c}" / f"{sampler}_{steps:03d}.json"
            if path.is_file() and Path(json.loads(path.read_text())["ckpt"]).resolve() == Path(ckpt).resolve():
                rows.append(json.loads(path.read_text()))
                continue
            pipe = pipe or LumierePipeline.from_pretrained(ckpt)
            row = score(pipe, ckpt, sampler, steps, args.n, real, out / "samples" / f"ckpt{c}" / f"{sampler}_{steps:03d}",
                        args.batch_size)
            write_text(path, json.dumps(row, indent=2))
            rows.append(row)
            print(f"{Path(ckpt).parent.parent.parent.name} {sampler:9s} {steps:3d} steps: direction "
                  f"{row['direction_match']:.0%}, jerk {row['jerk']:.3f}, FVD {row['fvd']:.1f}, "
                  f"{row['seconds_per_video']:.2f} s/video", flush=True)
    if args.only is not None:
        return
    name, steps = args.reference.split(":")
    md, stats = table(rows, (name, int(steps)))
    n_real = len(list(real.glob("*.mp4")))
    header = (f"{len(args.ckpt)} checkpoints (training seeds), N = {args.n} prompts, FVD against {n_real} real "
              f"clips; batch {args.batch_size}; {platform.processor() or platform.machine()}, "
              f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    write_text(out / "table.md", header + "\n\n" + md + "\n")
    write_text(out / "table.json", json.dumps({"header": header, "rows": stats}, indent=2))
    print(header + "\n\n" + md)


if __name__ == "__main__":
    main()
