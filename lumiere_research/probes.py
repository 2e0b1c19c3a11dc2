"""Probes of what a trained model learned on the moving-shapes set (docs/MOTION.md): each answers one question of the
motion diagnosis and is a plain function over a model's parts (lumiere_pl.parts.ModelParts), a LumierePipeline or
their samples.

  appearance    does a T2I (or a STUNet, per frame) draw the caption's colour and shape?
  motion        does the shape move the caption's way, smoothly? (lumiere_research.shapes_motion)
  phases        displacement per frame transition, grouped by phase t mod 2^k: the nearest-neighbour block artefact
  text_swap     the same noise with "left" / "right" (and "up" / "down"): do the samples move apart, the right way?
  loss_by_noise prediction error per noise level at fixed noise, against the frozen T2I run per frame (PerFrame):
                where do the temporal layers help?
  x0_motion     motion of the x0 the model predicts from noised real clips, per noise level: up to which noise
                does it denoise coherently, and where does it fall into 2^k-frame blocks?
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from lumiere_pl.data.synthetic import SHAPES, ShapeClip, clip_of, render_clip
from lumiere_pl.diffusion.process import target
from lumiere_pl.diffusion.schedules import alpha_sigma
from lumiere_pl.utils.tensors import append_dims, fold_time, unfold_time
from lumiere_pl.utils.video import from_uint8, to_uint8
from lumiere_research.shapes_motion import centroids, parse_caption, shape_mask, steps, summarise


def test_clips(cfg, n: int, split: str = "test") -> List[ShapeClip]:
    """The first n clips of a split of the moving-shapes set of an ExperimentConfig (split test: unseen in
    training)."""
    return [clip_of(cfg.data, i, split) for i in range(n)]


def render(cfg, clips: Sequence[ShapeClip], frames: Optional[int] = None) -> torch.Tensor:
    """Clips as cfg's training data: (b 3 t h w) in [-1, 1]."""
    d = cfg.data
    s = d.synthetic
    return torch.stack([from_uint8(render_clip(c, frames or d.frames, d.size, s.shape_scale, s.background,
                                               frame_step=s.frame_step)) for c in clips])


def sample(pipe, prompts: Sequence[str], seeds: Sequence[int], batch_size: int = 16, **kwargs) -> List[np.ndarray]:
    """One clip per prompt as (t h w 3) uint8 from a LumierePipeline; kwargs go to its call (steps, guidance,
    frames)."""
    out = pipe(list(prompts), seeds=list(seeds), batch_size=batch_size, **kwargs)
    return [out.frames(i) for i in range(len(out))]


# ---------------------------------------------------------------------------------------------------------------------
# Appearance


