"""Text encoders. ENCODERS maps text.encoder to a builder; build_text_encoder(TextConfig) picks one."""
from __future__ import annotations

import torch

from lumiere_pl.text.encoders import HFTextEncoder, TextEncoder, TinyTextEncoder, clip, minilm, t5, tiny

ENCODERS = {"minilm": minilm, "t5": t5, "clip": clip, "tiny": tiny}


def build_text_encoder(cfg, dtype: torch.dtype = torch.float32) -> TextEncoder:
    """cfg: lumiere_pl.config.TextConfig. dtype: the storage dtype of a pretrained encoder's (frozen) weights, read
    straight into it (model.frozen_dtype)."""
    return ENCODERS[cfg.encoder](max_length=cfg.max_length, path=cfg.path, dim=cfg.dim, variant=cfg.variant,
                                 cache_mib=cfg.cache_mib, dtype=dtype)


__all__ = ["ENCODERS", "HFTextEncoder", "TextEncoder", "TinyTextEncoder", "build_text_encoder"]
