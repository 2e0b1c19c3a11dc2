"""Lumiere's conditional input <J, C, M> (Sec. 4): the masked conditioning video C and the binary mask M.

M is 1 where pixels are known. Training mixes the tasks so one model serves all of them:
  none       M = 0 (plain text-to-video)
  first      M marks the first frame (image-to-video)
  box        M marks everything outside a random box, on every frame (inpainting)
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

TASKS = ("none", "first", "box")


def mask_for(task: str, shape: tuple, device=None, generator: Optional[torch.Generator] = None) -> Tensor:
    """A (1 t h w) mask for one clip of shape (c t h w)."""
    _, t, h, w = shape
    m = torch.zeros(1, t, h, w, device=device)
    if task == "first":
        m[:, 0] = 1.0
    elif task == "box":
        m.fill_(1.0)
        bh, bw = (int(torch.randint(n // 4, n // 2 + 1, (1,), generator=generator)) for n in (h, w))
        y, x = (int(torch.randint(0, n - bn + 1, (1,), generator=generator)) for n, bn in ((h, bh), (w, bw)))
        m[:, :, y:y + bh, x:x + bw] = 0.0
    elif task != "none":
        raise ValueError(f"unknown conditioning task {task!r}; expected one of {TASKS}")
    return m


def condition_from(video: Tensor, mask: Tensor) -> dict:
    """video (b 3 t h w), mask (b 1 t h w) -> {"cond_video": video * mask, "cond_mask": mask}."""
    return {"cond_video": video * mask, "cond_mask": mask}


def random_video_condition(x0: Tensor, generator: Optional[torch.Generator] = None) -> dict:
    """One random task per clip of x0 (b 3 t h w)."""
    tasks = torch.randint(0, len(TASKS), (x0.shape[0],), generator=generator).tolist()
    mask = torch.stack([mask_for(TASKS[i], x0.shape[1:], x0.device, generator) for i in tasks])
    return condition_from(x0, mask)
