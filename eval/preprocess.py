"""Clip preprocessing for the feature networks: crop, bilinear resize, value scaling. Every choice is a named field,
recorded in the protocol and the cache key, because each one moves FVD.

Bilinear resizes, all separable (one (out, in) weight matrix per axis, so they run on any device, from uint8):
  "tf1"           TF1 `tf.image.resize_bilinear(align_corners=False)`, the original FVD code: src = dst * in/out
                  (no half-pixel centres), lower = floor(src), upper = min(ceil(src), in - 1), weight = src - lower.
  "half-pixel"    torch `interpolate(bilinear, align_corners=False)` (StyleGAN-V's and cd-fvd's I3D input):
                  src = max((dst + 0.5) * in/out - 0.5, 0).
  "align-corners" src = dst * (in - 1)/(out - 1) (chainer's resize_images, TGAN2's C3D input).
None of them antialiases, as the references.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

RESIZES = ("tf1", "half-pixel", "align-corners")
CROPS = ("full", "center")
SCALES = {"x/127.5-1": (127.5, -1.0), "x/255": (255.0, 0.0), "x": (1.0, 0.0)}


@functools.lru_cache(maxsize=64)
def bilinear_weights(n_in: int, n_out: int, mode: str) -> torch.Tensor:
    """(n_out, n_in) float32 matrix W with resized = W @ x along one axis."""
    if mode not in RESIZES:
        raise ValueError(f"resize must be one of {RESIZES}, got {mode!r}")
    # source coordinates in float32, as TF's and torch's CPU kernels compute them (float64 moves FVD's input by ~1e-2)
    f32 = np.float32
    dst = np.arange(n_out, dtype=f32)
    if mode == "tf1":
        src = dst * (f32(n_in) / f32(n_out))
    elif mode == "half-pixel":
        src = np.maximum((dst + f32(0.5)) * (f32(n_in) / f32(n_out)) - f32(0.5), f32(0))
    else:
        src = dst * (f32(n_in - 1) / f32(n_out - 1)) if n_out > 1 else np.zeros(1, f32)
    lower = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    upper = np.minimum(lower + 1, n_in - 1)
    frac = (src - np.floor(src)).astype(np.float64)
    w = np.zeros((n_out, n_in))
    np.add.at(w, (np.arange(n_out), lower), 1.0 - frac)
    np.add.at(w, (np.arange(n_out), upper), frac)
    return torch.from_numpy(w.astype(np.float32))


def resize_bilinear(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """float (..., h, w) -> (..., size[0], size[1]) with the named bilinear resize, on x's device."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    wh = bilinear_weights(h, size[0], mode).to(x.device)              # (H, h)
    ww = bilinear_weights(w, size[1], mode).to(x.device)              # (W, w)
    return wh @ x @ ww.T                                               # (..., H, W)


def center_square(x: torch.Tensor) -> torch.Tensor:
    """(..., h, w) -> (..., s, s), s = min(h, w), the largest centred square (offsets rounded down)."""
    h, w = x.shape[-2:]
    s = min(h, w)
    return x[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]


def short_side_crop_uint8(x: torch.Tensor, side: int) -> torch.Tensor:
    """cd-fvd's video-folder loading: x/255, shorter side scaled to `side` (long side ceil'ed; torch bilinear with
    antialias), centred `side` square, then *255 truncated to uint8. float (t, c, h, w) in 0..255 -> same, quantised."""
    h, w = x.shape[-2:]
    scale = side / min(h, w)
    target = (side, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), side)
    y = F.interpolate(x / 255.0, size=target, mode="bilinear", align_corners=False, antialias=True)
    hh, ww = y.shape[-2:]
    y = y[..., (hh - side) // 2:(hh - side) // 2 + side, (ww - side) // 2:(ww - side) // 2 + side]
    return (y * 255).to(torch.uint8).float()


@dataclass(frozen=True)
class Preprocess:
    """uint8 clip (t, h, w, 3) -> float32 (3, t, size, size) network input. Picklable: runs in DataLoader workers."""

    size: int = 224                 # output side; frames become size x size
    resize: str = "tf1"             # one of RESIZES (module docstring)
    crop: str = "full"              # "full": the whole frame squashed to a square (original FVD); "center": largest centred square
    short_side: int | None = None   # cd-fvd: shorter side to this, centre crop, uint8 (short_side_crop_uint8) before the resize
    scale: str = "x/127.5-1"        # one of SCALES: pixel values x in 0..255 -> network range

    def __post_init__(self):
        if self.resize not in RESIZES:
            raise ValueError(f"resize must be one of {RESIZES}, got {self.resize!r}")
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {self.crop!r}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {list(SCALES)}, got {self.scale!r}")

    def __call__(self, clip: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(clip).permute(0, 3, 1, 2).float()         # (t, 3, h, w) in 0..255, on the clip's device
        if self.short_side is not None:
            x = short_side_crop_uint8(x, self.short_side)              # (t, 3, s, s)
        elif self.crop == "center":
            x = center_square(x)                                        # (t, 3, s, s)
        x = resize_bilinear(x, (self.size, self.size), self.resize)    # (t, 3, size, size)
        div, offset = SCALES[self.scale]
        x = x / div + offset if (div, offset) != (1.0, 0.0) else x
        return x.permute(1, 0, 2, 3).contiguous()                      # (3, t, size, size)

    def protocol(self) -> dict:
        return asdict(self)
