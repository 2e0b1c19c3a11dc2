"""DiffusersModule: the DiffusionModule of model.name=diffusers_stunet, a DeepFloyd IF or Stable Diffusion U-Net
inflated into a STUNet (models/diffusers_stunet.py).

What differs from our own STUNet, and only that:
- the diffusion is the pretrained model's own: its discrete schedule (model.t2i_schedule, read from the folder's
  scheduler/) bridged to log-SNR, the network's noise input its own timestep (diffusion/discrete.py), its prediction
  type (diffusion.prediction, from the same file); diffusion.schedule / logsnr_* / shift_base are not used;
- latent diffusion when the folder has a VAE (SD): clips are encoded on the fly, samples decoded to RGB in chunks,
  the <C, M> conditioning of a conditional model encoded to the latent grid (video_condition);
- model.frozen_dtype=bfloat16: the frozen U-Net, text encoder and VAE are stored in bf16 (what trains stays fp32);
- checkpoints leave out the frozen U-Net weights: they are the pretrained ones, read again from model.init_from
  (GBs for IF or SD per checkpoint otherwise); anything that trains (temporal modules, unfrozen layers) is kept.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from lumiere_pl.diffusion.discrete import DiscreteSchedule, alphas_cumprod
from lumiere_pl.lit.module import DiffusionModule
from lumiere_pl.models.diffusers_folder import load_vae
from lumiere_pl.models.latent import LatentCodec
from lumiere_pl.errors import InputError


class DiffusersModule(DiffusionModule):
    def __init__(self, config: dict, t2i_state: Optional[dict] = None):
        super().__init__(config, t2i_state)
        d = self.cfg.model.diffusers
        frozen = getattr(torch, self.cfg.model.frozen_dtype)     # model.frozen_dtype: read straight into it (the
        # U-Net by build_model, the text encoder by DiffusionModule)
        self.codec = LatentCodec(load_vae(d.vae, d.variant, frozen), d.vae_chunk, frozen) if d.vae else None
        if self.codec is None and self.net.in_channels != 3:
            raise InputError(f"the U-Net of {self.cfg.model.init_from} takes {self.net.in_channels}-channel latents "
                             f"but no VAE is set: model.diffusers.vae, or a pipeline folder with vae/ (resolved by "
                             f"lumiere-train)")
        # frozen pretrained U-Net weights: not written to checkpoints, not expected back from them
        self.pretrained_keys = {f"net.unet.{n}" for n, p in self.net.unet.named_parameters() if not p.requires_grad}
        self.register_load_state_dict_post_hook(_pretrained_weights_not_missing)

    def diffusion_schedule(self):
        s = self.cfg.model.t2i_schedule
        self.schedule = DiscreteSchedule(alphas_cumprod(s.beta_schedule, s.beta_start, s.beta_end,
                                                        s.num_train_timesteps))
        return self.schedule.logsnr, self.schedule.timestep

    # --- latent space -------------------------------------------------------------------------------------------
    def encode(self, pixels: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        return pixels if self.codec is None else self.codec.encode(pixels, generator)

    def decode(self, x: Tensor) -> Tensor:
        return x if self.codec is None else self.codec.decode(x)

    def video_condition(self, video: Tensor, known: Tensor) -> dict:
        """<C, M> in pixels -> latents with a VAE (C: the masked clip's posterior mean, scaled; M: a latent cell is
        known only if every pixel under it is; models/latent.py)."""
        if self.codec is None:
            return super().video_condition(video, known)
        return self.codec.encode_condition(video, known)

    def sample_shape(self, frames: Optional[int] = None) -> tuple:
        d, f = self.cfg.data, self.codec.factor if self.codec is not None else 1
        return (self.net.in_channels, frames or d.frames, d.size // f, d.size // f)

    # --- checkpoints --------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        for k in self.pretrained_keys:
            checkpoint["state_dict"].pop(k, None)


def _pretrained_weights_not_missing(module: DiffusersModule, incompatible) -> None:
    """load_state_dict post-hook: the frozen pretrained weights are already loaded from model.init_from."""
    incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if k not in module.pretrained_keys]
