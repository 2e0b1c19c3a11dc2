"""Does a conditional moving-shapes STUNet move the caption's way, alone and from a given first frame?

For the captions of the first N unseen test clips (noise seeds 0..N-1, DDIM, guidance 3, as
lumiere_research.score_motion), one row per way of sampling:
  text-to-video   the task `none`: the caption alone;
  image-to-video  the task `first`: the real clip's first frame as C with M on frame 0 (`lumiere-apply i2v`);
  image-to-video, opposite word: the same first frame with the caption's direction word reversed, scored against
                  that caption. The shapes cross the frame's middle (data.synthetic.start=across), so a first frame
                  shows where its shape is going: a model that reads the image, not the word, scores near 0% here;
and the real clips beside them. Columns: direction match (chance 25%), jerk, shapes found, and how far the first
frame of the sample is from the given image (mean |difference| in [0, 1] pixel units; 0 = kept exactly).

  python -m lumiere_research.apply_motion --ckpt runs/stunet_conditional_shapes/checkpoints/last.ckpt [--n 32]
      [--videos-dir D]   every sample as a lossless MP4, D/<way of sampling>/<prompt index>.mp4
      [--sheet F.png]    the first --sheet-prompts prompts (default 3), one row per way of sampling, 8 frames a row

Exit codes as every lumiere-* command: 0 done, 2 a bad checkpoint or argument (one line), 1 anything else.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from lumiere_pl.cli.errors import DEBUG_HELP, command
from lumiere_pl.errors import InputError


@command("apply_motion")
def main(argv: Optional[List[str]]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True, help="a conditional STUNet trained on the moving-shapes set")
    ap.add_argument("--n", type=int, default=32, help="prompts (unseen test clips), default 32")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--videos-dir", type=Path, help="write every sample as a lossless MP4 here")
    ap.add_argument("--sheet", type=Path, help="write a PNG contact sheet of the first prompts here")
    ap.add_argument("--sheet-prompts", type=int, default=3, help="prompts on the sheet, default 3")
    ap.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    a = ap.parse_args(argv)
    if a.n < 1 or a.steps < 1 or a.sheet_prompts < 1:
        ap.error("--n, --steps and --sheet-prompts must be >= 1")
    if a.sheet is not None and a.sheet.suffix.lower() != ".png":
        ap.error(f"--sheet {a.sheet}: expected a .png file name")

    from lumiere_pl.utils.atomic import check_writable

    if a.videos_dir is not None:                                                # before the sampling, not after it
        check_writable(a.videos_dir, "--videos-dir")
    if a.sheet is not None:
        check_writable(a.sheet, "--sheet", file=True)

    from lumiere_pl.applications import image_to_video
    from lumiere_pl.checkpoint import load_parts
    from lumiere_pl.pipeline import LumierePipeline
    from lumiere_pl.utils.video import to_uint8, write_mp4, write_sheet
    from lumiere_research import probes
    from lumiere_research.shapes_motion import summarise

    pipe = LumierePipeline(load_parts(a.ckpt, expect=["stunet"], hint=" trained on the moving-shapes set"))
    cfg = pipe.config
    if not cfg.model.temporal.conditional or cfg.data.name != "synthetic":
        raise InputError(f"{a.ckpt}: expected a conditional STUNet (model.temporal.conditional=true) trained on the "
                         f"moving-shapes set (data.name=synthetic)")
    clips = probes.test_clips(cfg, a.n)
    prompts, seeds = [c.caption for c in clips], list(range(a.n))
    real = probes.render(cfg, clips)                                          # (n 3 t h w) in [-1, 1]
    opts = dict(seeds=seeds, steps=a.steps, guidance=a.guidance)
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}
    swapped = [c.caption.replace(f"moving {c.direction}", f"moving {opposite[c.direction]}") for c in clips]
    rows = {"text-to-video": (pipe(prompts, **opts).videos, prompts),
            "image-to-video": (image_to_video(pipe, real[:, :, 0], prompts, real.shape[2], **opts).videos, prompts),
            "image-to-video, opposite word": (image_to_video(pipe, real[:, :, 0], swapped, real.shape[2],
                                                             **opts).videos, swapped),
            "real clips": (real, prompts)}
    bg, fps = cfg.data.synthetic.background, cfg.data.fps
    frames = {name: [to_uint8(v) for v in videos] for name, (videos, _) in rows.items()}    # (t h w 3) uint8 each
    print("| clips | direction | jerk | shape found | first frame vs the image |\n|---|---|---|---|---|")
    for name, (videos, captions) in rows.items():
        m = summarise(frames[name], captions, bg)
        kept = float((videos[:, :, 0] - real[:, :, 0]).abs().mean()) / 2
        print(f"| {name} | {m['direction_match']:.0%} | {m['jerk']:.3f} | {m['detected']:.0%} | {kept:.3f} |")
    if a.videos_dir is not None:
        for name, videos in frames.items():
            slug = name.replace(", ", "_").replace(" ", "_").replace("-", "_")        # text_to_video, ...
            for i, v in enumerate(videos):
                write_mp4(a.videos_dir / slug / f"{i:06d}.mp4", v, fps=fps, lossless=True)
    if a.sheet is not None:
        order = ["real clips", "text-to-video", "image-to-video", "image-to-video, opposite word"]
        sheet_rows = [frames[name][i] for i in range(min(a.sheet_prompts, a.n)) for name in order]
        write_sheet(a.sheet, sheet_rows, every=max(1, real.shape[2] // 8), scale=4)   # at most ~8 frames a row
        for i in range(min(a.sheet_prompts, a.n)):
            print(f"{a.sheet}: rows {4 * i + 1}-{4 * i + 4}: {' / '.join(order)} of \"{prompts[i]}\" "
                  f"(opposite word: \"{swapped[i]}\")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
