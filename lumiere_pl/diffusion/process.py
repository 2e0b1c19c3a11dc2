"""The diffusion process around a network: preconditioning (Denoiser) and the training loss.

The network sees (z, c_noise, cond) and knows nothing of schedules: z is the VP-scaled noisy input, c_noise the
noise level as 1000 * t_cosine (a DDPM-like scale whatever the schedule), cond a dict of conditioning tensors.
A pretrained network with its own noise input (a diffusers U-Net's discrete timestep) gets it through `noise_cond`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from lumiere_pl.diffusion.schedules import LogSNR, alpha_sigma, get_sigmas
from lumiere_pl.utils.tensors import append_dims

PREDICTIONS = ("v", "eps", "x0")
NoiseCond = Callable[[Tensor], Tensor]   # log-SNR (b,) -> the network's noise input (b,)


def c_noise(logsnr: Tensor) -> Tensor:
    """Network noise input: the cosine-schedule time of this log-SNR, scaled to [0, 1000]."""
    return torch.atan(torch.exp(-0.5 * logsnr)) * (2000.0 / math.pi)


def to_x0(out: Tensor, z: Tensor, alpha: Tensor, sigma: Tensor, prediction: str) -> Tensor:
    """Network output -> x0 estimate (alpha, sigma broadcast to z's rank)."""
    if prediction == "v":
        return alpha * z - sigma * out
    if prediction == "eps":
        return (z - sigma * out) / alpha
    if prediction == "x0":
        return out
    raise ValueError(f"prediction={prediction!r}: expected one of {PREDICTIONS}")


def target(x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor, prediction: str) -> Tensor:
    """What the network should output for prediction type `prediction`."""
    if prediction == "v":
        return alpha * eps - sigma * x0
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    raise ValueError(f"prediction={prediction!r}: expected one of {PREDICTIONS}")


class Denoiser:
    """x0-predicting denoiser D(x, s, cond) in the VE view x = x0 + s * eps (k-diffusion's `layers.Denoiser`).

    c_skip = alpha^2 and c_out = -alpha * sigma for v-prediction, so D -> identity as s -> 0. A plain callable,
    not an nn.Module: it owns no weights, so the network's parameters are registered once, by whoever owns it.
    """

    def __init__(self, net: nn.Module, prediction: str = "v", noise_cond: NoiseCond = c_noise):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction={prediction!r}: expected one of {PREDICTIONS}")
        self.net, self.prediction, self.noise_cond = net, prediction, noise_cond

    def __call__(self, x: Tensor, s: Tensor, cond: dict) -> Tensor:
        s = s.to(torch.float32)                             # (b,)
        logsnr = -2.0 * torch.log(s.clamp_min(1e-20))
        alpha, sigma = (append_dims(c, x.ndim) for c in alpha_sigma(logsnr))
        z = x * alpha                                       # VP-scaled input, ~unit variance
        out = self.net(z, self.noise_cond(logsnr), cond).float()
        return to_x0(out, z, alpha, sigma, self.prediction)


def diffusion_loss(net: nn.Module, x0: Tensor, cond: dict, logsnr_fn: LogSNR, prediction: str = "v",
                   generator: Optional[torch.Generator] = None, noise_cond: NoiseCond = c_noise,
                   t: Optional[float] = None) -> Tensor:
    """Mean squared error of the network's prediction at a uniformly drawn time t (per-sample mean, then batch mean);
    t given: at that diffusion time for every sample (the draws of the noise are the same either way).

    x0: (b c h w) images or (b c t h w) videos in [-1, 1] (or latents). noise_cond: log-SNR -> the network's noise
    input (c_noise for ours; a pretrained model's own timestep for diffusers U-Nets, diffusion/discrete.py).
    """
    b = x0.shape[0]
    drawn = torch.rand(b, device=x0.device, generator=generator)                # (b,)
    t = drawn if t is None else torch.full_like(drawn, float(t))
    eps = torch.randn(x0.shape, device=x0.device, generator=generator, dtype=x0.dtype)
    logsnr = logsnr_fn(t)
    alpha, sigma = (append_dims(c, x0.ndim) for c in alpha_sigma(logsnr))
    z = alpha * x0 + sigma * eps
    out = net(z, noise_cond(logsnr), cond).float()
    return (out - target(x0, eps, alpha, sigma, prediction)).pow(2).mean()


@dataclass(frozen=True)
class DiffusionProcess:
    """One model's diffusion: its schedule (log-SNR of t in [0, 1]), what its network predicts, and the network's
    noise input of a log-SNR (c_noise for ours; a diffusers U-Net's own timestep). The loss of training and the
    denoiser of sampling both come from here, so the two always agree."""
    logsnr: LogSNR
    prediction: str = "v"
    noise_cond: NoiseCond = c_noise

    def denoiser(self, net: nn.Module) -> Denoiser:
        return Denoiser(net, self.prediction, self.noise_cond)

    def loss(self, net: nn.Module, x0: Tensor, cond: dict, generator: Optional[torch.Generator] = None,
             t: Optional[float] = None) -> Tensor:
        return diffusion_loss(net, x0, cond, self.logsnr, self.prediction, generator, self.noise_cond, t)

    def sigmas(self, steps: int, device: torch.device | str = "cpu") -> Tensor:
        """(steps + 1,) decreasing VE noise levels ending in 0 (schedules.get_sigmas)."""
        return get_sigmas(self.logsnr, steps, device)
