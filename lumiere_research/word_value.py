"""What is the direction word worth to a denoiser? (docs/results/2026-12-02-motion-diagnosis.md)

At pure noise the best prediction of the clean clip (in squared error) is the mean of the clips that fit the caption.
This renders N clips per direction of one caption ("a red circle moving ...", both speeds) and compares the squared
error of that mean with the direction word (one mean per direction) and without it (one mean for all four):
the share the word saves is the most a denoiser can gain from it at the top noise level, and so how hard training
pushes a network to use it. No network is involved; a few seconds on one core.

  python -m lumiere_research.word_value [--n 300] [--frames 16] [--size 32]
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from lumiere_pl.data.synthetic import DIRECTIONS, render_clip, sample_clip


def word_value(across: int, n: int, frames: int, size: int) -> tuple:
    """x0 squared error at pure noise without and with the direction word; across as in sample_clip."""
    by_dir = {d: [] for d in DIRECTIONS}
    i = 0
    while min(len(v) for v in by_dir.values()) < n:
        clip = replace(sample_clip(0, i, "train", across=across), shape="circle", colour="red")
        i += 1
        if len(by_dir[clip.direction]) < n:
            by_dir[clip.direction].append(render_clip(clip, frames, size).astype(np.float32) / 127.5 - 1)
    clips = {d: np.stack(v) for d, v in by_dir.items()}                  # d -> (n t h w c) in [-1, 1]
    means = {d: v.mean(0) for d, v in clips.items()}                       # the best guess knowing the direction
    pooled = np.mean(list(means.values()), 0)                              # ... not knowing it
    without = float(np.mean([((v - pooled) ** 2).mean() for v in clips.values()]))
    with_word = float(np.mean([((v - means[d]) ** 2).mean() for d, v in clips.items()]))
    return without, with_word


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="clips per direction")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=32)
    a = ap.parse_args()
    print(f"{a.n} clips per direction, {a.frames} frames of {a.size} px; x0 squared error at pure noise")
    for name, across in (("anywhere", 0), ("across", a.frames)):
        without, with_word = word_value(across, a.n, a.frames, a.size)
        print(f"data.synthetic.start={name:8s}: without the word {without:.4f}, with it {with_word:.4f}: "
              f"the word saves {100 * (1 - with_word / without):.1f}%")


if __name__ == "__main__":
    main()
