"""Text encoders. ENCODERS maps text.encoder to a builder; build_text_encoder(TextConfig) picks one."""
from __future__ import annotations

from lumiere_pl.text.encoders import HFTextEncoder, TextEncoder, TinyTextEncoder, clip, minilm, t5, tiny

ENCODERS = {"minilm": minilm, "t5": t5, "clip": clip, "tiny": tiny}


def build_text_encoder(cfg) -> TextEncoder:
    """cfg: lumiere_pl.config.TextConfig."""
    return ENCODERS[cfg.encoder](max_length=cfg.max_length, path=cfg.path, dim=cfg.dim, variant=cfg.variant,
                                 cache_mib=cfg.cache_mib)


__all__ = ["ENCODERS", "HFTextEncoder", "TextEncoder", "TinyTextEncoder", "build_text_encoder"]
