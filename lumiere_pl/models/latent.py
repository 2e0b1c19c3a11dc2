"""Latent diffusion's codec (Stable Diffusion): a frozen AutoencoderKL between pixel clips and the U-Net's latents.

Clips are encoded on the fly, frame by frame, `chunk` frames per VAE call, so the peak memory of an 80-frame clip
is that of `chunk` frames. Latents are scaled by the VAE config's scaling_factor (and shift_factor, when it has one)
to the unit-variance space the U-Net was trained on. A FrozenHolder: Lightning moves it with the model, its weights
stay out of the checkpoints.

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
    def __init__(self, vae: nn.Module, chunk: int = 8, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.hold("vae", vae)
        self.to(dtype)            # model.frozen_dtype (float32 by default, and then the training precision decides)
        c = vae.config
        self.chunk = chunk
        self.scale, self.shift = float(c.scaling_factor), float(getattr(c, "shift_factor", None) or 0.0)
        self.factor = 2 ** (len(c.block_out_channels) - 1)      # spatial downsampling
        self.channels = int(c.latent_channels)

    def _encode_frames(self, frames: Tensor, generator: Optional[torch.Generator] = None,
                       mean: bool = False) -> Tensor:
        """((n) 3 H W) in [-1, 1] -> ((n) c H/f W/f) scaled latents: posterior draws (generator: their noise), or
        the posterior means."""
        frames = frames.to(self.dtype)
        dists = [self.vae.encode(x).latent_dist for x in frames.split(self.chunk)]
        z = torch.cat([d.mean if mean else d.sample(generator) for d in dists])
        return (z.float() - self.shift) * self.scale

    @torch.no_grad()
    def encode(self, pixels: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """(b 3 t H W) in [-1, 1] -> (b c t H/f W/f): a draw from the VAE's posterior (generator: its noise)."""
        return unfold_time(self._encode_frames(fold_time(pixels), generator), pixels.shape[2])

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
            z[has] = self._encode_frames(frames[has], mean=True)
        return {"cond_video": unfold_time(z, t) * mask, "cond_mask": mask}
