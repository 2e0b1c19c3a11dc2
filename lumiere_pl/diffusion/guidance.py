"""Classifier-free guidance (Ho & Salimans 2022) as a wrapper around a denoiser.

The conditioning dict carries both captions: "text"/"text_mask" and "null_text"/"null_text_mask" (the encoding of
the empty caption, which training substitutes with probability diffusion.cond_drop). Guidance is applied to the
whole prediction, every channel.
"""
from __future__ import annotations

import torch
from torch import Tensor

from lumiere_pl.diffusion.samplers import DenoiseFn

NULL_KEYS = {"text": "null_text", "text_mask": "null_text_mask"}


def _batch_both(cond: dict) -> dict:
    """One dict for the batch [unconditional; conditional]: null text first, every other tensor repeated."""
    out = {}
    for k, v in cond.items():
        if k in NULL_KEYS.values():
            continue
        if k in NULL_KEYS:
            out[k] = torch.cat([cond[NULL_KEYS[k]], v])
        elif isinstance(v, Tensor):
            out[k] = torch.cat([v, v])
        else:
            out[k] = v
    return out


def guided(denoise: DenoiseFn, scale: float) -> DenoiseFn:
    """D_w = D(x | null) + w (D(x | c) - D(x | null)); w = 1 is the conditional denoiser itself."""
    if scale == 1.0:
        return denoise

    def fn(x: Tensor, s: Tensor, cond: dict) -> Tensor:
        both = denoise(torch.cat([x, x]), torch.cat([s, s]), _batch_both(cond))
        uncond, cond_ = both.chunk(2)
        return uncond + scale * (cond_ - uncond)
    return fn
