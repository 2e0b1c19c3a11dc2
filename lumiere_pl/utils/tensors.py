"""Rank-agnostic tensor helpers: the same code serves images (b c h w) and videos (b c t h w)."""
from __future__ import annotations

from torch import Tensor


def append_dims(x: Tensor, ndim: int) -> Tensor:
    """Append singleton dims so a per-sample (b,) tensor broadcasts against a rank-`ndim` tensor."""
    missing = ndim - x.ndim
    if missing < 0:
        raise ValueError(f"input has {x.ndim} dims but the target rank is {ndim}")
    return x[(...,) + (None,) * missing]


def fold_time(x: Tensor) -> Tensor:
    """(b c t h w) -> ((b t) c h w)."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


def unfold_time(x: Tensor, t: int) -> Tensor:
    """((b t) c h w) -> (b c t h w)."""
    bt, c, h, w = x.shape
    return x.reshape(bt // t, t, c, h, w).transpose(1, 2)
