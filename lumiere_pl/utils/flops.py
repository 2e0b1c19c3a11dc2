"""FLOP counting with torch.utils.flop_counter (1 multiply-add = 2 FLOPs), CPU attention included.

torch's counter knows the CUDA fused attention kernels only; on CPU every F.scaled_dot_product_attention would count
0 FLOPs. sdpa_cpu_mapping() adds formulas for the CPU kernels. Pure torch: bench workers in other venvs import it.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import torch
from torch import nn
from torch.utils import flop_counter as fc


def sdpa_cpu_mapping() -> dict:
    """FLOP formulas for aten's CPU flash-attention kernels (forward and backward), where this torch has them."""
    aten = torch.ops.aten
    out = {}
    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if fwd is not None:
        out[fwd] = lambda q, k, v, *a, out_shape=None, **kw: fc.sdpa_flop_count(q, k, v)
    if bwd is not None:
        out[bwd] = lambda go, q, k, v, *a, out_shape=None, **kw: fc.sdpa_backward_flop_count(go, q, k, v)
    return out


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of everything fn() runs (forward, backward, optimizer: whatever it does)."""
    with fc.FlopCounterMode(display=False, custom_mapping=sdpa_cpu_mapping()) as counter:
        fn()
    return counter.get_total_flops()


@torch.no_grad()
def forward_flops(net: nn.Module, *args) -> int:
    """FLOPs of one forward pass net(*args). A compiled network (train.compile) runs eagerly here: the count is the
    same, and no graph is compiled for a shape training never uses."""
    stance = getattr(torch.compiler, "set_stance", None)           # torch >= 2.6
    with stance("force_eager") if stance is not None else nullcontext():
        return count_flops(lambda: net(*args))
