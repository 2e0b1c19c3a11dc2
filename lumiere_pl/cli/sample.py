"""lumiere-sample: render videos from a trained checkpoint.

  lumiere-sample --ckpt runs/stunet_shapes/checkpoints/last.ckpt --prompt "a red circle moving right" --out a.mp4
  lumiere-sample --ckpt CKPT --prompts prompts.jsonl --out-dir DIR      # one {index:06d}.mp4 (+ .json) per line

With --prompts the work is batched, resumable (finished videos are skipped) and split across processes: under
torchrun (RANK / WORLD_SIZE set) process r renders the lines with index % WORLD_SIZE == r. Video i starts from noise
seeded by seed + index, so a video does not depend on its batch or on the number of processes.

  lumiere-sample --keyframes-ckpt KF.ckpt --ckpt TSR.ckpt ...       # the cascade baseline (lumiere_pl/cascade.py):
                                                                    # keyframes, then temporal super-resolution
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

from lumiere_pl.cli.ssr_stage import add_ssr_args, load_ssr, run_input_video, ssr_path, upscale


def read_prompts(path: Path) -> List[dict]:
    """JSONL with at least {"prompt": str}; "index" defaults to the line number."""
    if not path.is_file():
        raise FileNotFoundError(f"prompts file not found: {path}")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n + 1}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise ValueError(f'{path}:{n + 1}: expected an object with a "prompt" string, got {line[:80]!r}')
        row.setdefault("index", n)
        rows.append(row)
    return rows


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
    ap.add_argument("--sampler", choices=["ddim", "ddpm"], help="default: sampler.name")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--fps", type=float, help="MP4 frame rate (default: data.fps)")
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu")
    ap.add_argument("--no-ema", action="store_true", help="sample with the live weights instead of the EMA")
    ap.add_argument("--keyframes-ckpt", help="cascade baseline: this keyframe model, then --ckpt as the temporal "
                                             "super-resolution model (docs/ABLATIONS.md)")
    add_ssr_args(ap)
    return ap


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.prompt is not None and args.out is None:
        print("lumiere-sample: --prompt needs --out FILE.mp4", file=sys.stderr)
        return 2
    if args.prompts is not None and args.out_dir is None:
        print("lumiere-sample: --prompts needs --out-dir DIR", file=sys.stderr)
        return 2
    ssr, keyframes = None, None
    try:
        if args.input_video is not None:
            return run_input_video(args)
        rows = read_prompts(args.prompts) if args.prompts else [{"index": 0, "prompt": args.prompt}]
        from lumiere_pl.checkpoint import load_module
        module = load_module(args.ckpt, args.device)
        keyframes = load_module(args.keyframes_ckpt, args.device) if args.keyframes_ckpt else None
        if keyframes is not None:
            from lumiere_pl.cascade import check_pair
            check_pair(keyframes, module)
            if args.frames is not None and args.frames != module.cfg.data.frames:
                raise ValueError(f"--frames {args.frames}: the cascade makes the TSR's {module.cfg.data.frames} frames")
        ssr = load_ssr(args.ssr_ckpt, args) if args.ssr_ckpt else None
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as err:
        print(f"lumiere-sample: {err}", file=sys.stderr)
        return 2

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
    bar = tqdm(total=len(todo), desc=f"rendering (rank {rank}/{world})", unit="video")
    for start in range(0, len(todo), args.batch_size):
        batch = todo[start:start + args.batch_size]
        opts = dict(steps=args.steps, guidance=args.guidance, seeds=[args.seed + int(r["index"]) for r in batch],
                    use_ema=not args.no_ema, progress=len(todo) == 1)
        start_time = time.perf_counter()
        if keyframes is not None:
            from lumiere_pl.cascade import sample_cascade
            videos = sample_cascade(keyframes, module, [r["prompt"] for r in batch], **opts)
        else:
            videos = module.generate([r["prompt"] for r in batch], frames=args.frames, **opts)
        seconds = (time.perf_counter() - start_time) / len(batch)       # sampling time per video, this batch
        for row, video in zip(batch, videos):
            path = target(row)
            if args.prompts is not None:   # metadata first: an MP4 that exists always has its JSON
                meta = {**row, "seed": args.seed + int(row["index"]), "ckpt": str(args.ckpt), "fps": fps,
                        "sample_seconds": seconds, "batch_size": len(batch)}
                if keyframes is not None:
                    meta["keyframes_ckpt"] = str(args.keyframes_ckpt)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.with_suffix(".json").write_text(json.dumps(meta))
            write_mp4(path, to_uint8(video), fps=fps)
        if ssr is not None:                 # stage 2: one MP4 per stage
            seeds = [args.seed + int(r["index"]) for r in batch]
            for row, video in zip(batch, upscale(ssr, videos, [r["prompt"] for r in batch], args, seeds)):
                write_mp4(ssr_path(target(row), args.out_dir), to_uint8(video), fps=fps)
        bar.update(len(batch))
    bar.close()
    print(f"wrote {args.out if args.prompt is not None else args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
