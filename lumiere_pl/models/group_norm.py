"""GroupNorm for the channels-last (time-major) layout the STUNet runs in.

The networks keep features channels-last: a folded frame batch ((b t) c h w) is stored as (b t h w c), so the
(b c t h w) view of the temporal modules is the same memory and no layout copy happens between the spatial and the
temporal layers (docs/BENCHMARKS.md). torch's own CPU GroupNorm backward is about 9x slower on channels-last input
than on contiguous input (docs/results/2026-12-03-benchmarks-layout.md); the backward below is
the same formula as torch's kernel, written as three passes over the (n, s, c) view of the memory.

Under CPU autocast (bf16-mixed) torch's kernel runs, and its channels-last backward for fewer than 2048 positions
per sample (c h w or t h w) writes the input gradient through a null pointer when the input needs none (SIGSEGV,
torch 2.13, any dtype): a trainable norm on a frozen layer's output, as the first temporal module of an inflated
U-Net is, on small latents (SD-like 8 x 8 latents of 8 frames). Such an input is given a gradient to compute, which
is then dropped.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm (same parameters, same state_dict) whose backward stays fast on channels-last input on the CPU
    (measured there only; other devices and autocast regions use torch's kernel)."""

    def forward(self, x: Tensor) -> Tensor:
        channels_last = is_channels_last(x)
        if channels_last and x.shape[0] == 1 and x.stride(0) != x.numel():
            x = x.as_strided(x.shape, (x.numel(),) + x.stride()[1:])   # the same view: torch's kernel checks the
            # batch stride too, which means nothing for a batch of one but may come odd from a reshape
        if channels_last and self.affine and x.device.type == "cpu" and torch.is_grad_enabled():
            if not torch.is_autocast_enabled("cpu"):
                return _ChannelsLastGroupNorm.apply(x, self.weight, self.bias, self.num_groups, self.eps)
            if not x.requires_grad and self.weight.requires_grad:
                x = x.detach().requires_grad_()         # torch's kernel needs an input gradient (module docstring)
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
