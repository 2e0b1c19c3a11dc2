"""FVD as a torchmetrics Metric: float64 sum states, so DDP ranks merge exactly (a sum), then the Frechet distance.

    fvd = FVD(detector=I3DDetector())       # or FVD(dim=400) and update with features
    fvd.update(real_videos, real=True)       # uint8 (b, t, h, w, c)
    fvd.update(fake_videos, real=False)
    fvd.compute()                            # float64 tensor

Real statistics computed once can be set from the disk cache with `set_real_stats` instead of updates.
Works from plain Python; under Lightning/DDP the states are summed across ranks before `compute`.
"""
from __future__ import annotations

import torch
from torchmetrics import Metric

from .frechet import FeatureStats, fvd_from_stats


class FVD(Metric):
    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, detector=None, dim: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.detector = detector
        self.dim = dim if dim is not None else detector.feature_dim
        for side in ("real", "fake"):
            self.add_state(f"{side}_n", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_sum", torch.zeros(self.dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(self.dim, self.dim, dtype=torch.float64), dist_reduce_fx="sum")
        self._real_override: FeatureStats | None = None

    def update(self, x: torch.Tensor, real: bool) -> None:
        """x: features (b, d), or videos (b, t, h, w, c) uint8 when the metric owns a detector."""
        if x.ndim != 2:
            if self.detector is None:
                raise ValueError(f"got videos of shape {tuple(x.shape)} but this FVD has no detector: pass features (b, d)")
            x = self.detector(x)                                         # (b, d)
        x = x.detach().to(torch.float64).reshape(-1, self.dim)           # (b, d)
        side = "real" if real else "fake"
        setattr(self, f"{side}_n", getattr(self, f"{side}_n") + len(x))
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + x.sum(0).to(self.device))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + (x.T @ x).to(self.device))

    def stats(self, real: bool) -> FeatureStats:
        side = "real" if real else "fake"
        return FeatureStats(self.dim, int(getattr(self, f"{side}_n").item()),
                            getattr(self, f"{side}_sum").cpu().numpy().copy(),
                            getattr(self, f"{side}_outer").cpu().numpy().copy())

    def set_real_stats(self, stats: FeatureStats) -> None:
        """Use cached real statistics (kept outside the synced states: every rank holds the same copy)."""
        if stats.dim != self.dim:
            raise ValueError(f"real statistics are {stats.dim}-d, this FVD is {self.dim}-d")
        self._real_override = stats

    def compute(self) -> torch.Tensor:
        real = self._real_override if self._real_override is not None else self.stats(real=True)
        return torch.tensor(fvd_from_stats(real, self.stats(real=False)), dtype=torch.float64)
