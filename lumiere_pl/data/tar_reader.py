"""Reading WebDataset tar shards into raw samples ({"__key__", "__url__", ext: bytes}), robust to broken tars.

Members are grouped by key: "dir/name.ext" has key "dir/name" and extension "ext" (the part after the first dot
of the base name, lower-cased), as in webdataset. A shard that breaks (truncated or corrupt) keeps every complete
sample before the break; the sample being read is counted as skipped (one per broken shard). Any URL webdataset's gopen accepts works:
local paths, file:, pipe:, http(s):.
"""
from __future__ import annotations

import glob
import json
import tarfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from webdataset import gopen
from webdataset.shardlists import expand_urls

from eval.limits import MIB, Limits, limits
from lumiere_pl.data.health import SkipCounter
from lumiere_pl.data.video_io import VIDEO_EXTS

MANIFEST = "manifest.json"


def expand(urls: str) -> List[str]:
    """Brace patterns, "::"-separated lists and local globs -> shard URLs ("a-{000..002}.tar" -> three names;
    "shards/train-*.tar" -> the matching files, sorted)."""
    out = []
    for url in expand_urls(urls):
        local = ":" not in url.split("/")[0]
        out += sorted(glob.glob(url)) if local and any(c in url for c in "*?[") else [url]
    if not out:
        raise ValueError(f"shard pattern {urls!r} names no shards")
    return out


def _split(name: str) -> tuple[str, str]:
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), ext.lower() if dot else ""


def iter_shard(url: str, skips: Optional[SkipCounter] = None, lim: Optional[Limits] = None
               ) -> Iterator[Dict[str, object]]:
    """Raw samples of one shard, in tar order."""
    lim = lim or limits()
    key: Optional[str] = None
    sample: Dict[str, object] = {}
    try:
        stream = gopen(url, "rb")
    except (OSError, ValueError) as err:
        if skips is not None:
            skips.add("unreadable_shard", url, "-", str(err))
        return
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                k, ext = _split(member.name)
                if member.size > lim.member_mib * MIB or member.issparse():
                    if skips is not None:
                        what = "is sparse" if member.issparse() else f"declares {member.size:,} bytes"
                        skips.add("oversized_member", url, k, f"{member.name} {what}, over "
                                  f"{lim.describe('member_mib')}: skipped unread")
                    continue
                fobj = tar.extractfile(member)
                data = fobj.read() if fobj is not None else b""
                if len(data) != member.size:
                    raise tarfile.ReadError(f"member {member.name} has {len(data)} of {member.size} bytes")
                if k != key:
                    if sample:
                        yield sample
                    key, sample = k, {"__key__": k, "__url__": url}
                sample[ext] = data
    except (tarfile.TarError, OSError, EOFError, ValueError) as err:
        # the member that failed is lost; the sample read so far is kept when its video and caption are whole
        # (tarfile can fail on the header of the next sample while this one is already complete)
        if skips is not None:
            skips.add("truncated_tar", url, key or "-", f"({err}): the shard breaks in or just after this sample; every complete sample was kept")
        if "txt" in sample and any(k in sample for k in VIDEO_EXTS):
            yield sample
        return
    finally:
        stream.close()
    if sample:
        yield sample


def manifest_counts(urls: List[str]) -> Optional[List[int]]:
    """Samples per shard from the manifest.json next to local shards (written by lumiere-shards); None if unknown."""
    cache: Dict[Path, Dict[str, int]] = {}
    counts = []
    for url in urls:
        path = Path(url[len("file:"):] if url.startswith("file:") else url)
        if ":" in url.split("/")[0] and not url.startswith("file:"):
            return None                                     # remote URL: no manifest lookup
        man = path.parent / MANIFEST
        if man not in cache:
            if not man.is_file():
                return None
            cache[man] = {s["file"]: int(s["samples"]) for s in json.loads(man.read_text())["shards"]}
        if path.name not in cache[man]:
            return None
        counts.append(cache[man][path.name])
    return counts
