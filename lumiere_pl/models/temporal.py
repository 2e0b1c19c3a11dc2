"""The new temporal modules Lumiere interleaves into a pretrained T2I U-Net (Sec. 3.1 and appendix).

Every module is called as module(x, ctx): x is (b c t h w), ctx a TemporalContext holding what the module may
condition on (the backbone's noise-level embedding, the text tokens). All are the identity at initialisation, whatever
their options, so an inflated STUNet given a video whose frames are all one image returns the T2I U-Net's output on
that image, on every frame.

TemporalModules builds them from model.temporal for any backbone (our U-Net, diffusers' U-Nets): one place decides
what an option means.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lumiere_pl.config import TemporalConfig
from lumiere_pl.models.kernels import is_channels_last, time_conv
from lumiere_pl.models.layers import Attention, norm, zero_


@dataclass
class TemporalContext:
    """Per-clip conditioning of the temporal modules; each module uses what its options ask for."""
    emb: Optional[Tensor] = None         # (b, emb_dim) the backbone's noise-level embedding (+ pooled text, ours)
    text: Optional[Tensor] = None        # (b, L, text_dim) the text encoder's tokens
    text_mask: Optional[Tensor] = None   # (b, L) bool, True = real token


class TimeConv(nn.Conv2d):
    """1D convolution over t of a (b c t h w) tensor, as a (k, 1) Conv2d over the (b c t (h w)) view: several times
    faster on the CPU than the equivalent Conv3d with a (k, 1, 1) kernel (its training path: models/kernels.py)."""

    def __init__(self, ch: int, kernel: int = 3, stride: int = 1):
        super().__init__(ch, ch, (kernel, 1), stride=(stride, 1), padding=(kernel // 2, 0))

    def forward(self, x: Tensor) -> Tensor:                        # (b c t h w) -> (b c t' h w)
        b, c, t, h, w = x.shape
        tm = is_channels_last(x)
        y = time_conv(x.reshape(b, c, t, h * w), self, tm)        # (b c t' s)
        if tm:                                   # time-major in, time-major out (a strided conv may return (b c t s))
            y = y.contiguous(memory_format=torch.channels_last)
        return y.reshape(b, y.shape[1], y.shape[2], h, w)


def _identity_(conv: TimeConv) -> TimeConv:
    """Centre tap the identity matrix, bias 0: y[t] = x[t * stride]."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[:, :, conv.kernel_size[0] // 2, 0] = torch.eye(conv.out_channels, conv.in_channels)
    return conv


class TemporalConv(nn.Module):
    """Residual 1D temporal conv block; zero-initialised output projection (identity at init).

    With the pretrained 2D conv that precedes it, a factorized space-time convolution. emb_dim > 0: the second
    norm is scaled and shifted by the backbone's embedding (noise level), as Video LDM's time-conditioned
    temporal ResBlocks; the block stays the identity at init because its output conv is zero.
    """

    def __init__(self, ch: int, kernel: int = 3, emb_dim: int = 0):
        super().__init__()
        self.norm1, self.conv1 = norm(ch), TimeConv(ch, kernel)
        self.emb_proj = nn.Linear(emb_dim, 2 * ch) if emb_dim else None
        self.norm2, self.conv2 = norm(ch), zero_(TimeConv(ch, kernel))

    def forward(self, x: Tensor, ctx: TemporalContext) -> Tensor:   # (b c t h w)
        h = self.norm2(self.conv1(F.silu(self.norm1(x))))
        if self.emb_proj is not None:
            scale, shift = self.emb_proj(F.silu(ctx.emb))[:, :, None, None, None].chunk(2, dim=1)   # (b c 1 1 1)
            h = h * (1 + scale) + shift
        return x + self.conv2(F.silu(h))


