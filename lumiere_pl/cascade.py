"""The cascade baseline Lumiere argues against (Sec. 1, 5): keyframes, then temporal super-resolution (TSR).

A keyframe model generates T/k distant frames (the same time span at 1/k of the frame rate); a TSR model, a
conditional STUNet trained on the `keyframes` task only (experiments/shapes/cascade_tsr.yaml), fills in the frames
between them: the keyframes go to frames 0, k, 2k, ..., T-k of the masked conditioning video C, M marks those frames,
and the TSR samples the whole T-frame clip with that <C, M> (Lumiere's conditional input). Frames T-k+1 .. T-1 lie
after the last keyframe: the TSR extrapolates them.

Known keyframes are not pasted into the output: the clip is the TSR's sample, conditioned on the keyframes, as in
Imagen Video / Video LDM, so the output is one model's coherent sample and TSR errors at the keyframes are not hidden.
LumierePipeline.from_pretrained(tsr, keyframes=kf) runs the two stages (lumiere_pl/pipeline.py).
"""
from __future__ import annotations

from typing import Tuple

from torch import Tensor

from lumiere_pl.conditioning import keyframe_indices

TSR_SEED_OFFSET = 1_000_003     # the TSR stage's noise seeds: seed + offset, so its noise is not the keyframes' noise


def check_pair(keyframe_cfg, tsr_cfg) -> Tuple[int, int]:
    """(k, T): the TSR's stride and frame count, after checking the two models' configs (ExperimentConfig) fit
    together; ValueError says what does not."""
    t = tsr_cfg.model.temporal
    if not (tsr_cfg.model.name != "t2i" and t.conditional and "keyframes" in t.tasks):
        raise ValueError("the TSR model must be a conditional STUNet trained on the keyframes task "
                         "(model.temporal.conditional=true, 'keyframes' in model.temporal.tasks), "
                         "e.g. experiments/shapes/cascade_tsr.yaml")
    if keyframe_cfg.model.name == "t2i":
        raise ValueError("the keyframe model must be a video model (STUNet), e.g. "
                         "experiments/shapes/cascade_keyframes.yaml")
    k, frames = t.keyframe_stride, tsr_cfg.data.frames
    kf_frames = keyframe_cfg.data.frames
    if kf_frames * k != frames:
        raise ValueError(f"the keyframe model makes {kf_frames} frames; the TSR (keyframe_stride={k}) expects "
                         f"{frames} // {k} = {frames // k}")
    return k, frames


def keyframe_condition(keyframes: Tensor, stride: int, frames: int) -> Tuple[Tensor, Tensor]:
    """keyframes (b 3 n h w) -> the known pixels and their mask for a `frames`-frame clip, keyframe j at frame
    j * stride: video (b 3 frames h w), mask (b 1 frames h w), 1 = known."""
    b, c, n, h, w = keyframes.shape
    idx = keyframe_indices(frames, stride)
    if len(idx) != n:
        raise ValueError(f"{n} keyframes do not fill frames {idx} ({frames} frames, stride {stride})")
    video = keyframes.new_zeros(b, c, frames, h, w)                   # (b 3 T h w)
    mask = keyframes.new_zeros(b, 1, frames, h, w)                    # (b 1 T h w)
    video[:, :, idx] = keyframes
    mask[:, :, idx] = 1.0
    return video, mask
