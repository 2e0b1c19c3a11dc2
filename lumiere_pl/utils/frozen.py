"""Frozen pretrained networks that travel with a model but stay out of its checkpoints (text encoders, the VAE).

A FrozenHolder is an nn.Module, so whoever owns it moves it: `.to(device)`, `.to(dtype)` (Lightning does both with
the LightningModule: device placement, and the cast of *-true precision; *-mixed precision runs it under autocast).
The pretrained networks it holds are attributes set with `hold()`, outside the module tree: their weights never enter
`state_dict()` (checkpoints), `parameters()` (optimizer, EMA, DDP) nor the model summary. Only `_apply`, the method
behind every `.to` / `.cuda` / `.half`, reaches them; they stay in eval mode with requires_grad off.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn


class FrozenHolder(nn.Module):
    def __init__(self):
        super().__init__()
        self._held: List[str] = []
        # empty, non-persistent: follows every move and float cast; tells the device and dtype the holder runs in
        self.register_buffer("_probe", torch.empty(0), persistent=False)

    def hold(self, name: str, module: nn.Module) -> nn.Module:
        """Keep `module` (frozen, eval) as attribute `name` without registering it as a submodule."""
        module.eval().requires_grad_(False)
        object.__setattr__(self, name, module)
        self._held.append(name)
        return module

    def _apply(self, fn, recurse: bool = True):
        for name in self._held:
            getattr(self, name)._apply(fn)
        return super()._apply(fn, recurse)

    @property
    def device(self) -> torch.device:
        return self._probe.device

    @property
    def dtype(self) -> torch.dtype:
        return self._probe.dtype
