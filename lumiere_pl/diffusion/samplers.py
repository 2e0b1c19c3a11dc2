"""Samplers as plain functions over a denoiser D(x, s, cond) -> x0 (VE view x = x0 + s * eps).

`sigmas` is a decreasing sequence of VE noise levels ending in 0 (see schedules.get_sigmas). Start from
x = randn * sigmas[0]. DDIM (eta=0) is the deterministic Euler step in this view; eta > 0 adds the DDPM posterior
noise, and eta=1 is exactly DDPM's ancestral sampler (the variance of x_s' given x_s and x0 is s'^2 (s^2 - s'^2) / s^2).
Heun (2nd order, 2 calls per step), DPM-Solver++(2M) and (3M) (2nd / 3rd order, 1 call per step) solve the same
ODE as DDIM. Euler (k-diffusion's name) is DDIM with eta = 0 in this view: the same function under both names.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Union

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


Generators = Union[torch.Generator, Sequence[torch.Generator], None]


def noise_like(x: Tensor, generator: Generators) -> Tensor:
    """Standard normal noise of x's shape. generator: one for the batch, or one per clip (b of them), so that clip i's
    noise depends on its own generator only: a clip samples the same alone or in any batch."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
    if len(generator) != x.shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {x.shape[0]}; expected one per clip")
    return torch.stack([torch.randn(x.shape[1:], device=x.device, dtype=x.dtype, generator=g) for g in generator])


@torch.no_grad()
def sample_ddim(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, cond: dict, eta: float = 0.0,
                generator: Generators = None, progress: bool = False) -> Tensor:
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
            x = x + s_up * noise_like(x, generator)
    return x


def sample_ddpm(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, cond: dict, eta: float = 1.0,
                generator: Generators = None, progress: bool = False) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020): DDIM with the full posterior noise. Its eta is 1 by definition:
    the argument is accepted (every sampler takes it) and not used; sample_ddim takes any eta."""
    return sample_ddim(denoise, x, sigmas, cond, eta=1.0, generator=generator, progress=progress)


def _deterministic(name: str, eta: float) -> None:
    if eta != 0.0:
        raise ValueError(f"sampler {name} is deterministic: sampler.eta must be 0 (got {eta}); use ddim or ddpm "
                         f"for stochastic sampling")


@torch.no_grad()
def sample_heun(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, cond: dict, eta: float = 0.0,
                generator: Generators = None, progress: bool = False) -> Tensor:
    """Heun's second-order method on the probability-flow ODE dx/ds = (x - D(x, s)) / s (Karras et al. 2022,
    Alg. 1): an Euler step, then the trapezoid of the two slopes; two network calls per step, one for the last."""
    _deterministic("heun", eta)
    ones = x.new_ones(x.shape[0])
    for i in tqdm(range(len(sigmas) - 1), desc="sampling", disable=not progress, leave=False):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        d = (x - denoise(x, s * ones, cond)) / s                        # slope at s
        x_euler = x + (s_next - s) * d
        if s_next == 0.0:
            x = x_euler
            continue
        d_next = (x_euler - denoise(x_euler, s_next * ones, cond)) / s_next
        x = x + (s_next - s) * (d + d_next) / 2
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, cond: dict, eta: float = 0.0,
                    generator: Generators = None, progress: bool = False) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022), multistep: one network call per step. In lambda = -log s the exact
    solution is x' = (s'/s) x + (1 - s'/s) x0 for a constant x0; 2M replaces x0 by a linear extrapolation of the
    last two predictions, D + (D - D_prev) h / (2 h_prev). The first and the last (s' = 0) steps are DDIM's."""
    _deterministic("dpmpp_2m", eta)
    ones = x.new_ones(x.shape[0])
    prev: Optional[Tensor] = None
    h_prev = 0.0
    for i in tqdm(range(len(sigmas) - 1), desc="sampling", disable=not progress, leave=False):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = denoise(x, s * ones, cond)
        if s_next == 0.0:
            x = x0
            continue
        h = math.log(s / s_next)                                         # step in lambda = -log s
        x0_hat = x0 if prev is None else x0 + (x0 - prev) * (h / (2 * h_prev))
        x = (s_next / s) * x + (1 - s_next / s) * x0_hat
        prev, h_prev = x0, h
    return x


@torch.no_grad()
def sample_dpmpp_3m(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, cond: dict, eta: float = 0.0,
                    generator: Generators = None, progress: bool = False) -> Tensor:
    """DPM-Solver++(3M), multistep: one network call per step. In lambda = -log s, with h = lambda' - lambda and the
    prediction expanded as D + D' u + D'' u^2 / 2 around lambda, the exact step is
        x' = e^-h x + (1 - e^-h) D + (h - 1 + e^-h) D' + (h^2 / 2 - h + 1 - e^-h) D''
    with D', D'' the divided differences of the last three predictions (the last two: D' only, D'' = 0; the first
    and the last (s' = 0) steps are DDIM's)."""
    _deterministic("dpmpp_3m", eta)
    ones = x.new_ones(x.shape[0])
    prev: list = []                                              # [(lambda, D)] of the last two steps, newest last
    for i in tqdm(range(len(sigmas) - 1), desc="sampling", disable=not progress, leave=False):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = denoise(x, s * ones, cond)
        if s_next == 0.0:
            x = x0
            continue
        lam, h = -math.log(s), math.log(s / s_next)
        e = s_next / s                                           # e^-h
        x = e * x + (1 - e) * x0
        if prev:
            lam1, d1 = prev[-1]
            slope = (x0 - d1) / (lam - lam1)                     # D' at the midpoint of the last interval
            if len(prev) == 2:
                lam2, d2 = prev[-2]
                curve = 2 * (slope - (d1 - d2) / (lam1 - lam2)) / (lam - lam2)     # D''
                x = x + (h * h / 2 - h + 1 - e) * curve
                slope = slope + curve * (lam - lam1) / 2                           # D' at lambda
            x = x + (h - 1 + e) * slope
        prev = (prev + [(lam, x0)])[-2:]
    return x


sample_euler = sample_ddim       # k-diffusion's Euler step on dx/ds = (x - D) / s is DDIM's deterministic step

def network_calls(name: str, steps: int) -> int:
    """Denoiser calls per clip of `steps` steps (get_sigmas(..., steps)): two per step for Heun but the last."""
    return 2 * steps - 1 if name == "heun" else steps


SAMPLERS = {"ddim": sample_ddim, "ddpm": sample_ddpm, "euler": sample_euler, "heun": sample_heun,
            "dpmpp_2m": sample_dpmpp_2m, "dpmpp_3m": sample_dpmpp_3m}
