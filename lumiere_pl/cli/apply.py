"""lumiere-apply: Lumiere's applications (Sec. 4) from the command line (docs/APPLICATIONS.md).

  lumiere-apply i2v         --ckpt COND.ckpt --image IMG.png --prompt TEXT --out OUT.mp4
  lumiere-apply inpaint     --ckpt COND.ckpt --video IN.mp4 --mask MASK.png|MASK.mp4 --prompt TEXT --out OUT.mp4
  lumiere-apply cinemagraph --ckpt COND.ckpt --image IMG.png --region MASK.png --prompt TEXT --out OUT.mp4
  lumiere-apply stylize     --ckpt STUNET.ckpt --style-t2i STYLE_T2I.ckpt --alpha 0.5 --prompt TEXT --out OUT.mp4

i2v, inpaint and cinemagraph need a STUNet trained with model.temporal.conditional=true
(experiments/shapes/conditional.yaml, or a diffusers STUNet, pixel or latent: docs/DIFFUSERS.md); stylize works
with any STUNet of this project (model.name=stunet), not with a diffusers one (refused, exit 2).
--ckpt: a checkpoint written by lumiere-train, or a folder written by lumiere-export.

Masks: WHITE = the pixels to generate (inpaint: the hole to fill; cinemagraph: the region to animate), black = keep.
A mask is read as grayscale and thresholded at 128; it must have the input's width x height (a PNG mask applies to
every frame, an MP4 mask gives one mask per frame).
Sizes: every input is resized so its short side is the model's data.size (bicubic; masks nearest-neighbour), then
centre-cropped to data.size x data.size. Videos: their first T frames at the file's own rate (T = --frames, default
data.frames). --paste-known (default on for inpaint and cinemagraph, off for i2v) copies the known pixels of the
(resized) input into the output, so the kept region is the input's; --lossless writes RGB H.264 (qp 0) so they are
kept bit-exactly (the default yuv420p CRF 18 MP4 changes them by a few levels, as any lossy video does).
Exit codes: 0 done; 2 a bad input file, checkpoint or option (the message names the file and what was expected) or
an output that cannot be written; 1 internal error (README, "Exit codes"). --debug or LUMIERE_DEBUG=1: the traceback
of an error too.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from lumiere_pl.cli.errors import DEBUG_HELP, ArgumentParser, command, number
from lumiere_pl.cli.sample import _cuda, check_device, refuse_existing
from lumiere_pl.errors import InputError
from lumiere_pl.utils.atomic import check_writable

REBUILD = ("train one with: lumiere-train --config experiments/shapes/conditional.yaml "
           "model.init_from=runs/t2i_shapes/checkpoints/last.ckpt (docs/APPLICATIONS.md)")
REBUILD_DIFFUSERS = ("train one with: lumiere-train --config experiments/diffusers/sd.yaml (or diffusers/if.yaml) "
                     "model.temporal.conditional=true model.init_from=... (docs/DIFFUSERS.md)")
STYLIZE_HINT = (" of this project (model.name=stunet): stylize interpolates its spatial weights with a style T2I of "
                "this project; a STUNet inflated from a diffusers U-Net has no such T2I")
NEEDS_TASK = {"i2v": "first", "inpaint": "box", "cinemagraph": "box"}   # the training task each one relies on


@dataclass
class Inputs:
    pixels: np.ndarray                  # (t h w 3) uint8 at the file's size; t = 1 for an image
    mask: Optional[np.ndarray] = None   # (t h w) bool, True = generate (white); t = 1 for a PNG mask
    video_path: Optional[Path] = None   # inpaint: frames are decoded once T is known (from the checkpoint)


# ---------------------------------------------------------------------------------------------------------------------
# Reading and fitting inputs (Pillow for images, PyAV for videos)


def _exists(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(f"{path}: file not found (expected {what})")
    return path


def read_image(path: Path) -> np.ndarray:
    """Any image Pillow reads -> (1 h w 3) uint8 RGB; its declared size checked against the frame limit
    (eval/limits.py) before its pixels are decoded."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    from eval.limits import limits

    _exists(path, "an image: PNG, JPEG, ...")
    lim = limits()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)        # our own bound follows
            with Image.open(path) as im:
                w, h = im.size
                if w * h > lim.frame_pixels:
                    raise InputError(f"{path}: declares {w}x{h} pixels, over {lim.describe('frame_pixels')}")
                return np.asarray(im.convert("RGB"))[None]
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError, SyntaxError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{path}: not an image Pillow can read ({err}); expected PNG, JPEG, ...") from None


