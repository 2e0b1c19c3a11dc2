"""Latent diffusion's codec (Stable Diffusion): a frozen AutoencoderKL between pixel clips and the U-Net's latents.

Encoding is two steps, so that clips encoded on the fly and clips read from encoded shards (lumiere-shards encode,
docs/DATA.md) give the same latents from the same noise:
  posterior(pixels) -> (mean, logvar)   the VAE encoder, frame by frame, `chunk` frames per call (the peak memory
                                        of an 80-frame clip is that of `chunk` frames); unscaled, as stored
  sample(mean, logvar, generator)       one draw for the whole batch: eps ~ N(0, 1) drawn at once over (b c t h w)
                                        in float32, z = mean + exp(logvar / 2) eps, scaled by the VAE config's
                                        scaling_factor (and shift_factor, when it has one) to the unit-variance space
                                        the U-Net was trained on
A codec built with encoder=False holds the VAE's decoder only (training from encoded shards: the encoder's weights
are dropped after loading, before anything is moved to a device). A FrozenHolder: Lightning moves it with the model,
its weights stay out of the checkpoints.

Lumiere's <C, M> conditioning (Sec. 4) in latents (encode_condition): the masked conditioning video C is encoded
like a clip (its posterior mean: one latent per given image, no noise draw), the mask M brought to the latent grid by
one rule, a latent cell is known only if every pixel under it (its f x f patch) is known: M_latent is one minus a
max-pool of the unknown mask. C is zeroed where M_latent = 0, as C = 0 where M = 0 in pixels, so the task `none`
(M = 0) is exactly zeros in both spaces.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lumiere_pl.utils.frozen import FrozenHolder
from lumiere_pl.utils.tensors import fold_time, unfold_time


class LatentCodec(FrozenHolder):
    def __init__(self, vae: nn.Module, chunk: int = 8, dtype: torch.dtype = torch.float32, encoder: bool = True):
        super().__init__()
        if not encoder:                     # the decoder alone: its encoder's weights are never moved nor held
            vae.encoder, vae.quant_conv = None, None
        self.hold("vae", vae)
        self.to(dtype)            # model.frozen_dtype (float32 by default, and then the training precision decides)
        c = vae.config
        self.chunk, self.has_encoder = chunk, encoder
        self.scale, self.shift = float(c.scaling_factor), float(getattr(c, "shift_factor", None) or 0.0)
        self.factor = 2 ** (len(c.block_out_channels) - 1)      # spatial downsampling
        self.channels = int(c.latent_channels)

    def _posterior_frames(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """((n) 3 H W) in [-1, 1] -> the posterior's (mean, logvar), each ((n) c H/f W/f), unscaled, in the VAE's
        dtype; `chunk` frames per VAE call."""
        if not self.has_encoder:
            raise RuntimeError("this LatentCodec holds the VAE's decoder only (built for training from encoded "
                               "shards): it cannot encode pixels")
        frames = frames.to(self.dtype)
        dists = [self.vae.encode(x).latent_dist for x in frames.split(self.chunk)]
        return torch.cat([d.mean for d in dists]), torch.cat([d.logvar for d in dists])

    @torch.no_grad()
    def posterior(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """(b 3 t H W) in [-1, 1] -> the VAE posterior's (mean, logvar), each (b c t H/f W/f), unscaled."""
        t = pixels.shape[2]
        mean, logvar = self._posterior_frames(fold_time(pixels))
        return unfold_time(mean, t), unfold_time(logvar, t)

    def sample(self, mean: Tensor, logvar: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """A draw from the posterior (b c t h w), scaled: one randn over the whole batch in float32 (generator:
        its noise), z = mean + exp(logvar / 2) eps, then (z - shift) * scale. logvar as the VAE clamps it."""
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=torch.float32)
        z = mean.float() + torch.exp(0.5 * logvar.float()) * eps
        return (z - self.shift) * self.scale

    def scaled(self, z: Tensor) -> Tensor:
        """Unscaled latents (a posterior mean) -> the U-Net's scaled space."""
        return (z.float() - self.shift) * self.scale

    @torch.no_grad()
    def encode(self, pixels: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """(b 3 t H W) in [-1, 1] -> (b c t H/f W/f): a draw from the VAE's posterior (generator: its noise)."""
        return self.sample(*self.posterior(pixels), generator)

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """(b c t h w) -> (b 3 t h*f w*f) in [-1, 1]."""
        t = latents.shape[2]
        z = fold_time(latents / self.scale + self.shift).to(self.dtype)     # ((b t) c h w)
        x = torch.cat([self.vae.decode(c).sample for c in z.split(self.chunk)])
        return unfold_time(x.float().clamp(-1, 1), t)

    def known_latent(self, known: Tensor) -> Tensor:
        """(b 1 t H W) pixel mask, 1 = known -> (b 1 t H/f W/f): a latent cell is known only if every pixel of its
        f x f patch is known (one minus a max-pool of the unknown mask)."""
        unknown = 1.0 - fold_time(known.float())                            # ((b t) 1 H W)
        return unfold_time(1.0 - F.max_pool2d(unknown, self.factor), known.shape[2])

    @torch.no_grad()
    def encode_condition(self, video: Tensor, known: Tensor) -> dict:
        """Lumiere's <C, M> from pixels to latents: video (b 3 t H W) in [-1, 1], known (b 1 t H W), 1 = known ->
        {"cond_video": (b c t h w), "cond_mask": (b 1 t h w)}. Unknown pixels are zeroed before encoding (the pixel
        path's C = video * M); C is the posterior mean, zeroed where the latent mask is 0. Frames without a known
        latent cell are not encoded (their C is zero anyway): image-to-video encodes one frame per clip."""
        mask = self.known_latent(known)                                     # (b 1 t h w)
        b, _, t, h, w = mask.shape
        frames = fold_time(video * known.to(video.dtype))                  # ((b t) 3 H W), C = video * M
        has = fold_time(mask).flatten(1).amax(1) > 0                        # ((b t),) frames with a known cell
        z = torch.zeros(b * t, self.channels, h, w, device=video.device)   # ((b t) c h w)
        if has.any():
            z[has] = self.scaled(self._posterior_frames(frames[has])[0])
        return {"cond_video": unfold_time(z, t) * mask, "cond_mask": mask}
