"""Randomness that survives a restart.

Every random draw of a training step comes from generators seeded by (seed, epoch, batch, rank): a run resumed from
a checkpoint draws exactly what the uninterrupted run drew, whatever happened before (sanity checks, validation,
a kill). The global RNG states are also saved with each checkpoint (rng_state / set_rng_state, weights_only-safe) for
whatever still uses them (dropout).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class StepRNG:
    host: torch.Generator       # small draws made on the CPU: caption dropout, conditioning tasks, boxes, aug levels
    device: torch.Generator     # tensors drawn on the model's device: diffusion time and noise, augmentation noise


def step_seed(*parts: int) -> int:
    """A 63-bit seed mixing integers (SeedSequence: neighbouring steps get unrelated streams)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]) >> 1


def step_rng(seed: int, epoch: int, batch: int, rank: int, device: torch.device | str = "cpu") -> StepRNG:
    """The generators of training batch `batch` of epoch `epoch` on DDP rank `rank`."""
    host = torch.Generator().manual_seed(step_seed(seed, epoch, batch, rank, 0))
    dev = torch.Generator(device=device).manual_seed(step_seed(seed, epoch, batch, rank, 1))
    return StepRNG(host, dev)


def rng_state() -> dict:
    """The global RNG states (torch, CUDA, numpy, python) as tensors, ints and tuples: loadable weights_only."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)),
                                                       "pos": int(pos), "has_gauss": int(has_gauss),
                                                       "gauss": float(gauss)},
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
