"""Samplers as plain functions over a denoiser D(x, s, cond) -> x0 (VE view x = x0 + s * eps).

`sigmas` is a decreasing sequence of VE noise levels ending in 0 (see schedules.get_sigmas). Start from
x = randn * sigmas[0]. DDIM (eta=0) is the deterministic Euler step in this view; eta > 0 adds the DDPM posterior
noise, and eta=1 is exactly DDPM's ancestral sampler (the variance of x_s' given x_s and x0 is s'^2 (s^2 - s'^2) / s^2).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor
from tqdm.auto import tqdm

DenoiseFn = Callable[[Tensor, Tensor, dict], Tensor]


def ancestral_step(s: float, s_next: float, eta: float) -> tuple[float, float]:
    """Split the move s -> s_next into a deterministic part (to s_down) and fresh noise (s_up)."""
    if eta == 0.0 or s_next == 0.0:
        return s_next, 0.0
    s_up = min(s_next, eta * (s_next ** 2 * (s ** 2 - s_next ** 2) / s ** 2) ** 0.5)
    return (s_next ** 2 - s_up ** 2) ** 0.5, s_up


@torch.no_grad()
def sample_ddim(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, cond: dict, eta: float = 0.0,
                generator: Optional[torch.Generator] = None, progress: bool = False) -> Tensor:
    """DDIM (Song et al. 2021). x: initial noise already scaled by sigmas[0]; returns the x0 sample."""
    ones = x.new_ones(x.shape[0])
    steps = range(len(sigmas) - 1)
    for i in tqdm(steps, desc="sampling", disable=not progress, leave=False):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = denoise(x, s * ones, cond)
        if s_next == 0.0:
            x = x0
            continue
        s_down, s_up = ancestral_step(s, s_next, eta)
        x = x0 + (x - x0) * (s_down / s)                  # move along the predicted noise direction
        if s_up > 0.0:
            x = x + s_up * torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
    return x


def sample_ddpm(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, cond: dict, eta: float = 1.0,
                generator: Optional[torch.Generator] = None, progress: bool = False) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020): DDIM with the full posterior noise (eta=1)."""
    return sample_ddim(denoise, x, sigmas, cond, eta=1.0, generator=generator, progress=progress)


SAMPLERS = {"ddim": sample_ddim, "ddpm": sample_ddpm}
