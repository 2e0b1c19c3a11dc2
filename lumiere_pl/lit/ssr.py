"""SSRModule: trains the spatial super-resolution STUNet on (low-res, high-res) pairs made on the fly.

Any video batch works ({"pixels": (b c t h w) in [-1, 1], "caption"}): the high-res clip is the target, its
low-res version is the clip averaged down by model.upscale, upsampled back (bilinear) and noise-augmented at a random
time t_aug ~ U(0, diffusion.cond_aug_max) of the diffusion schedule; the level enters the network as cond["aug_noise"]
on the same c_noise scale as the main noise (Ho et al. 2022, cascaded diffusion's conditioning augmentation).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from torch import Tensor

from lumiere_pl.diffusion import c_noise
from lumiere_pl.diffusion.schedules import alpha_sigma
from lumiere_pl.lit.module import DiffusionModule
from lumiere_pl.models.ssr import downsample, upsample
from lumiere_pl.utils.rng import StepRNG
from lumiere_pl.utils.tensors import append_dims
from lumiere_pl.utils.video import log_video, tile, to_uint8, write_mp4


class SSRModule(DiffusionModule):
    """DiffusionModule whose conditioning adds the low-res video; sampling runs MultiDiffusion over time (the base
    class's wrap_denoiser, with sampler.window / stride / window_batch)."""

    @property
    def low_size(self) -> int:
        return self.cfg.data.size // self.cfg.model.upscale

    # --- conditioning -------------------------------------------------------------------------------------------
    def lowres_condition(self, lowres: Tensor, t_aug: Tensor,
                         generator: Optional[torch.Generator | List[torch.Generator]] = None) -> dict:
        """lowres (b c t h w) at any size -> {"concat": upsampled, noise-augmented (b c t H W), "aug_noise": (b,)}.

        The augmented conditioning is alpha * up + sigma * eps at log-SNR logsnr(t_aug) (VP, so it keeps unit scale).
        generator: one for the batch, or one per clip (sampling: a clip's noise then does not depend on its batch).
        """
        up = upsample(lowres, self.cfg.data.size)                                  # b c t H W
        logsnr = self.logsnr(t_aug.to(up.device, torch.float32))                   # (b,)
        alpha, sigma = (append_dims(c, up.ndim) for c in alpha_sigma(logsnr))
        if isinstance(generator, (list, tuple)):
            eps = torch.stack([torch.randn(up.shape[1:], device=up.device, dtype=up.dtype, generator=g)
                               for g in generator])
        else:
            eps = torch.randn(up.shape, device=up.device, dtype=up.dtype, generator=generator)
        concat = torch.where(append_dims(t_aug > 0, up.ndim).to(up.device), alpha * up + sigma * eps, up)
        return {"concat": concat, "aug_noise": c_noise(logsnr)}

    def condition(self, batch: dict, train: bool, rng: Optional[StepRNG] = None) -> dict:
        cond = super().condition(batch, train, rng)
        pixels = batch["pixels"]                                                   # b c t H W
        b = pixels.shape[0]
        host, dev = (rng.host, rng.device) if rng is not None else (None, None)
        t_aug = (torch.rand(b, generator=host).to(pixels.device) * self.cfg.diffusion.cond_aug_max if train
                 else torch.zeros(b, device=pixels.device))
        cond.update(self.lowres_condition(downsample(pixels, self.cfg.model.upscale), t_aug, generator=dev))
        return cond

    def example_condition(self, shape: tuple) -> dict:
        b, _, t, _, _ = shape
        low = torch.zeros(b, 3, t, self.low_size, self.low_size)
        return {**super().example_condition(shape), **self.lowres_condition(low, torch.zeros(b))}

    # --- sampling -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def upscale(self, lowres: Tensor, prompts: List[str], aug: float = 0.0, **kwargs) -> Tensor:
        """lowres (b 3 t h w) in [-1, 1] -> SSR sample (b 3 t H W), H = data.size; any number of frames t
        (MultiDiffusion over sampler.window frames when t exceeds it). kwargs go to generate (steps, seed, seeds,
        ...). Clip i's augmentation noise is seeded seeds[i] + 1 (default seed + i + 1), as its sampling noise is
        seeded seeds[i]: no clip depends on its batch."""
        b, _, t = lowres.shape[:3]
        t_aug = torch.full((b,), float(aug), device=self.device)
        seeds = kwargs.get("seeds") or [int(kwargs.get("seed", 0)) + i for i in range(b)]
        g = [torch.Generator(device=self.device).manual_seed(int(k) + 1) for k in seeds]
        cond = self.lowres_condition(lowres.to(self.device, torch.float32), t_aug, generator=g)
        return self.generate(prompts, frames=t, extra_cond=cond, **kwargs)

    # --- validation videos: low-res | SSR | ground truth --------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        if batch_idx == 0:
            k = max(1, min(len(self.cfg.train.val_prompts), batch["pixels"].shape[0]))
            self._val_clips = (batch["pixels"][:k].detach(), list(batch["caption"][:k]))

    def on_validation_epoch_end(self) -> None:
        clips = getattr(self, "_val_clips", None)
        if self.trainer.sanity_checking or clips is None:
            return
        hr, captions = clips                                                       # b c t H W
        low = downsample(hr, self.cfg.model.upscale)                               # b c t h w
        sr = self.upscale(low, captions, seed=self.cfg.train.seed)
        if not self.trainer.is_global_zero:
            return
        out_dir = Path(self.cfg.run_dir) / "samples" / f"step_{self.global_step:07d}"
        logger = self.logger.experiment if self.logger is not None else None
        nearest = low.repeat_interleave(self.cfg.model.upscale, -1).repeat_interleave(self.cfg.model.upscale, -2)
        for i, caption in enumerate(captions):
            frames: np.ndarray = tile([to_uint8(nearest[i]), to_uint8(sr[i]), to_uint8(hr[i])])   # t H 3W 3
            write_mp4(out_dir / f"{i:02d}.mp4", frames, fps=self.cfg.data.fps)
            if logger is not None and hasattr(logger, "file_writer"):
                log_video(logger, f"ssr/{i:02d}_lowres_ssr_gt", frames, self.global_step, fps=self.cfg.data.fps)
                logger.add_text(f"ssr/{i:02d}/caption", caption, self.global_step)
