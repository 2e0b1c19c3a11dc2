"""Writing encoded shards (the format: lumiere_pl/data/encoded.py; the command: lumiere_pl/cli/encode.py).

Each input shard is read in order, each clip decoded in the fixed view (lumiere_pl.data.sample_decode with view
None: centred start and crop), `batch` clips at a time through the VAE encoder (its posterior's mean and
log-variance) and the text encoder (per-token states and mask; a pixel model: the text encoder alone, the samples'
members copied as they are), and written to the output shard of the same name,
atomically (a temporary file renamed when complete: an interrupted run leaves whole shards only). The bytes of an
output shard depend on its input shard and the encoders alone: tar members in a fixed order with fixed metadata,
batches formed within the shard.

Resumable and split across processes: process r of W (torchrun's RANK and WORLD_SIZE) encodes the input shards
with index % W == r; an output shard that exists is complete (atomic rename) and is skipped after checking its key.
No shard is encoded twice or missed, whatever W. At the end (after a barrier when W > 1: gloo, whatever the
device) rank 0 writes prompts.safetensors (the null caption and the run's val prompts, added to those already
there) and manifest.json.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from tqdm import tqdm

from lumiere_pl.data.config import DataConfig
from lumiere_pl.data.encoded import ENCODED_MEMBER, PROMPTS_FILE, TEXT_MEMBER, safetensors_metadata
from lumiere_pl.data.health import SkipCounter
from lumiere_pl.data.sample_decode import decode_sample
from lumiere_pl.data.tar_reader import MANIFEST, iter_shard
from lumiere_pl.errors import InputError
from lumiere_pl.utils.atomic import atomic_path, write_bytes, write_text

FORMAT = ("lumiere-pl encoded shards: {key}.latent.safetensors (mean, logvar: the VAE posterior (c t h w), unscaled; "
          "text (L d), text_mask (L): the caption's token states), {key}.txt, {key}.json; a pixel model's: the sample "
          "as it was and {key}.text.safetensors (text, text_mask) (lumiere_pl/data/encoded.py)")
BARRIER_TIMEOUT = timedelta(hours=24)   # how long the processes that finished wait for the others at the end


@dataclass
class Encoders:
    """What encoding needs: posterior (b 3 t H W) in [-1, 1] -> (mean, logvar) (b c t h w), None for a pixel model
    (its samples keep their videos); text: captions -> (b L d) states, (b L) bool mask."""
    posterior: Optional[Callable[[Tensor], Tuple[Tensor, Tensor]]]
    text: Callable[[List[str]], Tuple[Tensor, Tensor]]
    device: torch.device


@dataclass
class Job:
    index: int              # position among the input shards (train first, then val)
    source: str             # input shard URL
    out: Path               # output shard


def plan(urls: Sequence[str], out_dir: Path) -> List[Job]:
    """Output shard i for input shard i, named as it is; InputError for two inputs of one name, or an output that
    would replace an input."""
    jobs, names = [], {}
    for i, url in enumerate(urls):
        name = url.rstrip("/").rsplit("/", 1)[-1]
        if not name or name in names:
            raise InputError(f"shards {names.get(name, '')} and {url} have one file name {name!r}; the encoded shard "
                             f"keeps its input's name, so names must differ")
        names[name] = url
        out = out_dir / name
        src = Path(url[len("file:"):] if url.startswith("file:") else url)
        if src.exists() and out.exists() and src.resolve() == out.resolve():
            raise InputError(f"--out {out_dir} holds the input shards ({url}); expected another folder")
        jobs.append(Job(i, url, out))
    return jobs


def shard_info(path: Path) -> Tuple[int, Optional[str]]:
    """(encoded samples, the key of its first sample) of an output shard, reading tar headers and one member."""
    count, key = 0, None
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(("." + ENCODED_MEMBER, "." + TEXT_MEMBER)):
                count += 1
                if key is None:
                    f = tar.extractfile(member)
                    key = safetensors_metadata(f.read() if f is not None else b"").get("key")
    return count, key


class _TarOut:
    """Members with fixed metadata (mtime 0, mode 0644, no owner): the same content gives the same bytes."""

    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar

    def add(self, name: str, payload: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(payload), 0, 0o644
        self.tar.addfile(info, io.BytesIO(payload))


def _pack(mean: Tensor, logvar: Tensor, text: Tensor, mask: Tensor, key: str, dtype: torch.dtype) -> bytes:
    from safetensors.torch import save

    tensors = {"mean": mean.to(dtype), "logvar": logvar.to(dtype), "text": text.to(dtype), "text_mask": mask.bool()}
    return save({k: v.contiguous().clone() for k, v in tensors.items()}, metadata={"key": key})


def _caption(raw: Dict[str, object], skips: SkipCounter) -> Optional[str]:
    """A pixel model's sample: its caption as the DataModule reads it, or None (skipped and counted)."""
    key, url = str(raw["__key__"]), str(raw["__url__"])
    if "txt" not in raw:
        skips.add("no_caption", url, key)
        return None
    try:
        return bytes(raw["txt"]).decode("utf-8").strip()
    except UnicodeDecodeError as err:
        skips.add("bad_caption", url, key, f"caption is not UTF-8: {err}")
        return None


