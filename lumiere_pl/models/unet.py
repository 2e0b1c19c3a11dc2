"""The pixel-space text-to-image U-Net (Imagen-like), the network Lumiere's STUNet is inflated from."""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from lumiere_pl.config import UNetConfig
from lumiere_pl.models.layers import (AttentionBlock, Block, BlockContext, Downsample, ResBlock, Upsample, norm,
                                      timestep_embedding, zero_)


class UNet(nn.Module):
    """T2I U-Net: forward(x (b c h w), c_noise (b,), cond) -> (b out_channels h w).

    cond: "text" (b L text_dim), "text_mask" (b L) bool; optional "concat" (b cond_channels h w) concatenated to x,
    optional "aug_noise" (b,) a second noise level (SSR conditioning augmentation) embedded like c_noise.
    """

    def __init__(self, cfg: UNetConfig, text_dim: int):
        super().__init__()
        self.cfg, self.text_dim = cfg, text_dim
        self.grad_checkpointing = False      # recompute each Block in backward (model.checkpointing)
        ch, mults = cfg.channels, list(cfg.channel_mults)
        emb_dim = 4 * ch
        self.emb_dim = emb_dim
        self.time_embed = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.aug_embed = (nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), zero_(nn.Linear(emb_dim, emb_dim)))
                          if cfg.aug_embedding else None)
        ctx_dim = ch * max(mults)
        self.text_proj = nn.Linear(text_dim, ctx_dim)                    # tokens for cross-attention
        self.text_pool = nn.Linear(text_dim, emb_dim)                    # masked mean, added to emb (Imagen)
        self.conv_in = nn.Conv2d(cfg.in_channels + cfg.cond_channels, ch, 3, padding=1)

        # down path: one Block per skip connection
        self.input_blocks = nn.ModuleList()
        skip_chs: List[int] = [ch]
        cur = ch
        for level, mult in enumerate(mults):
            for _ in range(cfg.num_res_blocks):
                layers: List[nn.Module] = [ResBlock(cur, ch * mult, emb_dim, cfg.dropout)]
                cur = ch * mult
                if level in cfg.attn_levels:
                    layers.append(AttentionBlock(cur, cfg.head_dim, ctx_dim))
                self.input_blocks.append(Block(layers))
                skip_chs.append(cur)
            if level < len(mults) - 1:
                self.input_blocks.append(Block([Downsample(cur, level)]))
                skip_chs.append(cur)

        self.middle_block = Block([ResBlock(cur, cur, emb_dim, cfg.dropout), AttentionBlock(cur, cfg.head_dim, ctx_dim),
                                   ResBlock(cur, cur, emb_dim, cfg.dropout)])

        # up path: each Block consumes one skip
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(cur + skip_chs.pop(), ch * mult, emb_dim, cfg.dropout)]
                cur = ch * mult
                if level in cfg.attn_levels:
                    layers.append(AttentionBlock(cur, cfg.head_dim, ctx_dim))
                if level > 0 and i == cfg.num_res_blocks:
                    layers.append(Upsample(cur, level - 1))
                self.output_blocks.append(Block(layers))
        self.out = nn.Sequential(norm(cur), nn.SiLU(), zero_(nn.Conv2d(cur, cfg.out_channels, 3, padding=1)))

    @property
    def levels(self) -> int:
        return len(self.cfg.channel_mults)

    def context(self, c_noise: Tensor, cond: dict) -> BlockContext:
        """Embeddings shared by all blocks: noise level (+ aug level) + pooled text; projected text tokens."""
        text, mask = cond["text"], cond.get("text_mask")                 # (b L d), (b L)
        if text.shape[-1] != self.text_dim:
            raise ValueError(f"text embeddings have width {text.shape[-1]}, the U-Net expects {self.text_dim}")
        emb = self.time_embed(timestep_embedding(c_noise, self.cfg.channels))
        if self.aug_embed is not None:
            aug = cond.get("aug_noise", torch.zeros_like(c_noise))
            emb = emb + self.aug_embed(timestep_embedding(aug, self.cfg.channels))
        w = mask.unsqueeze(-1).to(text.dtype) if mask is not None else torch.ones_like(text[..., :1])
        pooled = (text * w).sum(1) / w.sum(1).clamp_min(1.0)             # (b d)
        emb = emb + self.text_pool(pooled)
        return BlockContext(emb=emb, text=self.text_proj(text), text_mask=mask)

    def input(self, x: Tensor, cond: dict) -> Tensor:
        """x with the conditioning channels appended, checked against the config."""
        extra: Optional[Tensor] = cond.get("concat")
        if self.cfg.cond_channels:
            if extra is None or extra.shape[1] != self.cfg.cond_channels:
                got = None if extra is None else tuple(extra.shape)
                raise ValueError(f"cond['concat'] must have {self.cfg.cond_channels} channels, got {got}")
            x = torch.cat([x, extra.to(x.dtype)], dim=1)
        return x

    def forward(self, x: Tensor, c_noise: Tensor, cond: dict) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"UNet expects images (b c h w), got shape {tuple(x.shape)}; use STUNet for videos")
        check_resolution(self, x.shape[-2], x.shape[-1])
        ctx = self.context(c_noise, cond)
        h = self.conv_in(self.input(x, cond))                              # (b ch h w)
        skips = [h]
        for block in self.input_blocks:
            h = self._block(block, h, ctx)
            skips.append(h)
        h = self._block(self.middle_block, h, ctx)                         # (b C h/2^k w/2^k)
        for block in self.output_blocks:
            h = self._block(block, torch.cat([h, skips.pop()], dim=1), ctx)
        return self.out(h)                                                 # (b out h w)

    def _block(self, block: Block, h: Tensor, ctx: BlockContext) -> Tensor:
        """One Block; with grad_checkpointing its activations are recomputed in backward instead of kept."""
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, h, ctx, use_reentrant=False)
        return block(h, ctx)


def check_resolution(unet: UNet, h: int, w: int) -> None:
    k = unet.levels - 1
    if h % 2 ** k or w % 2 ** k:
        raise ValueError(f"resolution {h}x{w} cannot be halved {k} times by this U-Net; use a multiple of {2 ** k}")

