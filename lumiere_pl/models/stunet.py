"""Space-Time U-Net (STUNet): a pretrained T2I U-Net inflated explicitly (Lumiere Sec. 3.1).

The T2I network is kept whole as `self.t2i` (its state_dict keys unchanged, frozen by default); the new modules
live in `self.temporal`, keyed by where they run:
  "in{i}_{j}"  after layer j of input block i        "mid_{j}" after layer j of the middle block
  "out{i}_{j}" after layer j of output block i
- after every ResBlock: a TemporalConv (with the pretrained 2D conv: a factorized space-time conv), at every level;
- after each spatial Downsample of a level in `down_levels`: a TemporalDownsample, and the mirror TemporalUpsample
  after the matching spatial Upsample, so the network works on a compact space-time representation;
- after the middle attention (the coarsest level): `attn_layers` stacked TemporalAttention;
- after every ResBlock of a level in `attn_levels`: one more TemporalAttention, keyed "{where}_attn".
Features flow folded, ((b t) c h w), so the T2I layers run unchanged; temporal modules unfold to (b c t h w) and
see a TemporalContext: the T2I's embedding (noise level + pooled text) and the text encoder's tokens.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from lumiere_pl.config import TemporalConfig
from lumiere_pl.models.kernels import time_major
from lumiere_pl.models.layers import (AttentionBlock, Block, BlockContext, Downsample, FrameContexts, ResBlock,
                                      Upsample, zero_)
from lumiere_pl.models.temporal import TemporalContext, TemporalModules, temporal_halvings
from lumiere_pl.models.unet import UNet, check_resolution
from lumiere_pl.utils.tensors import fold_time, unfold_time


class STUNet(nn.Module):
    """forward(x (b c t h w), c_noise (b,), cond) -> (b out t h w). cond as UNet's; "concat" is (b k t h w).

    With cfg.conditional, cond["cond_video"] (b 3 t h w) and cond["cond_mask"] (b 1 t h w) form Lumiere's
    <J, C, M> input; they enter through a new zero-initialised conv added to the pretrained conv_in.
    """

    def __init__(self, t2i: UNet, cfg: TemporalConfig):
        super().__init__()
        self.cfg, self.t2i = cfg, t2i
        self.grad_checkpointing = False      # recompute each block with its temporal modules in backward
        # features kept channels-last, (b t h w c) in memory (False: (b c t h w)); None: by frame size
        # (models/kernels.py: time_major)
        self.time_major: Optional[bool] = None
        ucfg = t2i.cfg
        make = TemporalModules(cfg, t2i.emb_dim, t2i.text_dim, ucfg.head_dim)
        self.temporal = nn.ModuleDict()
        down, attn_levels = set(cfg.down_levels), set(cfg.attn_levels)

        def after_layers(prefix: str, block: Block, level: int) -> None:
            for j, layer in enumerate(block):
                ch, key = _out_channels(layer), f"{prefix}_{j}"
                if isinstance(layer, ResBlock):
                    self.temporal[key] = make.conv(ch)
                    if level in attn_levels:
                        self.temporal[key + "_attn"] = make.attn(ch)
                elif isinstance(layer, Downsample) and layer.level in down:
                    self.temporal[key] = make.down(ch)
                elif isinstance(layer, Upsample) and layer.level in down:
                    self.temporal[key] = make.up(ch)
                elif isinstance(layer, AttentionBlock) and prefix == "mid" and cfg.attn_layers:
                    self.temporal[key] = make.attn(ch, cfg.attn_layers, coarsest=True)

        for prefix, block, level in _walk(t2i):
            after_layers(prefix, block, level)
        self.cond_in = (zero_(nn.Conv2d(4, ucfg.channels, 3, padding=1)) if cfg.conditional else None)
        make.finish(self.temporal)
        make.freeze(self.t2i, SPATIAL_GROUPS)

    @property
    def temporal_halvings(self) -> int:
        return temporal_halvings(self.temporal)

    def check_frames(self, t: int) -> None:
        k = self.temporal_halvings
        if t % 2 ** k:
            raise ValueError(f"{t} frames cannot be halved {k} times (model.temporal.down_levels="
                             f"{list(self.cfg.down_levels)}); use a multiple of {2 ** k}")

    def _run(self, prefix: str, block: Block, h: Tensor, t: int, ctxs: FrameContexts,
             tctx: TemporalContext) -> tuple[Tensor, int]:
        """One block of the T2I with the temporal modules after its layers; with grad_checkpointing, its activations
        are recomputed in backward instead of kept (model.checkpointing)."""
        ctx = ctxs[t]        # outside the recomputed region; t changes only after a block's last layer (resampling)
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(self._layers, prefix, block, h, t, ctx, tctx, use_reentrant=False)
        return self._layers(prefix, block, h, t, ctx, tctx)

    def _layers(self, prefix: str, block: Block, h: Tensor, t: int, ctx: BlockContext,
                tctx: TemporalContext) -> tuple[Tensor, int]:
        for j, layer in enumerate(block):
            h = layer(h, ctx)                                      # ((b t) c h w), pretrained 2D layer
            for key in (f"{prefix}_{j}", f"{prefix}_{j}_attn"):
                if key in self.temporal:
                    v = self.temporal[key](unfold_time(h, t), tctx)   # (b c t' h w)
                    h, t = fold_time(v), v.shape[2]
        return h, t

    def forward(self, x: Tensor, c_noise: Tensor, cond: dict) -> Tensor:
        if x.ndim != 5:
            raise ValueError(f"STUNet expects videos (b c t h w), got shape {tuple(x.shape)}")
        b, _, t, hh, ww = x.shape
        self.check_frames(t)
        check_resolution(self.t2i, hh, ww)
        if self.uses_time_major(hh * ww):    # (b t h w c) in memory: fold / unfold below are views, no copies
            x = x.contiguous(memory_format=torch.channels_last_3d)
        ctx = self.t2i.context(c_noise, cond)
        ctxs = FrameContexts(ctx)
        tctx = TemporalContext(emb=ctx.emb, text=cond["text"], text_mask=cond.get("text_mask"))
        frames_cond = {k: fold_time(v) if isinstance(v, Tensor) and v.ndim == 5 else v for k, v in cond.items()}
        h = self.t2i.conv_in(self.t2i.input(fold_time(x), frames_cond))          # ((b t) ch h w)
        if self.cond_in is not None:
            cm = torch.cat([cond["cond_video"], cond["cond_mask"]], dim=1)       # (b 4 t h w)
            h = h + self.cond_in(fold_time(cm.to(h.dtype)))
        skips: List[tuple[Tensor, int]] = [(h, t)]
        for i, block in enumerate(self.t2i.input_blocks):
            h, t = self._run(f"in{i}", block, h, t, ctxs, tctx)
            skips.append((h, t))
        h, t = self._run("mid", self.t2i.middle_block, h, t, ctxs, tctx)       # coarsest: (b*T/2^k, C, ...)
        for i, block in enumerate(self.t2i.output_blocks):
            skip, t_skip = skips.pop()
            assert t_skip == t, f"skip at {t_skip} frames meets features at {t} frames"
            h, t = self._run(f"out{i}", block, torch.cat([h, skip], dim=1), t, ctxs, tctx)
        return unfold_time(self.t2i.out(h), t)                                  # (b out t h w)

    def uses_time_major(self, pixels: int) -> bool:
        """Whether frames of `pixels` (h w) run time-major (self.time_major, or by size when it is None)."""
        return time_major(pixels, self.time_major)

    def coarsest_frames(self, t: int) -> int:
        return t // 2 ** self.temporal_halvings


def _walk(t2i: UNet) -> Iterator[Tuple[str, Block, int]]:
    """(key prefix, block, resolution level) for every block of the U-Net, in forward order."""
    level = 0
    for i, block in enumerate(t2i.input_blocks):
        yield f"in{i}", block, level
        level += any(isinstance(layer, Downsample) for layer in block)
    yield "mid", t2i.middle_block, level
    for i, block in enumerate(t2i.output_blocks):
        yield f"out{i}", block, level
        level -= any(isinstance(layer, Upsample) for layer in block)


def _text_layers(t2i: UNet) -> List[nn.Module]:
    """The layers that carry the caption into the T2I: text projection and pooling, every cross-attention."""
    blocks = [m for m in t2i.modules() if isinstance(m, AttentionBlock)]
    return [t2i.text_proj, t2i.text_pool] + [m for b in blocks for m in (b.norm2, b.cross_attn)]


SPATIAL_GROUPS: Dict[str, Callable[[UNet], List[nn.Module]]] = {
    "text": _text_layers,        # model.temporal.unfreeze=[text]: the T2I's text conditioning trains too
}


def _out_channels(layer: nn.Module) -> int:
    if isinstance(layer, ResBlock):
        return layer.out_ch
    if isinstance(layer, (Downsample, Upsample)):
        return layer.conv.out_channels
    if isinstance(layer, AttentionBlock):
        return layer.norm1.normalized_shape[0]
    raise TypeError(f"unknown U-Net layer {type(layer).__name__}")