class TemporalDownsample(nn.Module):
    """1D temporal conv initialised to the identity, then stride 2: frame j of the output is frame 2j at init."""

    def __init__(self, ch: int, kernel: int = 3):
        super().__init__()
        self.conv = _identity_(TimeConv(ch, kernel, stride=2))

    def forward(self, x: Tensor, ctx: Optional[TemporalContext] = None) -> Tensor:   # (b c t h w) -> (b c t/2 h w)
        if x.shape[2] % 2:
            raise ValueError(f"temporal downsampling needs an even frame count, got {x.shape[2]}")
        return self.conv(x)


class TemporalUpsample(nn.Module):
    """Frame duplication, then a 1D temporal conv initialised to the identity (nearest-neighbour at init, the
    paper's); mode="linear" interpolates linearly instead of duplicating (a still video stays still either way)."""

    def __init__(self, ch: int, kernel: int = 3, mode: str = "nearest"):
        super().__init__()
        if mode not in ("nearest", "linear"):
            raise ValueError(f"temporal upsampling mode={mode!r}: expected 'nearest' or 'linear'")
        self.mode = mode
        self.conv = _identity_(TimeConv(ch, kernel))

    def forward(self, x: Tensor, ctx: Optional[TemporalContext] = None) -> Tensor:   # (b c t h w) -> (b c 2t h w)
        if self.mode == "nearest" and is_channels_last(x):       # time-major memory: repeat (h w c) blocks
            return self.conv(x.movedim(1, -1).repeat_interleave(2, dim=1).movedim(-1, 1))
        if self.mode == "nearest":
            return self.conv(x.repeat_interleave(2, dim=2))
        b, c, t, h, w = x.shape                                  # half-pixel centres: frame 2j+1/2 is frame j
        up = F.interpolate(x.reshape(b, c, t, h * w), size=(2 * t, h * w), mode="bilinear", align_corners=False)
        return self.conv(up.reshape(b, c, 2 * t, h, w))


class TemporalAttention(nn.Module):
    """Self-attention over time at each spatial position, with a learned frame-position embedding, then (text_dim
    > 0) cross-attention of every position and frame to the text tokens, then an MLP. Residual, zero-initialised
    outputs (identity at init). Stacked at the coarsest level of the STUNet, optionally at other levels.

    spacetime=True: self-attention over all (frame, position) tokens of a clip at once, with learned frame, row and
    column embeddings: a token can gather from other positions of other frames (motion-compensated), which
    per-position attention cannot; cheap at the coarsest level (t h w = 4 x 8 x 8 tokens in `make train`)."""

    def __init__(self, ch: int, head_dim: int, max_frames: int, text_dim: int = 0, spacetime: bool = False,
                 max_side: int = 64):
        super().__init__()
        self.spacetime = spacetime
        self.norm, self.attn = nn.LayerNorm(ch), Attention(ch, head_dim)
        self.pos = nn.Parameter(torch.randn(max_frames, ch) * 0.02)
        self.pos_y = nn.Parameter(torch.randn(max_side, ch) * 0.02) if spacetime else None
        self.pos_x = nn.Parameter(torch.randn(max_side, ch) * 0.02) if spacetime else None
        self.text_norm = nn.LayerNorm(ch) if text_dim else None
        self.text_attn = Attention(ch, head_dim, kv_dim=text_dim) if text_dim else None
        self.norm2 = nn.LayerNorm(ch)
        self.mlp = nn.Sequential(nn.Linear(ch, 4 * ch), nn.GELU(), zero_(nn.Linear(4 * ch, ch)))

    def _position(self, t: int, h: int, w: int) -> Tensor:
        """Embedding added to the queries and keys: ((t) c) per frame, or ((h w t) c) with spacetime."""
        if not self.spacetime:
            return self.pos[:t]
        if max(h, w) > self.pos_y.shape[0]:
            raise ValueError(f"{h}x{w} positions at a space-time attention > model.temporal.max_side="
                             f"{self.pos_y.shape[0]}")
        pos = self.pos_y[:h, None, None] + self.pos_x[None, :w, None] + self.pos[None, None, :t]   # (h w t c)
        return pos.reshape(h * w * t, -1)

    def forward(self, x: Tensor, ctx: Optional[TemporalContext] = None) -> Tensor:   # (b c t h w)
        b, c, t, h, w = x.shape
        if t > self.pos.shape[0]:
            raise ValueError(f"{t} frames at a temporal attention > model.temporal.max_frames={self.pos.shape[0]}")
        tok = x.permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)    # ((b h w) t c)
        pos = self._position(t, h, w)
        if self.spacetime:                                           # one sequence per clip: (b (h w t) c)
            seq = tok.reshape(b, h * w * t, c)
            tok = (seq + self.attn(self.norm(seq) + pos)).reshape(b * h * w, t, c)
        else:
            tok = tok + self.attn(self.norm(tok) + pos)
        if self.text_attn is not None:                              # every (position, frame) of a clip: its text
            q = (self.text_norm(tok) + self.pos[:t]).reshape(b, h * w * t, c)              # (b (h w t) c)
            tok = tok + self.text_attn(q, ctx.text, ctx.text_mask).reshape(b * h * w, t, c)
        tok = tok + self.mlp(self.norm2(tok))
        y = tok.reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)     # (b c t h w)
        return y.contiguous(memory_format=torch.channels_last_3d) if is_channels_last(x) else y


