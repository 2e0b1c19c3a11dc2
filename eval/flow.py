"""Dense optical flow without learned weights: OpenCV's DIS (Kroeger et al. 2016), at a bounded size.

Frames are first reduced to the flow grid: the short side to FLOW_SHORT_SIDE (128) pixels with OpenCV's area
resize, the long side in proportion (rounded); frames whose short side is smaller keep their size. Flow is computed
on the grey levels (OpenCV's RGB -> grey weights) with the DIS "medium" preset at finest scale 0 (full resolution of
the flow grid: the preset's default, scale 1, computes at half of it, which loses small and thin things at 32-128
pixels). Flow vectors are in pixels of the flow grid; (x, y) with y pointing down.

OpenCV's thread count is global to a process: the callers (lumiere-eval's workers, the tests) set it, this module
does not.
"""
from __future__ import annotations

import cv2
import numpy as np

FLOW_SHORT_SIDE = 128
FB_ALPHA, FB_BETA = 0.01, 0.5   # forward-backward check: |F + B'|^2 <= alpha (|F|^2 + |B'|^2) + beta (pixels^2)


def flow_grid(h: int, w: int, short_side: int = FLOW_SHORT_SIDE) -> tuple[int, int]:
    """(height, width) of the flow grid for (h, w) frames."""
    if min(h, w) <= short_side:
        return h, w
    s = short_side / min(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def to_grid(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (t h w 3) -> (t H W 3) uint8 at size (H, W), area resize (the frames themselves if already that size)."""
    if frames.shape[1:3] == tuple(size):
        return frames
    return np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in frames])


def grey(frames: np.ndarray) -> np.ndarray:
    """uint8 (t h w 3) RGB -> (t h w) uint8."""
    return np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames])


class DISFlow:
    """flow = DISFlow()(grey_a, grey_b): (h w 2) float32, a's pixel (x, y) moves to (x, y) + flow in b."""

    PRESET, FINEST_SCALE = "medium", 0

    def __init__(self):
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self.dis.setFinestScale(self.FINEST_SCALE)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.dis.calc(a, b, None)                                   # (h w 2)

    @classmethod
    def describe(cls) -> dict:
        return {"flow": "opencv-dis", "flow_preset": cls.PRESET, "flow_finest_scale": cls.FINEST_SCALE,
                "opencv": cv2.__version__}


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)                         # (h w) each
    return xs, ys


def sample(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """image(x + flow(x)) by bilinear interpolation, and where x + flow(x) lies inside the frame.
    image (h w) or (h w c) float32; flow (h w 2) -> (same as image, (h w) bool)."""
    h, w = flow.shape[:2]
    xs, ys = _grid(h, w)
    mx, my = xs + flow[..., 0], ys + flow[..., 1]                          # (h w)
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    out = cv2.remap(image, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, inside


def consistent(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """(h w) bool: pixels of the first frame whose forward flow lands inside the second frame and is undone by the
    backward flow there, |F + B(x + F)|^2 <= FB_ALPHA (|F|^2 + |B(x + F)|^2) + FB_BETA (Sundaram et al. 2010's
    check, as UnFlow and fast_blind_video_consistency use it). forward: a -> b, backward: b -> a, both (h w 2)."""
    b_at, inside = sample(backward, forward)                               # (h w 2), (h w)
    err = ((forward + b_at) ** 2).sum(-1)
    bound = FB_ALPHA * ((forward ** 2).sum(-1) + (b_at ** 2).sum(-1)) + FB_BETA
    return inside & (err <= bound)
