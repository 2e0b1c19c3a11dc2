"""lumiere-sample: render videos from a trained model (a lumiere-train checkpoint or a lumiere-export folder).

  lumiere-sample --ckpt runs/stunet_real/checkpoints/last.ckpt --prompt "a rabbit on the grass" --out a.mp4
  lumiere-sample --ckpt CKPT --prompts prompts.jsonl --out-dir DIR      # one {index:06d}.mp4 (+ .json) per line
  lumiere-sample --keyframes-ckpt KF.ckpt --ckpt TSR.ckpt ...           # the cascade baseline (keyframes, then TSR)
  lumiere-sample --ckpt CKPT --ssr-ckpt SSR.ckpt ...                    # base, then spatial super-resolution
  lumiere-sample --ckpt SSR.ckpt --input-video low.mp4 --prompt TEXT --out high.mp4    # SSR alone on a video

Every command goes through LumierePipeline (lumiere_pl/pipeline.py). Video i starts from noise seeded by seed + index,
so a video depends neither on its batch nor on the number of processes. With --prompts the work is batched,
resumable and split across processes: under torchrun (RANK / WORLD_SIZE set) process r renders the lines with
index % WORLD_SIZE == r; a video whose .mp4 and .json (same prompt, seed, checkpoint and settings: steps, guidance,
frames, ...) exist is skipped, one of this command's with other settings rendered again (said in one line). An output
file that exists otherwise is refused, unless --overwrite. Each stage writes its own MP4: the SSR output of a.mp4 is
a_ssr.mp4; with --out-dir the SSR videos go to DIR/ssr/ under the same names.
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

from eval.command import read_text
from lumiere_pl.cli.errors import DEBUG_HELP, ArgumentParser, command, number
from lumiere_pl.diffusion.samplers import SAMPLERS
from lumiere_pl.errors import InputError
from lumiere_pl.utils.atomic import check_writable
from lumiere_pl.utils.paths import inside

MAX_INDEX = 10 ** 9          # "index" of a prompt line: it names the file {index:06d}.mp4
MAX_BATCH = 4096             # --batch-size
AUTO_CHUNK = 256             # --batch-size auto: videos per pipeline call (each call's videos are written at its end)
# the options that change a rendered video (with its prompt, seed and checkpoint): recorded in its .json, so a rerun
# with other values renders it again (batch size and device do not change it: per-clip seeds)
RENDER_SETTINGS = ("frames", "steps", "guidance", "sampler", "fps", "lossless", "no_ema", "keyframes_ckpt", "ssr_ckpt",
                   "input_video", "ssr_steps", "ssr_window", "ssr_stride", "ssr_aug")


def read_prompts(path: Path) -> List[dict]:
    """JSONL with at least {"prompt": str}; "index" (an integer in [0, 10^9], unique) defaults to the line number."""
    lines = read_text(path, 'a JSONL file, one {"prompt": "..."} per line', "--prompts").splitlines()
    rows, seen = [], {}
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as err:
            raise InputError(f"{path}:{n + 1}: not valid JSON ({getattr(err, 'msg', 'nested too deeply')}); "
                             'expected one {"prompt": "..."} per line') from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise InputError(f'{path}:{n + 1}: expected an object with a "prompt" string, got {line[:80]!r}')
        row.setdefault("index", n)
        index = row["index"]
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_INDEX:
            raise InputError(f'{path}:{n + 1}: "index" must be an integer in [0, {MAX_INDEX}] (it names the output '
                             f"file), got {index!r}")
        if index in seen:
            raise InputError(f'{path}:{n + 1}: "index" {index} already used on line {seen[index]}; expected '
                             "one line per output file")
        seen[index] = n + 1
        rows.append(row)
    if not rows:
        raise InputError(f'--prompts {path}: no prompts; expected JSONL, one {{"prompt": "..."}} per line')
    return rows


def check_args(args: argparse.Namespace) -> None:
    """Options that cannot work, before any checkpoint is read (numbers: finite and in range by their argparse
    types, eval/command.py's number)."""
    if args.prompt is not None and args.out is None:
        raise InputError("--prompt needs --out FILE.mp4")
    if args.prompts is not None and args.out_dir is None:
        raise InputError("--prompts needs --out-dir DIR")
    if args.out is not None and args.out.suffix.lower() != ".mp4":
        raise InputError(f"--out {args.out}: expected a .mp4 file name")
    check_device(args.device)
    if args.out is not None:                                    # before hours of sampling, not after the first
        check_writable(args.out, "--out", file=True)
        if args.out.is_dir():
            raise InputError(f"--out {args.out}: is a folder; expected a .mp4 file name")
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


def load_pipeline(args: argparse.Namespace, ssr_alone: bool = False):
    """The pipeline of --ckpt (with its --keyframes-ckpt / --ssr-ckpt stages), each file checked for its role."""
    from lumiere_pl.checkpoint import load_parts
    from lumiere_pl.pipeline import LumierePipeline

    ema = not args.no_ema
    if ssr_alone:
        return LumierePipeline(load_parts(args.ckpt, ema, ["ssr"], " as --ckpt with --input-video")).to(args.device)
    keyframes = ssr = None
    if args.keyframes_ckpt:
        keyframes = LumierePipeline(load_parts(args.keyframes_ckpt, ema, ["stunet"], " as --keyframes-ckpt (e.g. "
                                               "experiments/shapes/cascade_keyframes.yaml)"))
    expect, hint = ((["stunet"], " as the cascade's TSR --ckpt (e.g. experiments/shapes/cascade_tsr.yaml)")
                    if keyframes is not None else
                    (["t2i", "stunet", "diffusers_stunet"], "; an SSR checkpoint upscales: give it as --ssr-ckpt, "
                                                             "or alone with --input-video"))
    if args.ssr_ckpt:
        ssr = LumierePipeline(load_parts(args.ssr_ckpt, ema, ["ssr"], " as --ssr-ckpt"))
    pipe = LumierePipeline(load_parts(args.ckpt, ema, expect, hint), keyframes=keyframes, ssr=ssr)
    if args.frames is not None:
        try:
            pipe.check_frames(args.frames)
        except ValueError as err:
            raise InputError(f"--frames {args.frames}: {err}") from None
    pipe.check_size(args.frames or pipe.frames)          # one clip's noise within the sample limit
    return pipe.to(args.device)


def ssr_options(args: argparse.Namespace) -> dict:
    """The SSR stage's call options from --ssr-*: a new window without a stride gets the default overlap of 2."""
    opts = {"steps": args.ssr_steps, "aug": args.ssr_aug, "window": args.ssr_window,
            "stride": args.ssr_stride if args.ssr_stride is not None else (0 if args.ssr_window else None)}
    return {k: v for k, v in opts.items() if v is not None}


def ssr_path(base: Path, out_dir: Optional[Path]) -> Path:
    """Where the SSR stage of the base video `base` goes."""
    if out_dir is not None:
        return out_dir / "ssr" / base.name
    return base.with_name(f"{base.stem}_ssr{base.suffix}")


def _parser() -> argparse.ArgumentParser:
    from lumiere_pl.pipeline import MAX_FPS, MAX_FRAMES, MAX_SEED, MAX_STEPS

    ap = ArgumentParser(prog="lumiere-sample", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, type=Path, help="checkpoint written by lumiere-train (T2I, STUNet), "
                                                             "or a folder written by lumiere-export --out DIR")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt", help="one caption")
    what.add_argument("--prompts", type=Path, help="JSONL file, one {'prompt': ...} per line")
    ap.add_argument("--out", type=Path, help="output MP4 (with --prompt)")
    ap.add_argument("--out-dir", type=Path, help="output folder (with --prompts)")
    ap.add_argument("--overwrite", action="store_true", help="replace output files that exist (default: refuse, "
                                                             "but skip videos this command already rendered)")
    ap.add_argument("--frames", type=number(int, 1, MAX_FRAMES),
                    help="frames per clip (default: the training config's data.frames)")
    ap.add_argument("--steps", type=number(int, 1, MAX_STEPS), help="sampler steps (default: sampler.steps)")
    ap.add_argument("--guidance", type=number(float), help="classifier-free guidance scale (default: "
                                                           "sampler.guidance)")
    ap.add_argument("--sampler", choices=sorted(SAMPLERS), help="default: sampler.name")
    ap.add_argument("--seed", type=number(int, 0, MAX_SEED), default=0,
                    help="video i's noise seed is seed + its index")
    ap.add_argument("--batch-size", type=_batch_size, default=8,
                    help="videos per batch, or auto: on a GPU the largest that fits (halved on out-of-memory), on "
                         "the CPU 16; seeds are per video, so the batch never changes a video (default: 8)")
    ap.add_argument("--fps", type=number(float, 0, MAX_FPS, above=True), help="MP4 frame rate (default: data.fps)")
    ap.add_argument("--lossless", action="store_true", help="lossless H.264 (RGB, qp 0) instead of CRF 18: for "
                                                            "evaluation, so compression does not move FVD")
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu")
    ap.add_argument("--no-ema", action="store_true", help="sample with the live weights instead of the EMA")
    ap.add_argument("--keyframes-ckpt", type=Path, help="cascade baseline: this keyframe model, then --ckpt as the "
                                                        "temporal super-resolution model (docs/ABLATIONS.md)")
    g = ap.add_argument_group("spatial super-resolution (SSR) stage")
    g.add_argument("--ssr-ckpt", type=Path, help="SSR checkpoint: upscale every base video (MP4 per stage)")
    g.add_argument("--input-video", type=Path,
                   help="SSR alone: upscale this video file with --ckpt (an SSR checkpoint); --prompt is its caption")
    g.add_argument("--ssr-steps", type=number(int, 1, MAX_STEPS),
                   help="SSR sampler steps (default: the SSR's sampler.steps)")
    g.add_argument("--ssr-window", type=number(int, 1, MAX_FRAMES),
                   help="MultiDiffusion window in frames (default: sampler.window)")
    g.add_argument("--ssr-stride", type=number(int, 0, MAX_FRAMES),
                   help="MultiDiffusion stride (default: sampler.stride; 0 = window - 2)")
    g.add_argument("--ssr-aug", type=number(float, 0.0, 1.0), default=0.0,
                   help="noise-augmentation time of the low-res input at sampling, in [0, 1] (default 0)")
    ap.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    return ap


def _batch_size(text: str):
    if text == "auto":
        return text
    try:
        return number(int, 1, MAX_BATCH)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer in [1, {MAX_BATCH}] or auto") from None


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def run_input_video(args: argparse.Namespace) -> int:
    """lumiere-sample --ckpt SSR.ckpt --input-video low.mp4 --prompt CAPTION --out high.mp4"""
    from lumiere_pl.data.video_io import read_clip

    if args.out is None or args.prompt is None:
        raise InputError("--input-video needs --prompt CAPTION (may be \"\") and --out FILE.mp4")
    refuse_existing(args.out, args.overwrite)
    video, fps = read_clip(args.input_video, args.frames, "--input-video")       # the user's file first
    pipe = load_pipeline(args, ssr_alone=True)
    opts = ssr_options(args)
    print(f"SSR: {args.input_video} {tuple(video.shape[2:])} -> x{pipe.config.model.upscale} "
          f"({video.shape[2]} frames, window {opts.get('window', pipe.config.sampler.window)})")
    out = pipe([args.prompt], seeds=[args.seed], lowres=video, aug=opts.pop("aug", 0.0),
               **{k: v for k, v in opts.items()})
    out.save(args.out, fps=args.fps or fps or pipe.fps)
    print(f"wrote {args.out}")
    return 0


def refuse_existing(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected the name of an MP4 to write")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: exists; add --overwrite to replace it, or choose another name")


@command("lumiere-sample")
def main(argv: List[str]) -> int:
    args = _parser().parse_args(argv)
    check_args(args)
    if args.input_video is not None:
        return run_input_video(args)
    rows = read_prompts(args.prompts) if args.prompts else [{"index": 0, "prompt": args.prompt}]
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    mine = [r for r in rows if r["index"] % world == rank]

    def target(row: dict) -> Path:
        return args.out if args.prompt is not None else inside(args.out_dir, f"{row['index']:06d}.mp4",
                                                               what="prompt index")

    def targets(row: dict) -> List[Path]:
        return [target(row)] + ([ssr_path(target(row), args.out_dir)] if args.ssr_ckpt else [])

    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k in RENDER_SETTINGS}

    def meta(row: dict) -> dict:
        return {**row, "seed": args.seed + row["index"], "ckpt": str(args.ckpt), "settings": settings}

    def recorded(row: dict) -> Optional[dict]:
        try:
            old = json.loads(target(row).with_suffix(".json").read_text())
        except (OSError, ValueError):
            return None
        return old if isinstance(old, dict) else None

    records = {r["index"]: recorded(r) for r in mine} if args.prompts is not None else {}   # each .json read once

    def ours(row: dict) -> bool:
        """Its .json is this command's, for the same prompt, seed and checkpoint: its files may be replaced."""
        old = records.get(row["index"])
        return old is not None and all(old.get(k) == v for k, v in meta(row).items() if k != "settings")

    def rendered(row: dict) -> bool:
        """This command's files for it exist (with whatever settings)."""
        return args.prompts is not None and not args.overwrite and ours(row) and all(p.is_file() for p in targets(row))

    todo = [r for r in mine if not (rendered(r) and records[r["index"]].get("settings") == settings)]
    for row in todo:                                    # nothing of the user's is overwritten unasked
        if args.prompts is None or not ours(row):
            for p in targets(row) + ([target(row).with_suffix(".json")] if args.prompts else []):
                refuse_existing(p, args.overwrite)
    changed = [r for r in todo if rendered(r)]
    if changed:
        old = records[changed[0]["index"]].get("settings") or {}
        diff = ", ".join(f"{k} {old.get(k)} -> {v}" for k, v in settings.items() if old.get(k) != v)
        print(f"lumiere-sample: {len(changed)} videos in {args.out_dir} were rendered with other settings "
              f"({diff or 'not recorded'}); rendering them again")
    if len(mine) > len(todo):
        print(f"lumiere-sample: {len(mine) - len(todo)} videos already rendered, {len(todo)} to go")
    pipe = load_pipeline(args)
    fps = args.fps or pipe.fps
    render(args, pipe, todo, target, meta, fps)
    print(f"wrote {args.out if args.prompt is not None else args.out_dir}")
    return 0


