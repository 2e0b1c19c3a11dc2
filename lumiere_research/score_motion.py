"""Does a trained moving-shapes STUNet move the caption's way? Score one checkpoint as the sweeps do (docs/MOTION.md).

The captions of the first N unseen test clips of the checkpoint's own moving-shapes set, one sample each from noise
seeds 0..N-1 (15 steps of the checkpoint's sampler, DDIM for the recipes, guidance 3: the sampling of
lumiere_research/sweep/scoring.py and the settings of experiments/sweeps/*.yaml), tracked by colour
(lumiere_research/shapes_motion.py); the same N real clips scored beside them are the ceiling.

  python -m lumiere_research.score_motion --ckpt runs/stunet_shapes/checkpoints/last.ckpt [--n 64] [--out scores.json]

Prints direction match (chance 25%), jump and jerk per frame in frame sides, the 2^k-frame block ratio and how many
shapes were found; --out also writes them as JSON, --videos-dir the samples as lossless MP4s. Exit codes as every
lumiere-* command: 0 done, 2 a bad checkpoint or argument (one line), 1 anything else.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import List, Optional

from lumiere_pl.cli.errors import DEBUG_HELP, command
from lumiere_pl.errors import InputError


def table(rows: dict) -> str:
    keys = [("direction_match", "direction", "{:.0%}"), ("jump", "jump", "{:.3f}"), ("jerk", "jerk", "{:.3f}"),
            ("boundary_ratio", "block ratio", "{:.2f}"), ("detected", "shape found", "{:.0%}")]
    lines = ["| clips | " + " | ".join(k[1] for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, m in rows.items():
        cells = [fmt.format(m[key]) if key in m else "-" for key, _, fmt in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@command("score_motion")
def main(argv: Optional[List[str]]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="a STUNet checkpoint trained on the moving-shapes set")
    ap.add_argument("--n", type=int, default=64, help="prompts (unseen test clips), default 64")
    ap.add_argument("--steps", type=int, default=15, help="DDIM steps, default 15")
    ap.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance, default 3")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    ap.add_argument("--videos-dir", type=Path, help="write the samples as lossless MP4s here")
    ap.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    a = ap.parse_args(argv)
    if a.n < 1 or a.steps < 1 or a.batch_size < 1:
        ap.error("--n, --steps and --batch-size must be >= 1")

    import torch

    from lumiere_pl.checkpoint import check_model, load_checkpoint
    from lumiere_pl.pipeline import LumierePipeline
    from lumiere_pl.utils.atomic import check_writable, write_text
    from lumiere_pl.utils.video import to_uint8, write_mp4
    from lumiere_research import probes
    from lumiere_research.sweep.scoring import block

    if a.out is not None:                                     # before the sampling, not after it
        check_writable(a.out, "--out", file=True)
    if a.videos_dir is not None:
        check_writable(a.videos_dir, "--videos-dir")

    ckpt = load_checkpoint(a.ckpt, mmap=True)                 # a cheap look: what it is, and its step
    check_model(a.ckpt, ckpt, ["stunet"], " trained on the moving-shapes set (DATASET=shapes)")
    step = int(ckpt.get("global_step", -1))
    pipe = LumierePipeline.from_pretrained(a.ckpt)
    cfg = pipe.config
    d = cfg.data
    if d.name != "synthetic":
        raise InputError(f"{a.ckpt} was trained on data.name={d.name!r}; the motion tracker needs the "
                         f"moving-shapes set (data.name=synthetic)")
    clips = probes.test_clips(cfg, a.n)
    prompts, seeds = [c.caption for c in clips], list(range(a.n))
    t0 = time.perf_counter()
    videos = probes.sample(pipe, prompts, seeds, a.batch_size, steps=a.steps, guidance=a.guidance, progress=True)
    seconds = time.perf_counter() - t0
    real = [to_uint8(v) for v in probes.render(cfg, clips)]
    bg = d.synthetic.background
    rows = {name: probes.motion(v, prompts, block(pipe), bg) for name, v in (("samples", videos), ("real", real))}

    print(f"{a.ckpt}: step {step}, {a.n} prompts, {d.frames} frames of {d.size} px, {cfg.sampler.name} {a.steps} steps, "
          f"guidance {a.guidance:g}; sampling {seconds / a.n:.2f} s per video "
          f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__})")
    print(table(rows))
    if a.videos_dir is not None:
        for i, v in enumerate(videos):
            write_mp4(a.videos_dir / f"{i:06d}.mp4", v, fps=d.fps, lossless=True)
    if a.out is not None:
        record = {"ckpt": str(a.ckpt), "step": step, "n": a.n, "steps": a.steps, "guidance": a.guidance,
                  "prompts": prompts, "seeds": seeds, "sample_seconds_per_video": seconds / a.n, **rows}
        write_text(a.out, json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
