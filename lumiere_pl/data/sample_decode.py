"""One raw WebDataset sample (bytes) -> one training example of the batch contract, or None (skipped and counted).

Example: {"pixels": float32 in [-1, 1], (c t h w), or (c h w) in image mode; "caption": str; "key": str;
"label": int (-1 when the sample has none)}; from encoded shards "latent_mean", "latent_logvar", "text", "text_mask"
in place of "pixels" (lumiere_pl/data/encoded.py).
"""
from __future__ import annotations

import json
from typing import Dict, Optional

import numpy as np

from lumiere_pl.data.config import DataConfig, data_limits
from lumiere_pl.data.encoded import ENCODED_MEMBER, TEXT_MEMBER, decode_encoded, decode_text
from lumiere_pl.data.health import SkipCounter
from lumiere_pl.data.video_io import VIDEO_EXTS, VideoError, clip_at, clip_start, crop, decode, probe
from lumiere_pl.utils.video import from_uint8


def _video_member(raw: Dict[str, object]) -> Optional[str]:
    for ext in VIDEO_EXTS:
        if ext in raw:
            return ext
    return None


def _frames(data: bytes, cfg: DataConfig, n: int, src_fps: float, rng: Optional[np.random.Generator], lim):
    """(t h w c), short side cfg.size: one frame (image mode: random, or the middle one for validation), or a clip
    of cfg.frames re-timed to cfg.fps by eval/decode.py's rule from a random (train) or the centred (val) start."""
    if cfg.images:
        return decode(data, [int(rng.integers(n)) if rng is not None else n // 2], cfg.size, lim=lim)
    fps = cfg.fps if cfg.fps > 0 else None
    nominal = src_fps if src_fps > 0 else (fps or 1.0)
    last = clip_start(n, nominal, fps or nominal, cfg.frames, n)            # the last start whose clip fits
    start = int(rng.integers(last + 1)) if rng is not None else last // 2
    frames, _ = clip_at(data, start, cfg.frames, fps, short_side=cfg.size, lim=lim)
    return frames


def decode_sample(raw: Dict[str, object], cfg: DataConfig, rng: Optional[np.random.Generator],
                  skips: SkipCounter) -> Optional[Dict[str, object]]:
    """rng: training randomness (start frame, crop); None: the fixed validation view (centred). A sample of encoded
    shards (lumiere-shards encode, lumiere_pl/data/encoded.py) gives its stored encodings: a latent model's in place of
    pixels, a pixel model's caption states ("text", "text_mask") beside its pixels."""
    if ENCODED_MEMBER in raw:
        return decode_encoded(raw, cfg, skips)
    stored = decode_text(raw, cfg, skips) if TEXT_MEMBER in raw else {}
    if stored is None:
        return None
    ex = _decode_pixels(raw, cfg, rng, skips)
    return {**ex, **stored} if ex is not None else None


def _decode_pixels(raw: Dict[str, object], cfg: DataConfig, rng: Optional[np.random.Generator],
                   skips: SkipCounter) -> Optional[Dict[str, object]]:
    key, url = str(raw["__key__"]), str(raw["__url__"])
    ext = _video_member(raw)
    if ext is None:
        skips.add("no_video", url, key, f"members: {sorted(k for k in raw if not k.startswith('__'))}")
        return None
    if "txt" not in raw:
        skips.add("no_caption", url, key)
        return None
    try:
        caption = bytes(raw["txt"]).decode("utf-8").strip()
    except UnicodeDecodeError as err:
        skips.add("bad_caption", url, key, f"caption is not UTF-8: {err}")
        return None
    meta: Dict[str, object] = {}
    if "json" in raw:
        try:
            meta = json.loads(bytes(raw["json"]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            skips.add("bad_json", url, key, str(err))
            return None
    data = bytes(raw[ext])
    if not data:
        skips.add("empty_video", url, key)
        return None
    lim = data_limits(cfg)
    try:
        info = probe(data, lim)
        n = info.frames or int(meta.get("frames", 0) or 0)
        fps = info.fps or float(meta.get("fps", 0) or 0)
        if n <= 0:
            raise VideoError("frame count unknown (neither the container nor the .json says)")
        frames = _frames(data, cfg, n, fps, rng, lim)                       # (t h w c), short side = size
        frames = crop(frames, cfg.size, rng)                                # (t s s c): random (train) or centre
    except VideoError as err:
        reason = "short_clip" if "too short" in str(err) else "corrupt_video"
        skips.add(reason, url, key, str(err))
        return None
    pixels = from_uint8(frames)                                         # (c t h w) in [-1, 1]
    if cfg.images:
        pixels = pixels[:, 0]                                               # (c h w)
    label = meta.get("label", -1)
    return {"pixels": pixels, "caption": caption, "key": key, "label": int(label) if label is not None else -1}