def render(args: argparse.Namespace, pipe, todo: List[dict], target, meta, fps: float) -> None:
    """Batches of args.batch_size prompts (auto: halved on out-of-memory, the pipeline's rule), each written as it
    finishes: metadata first, so an MP4 that exists always has its JSON."""
    from tqdm.auto import tqdm

    from lumiere_pl.utils.atomic import write_text

    from lumiere_pl.utils.batching import auto_batch_size

    # written as each chunk finishes; "auto" starts each chunk at the size that last fitted (the pipeline's memory)
    size = auto_batch_size(min(len(todo), AUTO_CHUNK), args.device) if args.batch_size == "auto" else args.batch_size
    opts = dict(frames=args.frames, steps=args.steps, guidance=args.guidance, sampler=args.sampler,
                batch_size=args.batch_size, progress=len(todo) == 1, ssr=ssr_options(args))
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    with tqdm(total=len(todo), desc=f"rendering (rank {rank}/{world})", unit="video") as bar:   # closed on errors
        for i in range(0, len(todo), size):
            batch = todo[i:i + size]
            start = time.perf_counter()
            out = pipe([r["prompt"] for r in batch], seeds=[args.seed + r["index"] for r in batch], **opts)
            seconds = (time.perf_counter() - start) / len(batch)
            for j, row in enumerate(batch):
                path = target(row)
                if args.prompts is not None:
                    write_text(path.with_suffix(".json"), json.dumps(
                        {**meta(row), "fps": fps, "sample_seconds": seconds, "lossless": args.lossless,
                         **({"keyframes_ckpt": str(args.keyframes_ckpt)} if args.keyframes_ckpt else {})}))
                if out.base is not None:
                    out.save(path, j, stage="base", fps=fps, lossless=args.lossless)
                    out.save(ssr_path(path, args.out_dir), j, fps=fps, lossless=args.lossless)
                else:
                    out.save(path, j, fps=fps, lossless=args.lossless)
            bar.update(len(batch))


if __name__ == "__main__":
    sys.exit(main())
