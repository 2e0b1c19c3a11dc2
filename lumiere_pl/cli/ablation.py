"""`make ablation`'s two steps around training, sampling and FVD: STUNet versus the keyframes + TSR cascade.

  python -m lumiere_pl.cli.ablation prepare --out runs/ablation [--n 16 --real 64] [--ckpts CKPT ...]
      prompts.jsonl: the captions of N test clips of the moving-shapes set (fixed: split "test", data seed)
      real/NNNNNN.mp4: the first `--real` test clips, rendered like the STUNet's training clips (16 frames, 8 fps)
      checkpoints.json: the --ckpts files (size, mtime); when one changed since the last run, the pipelines' videos
      and FVDs are deleted, so sampling (which skips finished files) does not reuse a retrained model's old videos
  python -m lumiere_pl.cli.ablation report --out runs/ablation --stunet CKPT --keyframes CKPT --tsr CKPT
      table.md + table.json: per pipeline FVD (from {pipeline}/fvd.json, written by `lumiere-eval fvd`), training
      steps, sampling time per video, forward GFLOPs per generated video, motion coherence (data/shapes_motion.py)
Every file is written atomically. Exit codes: 0 done, 2 bad input (a missing or unreadable input file, checkpoint or
option; an output that cannot be written), 1 internal error. --debug or LUMIERE_DEBUG=1: the traceback too.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

from lumiere_pl.cli.errors import DEBUG_HELP, command
from lumiere_pl.errors import InputError
from lumiere_pl.utils.atomic import write_text

PIPELINES = ("stunet", "cascade")


def _stale_outputs(out: Path, ckpts: List[str]) -> None:
    """Delete {pipeline}/ when the checkpoints differ from those recorded at the last prepare (retrained models)."""
    import shutil

    now = {c: [Path(c).stat().st_size, Path(c).stat().st_mtime_ns] for c in ckpts}
    record = out / "checkpoints.json"
    try:
        before = json.loads(record.read_text()) if record.exists() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        before = None                                     # unreadable record: treat the checkpoints as changed
    if before != now:
        for name in PIPELINES:
            if (out / name).exists():
                print(f"checkpoints changed since the last run: removing {out / name}")
                shutil.rmtree(out / name)
    write_text(record, json.dumps(now, indent=2))


def prepare(out: Path, config: str, n: int, n_real: int, ckpts: Optional[List[str]] = None) -> None:
    from lumiere_pl.config import load_config
    from lumiere_pl.data.synthetic import render_clip, sample_clip
    from lumiere_pl.utils.video import write_mp4

    for c in ckpts or []:
        if not Path(c).is_file():
            raise InputError(f"--ckpts {c}: checkpoint not found; expected the checkpoints sampled next")
    d = load_config(config).data
    s = d.synthetic
    clips = [sample_clip(s.seed, i, "test", s.speed_word_prob) for i in range(max(n, n_real))]
    if ckpts:
        _stale_outputs(out, ckpts)
    rows = [{"index": i, "prompt": c.caption} for i, c in enumerate(clips[:n])]
    write_text(out / "prompts.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    for i, c in enumerate(clips[:n_real]):
        path = out / "real" / f"{i:06d}.mp4"
        if not path.exists():
            write_mp4(path, render_clip(c, d.frames, d.size, s.shape_scale, s.background), fps=d.fps)
    print(f"wrote {out / 'prompts.jsonl'} ({n} prompts) and {n_real} real clips under {out / 'real'}")


def _read_json(path: Path, made_by: str):
    """A JSON file an earlier step wrote; missing or unreadable: InputError naming the step that makes it."""
    if not path.is_file():
        raise InputError(f"{path}: not found; expected the output of {made_by}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({err}); run {made_by} again") from None


def _read_videos(folder: Path, n: int) -> List[np.ndarray]:
    from lumiere_pl.data.video_io import VideoError, decode

    videos = []
    for i in range(n):
        path = folder / f"{i:06d}.mp4"
        if not path.is_file():
            raise InputError(f"{path}: not found; expected {n} videos in {folder} (sample them before the report)")
        try:
            videos.append(decode(path.read_bytes()))                                   # (t h w 3) uint8
        except VideoError as err:
            raise InputError(f"{path}: {err}; delete it and sample again") from None
    return videos


def gflops_per_video(module) -> float:
    """Forward GFLOPs of one generated clip: sampler steps x network calls per step (2 with guidance) x one call."""
    import torch

    from lumiere_pl.utils.flops import forward_flops

    d, s = module.cfg.data, module.cfg.sampler
    shape = (1, 3, d.frames, d.size, d.size)
    cond = {**module.text_condition(["a red circle moving left"]), **module.example_condition(shape)}
    one = forward_flops(module.net, torch.zeros(shape), torch.full((1,), 500.0), cond)
    return one * s.steps * (1 if s.guidance == 1.0 else 2) / 1e9


def _row(out: Path, name: str, ckpts: List[str], rows: List[dict], background) -> dict:
    from lumiere_pl.checkpoint import load_checkpoint, load_module
    from lumiere_pl.data.shapes_motion import summarise

    folder = out / name / "videos"
    metas = [_read_json(folder / f"{r['index']:06d}.json", "lumiere-sample --prompts") for r in rows]
    fvd = _read_json(out / name / "fvd.json", "lumiere-eval fvd")
    for key, made_by in (("value", "lumiere-eval fvd"), ("n_fake", "lumiere-eval fvd"), ("n_real", "lumiere-eval fvd")):
        if key not in fvd:
            raise InputError(f"{out / name / 'fvd.json'}: no {key!r}; expected the output of {made_by}")
    motion = summarise(_read_videos(folder, len(rows)), [r["prompt"] for r in rows], background)
    modules = [load_module(c, expect=["stunet"]) for c in ckpts]
    return {"pipeline": name, "fvd": fvd["value"], "n_fake": fvd["n_fake"], "n_real": fvd["n_real"],
            "train_steps": sum(int(load_checkpoint(c, mmap=True).get("global_step", 0)) for c in ckpts),
            "sample_s_per_video": float(np.mean([m.get("sample_seconds", math.nan) for m in metas])),
            "gflops_per_video": sum(gflops_per_video(m) for m in modules), **motion}


def report(out: Path, stunet: str, keyframes: str, tsr: str, background=(0, 0, 0)) -> List[dict]:
    from lumiere_pl.data.shapes_motion import summarise

    from lumiere_pl.cli.sample import read_prompts

    prompts = out / "prompts.jsonl"
    if not prompts.is_file():
        raise InputError(f"{prompts}: not found; expected the output of `python -m lumiere_pl.cli.ablation prepare "
                         f"--out {out}`")
    rows = read_prompts(prompts)
    table = [_row(out, "stunet", [stunet], rows, background), _row(out, "cascade", [keyframes, tsr], rows, background)]
    real = summarise(_read_videos(out / "real", len(rows)), [r["prompt"] for r in rows], background)
    table.append({"pipeline": "real clips (reference)", "fvd": math.nan, **real})
    write_text(out / "table.json", json.dumps(table, indent=2))
    write_text(out / "table.md", markdown(table))
    return table


def _fmt(v, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def markdown(table: List[dict]) -> str:
    head = ("| pipeline | FVD | train steps | sample s / video | GFLOPs / video | direction match | jump | jerk "
            "| shape found |\n|---|---|---|---|---|---|---|---|---|\n")
    lines = [f"| {r['pipeline']} | {_fmt(r.get('fvd'), '.1f')} | {_fmt(r.get('train_steps'), 'd')} "
             f"| {_fmt(r.get('sample_s_per_video'), '.2f')} | {_fmt(r.get('gflops_per_video'), '.1f')} "
             f"| {_fmt(r['direction_match'], '.0%')} | {_fmt(r['jump'], '.3f')} | {_fmt(r['jerk'], '.3f')} "
             f"| {_fmt(r['detected'], '.0%')} |" for r in table]
    n = next((r["n_fake"] for r in table if "n_fake" in r), "?")
    return head + "\n".join(lines) + (f"\n\nN = {n} prompts per pipeline. FVD: I3D (TF-Hub) logits against the real "
                                      f"clips. jump / jerk: mean |centroid step| and |change of step| per frame, in "
                                      f"frame sides (lumiere_pl/data/shapes_motion.py).\n")


@command("python -m lumiere_pl.cli.ablation")
def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m lumiere_pl.cli.ablation", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="prompts and real clips")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--config", default="experiments/stunet_shapes.yaml", help="experiment whose data the clips follow")
    p.add_argument("--n", type=int, default=16, help="prompts (videos per pipeline)")
    p.add_argument("--real", type=int, default=64, help="real clips")
    p.add_argument("--ckpts", nargs="*", default=[], help="the checkpoints sampled next: a change clears old videos")
    p = sub.add_parser("report", help="the comparison table (md + json)")
    p.add_argument("--out", type=Path, required=True)
    for name in ("stunet", "keyframes", "tsr"):
        p.add_argument(f"--{name}", required=True, help=f"{name} checkpoint")
    ap.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = ap.parse_args(argv)
    if args.command == "prepare":
        if args.n < 1 or args.real < 1:
            raise InputError(f"--n {args.n} --real {args.real}: expected integers >= 1")
        prepare(args.out, args.config, args.n, args.real, args.ckpts)
    else:
        report(args.out, args.stunet, args.keyframes, args.tsr)
        print((args.out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