def encode_text_shard(job: Job, enc: Encoders, key: str, batch: int, dtype: torch.dtype, skips: SkipCounter) -> int:
    """A pixel model's shard: every member of each captioned sample as it is, and {key}.text.safetensors."""
    from safetensors.torch import save

    with atomic_path(job.out) as tmp, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        out, pending, count = _TarOut(tar), [], 0

        def flush() -> int:
            text, mask = (x.cpu() for x in enc.text([c for c, _ in pending]))                # b L d, b L
            for i, (_, raw) in enumerate(pending):
                k = str(raw["__key__"])
                for ext, payload in raw.items():
                    if not ext.startswith("__"):
                        out.add(f"{k}.{ext}", bytes(payload))
                tensors = {"text": text[i].float().to(dtype).contiguous().clone(),
                           "text_mask": mask[i].bool().contiguous().clone()}
                out.add(f"{k}.{TEXT_MEMBER}", save(tensors, metadata={"key": key}))
            n = len(pending)
            pending.clear()
            return n

        for raw in iter_shard(job.source, skips):
            if ENCODED_MEMBER in raw or TEXT_MEMBER in raw:
                raise InputError(f"{job.source}: holds encoded samples; expected pixel shards (video and caption)")
            caption = _caption(raw, skips)
            if caption is not None:
                pending.append((caption, raw))
            if len(pending) == batch:
                count += flush()
        if pending:
            count += flush()
    return count


def encode_shard(job: Job, data: DataConfig, enc: Encoders, key: str, batch: int, dtype: torch.dtype,
                 skips: SkipCounter) -> int:
    """Encode one input shard into job.out (atomically); returns its sample count."""
    if enc.posterior is None:
        return encode_text_shard(job, enc, key, batch, dtype, skips)
    with atomic_path(job.out) as tmp, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        out, pending = _TarOut(tar), []
        count = 0

        def flush() -> int:
            pixels = torch.stack([ex["pixels"] for ex in pending]).to(enc.device)          # b 3 t H W
            mean, logvar = (x.float().cpu() for x in enc.posterior(pixels))                # b c t h w
            text, mask = (x.cpu() for x in enc.text([ex["caption"] for ex in pending]))    # b L d, b L
            for i, (ex, raw) in enumerate(zip(pending, raws)):
                k = ex["key"]
                out.add(f"{k}.{ENCODED_MEMBER}", _pack(mean[i], logvar[i], text[i].float(), mask[i], key, dtype))
                out.add(f"{k}.txt", bytes(raw["txt"]))
                if "json" in raw:
                    out.add(f"{k}.json", bytes(raw["json"]))
            n = len(pending)
            pending.clear()
            raws.clear()
            return n

        raws: List[Dict[str, object]] = []
        for raw in iter_shard(job.source, skips):
            if ENCODED_MEMBER in raw or TEXT_MEMBER in raw:
                raise InputError(f"{job.source}: holds encoded samples; expected pixel shards (video and caption)")
            ex = decode_sample(raw, data, None, skips)                       # the fixed view: centred
            if ex is None:
                continue
            pending.append(ex)
            raws.append(raw)
            if len(pending) == batch:
                count += flush()
        if pending:
            count += flush()
    return count


