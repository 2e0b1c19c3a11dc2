"""Encoded shards: the VAE posterior of every clip and its caption's token states, written by `lumiere-shards encode`
(lumiere_pl/data/encode.py) beside the pixel shards they come from, read back by the same DataModule.

Format. Output shard i is input shard i (the same file name, in the output folder), each sample keeping its key.
A latent model (a diffusers_stunet with a VAE: Stable Diffusion) stores in place of the video:
  {key}.latent.safetensors   "mean", "logvar" (c t h w): the VAE posterior of the clip, unscaled (training draws
                             the latent from it: LatentCodec.sample); "text" (L d), "text_mask" (L,) bool: the text
                             encoder's per-token states of the caption; metadata {"key": the cache key}
  {key}.txt, {key}.json      the caption, and the source sample's metadata when it had one
A pixel model (DeepFloyd IF, our own STUNet) keeps every member of the sample (its video is decoded, cropped and
augmented as before) and adds the caption's states: {key}.text.safetensors ("text", "text_mask"; the key).
  manifest.json              {"encoded": {"key", "parts", "storage_dtype", "compute_dtype", "prompts"}, "shards":
                             [{"file", "samples", "source"}], "samples", "skipped", ...}: the counts the DataModule
                             needs; its "settings" hold no size or rate (the key says them)
  prompts.safetensors        the null caption's encoding and train.val_prompts' (lumiere_pl/text/cached.py)
Safetensors and JSON only: nothing is unpickled.

The key: the first 16 hex digits of the SHA-256 of its parts, a JSON object (a pixel model's: text alone):
  vae            the VAE's config.json (keys starting with "_" left out: versions, paths) and the SHA-256 of its
                 weights as loaded: each safetensors file read (the single file, or the index and every shard it
                 names; model.diffusers.variant's), streamed as name, size, bytes
  text           the encoder (text.encoder), text.max_length; for a pretrained encoder its config.json, the SHA-256 of
                 its safetensors weights (as above) and of its tokenizer files; for `tiny`, text.dim
  preprocessing  data.size, data.frames, data.fps, and the view: start and crop centred (the validation view)
The precision the encoders ran in and the storage dtype are recorded beside the key, not in it.
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from lumiere_pl.data.config import DataConfig
from lumiere_pl.data.health import SkipCounter
from lumiere_pl.data.tar_reader import MANIFEST, expand
from lumiere_pl.errors import InputError
from lumiere_pl.text.cached import PROMPTS_FILE

ENCODED_MEMBER = "latent.safetensors"           # the member extension of a latent model's encoded sample
TEXT_MEMBER = "text.safetensors"                # the member a pixel model's encoded sample adds to its video
VIEW = {"start": "centre", "crop": "centre"}    # the view encoded: lumiere_pl.data.sample_decode with view=None
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "vocab.txt", "spiece.model", "sentencepiece.bpe.model")
CHUNK = 16 * 2 ** 20                            # bytes read at a time while hashing weights


# ---------------------------------------------------------------------------------------------------------------------
# reading encoded samples


def safetensors_metadata(data: bytes) -> Dict[str, str]:
    """The "__metadata__" of safetensors bytes (an 8-byte little-endian header length, then a JSON header)."""
    if len(data) < 8:
        raise ValueError("shorter than a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError("its header length exceeds the data")
    return dict(json.loads(data[8:8 + n].decode("utf-8")).get("__metadata__") or {})


def _stored(raw: Dict[str, object], member: str, names: set, cfg: DataConfig, skips: SkipCounter) -> Optional[dict]:
    """The tensors of an encoded member, checked: readable, holding `names`, of the run's key (data.encoded)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    key, url = str(raw["__key__"]), str(raw["__url__"])
    data = bytes(raw[member])
    try:
        meta = safetensors_metadata(data)
        tensors = load(data)
        missing = sorted(names - set(tensors))
        if missing:
            raise ValueError(f"no tensor {missing[0]}")
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        skips.add("bad_encoding", url, key, str(err))
        return None
    if cfg.encoded and meta.get("key") != cfg.encoded:
        skips.add("bad_encoding", url, key, f"encoded with key {meta.get('key')}, the run's is {cfg.encoded}")
        return None
    return tensors


def decode_text(raw: Dict[str, object], cfg: DataConfig, skips: SkipCounter) -> Optional[Dict[str, object]]:
    """A pixel model's stored caption states: {"text": (L d), "text_mask": (L,)}, or None (skipped and counted)."""
    tensors = _stored(raw, TEXT_MEMBER, {"text", "text_mask"}, cfg, skips)
    return None if tensors is None else {"text": tensors["text"], "text_mask": tensors["text_mask"].bool()}


