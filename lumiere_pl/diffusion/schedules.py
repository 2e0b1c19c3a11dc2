"""Noise schedules as log-SNR functions of continuous time t in [0, 1] (t=0 clean, t=1 pure noise).

Variance preserving: z_t = alpha_t x0 + sigma_t eps with alpha^2 = sigmoid(logsnr), sigma^2 = sigmoid(-logsnr).
Samplers use the equivalent variance-exploding view x = z / alpha = x0 + s eps with s = exp(-logsnr / 2)
(k-diffusion's convention), so one sampler serves every schedule.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

LogSNR = Callable[[Tensor], Tensor]


def cosine(logsnr_min: float = -15.0, logsnr_max: float = 15.0) -> LogSNR:
    """Nichol & Dhariwal's cosine schedule, alpha_bar = cos^2(pi t / 2): logsnr = -2 log tan(pi t / 2), clipped."""
    t_min = math.atan(math.exp(-0.5 * logsnr_max)) * 2 / math.pi
    t_max = math.atan(math.exp(-0.5 * logsnr_min)) * 2 / math.pi

    def logsnr(t: Tensor) -> Tensor:
        return -2.0 * torch.log(torch.tan(math.pi / 2 * (t_min + t * (t_max - t_min))))
    return logsnr


def linear(logsnr_min: float = -15.0, logsnr_max: float = 15.0) -> LogSNR:
    """DDPM's linear beta schedule (beta 1e-4 .. 0.02 over 1000 steps) in continuous time, clipped."""
    def logsnr(t: Tensor) -> Tensor:
        # log alpha_bar(t) = -(1e-4 * 1000 t + 0.5 (0.02 - 1e-4) * 1000 t^2)
        log_ab = -(0.1 * t + 9.95 * t ** 2)
        return (log_ab - torch.log(-torch.expm1(log_ab).clamp_max(-1e-20))).clamp(logsnr_min, logsnr_max)
    return logsnr


def shifted(logsnr: LogSNR, size: int, base: int) -> LogSNR:
    """Resolution shift (Hoogeboom et al. 2023, simple diffusion): a schedule tuned at `base` pixels, used at `size`
    pixels, gets logsnr + 2 log(base / size), i.e. more noise at higher resolution. base <= 0 returns it unchanged."""
    if base <= 0 or base == size:
        return logsnr
    offset = 2.0 * math.log(base / size)
    return lambda t: logsnr(t) + offset


SCHEDULES = {"cosine": cosine, "linear": linear}


def make_schedule(name: str, logsnr_min: float, logsnr_max: float, size: int = 0, shift_base: int = 0) -> LogSNR:
    if name not in SCHEDULES:
        raise KeyError(f"unknown schedule {name!r}; known: {sorted(SCHEDULES)}")
    return shifted(SCHEDULES[name](logsnr_min, logsnr_max), size, shift_base)


def alpha_sigma(logsnr: Tensor) -> tuple[Tensor, Tensor]:
    """VP coefficients: alpha = sqrt(sigmoid(logsnr)), sigma = sqrt(sigmoid(-logsnr))."""
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


def ve_sigma(logsnr: Tensor) -> Tensor:
    """VE noise level s = sigma / alpha = exp(-logsnr / 2)."""
    return torch.exp(-0.5 * logsnr)


def get_sigmas(logsnr: LogSNR, steps: int, device: torch.device | str = "cpu") -> Tensor:
    """Decreasing VE noise levels for `steps` uniform time steps, with a final 0: shape (steps + 1,)."""
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)[:-1]
    s = ve_sigma(logsnr(t))
    return torch.cat([s, s.new_zeros(1)]).float().to(device)
