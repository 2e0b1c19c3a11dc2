"""Inception Score: IS = exp(E_x KL(p(y|x) || p(y))) over class probabilities, with splits and repeats.

TGAN2: 2048 samples, splits=1, 10 repeats (new samples per repeat). StyleGAN-V "isv2048_ucf": 2048 samples,
10 splits after a shuffle with RandomState(42). `inception_score` does both: `repeats` reshuffles the same
probabilities (seeded), `splits` partitions them; mean and std are over all (repeat, split) scores.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-12


def _score(probs: np.ndarray) -> float:
    p = probs.astype(np.float64)                                   # (n, k)
    p_y = p.mean(0, keepdims=True)                                 # (1, k)
    kl = (p * (np.log(p + EPS) - np.log(p_y + EPS))).sum(1)        # (n,)
    return float(np.exp(kl.mean()))


def inception_score(probs: np.ndarray, splits: int = 1, repeats: int = 1, seed: int | None = 42) -> tuple[float, float]:
    """(mean, std) of IS over `repeats` shuffles x `splits` parts. seed=None keeps the input order (repeats must be 1)."""
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or len(probs) < splits:
        raise ValueError(f"need (n >= splits, k) probabilities, got {probs.shape} with splits={splits}")
    if np.abs(probs.sum(1) - 1).max() > 1e-3:
        raise ValueError("rows are not probability distributions (apply softmax first)")
    if seed is None and repeats != 1:
        raise ValueError("repeats > 1 needs a seed to shuffle with")
    rng = np.random.RandomState(seed) if seed is not None else None
    scores = []
    for _ in range(repeats):
        order = rng.permutation(len(probs)) if rng is not None else np.arange(len(probs))
        scores += [_score(part) for part in np.array_split(probs[order], splits)]
    return float(np.mean(scores)), float(np.std(scores))