def decode_encoded(raw: Dict[str, object], cfg: DataConfig, skips: SkipCounter) -> Optional[Dict[str, object]]:
    """One raw sample of an encoded shard -> {"latent_mean", "latent_logvar": (c t h w), "text": (L d), "text_mask":
    (L,), "caption", "key", "label"}, or None (skipped and counted: unreadable, or of another key than data.encoded)."""
    key, url = str(raw["__key__"]), str(raw["__url__"])
    tensors = _stored(raw, ENCODED_MEMBER, {"mean", "logvar", "text", "text_mask"}, cfg, skips)
    if tensors is None:
        return None
    if "txt" not in raw:
        skips.add("no_caption", url, key)
        return None
    try:
        caption = bytes(raw["txt"]).decode("utf-8").strip()
        label = json.loads(bytes(raw["json"]).decode("utf-8")).get("label", -1) if "json" in raw else -1
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        skips.add("bad_caption", url, key, str(err))
        return None
    return {"latent_mean": tensors["mean"], "latent_logvar": tensors["logvar"], "text": tensors["text"],
            "text_mask": tensors["text_mask"].bool(), "caption": caption, "key": key,
            "label": int(label) if label is not None else -1}


# ---------------------------------------------------------------------------------------------------------------------
# manifests


def _local(url: str) -> Optional[Path]:
    if ":" in url.split("/")[0] and not url.startswith("file:"):
        return None                                         # a remote URL
    return Path(url[len("file:"):] if url.startswith("file:") else url)


def read_encoded(pattern: str) -> Optional[Tuple[Path, dict]]:
    """(folder, the manifest's "encoded" section) of the local shards of `pattern`; None for pixel shards (or no
    manifest). InputError when the pattern mixes encoded and pixel shards, or shards of two keys."""
    found: Dict[Path, Optional[dict]] = {}
    try:
        urls = expand(pattern)
    except ValueError:
        return None                                         # names no shards: lumiere-train's check_files says so
    for url in urls:
        path = _local(url)
        if path is None or path.parent / MANIFEST in found:
            continue
        man = path.parent / MANIFEST
        try:
            found[man] = json.loads(man.read_text()).get("encoded") if man.is_file() else None
        except (OSError, ValueError, AttributeError) as err:
            raise InputError(f"{man}: not a readable manifest ({err}); expected the manifest.json of lumiere-shards")
    kinds = {(m.parent, (e or {}).get("key")) for m, e in found.items()}
    if len({k for _, k in kinds}) > 1:
        keys = ", ".join(f"{d}: {k or 'pixels'}" for d, k in sorted(kinds, key=str))
        raise InputError(f"shards {pattern!r} mix {keys}; expected the shards of one encoding (or pixel shards only)")
    for man, enc in found.items():
        if enc is not None:
            return man.parent, enc
    return None


def encoded_prompts(cfg: DataConfig) -> Path:
    """The prompts file of the encoded shards in data.train_shards."""
    found = read_encoded(str(cfg.train_shards)) if cfg.train_shards else None
    if found is None:
        raise InputError(f"data.encoded={cfg.encoded}: data.train_shards={cfg.train_shards!r} are not encoded shards "
                         f"(no manifest.json with an 'encoded' section beside them); expected the output of "
                         f"lumiere-shards encode, or data.encoded=null")
    folder, enc = found
    return folder / str(enc.get("prompts", PROMPTS_FILE))


# ---------------------------------------------------------------------------------------------------------------------
# the key


def sha256_files(folder: Path, names: List[str]) -> str:
    """SHA-256 over the named files of a folder, in order: each file's name, size and bytes, streamed."""
    h = hashlib.sha256()
    for name in names:
        path = folder / name
        h.update(name.encode("utf-8") + b"\0" + struct.pack("<Q", path.stat().st_size))
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    return h.hexdigest()


def _config(path: Path) -> dict:
    try:
        c = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read {path}: {err}") from None
    return {k: v for k, v in c.items() if not k.startswith("_") and k != "transformers_version"}


def _text_weights(model_dir: Path, variant: Optional[str]) -> List[str]:
    """The safetensors files transformers loads from a text encoder folder (the one file, or the index and its
    shards)."""
    single = f"model.{variant}.safetensors" if variant else "model.safetensors"
    if (model_dir / single).is_file():
        return [single]
    index = f"model.safetensors.index.{variant}.json" if variant else "model.safetensors.index.json"
    if not (model_dir / index).is_file():
        raise InputError(f"{model_dir}: no {single} nor {index}; expected the text encoder's safetensors weights")
    shards = sorted(set(json.loads((model_dir / index).read_text()).get("weight_map", {}).values()))
    bad = [s for s in shards if Path(s).name != s or not (model_dir / s).is_file()]
    if bad:
        raise InputError(f"{model_dir / index}: names {bad[0]!r}, which is not a file of {model_dir}")
    return [index, *shards]


def text_part(text) -> dict:
    """The text encoder's part of the key (text: lumiere_pl.config.TextConfig)."""
    if text.encoder == "tiny":
        return {"encoder": "tiny", "dim": text.dim, "max_length": text.max_length}
    from lumiere_pl.text.encoders import minilm_path, model_folders

    model_dir, tok_dir = model_folders(text.path or (minilm_path() if text.encoder == "minilm" else ""))
    tokenizer = [n for n in TOKENIZER_FILES if (tok_dir / n).is_file()]
    return {"encoder": text.encoder, "max_length": text.max_length, "config": _config(model_dir / "config.json"),
            "weights": sha256_files(model_dir, _text_weights(model_dir, text.variant)),
            "tokenizer": sha256_files(tok_dir, tokenizer)}


