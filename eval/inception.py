"""Video Inception Score, IS = exp(E_x KL(p(y|x) || p(y))), under a named protocol.

  tgan2       pfnet-research/tgan2 scripts/compute_inception_score.py: 10 loops, each over 2048 freshly generated
              videos, splits=1 per loop; p + 1e-20 before the logs; mean and std over the 10 loop scores.
              From a folder, "fresh" means disjoint: loop l takes videos [l*2048, (l+1)*2048) in source order, so the
              folder needs 10 x 2048 = 20,480 independent samples (lumiere-sample seeds every index separately).
  stylegan-v  universome/stylegan-v isv2048_ucf: 2048 videos, RandomState(42).shuffle, 10 splits sliced
              [i*n//s, (i+1)*n//s) (not np.array_split's boundaries), no epsilon; mean and std over the splits.
Scores are computed in float64 (the references use float32 / float64 arrays as they come); 0 * log 0 counts as 0
where StyleGAN-V would give NaN.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from .errors import EvalError


@dataclass(frozen=True)
class ISProtocol:
    name: str                   # the preset it starts from: "tgan2" or "stylegan-v"
    samples: int                # videos per loop
    loops: int                  # disjoint sets of `samples` videos, one score per (loop, split)
    splits: int                 # parts of each loop, sliced [i*n//s, (i+1)*n//s)
    shuffle_seed: int | None    # np.random.RandomState(seed).shuffle of each loop's rows before splitting; None: keep order
    eps: float                  # added to every probability before the logs

    def with_overrides(self, samples: int | None = None, loops: int | None = None, splits: int | None = None):
        changed = {k: v for k, v in dict(samples=samples, loops=loops, splits=splits).items() if v is not None}
        return replace(self, **changed)

    def record(self) -> dict:
        return {**asdict(self), "exact_preset": asdict(self) == asdict(IS_PRESETS[self.name])}


IS_PRESETS = {
    "tgan2": ISProtocol("tgan2", samples=2048, loops=10, splits=1, shuffle_seed=None, eps=1e-20),
    "stylegan-v": ISProtocol("stylegan-v", samples=2048, loops=1, splits=10, shuffle_seed=42, eps=0.0),
}


def score(probs: np.ndarray, eps: float = 0.0) -> float:
    """IS of one set of class probabilities (n, k)."""
    p = np.asarray(probs, np.float64) + eps                        # (n, k)
    p_y = p.mean(0, keepdims=True)                                 # (1, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(p > 0, p * (np.log(p) - np.log(p_y)), 0.0).sum(1)   # (n,)
    return float(np.exp(kl.mean()))


def inception_score(probs: np.ndarray, protocol: ISProtocol) -> tuple[float, float, list[float]]:
    """(mean, std, every (loop, split) score) of the first loops x samples rows of probs (n, k), in order."""
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2:
        raise ValueError(f"need (n, k) probabilities, got shape {probs.shape}")
    if np.abs(probs.sum(1) - 1).max() > 1e-3:
        raise ValueError("rows are not probability distributions (apply softmax first)")
    n, need = protocol.samples, protocol.samples * protocol.loops
    if len(probs) < need or n < protocol.splits:
        raise EvalError(f"IS protocol {protocol.name} needs {protocol.loops} x {n} = {need} videos "
                        f"(and at least one per split), got {len(probs)}")
    scores = []
    for loop in range(protocol.loops):
        part = probs[loop * n:(loop + 1) * n].copy()                # (n, k): this loop's own videos
        if protocol.shuffle_seed is not None:
            np.random.RandomState(protocol.shuffle_seed).shuffle(part)
        s = protocol.splits
        scores += [score(part[i * n // s:(i + 1) * n // s], protocol.eps) for i in range(s)]
    return float(np.mean(scores)), float(np.std(scores)), scores