class TemporalStack(nn.ModuleList):
    """Temporal modules applied in order, each as module(x, ctx)."""

    def forward(self, x: Tensor, ctx: TemporalContext) -> Tensor:  # type: ignore[override]
        for m in self:
            x = m(x, ctx)
        return x


class TemporalModules:
    """Builds the temporal modules of an inflation from model.temporal, for a backbone whose noise-level embedding
    has emb_dim channels and whose text tokens have text_dim (our U-Net and diffusers' share this)."""

    def __init__(self, cfg: TemporalConfig, emb_dim: int, text_dim: int, head_dim: int):
        self.cfg, self.head_dim = cfg, head_dim
        self.emb_dim = emb_dim if cfg.emb_cond else 0
        self.text_dim = text_dim if cfg.text_attn else 0

    def conv(self, ch: int) -> TemporalConv:
        return TemporalConv(ch, self.cfg.kernel, self.emb_dim)

    def down(self, ch: int) -> TemporalDownsample:
        return TemporalDownsample(ch, self.cfg.kernel)

    def up(self, ch: int) -> TemporalUpsample:
        return TemporalUpsample(ch, self.cfg.kernel, self.cfg.upsample)

    def attn(self, ch: int, layers: int = 1, coarsest: bool = False) -> TemporalStack:
        """coarsest: the middle block's stack, space-time attention there when model.temporal.attn_kind=spacetime."""
        spacetime = coarsest and self.cfg.attn_kind == "spacetime"
        return TemporalStack([TemporalAttention(ch, self.head_dim, self.cfg.max_frames, self.text_dim, spacetime)
                              for _ in range(layers)])

    def finish(self, modules: nn.Module) -> nn.Module:
        """model.temporal.init=random: He init of every new conv / linear (the paper's ablation baseline)."""
        if self.cfg.init == "random":
            for m in modules.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        return modules

    def freeze(self, spatial: nn.Module, groups: Dict[str, Callable[[nn.Module], List[nn.Module]]]) -> None:
        """model.temporal.freeze_spatial: the pretrained 2D weights stop training, except the groups named in
        model.temporal.unfreeze (groups: name -> the modules of `spatial` it covers)."""
        if self.cfg.freeze_spatial:
            spatial.requires_grad_(False)
            for group in self.cfg.unfreeze:
                for m in groups[group](spatial):
                    m.requires_grad_(True)


def temporal_halvings(temporal: nn.ModuleDict) -> int:
    """How many times an inflated network halves time: its TemporalDownsample modules."""
    return sum(isinstance(m, TemporalDownsample) for m in temporal.values())
