"""MultiDiffusion over time (Bar-Tal et al. 2023; Lumiere Sec. 3.2) as a wrapper around a denoiser.

A model that cannot see the whole clip denoises overlapping temporal windows; at every step the full-clip estimate
is the least-squares reconciliation

    J* = argmin_J  sum_i || J[window_i] - D(x[window_i]) ||^2,

whose solution is the per-frame mean of the window predictions covering that frame (uniform weights). The wrapper
reconciles the x0 prediction, so it composes with every sampler: for DDIM/DDPM the update is affine in x0 with the
same x and the same fresh noise for every window, so averaging x0 equals averaging the per-window updates.

Windows all have length `window`; when (T - window) is not a multiple of `stride`, one extra window is aligned to the
end of the clip, so the tail is always covered.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from lumiere_pl.diffusion.samplers import DenoiseFn

Span = tuple[int, int]   # [start, end) frame range


def default_stride(window: int, stride: int) -> int:
    """Config convention: stride 0 means window - 2 (the paper overlaps windows by 2 frames), at least 1."""
    return stride if stride > 0 else max(1, window - 2)


def temporal_windows(T: int, window: int, stride: int) -> list[Span]:
    """[start, end) spans of length min(window, T) with step `stride`, covering all T frames (the tail included).

    window <= 0 or window >= T gives the single span (0, T).
    """
    if T < 1:
        raise ValueError(f"T={T}: expected at least one frame")
    if window <= 0 or window >= T:
        return [(0, T)]
    if not 1 <= stride <= window:
        raise ValueError(f"stride={stride} with window={window}: expected 1 <= stride <= window (no skipped frames)")
    spans = [(a, a + window) for a in range(0, T - window + 1, stride)]
    if spans[-1][1] < T:                                    # awkward tail: one more window flush with the end
        spans.append((T - window, T))
    return spans


def _window_cond(cond: dict, spans: Sequence[Span], T: int) -> dict:
    """Conditioning for a batch of windows stacked along the batch axis ([window 0 batch; window 1 batch; ...]).

    Tensors with a time axis of length T at dim 2 (b k t h w, e.g. "concat") are sliced per window; every other
    tensor is batch-leading (the guidance contract) and is repeated once per window; non-tensors pass through.
    """
    out = {}
    for k, v in cond.items():
        if isinstance(v, Tensor) and v.ndim == 5 and v.shape[2] == T:
            out[k] = torch.cat([v[:, :, a:e] for a, e in spans])            # (n b) k w h w
        elif isinstance(v, Tensor):
            out[k] = torch.cat([v] * len(spans))                            # (n b) ...
        else:
            out[k] = v
    return out


class MultiDiffusion:
    """D_MD(x, s, cond): denoise overlapping temporal windows of x (b c t h w), average the overlaps per frame.

    max_batch_windows caps how many windows go through the denoiser in one call (memory ~ max_batch_windows x one
    window); the result does not depend on it.
    """

    def __init__(self, denoise: DenoiseFn, window: int, stride: int = 0, max_batch_windows: int = 4):
        if max_batch_windows < 1:
            raise ValueError(f"max_batch_windows={max_batch_windows}: expected >= 1")
        self.denoise, self.window = denoise, window
        self.stride = default_stride(window, stride)
        self.max_batch_windows = max_batch_windows

    def spans(self, T: int) -> list[Span]:
        return temporal_windows(T, self.window, self.stride)

    def __call__(self, x: Tensor, s: Tensor, cond: dict) -> Tensor:
        if x.ndim != 5:
            raise ValueError(f"MultiDiffusion windows the time axis of (b c t h w); got shape {tuple(x.shape)}")
        b, T = x.shape[0], x.shape[2]
        spans = self.spans(T)
        if len(spans) == 1:                                 # one window over the clip: plain denoising, bit for bit
            return self.denoise(x, s, cond)
        acc = torch.promote_types(x.dtype, torch.float32)                        # accumulate in >= fp32
        value = torch.zeros(x.shape, device=x.device, dtype=acc)                 # b c t h w
        count = torch.zeros(T, device=x.device, dtype=acc)                       # t
        for i in range(0, len(spans), self.max_batch_windows):
            chunk = spans[i:i + self.max_batch_windows]
            xs = torch.cat([x[:, :, a:e] for a, e in chunk])                     # (n b) c w h w
            out = self.denoise(xs, s.repeat(len(chunk)), _window_cond(cond, chunk, T)).to(acc)
            for j, (a, e) in enumerate(chunk):
                value[:, :, a:e] += out[j * b:(j + 1) * b]
                count[a:e] += 1.0
        return (value / count.view(1, 1, T, 1, 1)).to(x.dtype)                   # least-squares: per-frame mean


def multidiffusion(denoise: DenoiseFn, window: int, stride: int = 0, max_batch_windows: int = 4) -> DenoiseFn:
    """Wrap `denoise` with MultiDiffusion over time; window <= 0 returns it unchanged."""
    if window <= 0:
        return denoise
    return MultiDiffusion(denoise, window, stride, max_batch_windows)
