"""Sampling from a LightningModule in tests, as validation does: its parts through LumierePipeline, EMA weights."""
from __future__ import annotations

from torch import Tensor


def sample(module, prompts, use_ema: bool = True, **kwargs) -> Tensor:
    """(b 3 t h w) videos of a DiffusionModule's model; kwargs go to the LumierePipeline call."""
    if not use_ema:
        return module.pipeline()(prompts, **kwargs).videos
    with module.ema.apply_to(module.net):
        return module.pipeline()(prompts, **kwargs).videos
