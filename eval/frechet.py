"""Frechet distance between Gaussians fitted to features, and streaming float64 feature statistics.

FVD (Unterthiner et al. 2018) = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 sqrtm(S_r S_g)), computed in float64 with
scipy's sqrtm and its real part kept, as the reference code and StyleGAN-V do.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

IMAG_TOL = 1e-3     # relative size of the imaginary part of sqrtm(S_r S_g) above which we warn
COVARIANCES = ("unbiased", "biased")
MIN_SAMPLES = 400   # below the feature dimension the covariances are singular: the value is biased, comparable only at equal N


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2)), float64, real part."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)        # (d,)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)  # (d, d)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics differ in shape: {mu1.shape}/{sigma1.shape} vs {mu2.shape}/{sigma2.shape}")
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)                              # (d, d), maybe complex
    if not np.isfinite(covmean).all():
        eps = 1e-6
        warnings.warn(f"sqrtm(S1 S2) is not finite: retrying with {eps} added to both diagonals", RuntimeWarning)
        offset = np.eye(len(mu1)) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.abs(covmean.imag).max()
        scale = max(np.abs(covmean.real).max(), 1e-12)
        if imag / scale > IMAG_TOL:
            warnings.warn(f"sqrtm(S1 S2) has an imaginary part of {imag:.3g} (relative {imag / scale:.3g}): "
                          "the covariances are ill-conditioned (too few samples?); keeping the real part",
                          RuntimeWarning)
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


@dataclass
class FeatureStats:
    """Streaming sums in float64: count, sum of x, sum of x x^T. Merge by addition (exact across ranks/chunks).
    `rows`: the per-video features (n, d) behind the sums when kept (update(keep_rows=True); the bootstrap
    interval resamples them), else None."""

    dim: int
    n: int = 0
    total: np.ndarray = field(default=None)        # (d,)
    total_outer: np.ndarray = field(default=None)  # (d, d)
    rows: np.ndarray | None = field(default=None, repr=False)   # (n, d) float32, or None

    def __post_init__(self):
        if self.total is None:
            self.total = np.zeros(self.dim, np.float64)
        if self.total_outer is None:
            self.total_outer = np.zeros((self.dim, self.dim), np.float64)

    def update(self, features: np.ndarray, keep_rows: bool = False) -> "FeatureStats":
        x = np.asarray(features, np.float64).reshape(-1, self.dim)   # (b, d)
        if keep_rows and (self.rows is not None or self.n == 0):
            kept = np.asarray(features, np.float32).reshape(-1, self.dim)
            self.rows = kept if self.rows is None else np.concatenate([self.rows, kept])
        elif self.n or len(x):
            self.rows = None                            # sums without rows: the rows no longer describe them
        self.n += len(x)
        self.total += x.sum(0)
        self.total_outer += x.T @ x
        return self

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        if other.dim != self.dim:
            raise ValueError(f"cannot merge {other.dim}-d statistics into {self.dim}-d")
        rows = (np.concatenate([self.rows, other.rows]) if self.rows is not None and other.rows is not None
                else None)
        return FeatureStats(self.dim, self.n + other.n, self.total + other.total, self.total_outer + other.total_outer,
                            rows)

    def mean_cov(self, covariance: str = "unbiased") -> tuple[np.ndarray, np.ndarray]:
        """Mean (d,) and covariance (d, d): "unbiased" divides by n - 1 (np.cov, TF-GAN, the original FVD),
        "biased" by n (StyleGAN-V's and cd-fvd's FeatureStats.get_mean_cov)."""
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        if self.n < 2:
            raise ValueError(f"need at least 2 feature vectors, have {self.n}")
        mu = self.total / self.n
        sigma = (self.total_outer - self.n * np.outer(mu, mu)) / (self.n - 1 if covariance == "unbiased" else self.n)
        return mu, sigma


def warn_if_few(n: int, what: str) -> None:
    if n < MIN_SAMPLES:
        warnings.warn(f"{what}: {n} videos < {MIN_SAMPLES} (the feature dimension): the covariance is singular and the "
                      "Frechet distance is biased upward; compare only values computed at the same N", UserWarning)


def fvd_from_stats(real: FeatureStats, fake: FeatureStats, covariance: str = "unbiased") -> float:
    warn_if_few(real.n, "real statistics")
    warn_if_few(fake.n, "generated statistics")
    return frechet_distance(*real.mean_cov(covariance), *fake.mean_cov(covariance))
