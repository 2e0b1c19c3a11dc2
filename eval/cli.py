"""`lumiere-eval`: score any folder of videos (or WebDataset shards, or a clip list).

  lumiere-eval fvd --real PATH --fake PATH            FVD (--preset tf-fvd|stylegan-v|cd-fvd), real stats cached
  lumiere-eval is --videos PATH [--c3d-ckpt CKPT]     IS (--protocol tgan2|stylegan-v); without a C3D checkpoint:
                                                      the I3D-Kinetics IS, labelled as not the paper's
  lumiere-eval stats --videos PATH --out FILE.npz     feature statistics, reusable as --real FILE.npz
  lumiere-eval compare --real PATH --fake PATH        one fake set under every FVD preset: how far each choice moves FVD
  lumiere-eval motion --videos PATH | --real PATH --fake PATH
                                                      weight-free motion metrics (OpenCV DIS flow), flow Frechet distance
  lumiere-eval compare-results A.json B.json ...      results side by side; refused when their protocol cards differ
  lumiere-eval ucf101-prompts --n N --seed S --out prompts.jsonl
  lumiere-eval ucf101 --fake DIR --real UCF101_DIR    FVD + IS + per-class counts (+ --report-dir: md + png)
Each writes a JSON (--out, or beside the input) with the value, its bootstrap interval and N, a protocol card and
every warning, and prints one line (warnings: one line each on stderr). Two sets at different frame rates are
resampled to the lower rate unless --fps is given (one line says so).
Under torchrun, extraction is split across ranks; rank 0 writes.

Exit codes: 0 done; 2 bad input or arguments (one line on stderr naming the input; the traceback only with
--debug or LUMIERE_DEBUG=1); 1 an internal error (a bug: please report it with the --debug traceback).
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys

import torch
import torch.distributed as dist

from . import commands
from .allocator import keep_freed_memory
from .atomic import unwritable
from .errors import EvalError
from .warn import collect

EXPECTED_ERRORS = (EvalError, OSError, ValueError, KeyError, pickle.UnpicklingError)


def _debug_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (also LUMIERE_DEBUG=1)")


def _clip_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--stride", type=int, default=1, help="keep every n-th decoded frame (without --fps)")
    p.add_argument("--fps", type=float, default=None, help="resample real and fake clips to this frame rate by "
                   "timestamps (default: as they come when both sets have one rate, else the lower of their rates)")
    p.add_argument("--start", type=int, default=0, help="first frame (the lower bound with --offset random)")
    p.add_argument("--offset", choices=("first", "random"), default="first", help="clip start per video")
    p.add_argument("--seed", type=int, default=0, help="seed of random offsets and of a random real subset")


def _bootstrap_args(p: argparse.ArgumentParser) -> None:
    from .bootstrap import DEFAULT_B_FRECHET

    p.add_argument("--bootstrap", type=int, default=DEFAULT_B_FRECHET, metavar="B",
                   help="bootstrap resamples of each Frechet distance (0: no interval; docs/EVAL.md)")
    p.add_argument("--bootstrap-seed", type=int, default=0)


def _common(p: argparse.ArgumentParser) -> None:
    from .presets import FVD_PRESETS
    from .preprocess import CROPS, RESIZES

    _clip_args(p)
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
    p.add_argument("--n-curve", default=None, metavar="FILE.png",
                   help="also plot FVD against N (subsets of N/2, N/4, ... videos, 5 draws each) to this PNG")
    _real_args(p, None)
    _bootstrap_args(p)
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
    _bootstrap_args(p)
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
    _bootstrap_args(p)
    _common(p)
    _motion_parser(sub)
    p = sub.add_parser("compare-results", help="result JSONs in one table; refused when their protocol cards differ")
    p.add_argument("results", nargs="+", help="result JSONs of fvd, is, ucf101, compare or motion")
    p.add_argument("--allow-mixed", action="store_true", help="show results whose cards differ, with those fields")
    p.add_argument("--out", default=None, help="also write the table (markdown) here")
    _debug_flag(p)
    return parser


def _motion_parser(sub) -> None:
    from .bootstrap import DEFAULT_B_MEAN
    from .flow import FLOW_SHORT_SIDE

    p = sub.add_parser("motion", help="weight-free motion metrics (OpenCV DIS flow) of one set or real vs generated")
    p.add_argument("--videos", default=None, help="one set: folder / shards / clip list")
    p.add_argument("--real", default=None, help="with --fake: real videos (folder / shards / clip list)")
    p.add_argument("--fake", default=None, help="with --real: generated videos")
    p.add_argument("--max-videos", type=int, default=None, help="videos per set")
    p.add_argument("--flow-size", type=int, default=FLOW_SHORT_SIDE, help="short side of the flow grid (pixels)")
    p.add_argument("--npy-fps", type=float, default=None, help="frame rate of .npy clips (they have no timestamps)")
    p.add_argument("--bootstrap-mean", type=int, default=DEFAULT_B_MEAN, metavar="B",
                   help="bootstrap resamples of each set mean")
    _bootstrap_args(p)
    _clip_args(p)
    p.add_argument("--workers", type=int, default=None, help="flow workers (default: cores - 1, at most 4; 0: in process)")
    p.add_argument("--out", default=None, help="JSON output path")
    _debug_flag(p)


COMMANDS = {"ucf101-prompts": "cmd_prompts", "fvd": "cmd_fvd", "is": "cmd_is", "stats": "cmd_stats",
            "compare": "cmd_compare", "ucf101": "cmd_ucf101", "motion": "cmd_motion",
            "compare-results": "cmd_compare_results"}


def _init_dist() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def check_counts(args: argparse.Namespace) -> None:
    """Resample counts: 0 (no interval) or more."""
    for flag in ("bootstrap", "bootstrap_mean"):
        value = getattr(args, flag, None)
        if value is not None and value < 0:
            raise EvalError(f"--{flag.replace('_', '-')} {value}: expected a number of bootstrap resamples, "
                            "or 0 for no interval")


def check_outputs(args: argparse.Namespace) -> None:
    """--out (a file) and --report-dir (a folder) can be written: checked before minutes of feature extraction."""
    for flag, value, file in (("--out", getattr(args, "out", None), True),
                              ("--report-dir", getattr(args, "report_dir", None), False),
                              ("--n-curve", getattr(args, "n_curve", None), True)):
        if value is not None and (why := unwritable(value, file)):
            raise EvalError(f"{flag} {value}: cannot write there ({why}); expected a writable folder")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("LUMIERE_DEBUG", "") not in ("", "0")
    keep_freed_memory()                           # tensors on the CPU: no page faults per I3D batch (eval/allocator.py)
    try:
        with collect():                           # every warning: one line on stderr, and in the result JSON
            check_counts(args)
            check_outputs(args)                   # before any video is read
            if args.command not in ("ucf101-prompts", "compare-results"):
                _init_dist()
            getattr(commands, COMMANDS[args.command])(args)
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
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