def classify_shape(mask: np.ndarray) -> Optional[str]:
    """A (h w) bool mask of one shape on the torus -> circle | square | triangle, by how much of its bounding box
    its largest connected part fills (square 1, circle pi/4, triangle 1/2; stray pixels and second blobs are left
    out); None when that part has fewer than 6 pixels."""
    from scipy import ndimage

    if mask.sum() < 6:
        return None
    h, w = mask.shape
    cy, cx = (int(round(v)) for v in centroids(mask[None])[0, ::-1])
    m = np.roll(mask, (h // 2 - cy, w // 2 - cx), axis=(0, 1))          # centred: no wrap across the edges
    labels, n = ndimage.label(m)
    sizes = np.bincount(labels.ravel())[1:]                            # (n,) pixels per part
    part = labels == int(np.argmax(sizes)) + 1
    if part.sum() < 6:
        return None
    ys, xs = np.nonzero(part)
    fill = part.sum() / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
    return "square" if fill > 0.9 else "circle" if fill > 0.64 else "triangle"


def appearance(frames: Sequence[np.ndarray], captions: Sequence[str], background=(0, 0, 0)) -> Dict[str, float]:
    """frames: one (h w 3) uint8 image per caption. colour = share with the caption's colour found (>= 6 pixels);
    shape = share whose largest shape is the caption's shape (unfound counts as wrong)."""
    colour_ok, shape_ok = [], []
    for img, caption in zip(frames, captions):
        colour, _ = parse_caption(caption)
        shape = next(w for w in caption.split() if w in SHAPES)
        mask = shape_mask(img[None], colour, background)[0]
        colour_ok.append(mask.sum() >= 6)
        shape_ok.append(classify_shape(mask) == shape)
    return {"colour": float(np.mean(colour_ok)), "shape": float(np.mean(shape_ok)), "images": len(frames)}


# ---------------------------------------------------------------------------------------------------------------------
# Motion


def phases(clips: Sequence[np.ndarray], captions: Sequence[str], block: int, background=(0, 0, 0)) -> Dict:
    """Mean |displacement| per transition i -> i+1 (over clips), and the block artefact: transitions that cross a
    boundary of `block` frames ((i + 1) % block == 0) against the others. block = 2^k, k temporal halvings."""
    d = np.stack([np.linalg.norm(steps(v, c, background), axis=1) for v, c in zip(clips, captions)])  # (n t-1)
    per = np.nanmean(d, axis=0)
    cross = np.array([(i + 1) % block == 0 for i in range(d.shape[1])])
    inner, boundary = float(np.nanmean(d[:, ~cross])), float(np.nanmean(d[:, cross])) if cross.any() else math.nan
    return {"per_transition": [float(x) for x in per], "block": block, "boundary": boundary, "inner": inner,
            "boundary_ratio": boundary / inner if inner > 0 else (math.inf if boundary > 0 else math.nan)}


def motion(clips: Sequence[np.ndarray], captions: Sequence[str], block: int = 1, background=(0, 0, 0)) -> Dict:
    """Direction match, jump, jerk, shape found (shapes_motion.summarise) and the phase profile."""
    out = summarise(list(clips), list(captions), background)
    if block > 1:
        ph = phases(clips, captions, block, background)
        out.update(boundary_ratio=ph["boundary_ratio"], per_transition=ph["per_transition"])
    return out


SWAPS = (("left", "right"), ("up", "down"))


def mean_velocity(clip: np.ndarray, caption: str, background=(0, 0, 0)) -> np.ndarray:
    """(2,) mean centroid velocity (x, y) in frame sides per frame; nan when the shape is not found."""
    d = steps(clip, caption, background)
    ok = ~np.isnan(d).any(axis=1)
    return d[ok].mean(axis=0) if ok.any() else np.full(2, np.nan)


def swap_prompts(clips: Sequence[ShapeClip]) -> List[tuple]:
    """For each clip, its caption with the direction word set to each of a pair: [(prompt a, prompt b, axis)];
    pairs alternate left/right (axis x) and up/down (axis y)."""
    out = []
    for i, clip in enumerate(clips):
        a, b = SWAPS[i % 2]
        base = clip.caption.replace(f"moving {clip.direction}", "moving {}")
        out.append((base.format(a), base.format(b), i % 2))
    return out


def text_swap(generate: Callable[[List[str], List[int]], List[np.ndarray]], clips: Sequence[ShapeClip],
              seed: int = 0, background=(0, 0, 0)) -> Dict[str, float]:
    """Each clip's caption sampled twice from the same noise, its direction word swapped to each of a pair.
    generate(prompts, seeds) -> one (t h w 3) uint8 clip per prompt.
    separated = share of pairs whose mean velocities differ the right way along the pair's axis (b - a > 0: right
    of left, down of up); separation = mean of that difference, frame sides per frame (true clips: 0.06 or 0.16)."""
    pairs = swap_prompts(clips)
    prompts = [p for a, b, _ in pairs for p in (a, b)]
    seeds = [seed + i for i in range(len(pairs)) for _ in (0, 1)]
    videos = generate(prompts, seeds)
    diffs = np.array([mean_velocity(videos[2 * j + 1], b, background)[axis]
                      - mean_velocity(videos[2 * j], a, background)[axis] for j, (a, b, axis) in enumerate(pairs)])
    return {"separated": float(np.mean(np.nan_to_num(diffs, nan=0.0) > 0)),
            "separation": float(np.nanmean(diffs)) if not np.isnan(diffs).all() else math.nan, "pairs": len(pairs)}


# ---------------------------------------------------------------------------------------------------------------------
# Loss by noise level


class PerFrame(torch.nn.Module):
    """A T2I U-Net run on every frame of a video on its own: the STUNet's baseline (and, with identity temporal
    modules and no temporal down-sampling, exactly a freshly inflated STUNet)."""

    def __init__(self, t2i: torch.nn.Module):
        super().__init__()
        self.t2i = t2i

    def forward(self, x: torch.Tensor, c: torch.Tensor, cond: dict) -> torch.Tensor:   # (b c t h w)
        b, _, t, h, w = x.shape
        rep = {k: v.repeat_interleave(t, dim=0) if isinstance(v, torch.Tensor) else v for k, v in cond.items()}
        out = self.t2i(fold_time(x), c.repeat_interleave(t), rep)                      # ((b t) c h w)
        return unfold_time(out, t)


OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def swap_direction(caption: str) -> str:
    """'a red circle moving left slowly' -> 'a red circle moving right slowly'."""
    words = caption.split()
    i = words.index("moving") + 1
    return " ".join(words[:i] + [OPPOSITE[words[i]]] + words[i + 1:])


@torch.no_grad()
def loss_by_noise(parts, nets: Dict[str, torch.nn.Module], n: int = 24,
                  times: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9), seed: int = 0,
                  batch_size: int = 8, swapped: bool = False) -> Dict[str, List[float]]:
    """Mean squared prediction error of each network on n unseen clips at fixed diffusion times, with the same clips
    and noise for every network; parts (ModelParts) supplies the data, diffusion process and text encoder.
    swapped: captions with the opposite direction ("left" <-> "right"): a network that uses the caption's direction
    does worse with them. Returns {name: [loss at each time]} (networks are used as given: apply the EMA before)."""
    clips = test_clips(parts.cfg, n)
    x0 = render(parts.cfg, clips)                                                # (n 3 t h w)
    captions = [swap_direction(c.caption) if swapped else c.caption for c in clips]
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    process = parts.process
    out: Dict[str, List[float]] = {name: [] for name in nets}
    for t in times:
        logsnr = process.logsnr(torch.full((n,), float(t)))
        alpha, sigma = (append_dims(v, x0.ndim) for v in alpha_sigma(logsnr))
        z = alpha * x0 + sigma * eps
        tgt = target(x0, eps, alpha, sigma, process.prediction)
        for name, net in nets.items():
            total = 0.0
            for i in range(0, n, batch_size):
                sl = slice(i, i + batch_size)
                pred = net(z[sl], process.noise_cond(logsnr[sl]), parts.text_condition(captions[sl])).float()
                total += float((pred - tgt[sl]).pow(2).mean(dim=tuple(range(1, x0.ndim))).sum())
            out[name].append(total / n)
    return out


@torch.no_grad()
def x0_motion(parts, net: torch.nn.Module, n: int = 16, times: Sequence[float] = (0.9, 0.95, 0.97, 0.99),
              block: int = 1, seed: int = 0, batch_size: int = 8) -> Dict[str, List]:
    """Motion of the clean clip the network predicts from n unseen clips noised to each diffusion time (same noise
    at every time): {"times": [...], "direction_match": [...], "jerk": [...], "detected": [...], "boundary_ratio":
    [...]}. Near t = 1 a sample's layout and motion are decided; a model that denoises real clips coherently up to
    some t but not beyond cannot make coherent samples. net is used as given (apply the EMA before)."""
    clips = test_clips(parts.cfg, n)
    captions = [c.caption for c in clips]
    x0 = render(parts.cfg, clips)                                                # (n 3 t h w)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    denoise = parts.process.denoiser(net)
    bg = parts.cfg.data.synthetic.background
    out: Dict[str, List] = {"times": [float(t) for t in times], "direction_match": [], "jerk": [], "detected": [],
                            "boundary_ratio": []}
    for t in times:
        s = torch.exp(-0.5 * parts.process.logsnr(torch.full((n,), float(t))))    # (n,) VE noise level
        x = x0 + append_dims(s, x0.ndim) * eps
        pred = torch.cat([denoise(x[i:i + batch_size], s[i:i + batch_size],
                                  parts.text_condition(captions[i:i + batch_size]))
                          for i in range(0, n, batch_size)]).clamp(-1, 1)
        m = motion([to_uint8(v) for v in pred], captions, block, bg)
        for key in ("direction_match", "jerk", "detected"):
            out[key].append(float(m[key]))
        out["boundary_ratio"].append(float(m.get("boundary_ratio", math.nan)))
    return out
