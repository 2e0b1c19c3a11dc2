"""Dynamic thresholding (Saharia et al. 2022, Imagen, Sec. 2.3) as a wrapper around a denoiser.

At each step, each sample's x0 prediction is clipped to [-s, s] and divided by s, where s is the `ratio` quantile of
its absolute values, clamped to [1, max_value]: saturated pixels are pushed inwards, which large guidance scales need
in pixel space. DeepFloyd IF samples with it (ratio 0.95, max 1.5, from its scheduler config); latents are not
bounded, so latent models leave it off (sampler.threshold=0).
"""
from __future__ import annotations

import torch
from torch import Tensor

from lumiere_pl.diffusion.samplers import DenoiseFn
from lumiere_pl.utils.tensors import append_dims


def dynamic_threshold(denoise: DenoiseFn, ratio: float, max_value: float) -> DenoiseFn:
    """ratio <= 0: the denoiser itself."""
    if ratio <= 0:
        return denoise

    def fn(x: Tensor, s: Tensor, cond: dict) -> Tensor:
        x0 = denoise(x, s, cond)                                              # (b c [t] h w)
        flat = x0.float().reshape(x0.shape[0], -1).abs()
        limit = append_dims(torch.quantile(flat, ratio, dim=1).clamp(1.0, max_value), x0.ndim)   # (b 1 ...)
        return (torch.maximum(torch.minimum(x0, limit), -limit) / limit).to(x0.dtype)
    return fn
