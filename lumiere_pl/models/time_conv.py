"""The temporal convolution of the STUNet: a 1D convolution over t of a (b c t h w) tensor.

It runs as a (k, 1) Conv2d over the (b c t (h w)) view, several times faster on CPU than the equivalent Conv3d with a
(k, 1, 1) kernel. On time-major memory ((b t h w c), the layout the STUNet keeps) the CPU training step takes its
weight gradient from k batched matmuls over (t h w) instead of oneDNN's weight-gradient kernel, which is slow for a
(k, 1) filter over a long (h w) row (1.4-3x slower on the STUNet's shapes:
docs/results/2026-12-03-benchmarks-time-conv.md). The forward, the input gradient and the strided convs (whose
frames would need a copy) stay oneDNN's.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lumiere_pl.models.group_norm import is_channels_last


def time_conv_weight_grad(x: Tensor, dy: Tensor, kernel: int, stride: int, padding: int) -> Tensor:
    """d loss / d weight of a (kernel, 1) Conv2d over t: x (b c t s), dy (b o t' s) -> (o c kernel 1).

    Tap k pairs output frame j with input frame j * stride + k - padding; each tap is one batched matmul of the
    (b, frames s, channels) views, which need no copy on time-major memory at stride 1."""
    xt, gt = x.permute(0, 2, 3, 1), dy.permute(0, 2, 3, 1)      # (b t s c), (b t' s o)
    b, t, c, o, t_out = x.shape[0], x.shape[2], x.shape[1], dy.shape[1], dy.shape[2]
    taps = []
    for k in range(kernel):
        lo = max(0, -(-(padding - k) // stride))                # first j with j * stride + k - padding >= 0
        hi = min(t_out, (t - 1 + padding - k) // stride + 1)    # one past the last j inside the clip
        if hi <= lo:
            taps.append(x.new_zeros(o, c))
            continue
        first = lo * stride + k - padding
        xs = xt[:, first:first + (hi - lo - 1) * stride + 1:stride]                # (b n s c)
        g = gt[:, lo:hi]                                                            # (b n s o)
        taps.append(torch.bmm(g.reshape(b, -1, o).transpose(1, 2), xs.reshape(b, -1, c)).sum(0))   # (o c)
    return torch.stack(taps, -1)[..., None]


class _TimeConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, stride: int, padding: int) -> Tensor:
        ctx.save_for_backward(x, weight)                         # x (b c t s), time-major memory
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, bias, (stride, 1), (padding, 0))

    @staticmethod
    def backward(ctx, dy: Tensor) -> Tuple[Optional[Tensor], ...]:
        x, weight = ctx.saved_tensors
        s, p = ctx.stride, ctx.padding
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = torch.ops.aten.convolution_backward(dy, x, weight, None, [s, 1], [p, 0], [1, 1], False, [0, 0], 1,
                                                     [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            dw = time_conv_weight_grad(x, dy, weight.shape[2], s, p)
        if ctx.needs_input_grad[2]:
            db = dy.sum((0, 2, 3))
        return dx, dw, db, None, None


class TimeConv(nn.Conv2d):
    """1D convolution over t of a (b c t h w) tensor, as a (k, 1) Conv2d over the (b c t (h w)) view."""

    matmul_weight_grad = True      # the CPU's time-major training path (False: oneDNN's backward; bench_time_conv.py)

    def __init__(self, ch: int, kernel: int = 3, stride: int = 1):
        super().__init__(ch, ch, (kernel, 1), stride=(stride, 1), padding=(kernel // 2, 0))

    def forward(self, x: Tensor) -> Tensor:                        # (b c t h w) -> (b c t' h w)
        b, c, t, h, w = x.shape
        x4 = x.reshape(b, c, t, h * w)
        time_major = is_channels_last(x)
        if (self.matmul_weight_grad and time_major and self.stride[0] == 1 and x.device.type == "cpu"
                and torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")):
            y = _TimeConvFunction.apply(x4, self.weight, self.bias, self.stride[0], self.padding[0])
        else:
            y = super().forward(x4)
        if time_major:                           # time-major in, time-major out (a strided conv may return (b c t s))
            y = y.contiguous(memory_format=torch.channels_last)
        return y.reshape(b, y.shape[1], y.shape[2], h, w)
