"""lumiere-sample: render videos from a trained checkpoint.

  lumiere-sample --ckpt runs/stunet_shapes/checkpoints/last.ckpt --prompt "a red circle moving right" --out a.mp4
  lumiere-sample --ckpt CKPT --prompts prompts.jsonl --out-dir DIR      # one {index:06d}.mp4 (+ .json) per line

With --prompts the work is batched, resumable (finished videos are skipped) and split across processes: under
torchrun (RANK / WORLD_SIZE set) process r renders the lines with index % WORLD_SIZE == r. Video i starts from noise
seeded by seed + index, so a video does not depend on its batch or on the number of processes.

  lumiere-sample --keyframes-ckpt KF.ckpt --ckpt TSR.ckpt ...       # the cascade baseline (lumiere_pl/cascade.py):
                                                                    # keyframes, then temporal super-resolution
Exit codes: 0 done, 2 bad input (a prompts file, checkpoint, video or option; an output that cannot be written),
1 internal error (README, "Exit codes"). --debug or LUMIERE_DEBUG=1: the traceback of an error too.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

from tqdm.auto import tqdm

from lumiere_pl.cli.errors import DEBUG_HELP, command
from lumiere_pl.cli.ssr_stage import add_ssr_args, load_ssr, run_input_video, ssr_path, upscale
from lumiere_pl.diffusion.samplers import SAMPLERS
from lumiere_pl.errors import InputError
from lumiere_pl.utils.atomic import check_writable


def read_prompts(path: Path) -> List[dict]:
    """JSONL with at least {"prompt": str}; "index" (an integer >= 0, unique) defaults to the line number."""
    if not path.is_file():
        raise InputError(f"--prompts {path}: {'is a folder' if path.is_dir() else 'file not found'}; expected a JSONL "
                         'file, one {"prompt": "..."} per line')
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"--prompts {path}: not a UTF-8 text file; expected JSONL, one "
                         '{"prompt": "..."} per line') from None
    rows, seen = [], {}
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{n + 1}: not valid JSON ({err.msg}); expected one "
                             '{"prompt": "..."} per line') from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise InputError(f'{path}:{n + 1}: expected an object with a "prompt" string, got {line[:80]!r}')
        row.setdefault("index", n)
        index = row["index"]
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InputError(f'{path}:{n + 1}: "index" must be an integer >= 0 (it names the output file), '
                             f"got {index!r}")
        if index in seen:
            raise InputError(f'{path}:{n + 1}: "index" {index} already used on line {seen[index]}; expected '
                             "one line per output file")
        seen[index] = n + 1
        rows.append(row)
    if not rows:
        raise InputError(f'--prompts {path}: no prompts; expected JSONL, one {{"prompt": "..."}} per line')
    return rows


def check_args(args: argparse.Namespace) -> None:
    """Options that cannot work, before any checkpoint is read."""
    if args.prompt is not None and args.out is None:
        raise InputError("--prompt needs --out FILE.mp4")
    if args.prompts is not None and args.out_dir is None:
        raise InputError("--prompts needs --out-dir DIR")
    if args.out is not None and args.out.suffix.lower() != ".mp4":
        raise InputError(f"--out {args.out}: expected a .mp4 file name")
    size = None if args.batch_size == "auto" else args.batch_size
    for flag, value in (("--frames", args.frames), ("--steps", args.steps), ("--batch-size", size)):
        if value is not None and value < 1:
            raise InputError(f"{flag} {value}: expected an integer >= 1")
    if args.fps is not None and not args.fps > 0:
        raise InputError(f"--fps {args.fps}: expected a frame rate > 0")
    check_device(args.device)
    if args.out is not None:                                    # before hours of sampling, not after the first
        check_writable(args.out, "--out", file=True)
    if args.out_dir is not None:
        check_writable(args.out_dir, "--out-dir")


def check_device(device: str) -> None:
    """--device names a device torch knows and this machine has."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"--device {device}: not a device name; expected cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA device on this machine; expected --device cpu")


def check_frames(module, frames: Optional[int], flag: str = "--frames") -> None:
    """A clip length the STUNet can halve (without MultiDiffusion windows, the network sees all frames at once)."""
    if frames is None or not module.is_video or module.cfg.sampler.window or not hasattr(module.net, "check_frames"):
        return
    try:
        module.net.check_frames(frames)
    except ValueError as err:
        raise InputError(f"{flag} {frames}: {err}") from None


