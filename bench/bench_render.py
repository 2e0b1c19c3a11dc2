"""Rendering for `make eval`: the STUNet of `make train` (experiments/real/stunet.yaml, 32 px, 16 frames), guided.

Reports, measured in this run (round-robin rounds, median):
  per call  seconds per network call per video (the guided pair, one batch) at batches 1 ... 8 and at the batch
            `lumiere-sample --batch-size auto` takes here (all videos on a GPU, 16 on the CPU);
  render    seconds per video of DDIM-25 at batch 8 against --sampler / --steps at the auto batch: (calls x seconds
            per call), both from the per-call figures of this run.
The weights are random: time does not depend on them. Which steps keep the quality:
docs/results/2026-12-02-sampler-steps.md (python -m lumiere_research.sampler_steps).
  python -m bench.bench_render [--sampler dpmpp_2m --steps 10] [--rounds 3]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

from lumiere_pl.config import to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.diffusion.samplers import network_calls
from lumiere_pl.lit import DiffusionModule
from lumiere_pl.utils.allocator import keep_freed_memory
from lumiere_pl.utils.batching import auto_batch_size

CONFIG = str(ROOT / "experiments" / "real" / "stunet.yaml")
PROBE_CALLS = 4         # network calls per timed render: enough to dwarf the set-up, few enough for the CPU


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--videos", type=int, default=64, help="videos make eval renders (sets the auto batch)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    keep_freed_memory()                                         # as lumiere-sample does (bench_allocator.py)
    torch.manual_seed(0)
    module = DiffusionModule(to_dict(load_config(CONFIG))).to(args.device).eval()
    auto = auto_batch_size(args.videos, args.device)
    batches = sorted({1, 2, 4, 8, auto})
    prompts = ["a person riding a horse on a beach"] * max(batches)

    def render(b: int) -> None:
        module.pipeline()(prompts[:b], steps=PROBE_CALLS).videos          # one network call per step

    times = {b: [] for b in batches}
    for b in batches:
        render(b)                                               # warm-up
    for _ in range(args.rounds):
        for b in batches:
            if args.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            render(b)
            if args.device == "cuda":
                torch.cuda.synchronize()
            times[b].append(time.perf_counter() - t0)
    per_call = {b: statistics.median(v) / (b * PROBE_CALLS) for b, v in times.items()}

    d = module.cfg.data
    print(f"clip (3, {d.frames}, {d.size}, {d.size}), guidance {module.cfg.sampler.guidance} (conditional and "
          f"unconditional in one batch), {args.rounds} rounds; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, device {args.device}")
    for b in batches:
        print(f"  batch {b:3d}: {per_call[b] * 1e3:7.1f} ms per call per video   ({per_call[8] / per_call[b]:.2f}x "
              f"batch 8)")
    before = 25 * per_call[8]
    after = network_calls(args.sampler, args.steps) * per_call[auto]
    print(f"  render: ddim 25 steps at batch 8 {before:.2f} s/video; {args.sampler} {args.steps} steps at batch "
          f"{auto} {after:.2f} s/video: {before / after:.2f}x")


if __name__ == "__main__":
    main()