def latent(cfg) -> bool:
    """Whether cfg's model denoises VAE latents (a diffusers_stunet whose model.diffusers.vae is resolved)."""
    return cfg.model.name == "diffusers_stunet" and bool(cfg.model.diffusers.vae)


def encoding_parts(cfg) -> dict:
    """The parts of the key of encodings made with cfg (model.diffusers.vae resolved): a latent model's VAE, text
    encoder and preprocessing; a pixel model's text encoder alone."""
    from lumiere_pl.models.diffusers_folder import weight_files

    m, d = cfg.model, cfg.data
    if not latent(cfg):
        return {"text": text_part(cfg.text)}
    vae = Path(m.diffusers.vae)
    return {"vae": {"config": _config(vae / "config.json"),
                    "weights": sha256_files(vae, weight_files(vae, m.diffusers.variant))},
            "text": text_part(cfg.text),
            "preprocessing": {"size": d.size, "frames": d.frames, "fps": float(d.fps), **VIEW}}


def key_of(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def differences(a: dict, b: dict, prefix: str = "") -> List[str]:
    """'text.max_length (77 vs 32)' for each leaf where two key parts differ (hashes shortened)."""
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += differences(x, y, f"{prefix}{k}.")
        elif x != y:
            short = lambda v: v[:12] if isinstance(v, str) and len(v) == 64 else json.dumps(v)[:40]  # noqa: E731
            out.append(f"{prefix}{k} ({short(x)} vs {short(y)})")
    return out


def check_encoded(cfg) -> List[str]:
    """lumiere-train: whether the run trains from encoded shards, checked before anything is built. Encoded shards
    (their manifest.json says so) must carry the key of the run's config (else InputError, one line naming both keys
    and what differs), hold the run's val prompts, and be the train and the val shards both; then data.encoded is set
    to the key (a latent model's: data.augment to false). Returns the notes to print."""
    d = cfg.data
    if d.name != "webdataset":
        if d.encoded:
            raise InputError(f"data.encoded={d.encoded}: encoded shards are read by data.name=webdataset (got {d.name})")
        return []
    train = read_encoded(d.train_shards) if d.train_shards else None
    val = read_encoded(d.val_shards) if d.val_shards else None
    if train is None and val is None:
        if d.encoded:
            encoded_prompts(d)                                       # raises: not encoded shards
        return []
    if train is None or (d.val_shards and val is None):
        raise InputError(f"data.train_shards are {'encoded' if train else 'pixel'} shards and data.val_shards "
                         f"{'encoded' if val else 'pixel'} shards; expected both encoded with one key (lumiere-shards "
                         f"encode writes both), or both pixel shards")
    folder, enc = train
    if val is not None and val[1].get("key") != enc.get("key"):
        raise InputError(f"data.train_shards ({folder}) are encoded with key {enc.get('key')}, data.val_shards "
                         f"({val[0]}) with {val[1].get('key')}; expected one encoding")
    if latent(cfg) and cfg.model.temporal.conditional:
        raise InputError("model.temporal.conditional=true builds <C, M> from each clip's pixels, which a latent "
                         "model's encoded shards do not hold; train it on the pixel shards")
    parts = encoding_parts(cfg)
    key = key_of(parts)
    if enc.get("key") != key:
        diff = differences(enc.get("parts") or {}, parts)
        raise InputError(f"data.train_shards ({folder}) are encoded with key {enc.get('key')}, the run's config gives "
                         f"{key}: {', '.join(diff[:3]) or 'their parts differ'} (shards vs run); encode them again "
                         f"with this config (lumiere-shards encode --config ... --out NEW_FOLDER), or train on the "
                         f"pixel shards")
    if d.encoded and d.encoded != key:
        raise InputError(f"data.encoded={d.encoded}, but the shards and the run's config give key {key}; expected "
                         f"data.encoded={key} (or null: lumiere-train sets it)")
    prompts = folder / str(enc.get("prompts", PROMPTS_FILE))
    from lumiere_pl.text.cached import read_prompts

    held = read_prompts(prompts)
    missing = [p for p in cfg.train.val_prompts if p not in held]
    if missing:
        raise InputError(f"train.val_prompts: {missing[0]!r} has no stored encoding in {prompts} (the run loads no "
                         f"text encoder); run lumiere-shards encode again with this config: it adds the prompts and "
                         f"skips the shards already encoded")
    notes = []
    if latent(cfg) and d.augment:
        notes.append("note: data.augment=false: encoded shards hold one view of each clip (centred start and crop)")
        d.augment = False
    d.encoded = key
    notes.append(f"training from encoded shards {folder} (key {key}, stored in {enc.get('storage_dtype')}): no text "
                 f"encoder{' and no VAE encoder are' if latent(cfg) else ' is'} loaded")
    return notes
