"""The SSR stage of lumiere-sample: base -> SSR on the base videos (--ssr-ckpt), or SSR alone on a video file
(--ckpt SSR.ckpt --input-video FILE). Each stage writes its own MP4: the SSR output of `a.mp4` is `a_ssr.mp4`;
with --out-dir the SSR videos go to DIR/ssr/ under the same names, so an evaluation can score either stage's folder.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from lumiere_pl.errors import InputError
from lumiere_pl.utils.batching import fitting_batches
from lumiere_pl.utils.tensors import fold_time, unfold_time


def add_ssr_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("spatial super-resolution (SSR) stage")
    g.add_argument("--ssr-ckpt", type=Path, help="SSR checkpoint: upscale every base video (MP4 per stage)")
    g.add_argument("--input-video", type=Path,
                   help="SSR alone: upscale this video file with --ckpt (an SSR checkpoint); --prompt is its caption")
    g.add_argument("--ssr-steps", type=int, help="SSR sampler steps (default: the SSR's sampler.steps)")
    g.add_argument("--ssr-window", type=int, help="MultiDiffusion window in frames (default: sampler.window)")
    g.add_argument("--ssr-stride", type=int, help="MultiDiffusion stride (default: sampler.stride; 0 = window - 2)")
    g.add_argument("--ssr-aug", type=float, default=0.0,
                   help="noise-augmentation time of the low-res input at sampling, in [0, 1] (default 0)")


def load_ssr(path: Path, args: argparse.Namespace):
    """The SSRModule of a checkpoint, with the CLI's MultiDiffusion overrides applied."""
    from lumiere_pl.checkpoint import load_module

    if not 0.0 <= args.ssr_aug <= 1.0:
        raise InputError(f"--ssr-aug {args.ssr_aug}: expected a time in [0, 1]")
    module = load_module(path, args.device, expect=["ssr"], hint=" (e.g. experiments/ssr_shapes.yaml)")
    if args.ssr_window is not None:       # a new window without a stride gets the default overlap of 2
        module.cfg.sampler.window, module.cfg.sampler.stride = args.ssr_window, 0
    if args.ssr_stride is not None:
        module.cfg.sampler.stride = args.ssr_stride
    return module


def fit_lowres(video: Tensor, size: int) -> Tensor:
    """(b c t h w) in [-1, 1] -> (b c t size size): the SSR's expected low-res input (area down, bilinear up)."""
    if video.shape[-2:] == (size, size):
        return video
    t, h, w = video.shape[2:]
    mode = "area" if h >= size and w >= size else "bilinear"
    frames = F.interpolate(fold_time(video), size=(size, size), mode=mode,
                           **({} if mode == "area" else {"align_corners": False}))
    return unfold_time(frames, t).clamp(-1.0, 1.0)


def upscale(ssr, videos: Tensor, prompts: List[str], args: argparse.Namespace, seeds: List[int]) -> Tensor:
    """Base videos (b 3 t h w) -> SSR videos (b 3 t H W), all b clips in one SSR call, halved on out-of-memory
    (utils.batching). Clip i uses seeds[i] for its sampling and augmentation noise, so no clip depends on its batch."""
    low = fit_lowres(videos.float(), ssr.low_size)

    def run(idx: List[int]) -> Tensor:
        return ssr.upscale(low[idx], [prompts[i] for i in idx], aug=args.ssr_aug, steps=args.ssr_steps,
                           seeds=[seeds[i] for i in idx], use_ema=not args.no_ema)

    return torch.cat([out for _, out in fitting_batches(list(range(len(prompts))), len(prompts), run)])


def ssr_path(base: Path, out_dir: Optional[Path]) -> Path:
    """Where the SSR stage of the base video `base` goes."""
    if out_dir is not None:
        return out_dir / "ssr" / base.name
    return base.with_name(f"{base.stem}_ssr{base.suffix}")


def read_video(path: Path, frames: Optional[int] = None) -> tuple[Tensor, float]:
    """A video file -> ((1 3 t h w) in [-1, 1] centre-cropped to a square, fps); frames: keep the first ones."""
    from lumiere_pl.data.video_io import VideoError, crop, decode, probe
    from lumiere_pl.utils.video import from_uint8

    if not path.is_file():
        raise InputError(f"--input-video {path}: file not found; expected a video (MP4, WebM, ...)")
    data = path.read_bytes()
    try:
        fps = probe(data).fps
        x = decode(data)                                                           # t h w 3 uint8
    except VideoError as err:
        raise InputError(f"--input-video {path}: {err}; expected a video (MP4, WebM, ...)") from None
    if frames:
        if len(x) < frames:
            raise InputError(f"--input-video {path}: {len(x)} frames, shorter than --frames {frames}; expected a "
                             "video with at least that many frames")
        x = x[:frames]
    x = crop(x, min(x.shape[1], x.shape[2]))
    return from_uint8(x)[None], fps                                                # (1 3 t h w)


def run_input_video(args: argparse.Namespace) -> int:
    """lumiere-sample --ckpt SSR.ckpt --input-video low.mp4 --prompt CAPTION --out high.mp4"""
    from lumiere_pl.utils.video import to_uint8, write_mp4

    if args.out is None or args.prompt is None:
        raise InputError("--input-video needs --prompt CAPTION (may be \"\") and --out FILE.mp4")
    args.ssr_ckpt = args.ssr_ckpt or args.ckpt
    video, fps = read_video(args.input_video, args.frames)                        # the user's file first
    ssr = load_ssr(args.ssr_ckpt, args)
    print(f"SSR: {args.input_video} {tuple(video.shape[2:])} -> x{ssr.cfg.model.upscale} "
          f"({video.shape[2]} frames, window {ssr.cfg.sampler.window}, stride {ssr.cfg.sampler.stride or 'window-2'})")
    out = upscale(ssr, video.to(args.device), [args.prompt], args, [args.seed])
    write_mp4(args.out, to_uint8(out[0]), fps=args.fps or fps or ssr.cfg.data.fps)
    print(f"wrote {args.out}")
    return 0
