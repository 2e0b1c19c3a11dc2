"""Lumiere's applications (Sec. 4) over a LumierePipeline: stylization, image-to-video, inpainting, cinemagraphs.

The last three need a STUNet trained with model.temporal.conditional=true: they give the pipeline the known pixels
and their mask (M = 1 where known); the pipeline brings them to the space its network denoises (a latent STUNet
encodes them with its VAE: ModelParts.video_condition) and samples with them.
"""
from __future__ import annotations

from typing import Dict, List

import torch
from torch import Tensor


@torch.no_grad()
def stylize_(net, style_t2i_state: Dict[str, Tensor], alpha: float) -> None:
    """Stylized generation (Sec. 4.1): W = alpha * W_style + (1 - alpha) * W_orig for the spatial (T2I) weights of a
    STUNet, in place; the temporal weights are kept. style_t2i_state: a style-fine-tuned T2I U-Net's state_dict."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha}: expected a value in [0, 1]")
    own = net.t2i.state_dict()
    missing = sorted(set(own) - set(style_t2i_state))
    if missing:
        raise KeyError(f"style T2I weights lack {len(missing)} keys of the STUNet's T2I, e.g. {missing[:3]}")
    for k, w in own.items():
        if w.is_floating_point():
            w.copy_(torch.lerp(w, style_t2i_state[k].to(w), alpha))


def image_to_video(pipe, image: Tensor, prompts: List[str], frames: int, **kwargs):
    """image (b 3 h w) in [-1, 1] -> a VideoOutput of (b 3 t h w) clips whose first frame is conditioned on the
    image; kwargs go to the LumierePipeline call (steps, guidance, seeds, ...)."""
    b, c, h, w = image.shape
    video = torch.zeros(b, c, frames, h, w, device=image.device)
    video[:, :, 0] = image
    mask = torch.zeros(b, 1, frames, h, w, device=image.device)
    mask[:, :, 0] = 1.0
    return pipe(prompts, video=video, mask=mask, **kwargs)


def inpaint(pipe, video: Tensor, known: Tensor, prompts: List[str], **kwargs):
    """video (b 3 t h w), known (b 1 t h w) with 1 = keep: fills the unknown pixels."""
    return pipe(prompts, video=video, mask=known.to(video.dtype), **kwargs)


def cinemagraph(pipe, image: Tensor, region: Tensor, prompts: List[str], frames: int, **kwargs):
    """Animate only `region` (b 1 h w, 1 = animate) of a still image (b 3 h w); the rest stays the image."""
    video = image[:, :, None].expand(-1, -1, frames, -1, -1)
    known = (1.0 - region.to(image.dtype))[:, :, None].expand(-1, -1, frames, -1, -1)
    return pipe(prompts, video=video, mask=known, **kwargs)