def _dist(world: int):
    """The process group of a torchrun launch (gloo: it only carries a barrier and the shard counts)."""
    import torch.distributed as dist

    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    return dist


def encode_all(urls: Sequence[str], out_dir: Path, data: DataConfig, enc: Encoders, key: str, parts: dict,
               prompts: Sequence[str], batch: int, dtype: torch.dtype, compute_dtype: str, rank: int = 0,
               world: int = 1) -> Optional[dict]:
    """Encode every input shard this process owns (index % world == rank), skipping complete ones; rank 0 then writes
    the prompts file and the manifest (returned; None on other ranks)."""
    jobs = plan(urls, out_dir)
    check_out(out_dir, key)
    mine = [j for j in jobs if j.index % world == rank]
    skips = SkipCounter()
    done: Dict[int, int] = {}
    bar = tqdm(mine, desc=f"encoding -> {out_dir}" + (f" (process {rank} of {world})" if world > 1 else ""),
               unit="shard", disable=rank != 0 and world > 1)
    for job in bar:
        if job.out.exists():
            n, k = shard_info(job.out)
            if k is not None and k != key:
                raise InputError(f"{job.out}: encoded with key {k}, this config gives {key}; expected an empty --out "
                                 f"folder or one of this encoding")
            done[job.index] = n                                          # complete (renamed whole): skipped
            continue
        done[job.index] = encode_shard(job, data, enc, key, batch, dtype, skips)
    bar.close()
    skipped = skips.as_dict()
    if world > 1:
        dist = _dist(world)
        gathered: List[Optional[tuple]] = [None] * world
        dist.all_gather_object(gathered, (done, skipped))
        done, skipped = {}, {}
        for d, s in gathered:
            done.update(d)
            for reason, n in s.items():
                skipped[reason] = skipped.get(reason, 0) + n
    man = None
    if rank == 0:
        _write_prompts(out_dir / PROMPTS_FILE, enc, prompts, dtype)
        shards = [{"file": j.out.name, "samples": done[j.index], "source": j.source} for j in jobs]
        man = {"format": FORMAT,
               "encoded": {"key": key, "parts": parts, "storage_dtype": str(dtype).replace("torch.", ""),
                           "compute_dtype": compute_dtype, "prompts": PROMPTS_FILE},
               "samples": sum(s["samples"] for s in shards), "shards": shards, "skipped": skipped,
               "settings": {"command": "encode"}, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_text(out_dir / MANIFEST, json.dumps(man, indent=1))
    if world > 1:
        dist.barrier()                                                   # the manifest exists when any process ends
    return man


def check_out(out_dir: Path, key: str) -> None:
    """Nothing of another kind or encoding is written over: a manifest in --out must be this encoding's."""
    man = out_dir / MANIFEST
    if not man.is_file():
        return
    try:
        enc = json.loads(man.read_text()).get("encoded")
    except (OSError, ValueError, AttributeError):
        enc = None
    if not isinstance(enc, dict):
        raise InputError(f"--out {out_dir} holds other shards ({man} is not of encoded shards); expected an empty "
                         f"folder or one of this encoding")
    if enc.get("key") != key:
        raise InputError(f"--out {out_dir} holds shards encoded with key {enc.get('key')}, this config gives {key}; "
                         f"expected an empty folder or one of this encoding")


def _write_prompts(path: Path, enc: Encoders, prompts: Sequence[str], dtype: torch.dtype) -> None:
    """The null caption and `prompts` (stored in `dtype`, as each sample's states), with those already in the file
    (same key: checked by the caller)."""
    from lumiere_pl.text.cached import prompts_bytes, read_prompts

    held = read_prompts(path) if path.is_file() else {}
    new = [p for p in dict.fromkeys(["", *prompts]) if p not in held]
    if new:
        states, mask = enc.text(new)
        for p, s, m in zip(new, states.float().cpu(), mask.cpu()):
            held[p] = (s.to(dtype), m)
    if new or not path.is_file():
        write_bytes(path, prompts_bytes(held))


def rank_world() -> Tuple[int, int, int]:
    """(RANK, WORLD_SIZE, LOCAL_RANK) of a torchrun launch; (0, 1, 0) otherwise."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
