"""Does stylized generation (Lumiere Sec. 4.1) keep a STUNet's motion? (docs/APPLICATIONS.md)

For each alpha, the STUNet's spatial weights are interpolated with a style T2I's as `lumiere-apply stylize` does
(EMA baked in first), and the captions of the first N unseen test clips are sampled from noise seeds 0..N-1 (DDIM,
guidance 3, as lumiere_research.score_motion). Each clip is tracked by colour against its own background (the median
of its border pixels, since the style moves it), and the table gives direction match, jerk, shapes found and the
mean background colour.

  python -m lumiere_research.stylize_motion --ckpt runs/stunet_shapes/checkpoints/last.ckpt \
      --style-t2i runs/t2i_style_shapes/checkpoints/last.ckpt [--alphas 0 0.5 1] [--n 32]

Exit codes as every lumiere-* command: 0 done, 2 a bad checkpoint or argument (one line), 1 anything else.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from lumiere_pl.cli.errors import DEBUG_HELP, command


def border_colour(clip) -> List[float]:
    """Median RGB of a clip's border pixels (t h w 3 uint8): its background."""
    import numpy as np

    edge = np.concatenate([clip[:, 0], clip[:, -1], clip[:, :, 0], clip[:, :, -1]], axis=1)   # (t 4s 3)
    return [float(v) for v in np.median(edge.reshape(-1, 3), axis=0)]


@command("stylize_motion")
def main(argv: Optional[List[str]]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True, help="a STUNet trained on the moving-shapes set")
    ap.add_argument("--style-t2i", type=Path, required=True, help="a style T2I fine-tuned from the STUNet's T2I")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    ap.add_argument("--n", type=int, default=32, help="prompts (unseen test clips), default 32")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    a = ap.parse_args(argv)
    if a.n < 1 or a.steps < 1 or not all(0.0 <= x <= 1.0 for x in a.alphas):
        ap.error("--n and --steps must be >= 1, every alpha in [0, 1]")

    import numpy as np

    from lumiere_pl.checkpoint import load_parts
    from lumiere_pl.cli.apply import stylize_module
    from lumiere_pl.pipeline import LumierePipeline
    from lumiere_research import probes
    from lumiere_research.shapes_motion import summarise

    pipe = LumierePipeline(load_parts(a.ckpt, expect=["stunet"], hint=" trained on the moving-shapes set"))
    baked = {k: v.clone() for k, v in pipe.net.state_dict().items()}   # the EMA weights, as lumiere-apply
    prompts = [c.caption for c in probes.test_clips(pipe.config, a.n)]
    print("| alpha | direction | jerk | shape found | background (RGB) |\n|---|---|---|---|---|")
    for alpha in a.alphas:
        pipe.net.load_state_dict(baked)                                 # each alpha from the same weights
        stylize_module(pipe, a.style_t2i, alpha)
        videos = probes.sample(pipe, prompts, list(range(a.n)), steps=a.steps, guidance=a.guidance)
        bgs = [border_colour(v) for v in videos]
        per = [summarise([v], [p], bg) for v, p, bg in zip(videos, prompts, bgs)]
        direction = np.mean([s["direction_match"] for s in per])
        jerk = np.nanmean([s["jerk"] for s in per])
        found = np.mean([s["detected"] for s in per])
        bg = np.mean(bgs, axis=0).round().astype(int).tolist()
        print(f"| {alpha:g} | {direction:.0%} | {jerk:.3f} | {found:.0%} | {bg} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
