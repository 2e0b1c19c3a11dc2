"""Spatial super-resolution (SSR) network (Lumiere Sec. 3.2): an inflated T2I-style U-Net that sees the noisy
high-resolution video and, concatenated to it, the low-resolution video upsampled to the same size.

It is a STUNet built from a UNet with cond_channels = in_channels ("concat" is the upsampled low-res video,
(b 3 t h w)) and, when model.unet.aug_embedding, a second noise-level embedding for the conditioning augmentation
(cond["aug_noise"], (b,), on the c_noise scale). Temporal down/up-sampling follows model.temporal.down_levels; the
SSR experiments set it to [] because the SSR runs on short windows (MultiDiffusion stitches them).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from lumiere_pl.config import ExperimentConfig, UNetConfig
from lumiere_pl.models.stunet import STUNet
from lumiere_pl.models.unet import UNet
from lumiere_pl.utils.tensors import fold_time, unfold_time


def ssr_unet_config(u: UNetConfig) -> UNetConfig:
    """The SSR's U-Net config: cond_channels defaults to in_channels (the upsampled low-res video)."""
    return dataclasses.replace(u, cond_channels=u.cond_channels or u.in_channels)


def adapt_t2i_state(state: Dict[str, Tensor], unet: UNet) -> Dict[str, Tensor]:
    """A plain T2I state_dict made loadable into the SSR's UNet: conv_in gets zero weights for the new conditioning
    channels (so the pretrained network starts as the T2I model) and the aug embedding keeps its fresh init."""
    state = dict(state)
    own = unet.state_dict()
    w, w_own = state["conv_in.weight"], own["conv_in.weight"]                # (ch, c_in, 3, 3)
    if w.shape != w_own.shape:
        if w.shape[0] != w_own.shape[0] or w.shape[1] > w_own.shape[1]:
            raise ValueError(f"T2I conv_in {tuple(w.shape)} cannot seed the SSR's conv_in {tuple(w_own.shape)}")
        state["conv_in.weight"] = torch.cat([w, w.new_zeros(w.shape[0], w_own.shape[1] - w.shape[1], *w.shape[2:])], 1)
    for k, v in own.items():
        if k.startswith("aug_embed.") and k not in state:
            state[k] = v
    return state


def build_ssr(cfg: ExperimentConfig, text_dim: int, t2i_state: Optional[dict] = None) -> STUNet:
    """SSR STUNet. With model.temporal.freeze_spatial, the pretrained T2I layers stay frozen except the inputs the
    T2I never had (conv_in, which here also reads the low-res video, and the aug-level embedding)."""
    unet = UNet(ssr_unet_config(cfg.model.unet), text_dim)
    if t2i_state is not None:
        unet.load_state_dict(adapt_t2i_state(t2i_state, unet))
    net = STUNet(unet, cfg.model.temporal)
    if cfg.model.temporal.freeze_spatial:
        unet.conv_in.requires_grad_(True)
        if unet.aug_embed is not None:
            unet.aug_embed.requires_grad_(True)
    return net


# ---------------------------------------------------------------------------------------------------------------------
# The low-resolution input


def downsample(video: Tensor, factor: int) -> Tensor:
    """(b c t h w) -> (b c t h/f w/f) by area averaging (the anti-aliased low-res of a clip)."""
    if factor == 1:
        return video
    t = video.shape[2]
    return unfold_time(F.avg_pool2d(fold_time(video), factor), t)


def upsample(video: Tensor, size: int) -> Tensor:
    """(b c t h w) -> (b c t size size), bilinear: the SSR's conditioning channels."""
    if video.shape[-2:] == (size, size):
        return video
    t = video.shape[2]
    up = F.interpolate(fold_time(video), size=(size, size), mode="bilinear", align_corners=False)
    return unfold_time(up, t).clamp(-1.0, 1.0)
