"""`lumiere-shards encode`: the VAE posterior and the caption's token states of every clip of a run's shards, into
new shards beside them, so that training loads no VAE encoder and no text encoder (docs/DATA.md, "Encoded shards").
A pixel model (DeepFloyd IF, our STUNet) has no VAE: its samples keep their videos and gain their caption's states.

  lumiere-shards encode --config experiments/diffusers/sd.yaml [key=value ...] --out DIR [--batch 8] [--dtype auto]
  torchrun --nproc_per_node 8 -m lumiere_pl.cli.shards encode --config ... --out DIR     (processes, nodes)

The run's config says everything: the shards (data.train_shards, data.val_shards), the VAE and text encoder
(model.init_from, model.diffusers.*, text.*: read as lumiere-train reads them), the view (data.size, data.frames,
data.fps; latents only) and the prompts validation
samples (train.val_prompts). Train from the output by pointing data.train_shards / data.val_shards at it (printed
at the end); lumiere-train checks the key. Rerunning the command skips the complete output shards (and adds
prompts). The encoders run in model.frozen_dtype on --device (auto: this process's GPU, else the CPU).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import List

import torch

from lumiere_pl.errors import InputError

DTYPES = ("auto", "float32", "bfloat16", "float16")


def add_parser(sub) -> None:
    p = sub.add_parser("encode", help="encode a run's shards (VAE posterior, text states) for training without "
                                      "encoders: new shards in --out")
    p.add_argument("--config", required=True, help="the experiment YAML of the run (e.g. experiments/diffusers/sd.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, as lumiere-train takes them")
    p.add_argument("--out", required=True, help="folder of the encoded shards (created; never the input folder)")
    p.add_argument("--batch", type=int, default=8, help="clips per encoder call (the VAE: model.diffusers.vae_chunk "
                                                       "frames at a time)")
    p.add_argument("--dtype", default="auto", choices=DTYPES,
                   help="storage dtype of the latents and states (auto: the encoders' precision, model.frozen_dtype)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def out_pattern(pattern: str, out: Path) -> str:
    """The data.*_shards value naming the encoded shards of `pattern` in `out`."""
    from lumiere_pl.data.tar_reader import expand

    names = [u.rstrip("/").rsplit("/", 1)[-1] for u in expand(pattern)]
    same = str(out / pattern.rstrip("/").rsplit("/", 1)[-1])
    try:
        if [Path(u).name for u in expand(same)] == names:
            return same
    except ValueError:
        pass
    return "::".join(str(out / n) for n in names)


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA device here; expected --device cpu or auto")
    return torch.device(f"cuda:{local_rank}") if device.type == "cuda" and device.index is None else device


def run(a: argparse.Namespace, extra: List[str] = ()) -> int:
    """a: the parsed options; extra: arguments after them (key=value overrides; anything else is refused)."""
    from lumiere_pl.config_checks import check_files, load_config
    from lumiere_pl.data.encode import Encoders, check_out, encode_all, plan, rank_world
    from lumiere_pl.cli.train import inherit_t2i
    from lumiere_pl.data.encoded import encoding_parts, key_of, latent
    from lumiere_pl.data.tar_reader import expand
    from lumiere_pl.parts import build_codec
    from lumiere_pl.text import build_text_encoder

    if a.batch < 1:
        raise InputError(f"--batch {a.batch}: expected an integer >= 1")
    bad = [x for x in extra if x.startswith("-")]
    if bad:
        raise InputError(f"{bad[0]}: not an option of lumiere-shards encode (see --help)")
    cfg = load_config(a.config, [*a.overrides, *extra])
    cfg, _ = inherit_t2i(cfg)                      # as lumiere-train: the folder's VAE, the T2I checkpoint's text
    d = cfg.data
    if d.name != "webdataset":
        raise InputError(f"data.name={d.name}: encode reads webdataset shards; expected data.name=webdataset")
    if latent(cfg) and d.images:
        raise InputError("data.images=true: a latent model's encoded shards hold clips; expected data.images=false")
    check_files(cfg)                                           # the shards and text.path exist, clips long enough
    parts = encoding_parts(cfg)
    key = key_of(parts)
    patterns = [p for p in (d.train_shards, d.val_shards) if p]
    urls: List[str] = [u for p in dict.fromkeys(patterns) for u in expand(p)]
    out = Path(a.out)
    plan(urls, out)                                            # before any model is loaded: what would be written
    check_out(out, key)
    rank, world, local = rank_world()
    device = _device(a.device, local)
    compute = getattr(torch, cfg.model.frozen_dtype)
    storage = compute if a.dtype == "auto" else getattr(torch, a.dtype)
    codec = build_codec(cfg).to(device) if latent(cfg) else None
    text = build_text_encoder(dataclasses.replace(cfg.text, cache_mib=0), compute).to(device)   # no cache: the
    # same captions in a batch give the same bytes whatever was encoded before (processes see different shards)
    enc = Encoders(codec.posterior if codec is not None else None, lambda captions: text(captions), device)
    with torch.no_grad():
        man = encode_all(urls, out, d, enc, key, parts, list(cfg.train.val_prompts), a.batch, storage,
                         cfg.model.frozen_dtype, rank, world)
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    if man is not None:
        skipped = ", ".join(f"{n} {r}" for r, n in man["skipped"].items())
        print(f"encoded {man['samples']} samples in {len(man['shards'])} shards to {out} (key {key}, stored in "
              f"{man['encoded']['storage_dtype']}; manifest: {out / 'manifest.json'})"
              + (f"; samples skipped: {skipped}" if skipped else ""))
        for flag, pattern in (("data.train_shards", d.train_shards), ("data.val_shards", d.val_shards)):
            if pattern:
                print(f"  {flag}={out_pattern(pattern, out)}")
    return 0
