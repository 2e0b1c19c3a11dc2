"""ModelParts: what a model is, for training and for inference alike.

The network, the frozen text encoder, the latent codec (None: the diffusion runs in pixels), the diffusion process
(schedule, prediction, the network's noise input) and the resolved config that built them. A LightningModule owns
them while it trains (lumiere_pl.lit); a LumierePipeline owns them while it samples (lumiere_pl.pipeline). Neither
copies them, and neither changes the config.

Every rule of how a model's data meets its network lives here once:
  text_condition   captions -> token states and masks, with the null caption for classifier-free guidance
  video_condition  Lumiere's <C, M> (Sec. 4): known pixels and their mask, in the space the network denoises
  lowres_condition the SSR's conditioning: the low-res clip upsampled and noise-augmented (Sec. 3.2)
  encode / decode  pixels in [-1, 1] <-> what the network denoises (identity in pixel space; a VAE's latents)
  x0               a training batch -> what the network denoises: its pixels encoded, or, from encoded shards, a draw
                   from the stored VAE posterior (the same draw, from the same generator, as encoding on the fly)
  stored_text_condition  the text_condition of a batch from encoded shards (token states stored with each clip)
  sample_shape     one sample's (c t h w) or (c h w)
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn

from lumiere_pl.config import ExperimentConfig
from lumiere_pl.diffusion import DiffusionProcess, c_noise, make_schedule
from lumiere_pl.diffusion.schedules import alpha_sigma
from lumiere_pl.errors import InputError
from lumiere_pl.conditioning import condition_from
from lumiere_pl.models import build_model
from lumiere_pl.models.latent import LatentCodec
from lumiere_pl.models.ssr import upsample
from lumiere_pl.text import build_text_encoder
from lumiere_pl.text.cached import CachedTextEncoder
from lumiere_pl.text.encoders import TextEncoder
from lumiere_pl.utils.tensors import append_dims

Generators = Optional[torch.Generator | Sequence[torch.Generator]]


def build_process(cfg: ExperimentConfig) -> DiffusionProcess:
    """Ours: diffusion.schedule in log-SNR (resolution-shifted by diffusion.shift_base), c_noise as the network's
    noise input. diffusers_stunet: the pretrained model's own discrete schedule, its timestep as the noise input
    (lumiere_pl/diffusion/discrete.py)."""
    if cfg.model.name == "diffusers_stunet":
        from lumiere_pl.diffusion.discrete import DiscreteSchedule, alphas_cumprod

        s = cfg.model.t2i_schedule
        schedule = DiscreteSchedule(alphas_cumprod(s.beta_schedule, s.beta_start, s.beta_end, s.num_train_timesteps))
        return DiffusionProcess(schedule.logsnr, cfg.diffusion.prediction, schedule.timestep)
    d = cfg.diffusion
    return DiffusionProcess(make_schedule(d.schedule, d.logsnr_min, d.logsnr_max, cfg.data.size, d.shift_base),
                            d.prediction, c_noise)


def build_codec(cfg: ExperimentConfig, encoder: bool = True) -> Optional[LatentCodec]:
    """The VAE of a latent diffusers_stunet (model.diffusers.vae, resolved from the pipeline folder), else None.
    encoder=False: its decoder only (training from encoded shards)."""
    d = cfg.model.diffusers
    if cfg.model.name != "diffusers_stunet" or not d.vae:
        return None
    from lumiere_pl.models.diffusers_folder import load_vae

    frozen = getattr(torch, cfg.model.frozen_dtype)
    return LatentCodec(load_vae(d.vae, d.variant, frozen), d.vae_chunk, frozen, encoder=encoder)


class ModelParts:
    def __init__(self, cfg: ExperimentConfig, net: nn.Module, text_encoder: TextEncoder, process: DiffusionProcess,
                 codec: Optional[LatentCodec] = None):
        self.cfg, self.net, self.text_encoder, self.process, self.codec = cfg, net, text_encoder, process, codec
        # diffusers_stunet: the frozen pretrained U-Net weights, read from model.init_from whenever the network is
        # built, so never written to checkpoints (GBs) nor expected back from them; ours: none
        self.pretrained_keys = frozenset(f"unet.{n}" for n, p in net.unet.named_parameters() if not p.requires_grad
                                         ) if cfg.model.name == "diffusers_stunet" else frozenset()
        if codec is None and getattr(net, "in_channels", 3) != 3:
            raise InputError(f"the U-Net of {cfg.model.init_from} takes {net.in_channels}-channel latents but no "
                             "VAE is set: model.diffusers.vae, or a pipeline folder with vae/")

    @classmethod
    def build(cls, cfg: ExperimentConfig, t2i_state: Optional[dict] = None,
              encoded_prompts: Optional[str] = None) -> "ModelParts":
        """Every part of cfg's model, freshly built (t2i_state: the pretrained T2I weights to inflate; a
        diffusers_stunet reads its own from model.init_from). Weights are then loaded by the owner.
        encoded_prompts: the prompts file of encoded shards (training from them): no text encoder is built (the
        stored encodings stand in for it, text/cached.py) and the VAE holds its decoder only."""
        if encoded_prompts is not None:
            text_encoder: TextEncoder = CachedTextEncoder.from_file(encoded_prompts, cfg.text.encoder)
        else:
            text_encoder = build_text_encoder(cfg.text, getattr(torch, cfg.model.frozen_dtype))
        net = build_model(cfg, text_encoder.dim, t2i_state)
        return cls(cfg, net, text_encoder, build_process(cfg), build_codec(cfg, encoder=encoded_prompts is None))

    def modules(self) -> List[nn.Module]:
        """The modules a device or dtype move must reach."""
        return [m for m in (self.net, self.text_encoder, self.codec) if m is not None]

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    # --- what the model makes -----------------------------------------------------------------------------------
    @property
    def is_video(self) -> bool:
        return self.cfg.model.name != "t2i"

    @property
    def is_ssr(self) -> bool:
        return self.cfg.model.name == "ssr"

    @property
    def conditional(self) -> bool:
        """A STUNet with Lumiere's <C, M> input (image-to-video, inpainting, the cascade's TSR)."""
        return self.is_video and self.cfg.model.temporal.conditional

    @property
    def factor(self) -> int:
        """Pixels per latent cell along each side (1 in pixel space)."""
        return self.codec.factor if self.codec is not None else 1

    def sample_shape(self, frames: Optional[int] = None) -> tuple:
        """Shape of one sample the network denoises: (c t h w) for videos, (c h w) for images."""
        d, f = self.cfg.data, self.factor
        c = self.codec.channels if self.codec is not None else 3
        return (c, frames or d.frames, d.size // f, d.size // f) if self.is_video else (c, d.size // f, d.size // f)

    # --- the space the diffusion runs in ------------------------------------------------------------------------
    def encode(self, pixels: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """Clips / images in [-1, 1] -> what the network denoises (a VAE posterior draw, with `generator`)."""
        return pixels if self.codec is None else self.codec.encode(pixels, generator)

    def decode(self, x: Tensor) -> Tensor:
        """The inverse of encode: samples -> pixels in [-1, 1]."""
        return x if self.codec is None else self.codec.decode(x)

    def x0(self, batch: dict, generator: Optional[torch.Generator] = None) -> Tensor:
        """What the network denoises for a training batch: its "pixels" encoded, or, from encoded shards, a draw
        from the stored posterior ("latent_mean", "latent_logvar"; LatentCodec.sample: the same draw as encoding)."""
        if "latent_mean" in batch:
            return self.codec.sample(batch["latent_mean"], batch["latent_logvar"], generator)
        return self.encode(batch["pixels"], generator)

    def batch_pixels(self, batch: dict) -> Tensor:
        """A batch's clips in pixels (b 3 t h w): its "pixels", or the decoded posterior means of encoded shards."""
        if "pixels" in batch:
            return batch["pixels"]
        return self.decode(self.codec.scaled(batch["latent_mean"].to(self.device)))

    # --- conditioning -------------------------------------------------------------------------------------------
    def text_condition(self, captions: Sequence[str], drop: float = 0.0,
                       generator: Optional[torch.Generator] = None) -> dict:
        """Captions (replaced by "" with probability `drop`: classifier-free guidance training) and the null one:
        {"text": (b L d), "text_mask": (b L), "null_text", "null_text_mask"}."""
        captions = list(captions)
        if drop > 0:
            keep = torch.rand(len(captions), generator=generator).ge(drop).tolist()
            captions = [c if k else "" for c, k in zip(captions, keep)]
        text, mask = self.text_encoder(captions + [""], device=self.device)
        b = len(captions)
        return {"text": text[:b], "text_mask": mask[:b],
                "null_text": text[b:].expand(b, -1, -1), "null_text_mask": mask[b:].expand(b, -1)}

    def stored_text_condition(self, text: Tensor, mask: Tensor, drop: float = 0.0,
                              generator: Optional[torch.Generator] = None) -> dict:
        """text_condition for token states stored with each clip (encoded shards): text (b L d), mask (b L). The
        same draws as text_condition: with probability `drop` a clip's states are replaced by the null caption's."""
        null, null_mask = self.text_encoder([""], device=self.device)                   # (1 L d), (1 L)
        b = text.shape[0]
        text, mask = text.to(self.device, null.dtype), mask.to(self.device).bool()
        if drop > 0:
            keep = torch.rand(b, generator=generator).ge(drop).to(self.device)         # (b,)
            text = torch.where(keep[:, None, None], text, null)
            mask = torch.where(keep[:, None], mask, null_mask)
        return {"text": text, "text_mask": mask, "null_text": null.expand(b, -1, -1),
                "null_text_mask": null_mask.expand(b, -1)}

    def video_condition(self, video: Tensor, known: Tensor) -> dict:
        """<C, M> from a pixel clip (b 3 t h w) in [-1, 1] and its mask (b 1 t h w), 1 = known, in the space the
        network denoises: {"cond_video", "cond_mask"} (with a VAE: models/latent.py's encode_condition)."""
        if self.codec is None:
            return condition_from(video, known)
        return self.codec.encode_condition(video, known)

    def empty_video_condition(self, x: Tensor) -> dict:
        """The task none (C = 0, M = 0: plain text-to-video) for samples x (b c t h w) of the network's space."""
        return {"cond_video": x.new_zeros(x.shape), "cond_mask": x.new_zeros(x[:, :1].shape)}

    def lowres_condition(self, lowres: Tensor, t_aug: Tensor, generator: Generators = None) -> dict:
        """SSR: lowres (b c t h w) at any size -> {"concat": upsampled to data.size and noise-augmented (b c t H W),
        "aug_noise": (b,)}. The augmentation is alpha * up + sigma * eps at log-SNR logsnr(t_aug) (VP: unit scale)
        on the c_noise scale of the main noise (Ho et al. 2022); t_aug = 0 leaves the clip as is. generator: one for
        the batch, or one per clip (a clip's noise then does not depend on its batch)."""
        up = upsample(lowres, self.cfg.data.size)                                   # b c t H W
        logsnr = self.process.logsnr(t_aug.to(up.device, torch.float32))            # (b,)
        alpha, sigma = (append_dims(c, up.ndim) for c in alpha_sigma(logsnr))
        if isinstance(generator, (list, tuple)):
            eps = torch.stack([torch.randn(up.shape[1:], device=up.device, dtype=up.dtype, generator=g)
                               for g in generator])
        else:
            eps = torch.randn(up.shape, device=up.device, dtype=up.dtype, generator=generator)
        concat = torch.where(append_dims(t_aug > 0, up.ndim).to(up.device), alpha * up + sigma * eps, up)
        return {"concat": concat, "aug_noise": c_noise(logsnr)}

    @property
    def low_size(self) -> int:
        """SSR: the side of its low-res input, data.size / model.upscale."""
        return self.cfg.data.size // self.cfg.model.upscale
