"""FLOP counting with torch.utils.flop_counter (counts matmuls/convs/attention; 1 multiply-add = 2 FLOPs)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def forward_flops(net: nn.Module, *args) -> int:
    """FLOPs of one forward pass net(*args)."""
    with FlopCounterMode(display=False) as counter:
        net(*args)
    return counter.get_total_flops()
