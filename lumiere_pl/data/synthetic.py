"""The "moving shapes" set: captioned synthetic clips rendered in memory, deterministic for a seed.

A clip shows one flat-coloured shape (circle, square, triangle) on a plain background, moving in a straight line
(left, right, up, down) at one of two speeds. Caption: "a red circle moving left", optionally followed by the speed
word ("a red circle moving left quickly").

Motion WRAPS around the frame (a torus): a shape leaving on the right re-enters on the left, so it is always in frame
(whole, or split across opposite edges) and never changes direction, which keeps the caption true for every frame.
Bouncing would reverse the direction mid-clip and make "moving left" false for part of the clip.

Where a shape starts (data.synthetic.start):
- anywhere (default): uniform on the torus, so the set is translation-invariant. Every frame's position is uniform
  whatever the caption says, and the direction word only tells how the frames relate: at pure noise a denoiser
  gains nothing from it, and networks bind it slowly (docs/results/2026-12-03-motion-recipe.md).
- across: the shape passes the middle of the frame (+-0.15 along its motion) at the clip's middle frame, as a thing
  "moving left" across a shot does. Where it is in a frame then depends on the direction word.

Drawing is a per-pixel inside/outside test on integer pixel centres: no anti-aliasing, cheap, any size and T.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Sequence

import numpy as np

SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (230, 25, 25), "green": (30, 200, 40), "blue": (40, 70, 235), "yellow": (240, 220, 30),
    "cyan": (30, 215, 225), "magenta": (220, 40, 210), "white": (245, 245, 245), "orange": (250, 140, 20),
}
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}   # (dx, dy), y grows downwards
SPEEDS = {"slowly": 0.03, "quickly": 0.08}   # displacement per frame, as a fraction of the frame side


@dataclass(frozen=True)
class ShapeClip:
    """Everything that defines one clip; the pixels follow from it and (frames, size)."""
    shape: str
    colour: str
    direction: str
    speed: str
    x0: float                       # start centre, fraction of the width in [0, 1)
    y0: float                       # start centre, fraction of the height in [0, 1)
    speed_in_caption: bool          # whether the caption names the speed

    @property
    def caption(self) -> str:
        text = f"a {self.colour} {self.shape} moving {self.direction}"
        return f"{text} {self.speed}" if self.speed_in_caption else text

    @property
    def label(self) -> int:
        """Class index over (shape, colour, direction, speed): 3 * 8 * 4 * 2 = 192 classes."""
        idx = SHAPES.index(self.shape)
        idx = idx * len(COLOURS) + list(COLOURS).index(self.colour)
        idx = idx * len(DIRECTIONS) + list(DIRECTIONS).index(self.direction)
        return idx * len(SPEEDS) + list(SPEEDS).index(self.speed)


def sample_clip(seed: int, index: int, split: str = "train", speed_word_prob: float = 0.5,
                directions: Sequence[str] = tuple(DIRECTIONS), across: int = 0) -> ShapeClip:
    """Clip `index` of a split; depends only on (seed, split, index), so any subset can be drawn in any order.
    directions: the directions drawn from (all four by default; one for the single-direction oracle).
    across: 0 = start anywhere; N > 0 = the shape passes the middle of the frame (+-0.15 along its motion) at motion
    frame (N - 1) / 2 of an N-frame clip. The same random draws either way: only the start differs."""
    rng = np.random.default_rng([seed, ("train", "val", "test").index(split), index])
    clip = ShapeClip(
        shape=SHAPES[rng.integers(len(SHAPES))],
        colour=list(COLOURS)[rng.integers(len(COLOURS))],
        direction=list(directions)[rng.integers(len(directions))],
        speed=list(SPEEDS)[rng.integers(len(SPEEDS))],
        x0=float(rng.random()),
        y0=float(rng.random()),
        speed_in_caption=bool(rng.random() < speed_word_prob),
    )
    if not across:
        return clip
    ux, uy = DIRECTIONS[clip.direction]
    back = SPEEDS[clip.speed] * (across - 1) / 2                      # frame sides travelled to the middle frame
    x0 = (0.35 + 0.3 * clip.x0 - ux * back) % 1.0 if ux else clip.x0
    y0 = (0.35 + 0.3 * clip.y0 - uy * back) % 1.0 if uy else clip.y0
    return replace(clip, x0=float(x0), y0=float(y0))


def clip_of(data, index: int, split: str = "train") -> ShapeClip:
    """Clip `index` of a split of the moving-shapes set a DataConfig describes (data.synthetic; data.frames and
    data.synthetic.frame_step set the motion span that start=across centres)."""
    s = data.synthetic
    across = data.frames * s.frame_step if s.start == "across" else 0
    return sample_clip(s.seed, index, split, s.speed_word_prob, s.directions, across)


def _inside(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of pixels inside a shape of half-size r, given offsets from its centre."""
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if shape == "triangle":         # apex up, base 2r wide at dy = +r
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def render_clip(clip: ShapeClip, frames: int, size: int, shape_scale: float = 0.2,
                background: Sequence[int] = (0, 0, 0), height: int = 0, frame_step: int = 1) -> np.ndarray:
    """Pixels of a clip: uint8 array (t h w c), c = RGB. `height` 0 means square (size x size).

    frame_step k: clip frame i is motion frame i * k, i.e. the same motion at 1/k the frame rate (the frames of
    render_clip(clip, frames * k, ...)[::k]); speeds stay per motion frame."""
    h, w = height or size, size
    t = np.arange(frames, dtype=np.float64)[:, None, None] * frame_step         # (t 1 1) motion frame index
    ux, uy = DIRECTIONS[clip.direction]
    step = SPEEDS[clip.speed] * min(h, w)                                       # pixels per frame
    cx = clip.x0 * w + ux * step * t                                            # (t 1 1)
    cy = clip.y0 * h + uy * step * t
    xs = np.arange(w, dtype=np.float64)[None, None, :]                          # (1 1 w)
    ys = np.arange(h, dtype=np.float64)[None, :, None]                          # (1 h 1)
    dx = (xs - cx + w / 2) % w - w / 2                                          # (t 1 w) wrapped offset
    dy = (ys - cy + h / 2) % h - h / 2                                          # (t h 1)
    mask = _inside(clip.shape, dx, dy, shape_scale * min(h, w))                 # (t h w)
    out = np.empty((frames, h, w, 3), dtype=np.uint8)                           # (t h w c)
    out[:] = np.asarray(background, dtype=np.uint8)
    out[mask] = np.asarray(COLOURS[clip.colour], dtype=np.uint8)
    return out


def all_captions(with_speed: bool = False) -> List[str]:
    """Every caption the set can produce (without or with the speed word), e.g. for prompt lists."""
    out = []
    for shape in SHAPES:
        for colour in COLOURS:
            for direction in DIRECTIONS:
                base = f"a {colour} {shape} moving {direction}"
                out += [f"{base} {s}" for s in SPEEDS] if with_speed else [base]
    return out