def read_video(path: Path, frames: Optional[int] = None) -> np.ndarray:
    """The first `frames` frames (None: all) -> (t h w 3) uint8."""
    from lumiere_pl.data.video_io import VideoError, decode

    _exists(path, "a video: MP4, WebM, ...")
    try:
        return decode(path, None if frames is None else list(range(frames)))
    except VideoError as err:
        raise InputError(f"{path}: {err} (expected a video with at least {frames or 1} frames)") from None


def video_size(path: Path) -> Tuple[int, int]:
    """(w, h) of a video without decoding it."""
    from lumiere_pl.data.video_io import VideoError, probe

    _exists(path, "a video: MP4, WebM, ...")
    try:
        info = probe(path)
    except VideoError as err:
        raise InputError(f"{path}: {err} (expected a video: MP4, WebM, ...)") from None
    return info.width, info.height


def read_mask(path: Path, size: Tuple[int, int]) -> np.ndarray:
    """A PNG (any image) or video mask -> (t h w) bool, True = white = generate; size: the input's (w, h)."""
    from lumiere_pl.data.video_io import VIDEO_EXTS

    is_video = path.suffix.lower().lstrip(".") in VIDEO_EXTS
    rgb = read_video(path) if is_video else read_image(path)                  # (t h w 3)
    h, w = rgb.shape[1:3]
    if (w, h) != tuple(size):
        raise InputError(f"{path}: mask is {w}x{h}, expected the input's size {size[0]}x{size[1]} "
                         "(white = generate, black = keep)")
    return rgb.astype(np.float32).mean(-1) >= 128.0                           # (t h w)


