"""The new temporal modules Lumiere interleaves into a pretrained T2I U-Net (Sec. 3.1 and appendix).

All work on (b c t h w) and are the identity at initialisation, so an inflated STUNet given a video whose frames
are all one image returns the T2I U-Net's output on that image, on every frame.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lumiere_pl.models.layers import Attention, norm, zero_


class TimeConv(nn.Conv2d):
    """1D convolution over t of a (b c t h w) tensor, run as a (k, 1) Conv2d over the (b c t (h w)) view:
    several times faster on CPU than the equivalent Conv3d with a (k, 1, 1) kernel."""

    def __init__(self, ch: int, kernel: int = 3, stride: int = 1):
        super().__init__(ch, ch, (kernel, 1), stride=(stride, 1), padding=(kernel // 2, 0))

    def forward(self, x: Tensor) -> Tensor:                        # (b c t h w) -> (b c t' h w)
        b, c, t, h, w = x.shape
        y = super().forward(x.reshape(b, c, t, h * w))
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

    With the pretrained 2D conv that precedes it, a factorized space-time convolution.
    """

    def __init__(self, ch: int, kernel: int = 3):
        super().__init__()
        self.norm1, self.conv1 = norm(ch), TimeConv(ch, kernel)
        self.norm2, self.conv2 = norm(ch), zero_(TimeConv(ch, kernel))

    def forward(self, x: Tensor) -> Tensor:                        # (b c t h w)
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class TemporalDownsample(nn.Module):
    """1D temporal conv initialised to the identity, then stride 2: frame j of the output is frame 2j at init."""

    def __init__(self, ch: int, kernel: int = 3):
        super().__init__()
        self.conv = _identity_(TimeConv(ch, kernel, stride=2))

    def forward(self, x: Tensor) -> Tensor:                        # (b c t h w) -> (b c t/2 h w)
        if x.shape[2] % 2:
            raise ValueError(f"temporal downsampling needs an even frame count, got {x.shape[2]}")
        return self.conv(x)


class TemporalUpsample(nn.Module):
    """Frame duplication, then a 1D temporal conv initialised to the identity (nearest-neighbour at init)."""

    def __init__(self, ch: int, kernel: int = 3):
        super().__init__()
        self.conv = _identity_(TimeConv(ch, kernel))

    def forward(self, x: Tensor) -> Tensor:                        # (b c t h w) -> (b c 2t h w)
        return self.conv(x.repeat_interleave(2, dim=2))


class TemporalAttention(nn.Module):
    """Self-attention over time at each spatial position, with a learned frame-position embedding; residual,
    zero-initialised output (identity at init). Stacked at the coarsest level of the STUNet."""

    def __init__(self, ch: int, head_dim: int, max_frames: int):
        super().__init__()
        self.norm, self.attn = nn.LayerNorm(ch), Attention(ch, head_dim)
        self.pos = nn.Parameter(torch.randn(max_frames, ch) * 0.02)
        self.norm2 = nn.LayerNorm(ch)
        self.mlp = nn.Sequential(nn.Linear(ch, 4 * ch), nn.GELU(), zero_(nn.Linear(4 * ch, ch)))

    def forward(self, x: Tensor) -> Tensor:                        # (b c t h w)
        b, c, t, h, w = x.shape
        if t > self.pos.shape[0]:
            raise ValueError(f"{t} frames at the coarsest level > model.temporal.max_frames={self.pos.shape[0]}")
        tok = x.permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)    # ((b h w) t c)
        tok = tok + self.attn(self.norm(tok) + self.pos[:t])
        tok = tok + self.mlp(self.norm2(tok))
        return tok.reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)
