"""Building blocks of the pixel-space T2I U-Net (Imagen-like). Every block has the signature block(x, ctx).

x: (b c h w). ctx: BlockContext holding the noise/text embedding `emb` (b d) and the text tokens (b L d), mask (b L).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lumiere_pl.models.kernels import group_norm


@dataclass
class BlockContext:
    emb: Tensor                      # (b, emb_dim) noise level + pooled text
    text: Tensor                     # (b, L, ctx_dim) projected text tokens
    text_mask: Optional[Tensor]      # (b, L) bool, True = real token

    def repeat(self, t: int) -> "BlockContext":
        """The same context for every frame: batch b -> (b t), frame-major within a clip (matches fold_time)."""
        rep = lambda x: None if x is None else x.repeat_interleave(t, dim=0)  # noqa: E731
        return BlockContext(rep(self.emb), rep(self.text), rep(self.text_mask))


class FrameContexts:
    """Per-frame-count cache of BlockContext.repeat, so the repeat is paid once per temporal resolution."""

    def __init__(self, ctx: BlockContext):
        self.ctx = ctx
        self._cache: Dict[int, BlockContext] = {}

    def __getitem__(self, t: int) -> BlockContext:
        if t not in self._cache:
            self._cache[t] = self.ctx.repeat(t)
        return self._cache[t]


def timestep_embedding(c: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of a per-sample scalar: (b,) -> (b, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=c.device, dtype=torch.float32) / half)
    args = c.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm (same parameters, same state_dict) by the CPU's channels-last path where it applies
    (lumiere_pl/models/kernels.py)."""

    def forward(self, x: Tensor) -> Tensor:
        return group_norm(x, self)


def norm(ch: int) -> nn.GroupNorm:
    return GroupNorm(min(32, ch // 4) if ch % 32 else 32, ch, eps=1e-6)


def zero_(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """Residual conv block with scale-shift conditioning on the embedding (Dhariwal & Nichol 2021)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.in_ch, self.out_ch = in_ch, out_ch
        self.norm1, self.conv1 = norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2, self.dropout = norm(out_ch), nn.Dropout(dropout)
        self.conv2 = zero_(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, ctx: BlockContext) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))                          # (b co h w)
        scale, shift = self.emb_proj(F.silu(ctx.emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head attention of query tokens over key tokens (self-attention when kv is None)."""

    def __init__(self, dim: int, head_dim: int, kv_dim: Optional[int] = None):
        super().__init__()
        self.heads = max(1, dim // head_dim)
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim, bias=False)
        self.out = zero_(nn.Linear(dim, dim))

    def forward(self, x: Tensor, kv: Optional[Tensor] = None, mask: Optional[Tensor] = None) -> Tensor:
        b, n, d = x.shape
        kv = x if kv is None else kv
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)                # (b heads n dh)
        k, v = self.kv(kv).view(b, kv.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn_mask = None if mask is None else mask[:, None, None, :]             # (b 1 1 L)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)         # (b heads n dh)
        return self.out(o.transpose(1, 2).reshape(b, n, d))


class AttentionBlock(nn.Module):
    """Spatial self-attention, then cross-attention to the text tokens, then an MLP; all residual."""

    def __init__(self, ch: int, head_dim: int, ctx_dim: int):
        super().__init__()
        self.norm1, self.self_attn = nn.LayerNorm(ch), Attention(ch, head_dim)
        self.norm2, self.cross_attn = nn.LayerNorm(ch), Attention(ch, head_dim, kv_dim=ctx_dim)
        self.norm3 = nn.LayerNorm(ch)
        self.mlp = nn.Sequential(nn.Linear(ch, 4 * ch), nn.GELU(), zero_(nn.Linear(4 * ch, ch)))

    def forward(self, x: Tensor, ctx: BlockContext) -> Tensor:
        b, c, h, w = x.shape
        tok = x.flatten(2).transpose(1, 2)                                       # (b hw c)
        tok = tok + self.self_attn(self.norm1(tok))
        tok = tok + self.cross_attn(self.norm2(tok), ctx.text, ctx.text_mask)
        tok = tok + self.mlp(self.norm3(tok))
        return tok.transpose(1, 2).reshape(b, c, h, w)


class Downsample(nn.Module):
    """Strided 3x3 conv: halves h and w. `level` is the resolution level it leaves."""

    def __init__(self, ch: int, level: int):
        super().__init__()
        self.level, self.conv = level, nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: Tensor, ctx: BlockContext) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then 3x3 conv. `level` is the resolution level it arrives at."""

    def __init__(self, ch: int, level: int):
        super().__init__()
        self.level, self.conv = level, nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor, ctx: BlockContext) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Block(nn.ModuleList):
    """A sequence of layers applied in order, each as layer(x, ctx); one skip connection per Block."""

    def forward(self, x: Tensor, ctx: BlockContext) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, ctx)
        return x
