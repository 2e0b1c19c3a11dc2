"""The diffusion process, apart from the networks: schedules, preconditioning, loss, samplers, guidance and
MultiDiffusion (wrappers around a denoiser)."""
from lumiere_pl.diffusion.guidance import guided
from lumiere_pl.diffusion.multidiffusion import MultiDiffusion, multidiffusion, temporal_windows
from lumiere_pl.diffusion.process import Denoiser, DiffusionProcess, c_noise, diffusion_loss, target, to_x0
from lumiere_pl.diffusion.samplers import SAMPLERS, sample_ddim, sample_ddpm
from lumiere_pl.diffusion.schedules import SCHEDULES, alpha_sigma, get_sigmas, make_schedule, ve_sigma

__all__ = ["Denoiser", "DiffusionProcess", "MultiDiffusion", "SAMPLERS", "SCHEDULES", "alpha_sigma", "c_noise", "diffusion_loss", "get_sigmas", "guided",
           "make_schedule", "multidiffusion", "sample_ddim", "sample_ddpm", "target", "temporal_windows", "to_x0", "ve_sigma"]