def fit(frames: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """(t h w c) uint8: short side resized to `size` (bicubic, or nearest for masks), centre crop size x size."""
    from PIL import Image

    from lumiere_pl.data.video_io import crop, scaled_size

    h, w = frames.shape[1:3]
    wh = scaled_size(w, h, size)
    resample = Image.NEAREST if nearest else Image.BICUBIC
    out = np.stack([np.asarray(Image.fromarray(f).resize(wh, resample)) for f in frames])
    return crop(out if out.ndim == 4 else out[..., None], size)


def fit_mask(mask: np.ndarray, size: int, frames: int, path: Path) -> np.ndarray:
    """(t h w) bool -> (frames size size) bool; a single mask is repeated over the frames."""
    fitted = fit(mask.astype(np.uint8) * 255, size, nearest=True)[..., 0] > 127  # (t' size size)
    if fitted.shape[0] == 1:
        fitted = np.repeat(fitted, frames, axis=0)
    elif fitted.shape[0] < frames:
        raise InputError(f"{path}: mask video has {fitted.shape[0]} frames, expected at least {frames}")
    fitted = fitted[:frames]
    if not fitted.any():
        raise InputError(f"{path}: no white pixel left after resizing to {size}x{size}: nothing to generate "
                         "(white = generate)")
    return fitted


def read_inputs(args: argparse.Namespace) -> Inputs:
    """Check and read the user's files before any checkpoint is loaded."""
    if args.command == "i2v":
        return Inputs(read_image(args.image))
    if args.command == "cinemagraph":
        image = read_image(args.image)
        return Inputs(image, read_mask(args.region, (image.shape[2], image.shape[1])))
    if args.command == "inpaint":
        return Inputs(np.zeros((0, 0, 0, 3), np.uint8), read_mask(args.mask, video_size(args.video)), args.video)
    _exists(args.style_t2i, "a T2I checkpoint of this project")
    return Inputs(np.zeros((0, 0, 0, 3), np.uint8))


# ---------------------------------------------------------------------------------------------------------------------
# Model


def load(args: argparse.Namespace):
    """The LumierePipeline of --ckpt (EMA weights unless --no-ema), stylized for `stylize`."""
    from lumiere_pl.checkpoint import load_parts
    from lumiere_pl.pipeline import LumierePipeline

    stylize = args.command == "stylize"
    parts = load_parts(args.ckpt, ema=not args.no_ema, expect=["stunet"] if stylize else ["stunet", "diffusers_stunet"],
                       hint=STYLIZE_HINT if stylize else "")                # weights_only=True inside
    pipe = LumierePipeline(parts).to(args.device)
    cfg = pipe.config
    if args.frames is not None:
        try:
            pipe.check_frames(args.frames)
        except ValueError as err:
            raise InputError(f"--frames {args.frames}: {err}") from None
    pipe.check_size(args.frames or pipe.frames)          # one clip's noise within the sample limit
    if args.command in NEEDS_TASK:
        if not cfg.model.temporal.conditional:
            rebuild = REBUILD_DIFFUSERS if cfg.model.name == "diffusers_stunet" else REBUILD
            raise InputError(f"{args.ckpt}: {args.command} needs a STUNet trained with "
                             f"model.temporal.conditional=true, this one is unconditional; {rebuild}")
        if NEEDS_TASK[args.command] not in cfg.model.temporal.tasks:
            print(f"lumiere-apply: note: {args.ckpt} was trained on the tasks {list(cfg.model.temporal.tasks)}, "
                  f"without {NEEDS_TASK[args.command]!r} that {args.command} relies on", file=sys.stderr)
    if stylize:
        stylize_module(pipe, args.style_t2i, args.alpha)
    return pipe


def stylize_module(pipe, path: Path, alpha: float) -> None:
    """Sec. 4.1 on pipe.net with the (EMA) weights of the T2I checkpoint `path`, after checking they fit."""
    from lumiere_pl.applications import stylize_
    from lumiere_pl.checkpoint import load_t2i

    style_cfg, state = load_t2i(path)
    for key in ("encoder", "dim"):
        if getattr(style_cfg.text, key) != getattr(pipe.config.text, key):
            raise InputError(f"{path}: text.{key}={getattr(style_cfg.text, key)!r}, the STUNet's is "
                             f"{getattr(pipe.config.text, key)!r}; fine-tune the style T2I from the T2I the STUNet "
                             "was inflated from")
    own = pipe.net.t2i.state_dict()
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if wrong:
        raise InputError(f"{path}: {len(wrong)} weights differ in shape from the STUNet's spatial layers, e.g. "
                         f"{wrong[0]} {tuple(state[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)}; fine-tune "
                         "the style T2I from the T2I the STUNet was inflated from")
    try:
        stylize_(pipe.net, {k: v.to(pipe.device) for k, v in state.items()}, alpha)
    except KeyError as err:
        raise InputError(f"{path}: {err.args[0]}") from None


# ---------------------------------------------------------------------------------------------------------------------
# Running one application


def prepare(args: argparse.Namespace, pipe, inputs: Inputs):
    """-> video (1 3 t s s) in [-1, 1] and known (1 1 t s s), 1 = keep, at the model's size (s = data.size)."""
    import torch

    from lumiere_pl.utils.video import from_uint8

    size, frames = pipe.config.data.size, args.frames or pipe.frames
    if args.command == "inpaint":
        pixels = fit(read_video(inputs.video_path, frames), size)                # (t s s 3)
    elif args.command == "stylize":
        pixels = np.zeros((frames, size, size, 3), np.uint8)
    else:
        pixels = np.repeat(fit(inputs.pixels, size), frames, axis=0)             # the image on every frame
    video = from_uint8(pixels)[None]                                              # (1 3 t s s)
    known = torch.zeros(1, 1, frames, size, size)
    if args.command == "i2v":
        known[:, :, 0] = 1.0
    elif inputs.mask is not None:
        path = args.mask if args.command == "inpaint" else args.region
        known[0, 0] = torch.from_numpy(~fit_mask(inputs.mask, size, frames, path)).float()
    return video, known


def generate(args: argparse.Namespace, pipe, video, known):
    """(1 3 t s s) in [-1, 1]: the application's sample, with the known pixels pasted back under --paste-known."""
    from lumiere_pl import applications as apps

    opts = dict(steps=args.steps, guidance=args.guidance, seeds=[args.seed], progress=True)
    prompts, frames = [args.prompt], video.shape[2]
    if args.command == "i2v":
        out = apps.image_to_video(pipe, video[:, :, 0], prompts, frames, **opts)
    elif args.command == "inpaint":
        out = apps.inpaint(pipe, video, known, prompts, **opts)
    elif args.command == "cinemagraph":
        out = apps.cinemagraph(pipe, video[:, :, 0], 1.0 - known[:, :, 0], prompts, frames, **opts)
    else:
        out = pipe(prompts, frames=frames, **opts)
    videos = out.videos
    if getattr(args, "paste_known", False):
        videos = known * video + (1.0 - known) * videos.clamp(-1, 1)
    return videos


# ---------------------------------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    from lumiere_pl.pipeline import MAX_FPS, MAX_FRAMES, MAX_SEED, MAX_STEPS

    ap = ArgumentParser(prog="lumiere-apply", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = ap.add_subparsers(dest="command", required=True)

    def subcommand(name: str, help: str, paste: Optional[bool]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--ckpt", type=Path, required=True, help="STUNet checkpoint written by lumiere-train, or "
                                                                 "a folder written by lumiere-export")
        p.add_argument("--prompt", required=True, help="the caption")
        p.add_argument("--out", type=Path, required=True, help="output MP4")
        p.add_argument("--overwrite", action="store_true", help="replace --out when it exists (default: refuse)")
        p.add_argument("--frames", type=number(int, 1, MAX_FRAMES),
                       help="frames of the clip (default: the checkpoint's data.frames)")
        p.add_argument("--steps", type=number(int, 1, MAX_STEPS), help="sampler steps (default: sampler.steps)")
        p.add_argument("--guidance", type=number(float), help="classifier-free guidance scale (default: "
                                                              "sampler.guidance)")
        p.add_argument("--seed", type=number(int, 0, MAX_SEED), default=0, help="seed of the initial noise")
        p.add_argument("--fps", type=number(float, 0, MAX_FPS, above=True), help="MP4 frame rate (default: data.fps)")
        p.add_argument("--device", default="cuda" if _cuda() else "cpu")
        p.add_argument("--no-ema", action="store_true", help="sample with the live weights instead of the EMA")
        p.add_argument("--lossless", action="store_true", help="RGB H.264 qp 0: pixels kept bit-exactly "
                                                               "(larger files; some players lack it)")
        if paste is not None:
            p.add_argument("--paste-known", action=argparse.BooleanOptionalAction, default=paste,
                           help="copy the known pixels of the input into the output (default: %(default)s)")
        return p

    p = subcommand("i2v", "image-to-video: a clip whose first frame is the image (Sec. 4.2)", paste=False)
    p.add_argument("--image", type=Path, required=True, help="the first frame (any image Pillow reads)")
    p = subcommand("inpaint", "video inpainting: regenerate the white region of the mask (Sec. 4.2)", paste=True)
    p.add_argument("--video", type=Path, required=True, help="the input video (its first T frames)")
    p.add_argument("--mask", type=Path, required=True, help="PNG (all frames) or video (per frame), the video's "
                                                            "size; white = fill, black = keep")
    p = subcommand("cinemagraph", "cinemagraph: animate the white region of a still image (Sec. 4.2)", paste=True)
    p.add_argument("--image", type=Path, required=True, help="the still image")
    p.add_argument("--region", type=Path, required=True, help="PNG of the image's size; white = animate")
    p = subcommand("stylize", "stylized generation: spatial weights interpolated with a style T2I's (Sec. 4.1)",
                paste=None)
    p.add_argument("--style-t2i", type=Path, required=True, help="a T2I checkpoint of this project fine-tuned on "
                                                                 "a style, from the STUNet's T2I")
    p.add_argument("--alpha", type=number(float, 0.0, 1.0), required=True, help="0 = the STUNet as is, 1 = the style's spatial "
                                                              "weights")
    return ap


@command("lumiere-apply")
def main(argv: List[str]) -> int:
    args = _parser().parse_args(argv)                 # numbers: finite and in range (eval/command.py's number)
    if args.out.suffix.lower() != ".mp4":
        raise InputError(f"--out {args.out}: expected a .mp4 file name")
    check_device(args.device)
    check_writable(args.out, "--out", file=True)
    refuse_existing(args.out, args.overwrite)         # before any input is read
    inputs = read_inputs(args)                 # user files first: no checkpoint loaded for a bad PNG
    pipe = load(args)
    video, known = prepare(args, pipe, inputs)
    out = generate(args, pipe, video, known)

    from lumiere_pl.utils.video import to_uint8, write_mp4

    write_mp4(args.out, to_uint8(out[0]), args.fps or pipe.fps, lossless=args.lossless)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
