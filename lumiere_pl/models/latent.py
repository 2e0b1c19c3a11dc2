"""Latent diffusion's codec (Stable Diffusion): a frozen AutoencoderKL between pixel clips and the U-Net's latents.

Clips are encoded on the fly, frame by frame, `chunk` frames per VAE call, so the peak memory of an 80-frame clip
is that of `chunk` frames. Latents are scaled by the VAE config's scaling_factor (and shift_factor, when it has one)
to the unit-variance space the U-Net was trained on. A FrozenHolder: Lightning moves it with the model, its weights
stay out of the checkpoints.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from lumiere_pl.utils.frozen import FrozenHolder
from lumiere_pl.utils.tensors import fold_time, unfold_time


class LatentCodec(FrozenHolder):
    def __init__(self, vae: nn.Module, chunk: int = 8):
        super().__init__()
        self.hold("vae", vae)
        self.float()                               # the training precision decides (autocast, or a *-true cast)
        c = vae.config
        self.chunk = chunk
        self.scale, self.shift = float(c.scaling_factor), float(getattr(c, "shift_factor", None) or 0.0)
        self.factor = 2 ** (len(c.block_out_channels) - 1)      # spatial downsampling
        self.channels = int(c.latent_channels)

    @torch.no_grad()
    def encode(self, pixels: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """(b 3 t H W) in [-1, 1] -> (b c t H/f W/f): a draw from the VAE's posterior (generator: its noise)."""
        t = pixels.shape[2]
        frames = fold_time(pixels).to(self.dtype)                           # ((b t) 3 H W)
        z = torch.cat([self.vae.encode(x).latent_dist.sample(generator) for x in frames.split(self.chunk)])
        return unfold_time((z.float() - self.shift) * self.scale, t)

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """(b c t h w) -> (b 3 t h*f w*f) in [-1, 1]."""
        t = latents.shape[2]
        z = fold_time(latents / self.scale + self.shift).to(self.dtype)     # ((b t) c h w)
        x = torch.cat([self.vae.decode(c).sample for c in z.split(self.chunk)])
        return unfold_time(x.float().clamp(-1, 1), t)