def load_models(args: argparse.Namespace):
    """(module, keyframes or None, ssr or None) for the checkpoints given, each checked for its role."""
    from lumiere_pl.checkpoint import load_module

    if args.keyframes_ckpt:
        keyframes = load_module(args.keyframes_ckpt, args.device, expect=["stunet"],
                                hint=" as --keyframes-ckpt (e.g. experiments/cascade_keyframes_shapes.yaml)")
        module = load_module(args.ckpt, args.device, expect=["stunet"],
                             hint=" as the cascade's TSR --ckpt (e.g. experiments/cascade_tsr_shapes.yaml)")
        from lumiere_pl.cascade import check_pair
        try:
            check_pair(keyframes, module)
        except ValueError as err:
            raise InputError(f"--keyframes-ckpt {args.keyframes_ckpt} with --ckpt {args.ckpt}: {err}") from None
        if args.frames is not None and args.frames != module.cfg.data.frames:
            raise InputError(f"--frames {args.frames}: the cascade makes the TSR's {module.cfg.data.frames} frames")
    else:
        keyframes = None
        module = load_module(args.ckpt, args.device, expect=["t2i", "stunet", "diffusers_stunet"],
                             hint="; an SSR checkpoint upscales: give it as --ssr-ckpt, or alone with --input-video")
        check_frames(module, args.frames)
    ssr = load_ssr(args.ssr_ckpt, args) if args.ssr_ckpt else None
    return module, keyframes, ssr


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lumiere-sample", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="checkpoint written by lumiere-train (T2I, STUNet), or a folder "
                                                  "written by lumiere-export --out DIR")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt", help="one caption")
    what.add_argument("--prompts", type=Path, help="JSONL file, one {'prompt': ...} per line")
    ap.add_argument("--out", type=Path, help="output MP4 (with --prompt)")
    ap.add_argument("--out-dir", type=Path, help="output folder (with --prompts)")
    ap.add_argument("--frames", type=int, help="frames per clip (default: the training config's data.frames)")
    ap.add_argument("--steps", type=int, help="sampler steps (default: sampler.steps)")
    ap.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: sampler.guidance)")
    ap.add_argument("--sampler", choices=sorted(SAMPLERS), help="default: sampler.name")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=_batch_size, default=8,
                    help="videos per batch, or auto: on a GPU the largest that fits (halved on out-of-memory), on "
                         "the CPU 16; seeds are per video, so the batch never changes a video (default: 8)")
    ap.add_argument("--fps", type=float, help="MP4 frame rate (default: data.fps)")
    ap.add_argument("--lossless", action="store_true", help="lossless H.264 (RGB, qp 0) instead of CRF 18: for "
                                                            "evaluation, so compression does not move FVD")
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu")
    ap.add_argument("--no-ema", action="store_true", help="sample with the live weights instead of the EMA")
    ap.add_argument("--keyframes-ckpt", help="cascade baseline: this keyframe model, then --ckpt as the temporal "
                                             "super-resolution model (docs/ABLATIONS.md)")
    add_ssr_args(ap)
    ap.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    return ap


def _batch_size(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 1 or auto") from None


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


@command("lumiere-sample")
def main(argv: List[str]) -> int:
    args = _parser().parse_args(argv)
    check_args(args)
    if args.input_video is not None:
        return run_input_video(args)
    rows = read_prompts(args.prompts) if args.prompts else [{"index": 0, "prompt": args.prompt}]
    module, keyframes, ssr = load_models(args)

    from lumiere_pl.utils.atomic import write_text
    from lumiere_pl.utils.batching import auto_batch_size, fitting_batches
    from lumiere_pl.utils.video import to_uint8, write_mp4

    if args.sampler:
        module.cfg.sampler.name = args.sampler
        if keyframes is not None:
            keyframes.cfg.sampler.name = args.sampler
    fps = args.fps or module.cfg.data.fps
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))

    def target(row: dict) -> Path:
        return args.out if args.prompt is not None else args.out_dir / f"{int(row['index']):06d}.mp4"

    def finished(row: dict) -> bool:
        return target(row).exists() and (ssr is None or ssr_path(target(row), args.out_dir).exists())

    todo = [r for r in rows if int(r["index"]) % world == rank and not finished(r)]
    done = sum(1 for r in rows if int(r["index"]) % world == rank) - len(todo)
    if done:
        print(f"lumiere-sample: {done} videos already rendered, {len(todo)} to go")

    def render(batch: List[dict]):
        opts = dict(steps=args.steps, guidance=args.guidance, seeds=[args.seed + int(r["index"]) for r in batch],
                    use_ema=not args.no_ema, progress=len(todo) == 1)
        start_time = time.perf_counter()
        if keyframes is not None:
            from lumiere_pl.cascade import sample_cascade
            videos = sample_cascade(keyframes, module, [r["prompt"] for r in batch], **opts)
        else:
            videos = module.generate([r["prompt"] for r in batch], frames=args.frames, **opts)
        return videos, (time.perf_counter() - start_time) / len(batch)    # sampling time per video, this batch

    size = auto_batch_size(len(todo), args.device) if args.batch_size == "auto" else args.batch_size
    with tqdm(total=len(todo), desc=f"rendering (rank {rank}/{world})", unit="video") as bar:   # closed on errors
        for batch, (videos, seconds) in fitting_batches(todo, size, render):
            for row, video in zip(batch, videos):
                path = target(row)
                if args.prompts is not None:   # metadata first: an MP4 that exists always has its JSON
                    meta = {**row, "seed": args.seed + int(row["index"]), "ckpt": str(args.ckpt), "fps": fps,
                            "sample_seconds": seconds, "batch_size": len(batch), "lossless": args.lossless}
                    if keyframes is not None:
                        meta["keyframes_ckpt"] = str(args.keyframes_ckpt)
                    write_text(path.with_suffix(".json"), json.dumps(meta))
                write_mp4(path, to_uint8(video), fps=fps, lossless=args.lossless)
            if ssr is not None:                 # stage 2: one MP4 per stage
                seeds = [args.seed + int(r["index"]) for r in batch]
                for row, video in zip(batch, upscale(ssr, videos, [r["prompt"] for r in batch], args, seeds)):
                    write_mp4(ssr_path(target(row), args.out_dir), to_uint8(video), fps=fps, lossless=args.lossless)
            bar.update(len(batch))
    print(f"wrote {args.out if args.prompt is not None else args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
