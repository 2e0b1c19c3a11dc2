"""The CPU's own paths of two STUNet layers, and the memory layout, chosen in one place (KERNELS).

The STUNet keeps features channels-last: a folded frame batch ((b t) c h w) is stored as (b t h w c), so the
(b c t h w) view of the temporal modules is the same memory and no copy happens between spatial and temporal layers.
Two CPU kernels of torch are slow on that layout in training, and one crashes:
  group norm   torch's CPU GroupNorm backward is about 9x slower on channels-last input than on contiguous input;
               group_norm() runs the same formula as three passes over the (n, s, c) view. Under CPU autocast
               torch's kernel runs, and for fewer than 2048 positions per sample it writes the input gradient through
               a null pointer when the input needs none (SIGSEGV, torch 2.13): such an input is given a gradient to
               compute, which is then dropped.
  time conv    oneDNN's weight gradient of a (k, 1) conv over a long (h w) row is slow; time_conv() takes it from
               k batched matmuls over (t h w) on time-major memory at stride 1 (forward, input gradient and strided
               convs stay oneDNN's).
  layout       time-major from KERNELS.time_major_min_pixels per frame up, where it pays, (b c t h w) below.
Figures: docs/results/2026-12-03-benchmarks-layout.md and 2026-12-03-benchmarks-time-conv.md. Other devices and
autocast regions (but the crash's guard) use torch's kernels. Benchmarks compare both paths with `using(...)`.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class Kernels:
    group_norm_backward: bool = True     # channels-last GroupNorm backward as three passes (CPU, no autocast)
    time_conv_weight_grad: bool = True   # temporal conv weight gradient as batched matmuls (CPU, time-major)
    time_major_min_pixels: int = 32 * 32 # frames of at least this many pixels run time-major (STUNet.time_major None)


KERNELS = Kernels()


@contextmanager
def using(**changes) -> Iterator[Kernels]:
    """Temporarily other choices (benchmarks, tests): `with using(time_conv_weight_grad=False): ...`."""
    global KERNELS
    saved, KERNELS = KERNELS, replace(KERNELS, **changes)
    try:
        yield KERNELS
    finally:
        KERNELS = saved


def time_major(pixels: int, forced: Optional[bool] = None) -> bool:
    """Whether frames of `pixels` (h w) run time-major: `forced` when given, else by size."""
    return forced if forced is not None else pixels >= KERNELS.time_major_min_pixels


def is_channels_last(x: Tensor) -> bool:
    """True when the channels of an (n c ...) tensor are its innermost memory dim. Tensors with a size-1 dim other
    than n are left out: their strides can pass as both layouts, which torch's kernels do not all accept."""
    if x.ndim not in (4, 5) or min(x.shape[1:]) < 2:
        return False
    return x.is_contiguous(memory_format=torch.channels_last if x.ndim == 4 else torch.channels_last_3d)


def _nsc(x: Tensor) -> Tensor:
    """(n c *s) -> (n (s) c): a view for channels-last memory, a copy otherwise."""
    return x.movedim(1, -1).reshape(x.shape[0], -1, x.shape[1])


class _ChannelsLastGroupNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, groups: int, eps: float) -> Tensor:
        n, c = x.shape[:2]
        y, mean, rstd = torch.native_group_norm(x, weight, bias, n, c, x[0, 0].numel(), groups, eps)
        ctx.save_for_backward(x, weight, mean, rstd)                # mean, rstd: (n g)
        ctx.groups = groups
        return y

    @staticmethod
    def backward(ctx, dy: Tensor) -> Tuple[Optional[Tensor], ...]:
        x, weight, mean, rstd = ctx.saved_tensors
        n, c, g = x.shape[0], x.shape[1], ctx.groups
        x3, dy3 = _nsc(x), _nsc(dy)                                 # (n s c)
        m = x3.shape[1] * (c // g)                                  # elements per group
        ds = (dy3 * x3).sum(1)                                      # (n c): sum over s of dy x
        db = dy3.sum(1)                                             # (n c): sum over s of dy
        mean_c, rstd_c = (v.repeat_interleave(c // g, dim=1) for v in (mean, rstd))   # (n c)
        dweight = ((ds - db * mean_c) * rstd_c).sum(0)
        dbias = db.sum(0)
        ds_g = (ds * weight).view(n, g, -1).sum(2)                  # (n g)
        db_g = (db * weight).view(n, g, -1).sum(2)
        c2 = (db_g * mean - ds_g) * rstd.pow(3) / m                 # dx = c1 dy + c2 x + c3
        c3 = -c2 * mean - db_g * rstd / m
        c1 = rstd_c * weight                                        # (n c)
        dx = None
        if ctx.needs_input_grad[0]:
            c2, c3 = (v.repeat_interleave(c // g, dim=1)[:, None] for v in (c2, c3))   # (n 1 c)
            dx3 = torch.addcmul(c3, x3, c2).addcmul_(dy3, c1[:, None])  # (n s c), contiguous
            dx = dx3.view(n, *x.shape[2:], c).movedim(-1, 1)            # (n c *s), channels-last
        return dx, dweight, dbias, None, None


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


def _cpu_training(x: Tensor) -> bool:
    return x.device.type == "cpu" and torch.is_grad_enabled()


def group_norm(x: Tensor, norm: nn.GroupNorm) -> Tensor:
    """norm(x) for an (n c ...) tensor, by the path this layout and device want (module docstring)."""
    channels_last = is_channels_last(x)
    if channels_last and x.shape[0] == 1 and x.stride(0) != x.numel():
        x = x.as_strided(x.shape, (x.numel(),) + x.stride()[1:])   # the same view: torch's kernel checks the batch
        # stride too, which means nothing for a batch of one but may come odd from a reshape
    if channels_last and norm.affine and _cpu_training(x):
        if not torch.is_autocast_enabled("cpu"):
            if KERNELS.group_norm_backward:
                return _ChannelsLastGroupNorm.apply(x, norm.weight, norm.bias, norm.num_groups, norm.eps)
        elif not x.requires_grad and norm.weight.requires_grad:
            x = x.detach().requires_grad_()             # torch's kernel needs an input gradient (module docstring)
    return F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)


def time_conv(x4: Tensor, conv: nn.Conv2d, time_major_memory: bool) -> Tensor:
    """conv(x4) for a (k, 1) Conv2d over the (b c t s) view, by the path this layout and device want."""
    if (KERNELS.time_conv_weight_grad and time_major_memory and conv.stride[0] == 1 and _cpu_training(x4)
            and not torch.is_autocast_enabled("cpu")):
        return _TimeConvFunction.apply(x4, conv.weight, conv.bias, conv.stride[0], conv.padding[0])
    return F.conv2d(x4, conv.weight, conv.bias, conv.stride, conv.padding)
