"""Motion coherence on the moving-shapes set: does the generated shape move the way its caption says, smoothly?

Only this synthetic set allows it: the caption names the shape's colour and direction, the background is plain and
the motion is linear (wrapping around the frame, lumiere_pl/data/synthetic.py). Per frame, the pixels closer to the
caption's colour than to the background (and within `tol` of it) are the shape; their centroid is a circular mean
(the motion wraps, so a shape split across opposite edges still has one centre). Per clip:
  direction  the axis and sign of the mean frame-to-frame displacement: left | right | up | down (None: not found)
  jump       mean |displacement| per frame, in frame sides (true clips: the caption's speed, 0.03 or 0.08)
  jerk       mean |displacement_{i+1} - displacement_i|, in frame sides: ~0 for constant velocity; large when the
             in-between frames do not continue the motion (the cascade's failure mode), or for shuffled frames
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from lumiere_pl.data.synthetic import COLOURS, DIRECTIONS


@dataclass(frozen=True)
class Motion:
    detected: float                 # share of frames where the shape was found
    direction: Optional[str]        # estimated direction (None: fewer than 2 consecutive frames with the shape)
    jump: float                     # mean |frame-to-frame centroid displacement| / frame side (nan if none)
    jerk: float                     # mean |change of displacement| / frame side (nan if none)


def parse_caption(caption: str) -> Tuple[str, str]:
    """'a red circle moving left [quickly]' -> ('red', 'left')."""
    words = caption.lower().split()
    colours = [w for w in words if w in COLOURS]
    after = words[words.index("moving") + 1:] if "moving" in words else []
    directions = [w for w in after if w in DIRECTIONS]
    if not colours or not directions:
        raise ValueError(f"caption {caption!r} does not name a colour of {list(COLOURS)} and 'moving <direction>' "
                         f"with a direction of {list(DIRECTIONS)}")
    return colours[0], directions[0]


def shape_mask(frames: np.ndarray, colour: str, background: Sequence[int] = (0, 0, 0), tol: float = 110.0) -> np.ndarray:
    """frames (t h w 3) uint8 -> (t h w) bool: pixels nearer the colour than the background, within tol (RGB L2)."""
    x = frames.astype(np.float32)
    d_col = np.linalg.norm(x - np.asarray(COLOURS[colour], np.float32), axis=-1)             # (t h w)
    d_bg = np.linalg.norm(x - np.asarray(background, np.float32), axis=-1)                   # (t h w)
    return (d_col < d_bg) & (d_col < tol)


def _circular_mean(weights: np.ndarray, n: int) -> float:
    """Centre of mass of weights (n,) on a circle of n positions, in [0, n)."""
    angle = 2 * math.pi * np.arange(n) / n
    return (math.atan2(float(weights @ np.sin(angle)), float(weights @ np.cos(angle))) / (2 * math.pi) * n) % n


def centroids(mask: np.ndarray, min_pixels: int = 3) -> np.ndarray:
    """mask (t h w) -> (t 2) centroids (x, y) in pixels on the torus; rows of nan where the shape is not found."""
    t, h, w = mask.shape
    out = np.full((t, 2), np.nan)
    for i in range(t):
        if mask[i].sum() >= min_pixels:
            out[i] = _circular_mean(mask[i].sum(0).astype(float), w), _circular_mean(mask[i].sum(1).astype(float), h)
    return out


def _wrap(d: np.ndarray, n: float) -> np.ndarray:
    return (d + n / 2) % n - n / 2                                      # into [-n/2, n/2)


def _steps(c: np.ndarray, h: int, w: int) -> np.ndarray:
    """centroids (t 2) in pixels -> (t-1 2) wrapped displacements in frame sides."""
    return np.stack([_wrap(np.diff(c[:, 0]), w), _wrap(np.diff(c[:, 1]), h)], axis=1) / np.array([w, h])


def steps(frames: np.ndarray, caption: str, background: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """frames (t h w 3) uint8 -> (t-1 2) frame-to-frame centroid displacement (x, y) of the caption's shape, in frame
    sides, wrapped to [-1/2, 1/2); rows of nan where the shape is missing in either frame."""
    _, h, w, _ = frames.shape
    return _steps(centroids(shape_mask(frames, parse_caption(caption)[0], background)), h, w)


def measure(frames: np.ndarray, caption: str, background: Sequence[int] = (0, 0, 0)) -> Motion:
    """frames (t h w 3) uint8 of one clip and its caption -> Motion."""
    _, h, w, _ = frames.shape
    c = centroids(shape_mask(frames, parse_caption(caption)[0], background))   # (t 2)
    d = _steps(c, h, w)                                                  # (t-1 2)
    ok = ~np.isnan(d).any(axis=1)
    detected = float((~np.isnan(c[:, 0])).mean())
    if not ok.any():
        return Motion(detected, None, math.nan, math.nan)
    mean = d[ok].mean(axis=0)                                           # (2) mean velocity, frame sides per frame
    axis = int(np.argmax(np.abs(mean)))
    unit = (int(np.sign(mean[0])), 0) if axis == 0 else (0, int(np.sign(mean[1])))
    direction = next((k for k, v in DIRECTIONS.items() if v == unit), None)
    dd = np.diff(d, axis=0)                                             # (t-2 2)
    ok2 = ~np.isnan(dd).any(axis=1)
    jerk = float(np.linalg.norm(dd[ok2], axis=1).mean()) if ok2.any() else math.nan
    return Motion(detected, direction, float(np.linalg.norm(d[ok], axis=1).mean()), jerk)


def summarise(clips: List[np.ndarray], captions: List[str], background: Sequence[int] = (0, 0, 0)) -> Dict[str, float]:
    """Over clips (each (t h w 3) uint8): share whose direction matches the caption (unfound shapes count as
    wrong), mean jump and jerk over clips where they exist, mean share of frames with the shape found."""
    if len(clips) != len(captions) or not clips:
        raise ValueError(f"{len(clips)} clips for {len(captions)} captions: expected the same number, > 0")
    motions = [measure(v, c, background) for v, c in zip(clips, captions)]
    match = [m.direction == parse_caption(c)[1] for m, c in zip(motions, captions)]
    jumps = [m.jump for m in motions if not math.isnan(m.jump)]
    jerks = [m.jerk for m in motions if not math.isnan(m.jerk)]
    return {"direction_match": float(np.mean(match)),
            "jump": float(np.mean(jumps)) if jumps else math.nan,
            "jerk": float(np.mean(jerks)) if jerks else math.nan,
            "detected": float(np.mean([m.detected for m in motions])),
            "clips": len(clips)}
