"""The schedule bridge: a pretrained model's discrete DDPM schedule in our continuous log-SNR view.

Diffusers T2I weights (DeepFloyd IF: squaredcos_cap_v2; Stable Diffusion: scaled_linear) were trained at N discrete
timesteps i = 0 .. N-1 with their own alphas_cumprod[i], the timestep itself as the network's noise input. Our
samplers and loss work in log-SNR (schedules.py, process.py). DiscreteSchedule joins the two (k-diffusion's
DiscreteSchedule, unquantized):
  logsnr(t)         continuous t in [0, 1] -> the log-SNR at fractional timestep tau = t (N - 1), linear between the
                    table's entries: a LogSNR like any other schedule (training draws t ~ U(0, 1), samplers take steps)
  timestep(logsnr)  its inverse: the (fractional) timestep the network is given, the Denoiser's noise_cond
At an integer timestep both are exact, so the Denoiser's x0 at (x, t) is what diffusers' schedulers compute there
(tests/test_diffusers.py checks DDIMScheduler's and DDPMScheduler's pred_original_sample).
"""
from __future__ import annotations

import torch
from torch import Tensor

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def alphas_cumprod(beta_schedule: str, beta_start: float, beta_end: float, num_train_timesteps: int) -> Tensor:
    """alphas_cumprod (N,) of a diffusers beta schedule, computed by diffusers' own DDPMScheduler."""
    from diffusers import DDPMScheduler

    if beta_schedule not in BETA_SCHEDULES:
        raise ValueError(f"beta_schedule={beta_schedule!r}: expected one of {list(BETA_SCHEDULES)}")
    sched = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
                          beta_schedule=beta_schedule)
    return sched.alphas_cumprod.double()


class DiscreteSchedule:
    """alphas_cumprod (N,) of a discrete schedule -> logsnr(t) and timestep(logsnr); see the module docstring."""

    def __init__(self, alphas_cumprod: Tensor):
        ac = alphas_cumprod.double()
        if not bool(((ac > 0) & (ac < 1)).all()):
            raise ValueError("alphas_cumprod must lie strictly in (0, 1): a zero terminal SNR has no finite noise "
                             "level in the VE view our samplers use")
        self.table = torch.log(ac) - torch.log1p(-ac)              # (N,) log-SNR of timestep i, decreasing
        if not bool((self.table[1:] < self.table[:-1]).all()):
            raise ValueError("alphas_cumprod must decrease strictly with the timestep")
        self.n = len(ac)

    def logsnr(self, t: Tensor) -> Tensor:
        """Continuous t in [0, 1] (0 clean) -> log-SNR at fractional timestep t (N - 1), same dtype and device."""
        table = self.table.to(t.device)
        tau = t.double().clamp(0, 1) * (self.n - 1)
        lo = tau.floor().clamp(max=self.n - 2).long()
        w = tau - lo
        return (table[lo] * (1 - w) + table[lo + 1] * w).to(t.dtype)

    def timestep(self, logsnr: Tensor) -> Tensor:
        """log-SNR -> the fractional training timestep with that log-SNR (clamped to the table's range), float32."""
        asc = self.table.flip(0).to(logsnr.device)                 # increasing: position p <-> timestep N-1-p
        x = logsnr.double().clamp(float(asc[0]), float(asc[-1]))
        hi = torch.searchsorted(asc, x).clamp(1, self.n - 1)
        w = (x - asc[hi - 1]) / (asc[hi] - asc[hi - 1])
        return ((self.n - 1) - (hi - 1 + w)).float()

    def __call__(self, t: Tensor) -> Tensor:
        return self.logsnr(t)
