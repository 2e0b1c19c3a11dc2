"""The cascade baseline Lumiere argues against (Sec. 1, 5): keyframes, then temporal super-resolution (TSR).

A keyframe model generates T/k distant frames (the same time span at 1/k of the frame rate); a TSR model, a
conditional STUNet trained on the `keyframes` task only (experiments/cascade_tsr_shapes.yaml), fills in the frames
between them: the keyframes go to frames 0, k, 2k, ..., T-k of the masked conditioning video C, M marks those frames,
and the TSR samples the whole T-frame clip with that <C, M> (Lumiere's conditional input). Frames T-k+1 .. T-1 lie
after the last keyframe: the TSR extrapolates them.

Known keyframes are NOT pasted into the output by default: the clip is the TSR's sample, conditioned on the keyframes,
as in Imagen Video / Video LDM, so the pipeline's output is one model's coherent sample and TSR errors at the
keyframes are not hidden. paste_keyframes=True overwrites frames 0, k, ... with the keyframes (for inspection).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from lumiere_pl.lit.conditioning import condition_from, keyframe_indices

TSR_SEED_OFFSET = 1_000_003     # the TSR stage's noise seeds: seed + offset, so its noise is not the keyframes' noise


def check_pair(keyframe_module, tsr_module) -> Tuple[int, int]:
    """(k, T): the TSR's stride and frame count, after checking the two modules fit together."""
    t = tsr_module.cfg.model.temporal
    if not (tsr_module.is_video and t.conditional and "keyframes" in t.tasks):
        raise ValueError("the TSR model must be a conditional STUNet trained on the keyframes task "
                         "(model.temporal.conditional=true, 'keyframes' in model.temporal.tasks), "
                         "e.g. experiments/cascade_tsr_shapes.yaml")
    if not keyframe_module.is_video:
        raise ValueError("the keyframe model must be a video model (STUNet), e.g. experiments/cascade_keyframes_shapes.yaml")
    k, frames = t.keyframe_stride, tsr_module.cfg.data.frames
    kf_frames = keyframe_module.cfg.data.frames
    if kf_frames * k != frames:
        raise ValueError(f"the keyframe model makes {kf_frames} frames; the TSR (keyframe_stride={k}) expects "
                         f"{frames} // {k} = {frames // k}")
    return k, frames


def keyframe_condition(keyframes: Tensor, stride: int, frames: int) -> dict:
    """keyframes (b 3 n h w) -> <C, M> for a `frames`-frame clip: keyframe j at frame j * stride.

    Returns {"cond_video": (b 3 frames h w), "cond_mask": (b 1 frames h w)}."""
    b, c, n, h, w = keyframes.shape
    idx = keyframe_indices(frames, stride)
    if len(idx) != n:
        raise ValueError(f"{n} keyframes do not fill frames {idx} ({frames} frames, stride {stride})")
    video = keyframes.new_zeros(b, c, frames, h, w)                   # (b 3 T h w)
    mask = keyframes.new_zeros(b, 1, frames, h, w)                    # (b 1 T h w)
    video[:, :, idx] = keyframes
    mask[:, :, idx] = 1.0
    return condition_from(video, mask)


@torch.no_grad()
def sample_cascade(keyframe_module, tsr_module, prompts: List[str], steps: Optional[int] = None,
                   guidance: Optional[float] = None, seed: int = 0, seeds: Optional[List[int]] = None,
                   use_ema: bool = True, progress: bool = False, paste_keyframes: bool = False) -> Tensor:
    """Keyframes, then TSR: (b 3 T h w) in [-1, 1], T = the TSR's data.frames.

    steps / guidance: both stages (None: each model's sampler config). seeds[i]: clip i's keyframe noise; its TSR
    noise is seeds[i] + TSR_SEED_OFFSET."""
    k, frames = check_pair(keyframe_module, tsr_module)
    seeds = seeds if seeds is not None else [seed + i for i in range(len(prompts))]
    opts = dict(steps=steps, guidance=guidance, use_ema=use_ema, progress=progress)
    keyframes = keyframe_module.generate(prompts, frames=frames // k, seeds=seeds, **opts)       # (b 3 T/k h w)
    cond = keyframe_condition(keyframes.to(tsr_module.device), k, frames)                       # C (b 3 T h w), M
    video = tsr_module.generate(prompts, frames=frames, seeds=[s + TSR_SEED_OFFSET for s in seeds],
                                extra_cond=cond, **opts)                                         # (b 3 T h w)
    if paste_keyframes:
        video[:, :, keyframe_indices(frames, k)] = keyframes.to(video)
    return video
