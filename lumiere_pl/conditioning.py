"""Lumiere's conditional input <J, C, M> (Sec. 4): the masked conditioning video C and the binary mask M.

M is 1 where pixels are known. Training mixes the tasks (model.temporal.tasks) so one model serves all of them:
  none       M = 0 (plain text-to-video)
  first      M marks the first frame (image-to-video)
  box        M marks everything outside a random box, on every frame (inpainting)
  keyframes  M marks frames 0, k, 2k, ... entirely, k = model.temporal.keyframe_stride (temporal super-resolution,
             the cascade baseline Lumiere argues against; lumiere_pl/cascade.py)
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

TASKS = ("none", "first", "box", "keyframes")     # every task this module can build
DEFAULT_TASKS = ("none", "first", "box")          # the default training mix (model.temporal.tasks)


def mask_for(task: str, shape: tuple, device=None, generator: Optional[torch.Generator] = None,
             stride: int = 4) -> Tensor:
    """A (1 t h w) mask for one clip of shape (c t h w). stride: the keyframes task's k."""
    _, t, h, w = shape
    m = torch.zeros(1, t, h, w, device=device)
    if task == "first":
        m[:, 0] = 1.0
    elif task == "box":
        m.fill_(1.0)
        bh, bw = (int(torch.randint(n // 4, n // 2 + 1, (1,), generator=generator)) for n in (h, w))
        y, x = (int(torch.randint(0, n - bn + 1, (1,), generator=generator)) for n, bn in ((h, bh), (w, bw)))
        m[:, :, y:y + bh, x:x + bw] = 0.0
    elif task == "keyframes":
        if stride < 1:
            raise ValueError(f"keyframes stride={stride}: expected >= 1")
        m[:, ::stride] = 1.0                                   # frames 0, k, 2k, ...
    elif task != "none":
        raise ValueError(f"unknown conditioning task {task!r}; expected one of {TASKS}")
    return m


def keyframe_indices(frames: int, stride: int) -> list:
    """The frames the keyframes task marks: [0, k, 2k, ...] below `frames`."""
    return list(range(0, frames, stride))


def condition_from(video: Tensor, mask: Tensor) -> dict:
    """video (b 3 t h w), mask (b 1 t h w) -> {"cond_video": video * mask, "cond_mask": mask}."""
    return {"cond_video": video * mask, "cond_mask": mask}


def random_video_condition(x0: Tensor, generator: Optional[torch.Generator] = None,
                           tasks: Sequence[str] = DEFAULT_TASKS, stride: int = 4) -> dict:
    """One task per clip of x0 (b 3 t h w), drawn uniformly from `tasks`.

    The draws (one randint over the tasks, then each clip's task's own draws, in clip order) are a function of the
    generator's state and the task list, so a resumed run repeats them."""
    if not tasks:
        raise ValueError(f"no conditioning tasks given; expected some of {TASKS}")
    picks = torch.randint(0, len(tasks), (x0.shape[0],), generator=generator).tolist()
    mask = torch.stack([mask_for(tasks[i], x0.shape[1:], x0.device, generator, stride) for i in picks])
    return condition_from(x0, mask)
