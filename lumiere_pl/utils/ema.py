"""Exponential moving average of the trainable parameters, kept as buffers so it is saved and restored with the
model's state_dict (and so resumes exactly).

Under FSDP2 (trainer.strategy=fsdp) the parameters are DTensor shards; `shard_like` turns each EMA buffer into a
DTensor of the same mesh and placements, so the update stays local to each process (no communication) and the EMA
costs 1/world of its full size per process. Checkpoints gather it to full tensors (Lightning's full state dict), and
`averaged_state_dict` returns full tensors.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterator

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor


class EMA(nn.Module):
    def __init__(self, net: nn.Module, decay: float):
        super().__init__()
        self.decay = decay
        self._names: Dict[str, str] = {}                     # parameter name -> buffer name
        for name, p in net.named_parameters():
            if p.requires_grad:
                self._names[name] = name.replace(".", "__")
                self.register_buffer(self._names[name], p.detach().clone().float())
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def shard_like(self, net: nn.Module) -> None:
        """Make each EMA buffer a DTensor placed like its parameter (after fully_shard(net)); idempotent."""
        params = dict(net.named_parameters())
        for name, buf in self._names.items():
            p, shadow = params[name], getattr(self, buf)
            if isinstance(p, DTensor) and not isinstance(shadow, DTensor):
                # every process holds the same full EMA here (same seed, or not yet loaded): keep its own shard
                self._buffers[buf] = distribute_tensor(shadow.to(p.device), p.device_mesh, p.placements)

    def _pairs(self, net: nn.Module) -> Iterator[tuple[nn.Parameter, torch.Tensor]]:
        params = dict(net.named_parameters())
        for name, buf in self._names.items():
            yield params[name], getattr(self, buf)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """shadow <- d shadow + (1 - d) param, with d warmed up as min(decay, (1 + n) / (10 + n))."""
        n = int(self.num_updates)
        d = min(self.decay, (1 + n) / (10 + n))
        for p, shadow in self._pairs(net):
            shadow.lerp_(p.detach().float(), 1.0 - d)
        self.num_updates += 1

    @contextmanager
    def apply_to(self, net: nn.Module):
        """Temporarily load the EMA weights into net (for sampling); restores the live weights after."""
        saved = [(p, p.detach().clone()) for p, _ in self._pairs(net)]
        with torch.no_grad():
            for p, shadow in self._pairs(net):
                p.copy_(shadow.to(p.dtype))
        try:
            yield net
        finally:
            with torch.no_grad():
                for p, live in saved:
                    p.copy_(live)

    def averaged_state_dict(self, net: nn.Module) -> Dict[str, torch.Tensor]:
        """net's state_dict with the trainable parameters replaced by their EMA, as full tensors (under FSDP: a
        collective, to be called on every process)."""
        state = {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().clone()
                 for k, v in net.state_dict().items()}
        for name, buf in self._names.items():
            shadow = getattr(self, buf)
            shadow = shadow.full_tensor() if isinstance(shadow, DTensor) else shadow      # gathered (collective)
            state[name] = shadow.to(state[name].dtype).clone()
        return state
