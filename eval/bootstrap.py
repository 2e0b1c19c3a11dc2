"""Bootstrap intervals over videos, seeded: for set means (motion metrics) and for Frechet distances (FVD, the flow
Frechet distance), plus the curve of a Frechet distance against N.

Method: draw B resamples of the videos with replacement (for a Frechet distance, the real set's and the generated
set's independently, each at its own N) from numpy.random.default_rng(seed), recompute the statistic on each; q_lo,
q_hi are the 2.5th and 97.5th percentiles of the B values (numpy's linear interpolation).
  set mean          the percentile interval [q_lo, q_hi].
  Frechet distance  the percentile interval re-centred on the value: [value - (m - q_lo), value + (q_hi - m)], m the
                    median of the B values. A resample holds ~63 % distinct videos, so its Frechet distance is biased
                    upward (at N = 2048, d = 400 the whole percentile interval can lie above the value); re-centring
                    keeps the spread and drops that shift. The interval says how much the value moves with the draw
                    of N videos; it is not an interval for the value at N = infinity (FVD is biased upward at small
                    N: `n_curve`). m - value is recorded as "resample_shift"; the lower bound is clipped at 0 (a
                    distance is never negative).

Replicates of a Frechet distance use Tr sqrtm(S1 S2) = the sum of the square roots of the eigenvalues of
G G^T, G = A1 A2^T, for any factors with A^T A = S (the centred, weighted rows when n <= d, else a Cholesky factor):
exact, and about twice as fast as the covariance + scipy sqrtm route at N = 2048, d = 400 (39 against 72 ms per
replicate on one thread); `frechet_from_rows` without resampling equals
eval.frechet.frechet_distance to rounding (tests/test_eval_bootstrap.py).
"""
from __future__ import annotations

import numpy as np

CONFIDENCE = 0.95
DEFAULT_B_MEAN = 1000   # resamples of a set mean (milliseconds)
DEFAULT_B_FRECHET = 100  # resamples of a Frechet distance: 3.5-6 s at N = 2048, d = 400 (docs/results/)


def _percentiles(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def mean_interval(values, b: int = DEFAULT_B_MEAN, seed: int = 0) -> dict:
    """Mean of per-video values (NaN ones left out) with its percentile-bootstrap interval:
    {"value", "low", "high", "n"}. n = 1 gives the value as both bounds (nothing to resample); b = 0: no interval
    (low and high None)."""
    x = np.asarray(values, np.float64)
    x = x[np.isfinite(x)]                                                        # (n,)
    if len(x) == 0:
        return {"value": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    if b <= 0:
        return {"value": float(x.mean()), "low": None, "high": None, "n": int(len(x))}
    rng = np.random.default_rng(seed)
    means = np.empty(b)
    chunk = max(1, 4_000_000 // len(x))                                          # bounded memory: chunk x n indices
    for start in range(0, b, chunk):
        stop = min(b, start + chunk)
        means[start:stop] = x[rng.integers(0, len(x), (stop - start, len(x)))].mean(1)
    low, high = _percentiles(means)
    return {"value": float(x.mean()), "low": low, "high": high, "n": int(len(x))}


def _factor(rows: np.ndarray, weights: np.ndarray, covariance: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and a factor A (k, d) with A^T A = the weighted covariance; k = min(distinct rows, d)."""
    n = weights.sum()
    keep = weights > 0
    x, w = rows[keep], weights[keep]                                             # (m, d), (m,)
    mu = w @ x / n                                                               # (d,)
    denom = n - 1 if covariance == "unbiased" else n
    a = (x - mu) * np.sqrt(w / denom)[:, None]                                   # (m, d): a^T a = S
    if len(a) <= a.shape[1]:
        return mu, a
    s = a.T @ a                                                                  # (d, d)
    try:
        return mu, np.linalg.cholesky(s).T                                       # L^T: (L^T)^T L^T = S
    except np.linalg.LinAlgError:                                                # singular: eigh's square root
        lam, u = np.linalg.eigh(s)
        return mu, np.sqrt(np.clip(lam, 0, None))[:, None] * u.T


def _frechet_factors(mu1: np.ndarray, a1: np.ndarray, mu2: np.ndarray, a2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr S1 + Tr S2 - 2 Tr sqrtm(S1 S2) with S = A^T A."""
    g = a1 @ a2.T                                                                # (k1, k2)
    gg = g @ g.T if g.shape[0] <= g.shape[1] else g.T @ g                        # the smaller Gram matrix
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(gg), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + (a1 * a1).sum() + (a2 * a2).sum() - 2.0 * tr_sqrt)


def _ones(rows: np.ndarray, weights) -> np.ndarray:
    return np.ones(len(rows)) if weights is None else np.asarray(weights, np.float64)


def frechet_from_rows(real: np.ndarray, fake: np.ndarray, real_w: np.ndarray | None = None,
                      fake_w: np.ndarray | None = None, covariance: str = "unbiased") -> float:
    """Frechet distance of Gaussians fitted to rows (n, d) with integer weights (bootstrap counts; None: all 1)."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    return _frechet_factors(*_factor(real, _ones(real, real_w), covariance),
                            *_factor(fake, _ones(fake, fake_w), covariance))


class _Real:
    """The real side of a Frechet distance: per-video rows (resampled), or fixed statistics (mean, covariance)."""

    def __init__(self, rows: np.ndarray | None, fixed=None, covariance: str = "unbiased"):
        self.rows = None if rows is None else np.asarray(rows, np.float64)
        self.covariance = covariance
        if self.rows is None:
            mu, sigma = fixed
            lam, u = np.linalg.eigh(np.asarray(sigma, np.float64))
            self.fixed = np.asarray(mu, np.float64), np.sqrt(np.clip(lam, 0, None))[:, None] * u.T   # (d,), (d, d)

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else 0

    def factors(self, weights: np.ndarray | None):
        return self.fixed if self.rows is None else _factor(self.rows, _ones(self.rows, weights), self.covariance)


def frechet_interval(value: float, real: np.ndarray | None, fake: np.ndarray, b: int = DEFAULT_B_FRECHET,
                     seed: int = 0, covariance: str = "unbiased", real_fixed=None) -> dict:
    """Bootstrap interval of the Frechet distance `value` (re-centred percentile, module docstring):
    {"low", "high", "b", "seed", "confidence", "method", "resampled", "resample_shift"}.
    real: per-video rows (n_r, d), or None with real_fixed = (mean, covariance) when only statistics exist; then only
    the generated set is resampled (recorded in "resampled")."""
    if b <= 0:
        return {"low": None, "high": None, "b": 0, "seed": seed, "method": "none (B = 0)"}
    rng = np.random.default_rng(seed)
    side, fake = _Real(real, real_fixed, covariance), np.asarray(fake, np.float64)
    values = np.empty(b)
    for i in range(b):
        fw = np.bincount(rng.integers(0, len(fake), len(fake)), minlength=len(fake)).astype(np.float64)
        rw = np.bincount(rng.integers(0, len(side), len(side)), minlength=len(side)).astype(np.float64) if len(side) else None
        values[i] = _frechet_factors(*side.factors(rw), *_factor(fake, fw, covariance))
    q_lo, q_hi = _percentiles(values)
    m = float(np.median(values[np.isfinite(values)])) if np.isfinite(values).any() else float("nan")
    return {"low": max(0.0, value - (m - q_lo)), "high": value + (q_hi - m), "b": b, "seed": seed, "confidence": CONFIDENCE,
            "method": "bootstrap over videos, percentile interval re-centred on the value", "resample_shift": m - value,
            "resampled": "real and generated videos" if len(side) else
                         "generated videos only (the real statistics hold no per-video features)"}


def n_curve(real: np.ndarray | None, fake: np.ndarray, covariance: str = "unbiased", draws: int = 5, seed: int = 0,
            smallest: int = 8, real_fixed=None) -> list[dict]:
    """Frechet distance on random subsets of n videos of each set (without replacement; the whole real set when
    only its statistics exist), n = N, N/2, N/4, ... while n >= `smallest` (N = the smaller set's size, always
    included; one draw at N, `draws` below): [{"n", "mean", "min", "max", "draws"}], n ascending."""
    rng = np.random.default_rng(seed)
    side, fake = _Real(real, real_fixed, covariance), np.asarray(fake, np.float64)
    top = min(len(side), len(fake)) if len(side) else len(fake)
    sizes, n = [top], top // 2
    while n >= max(2, smallest):
        sizes.append(n)
        n //= 2
    out = []
    for n in sorted(sizes):
        vals = []
        for _ in range(draws if n < top else 1):
            fw = np.zeros(len(fake))
            fw[rng.choice(len(fake), n, replace=False)] = 1
            rw = None
            if len(side):
                rw = np.zeros(len(side))
                rw[rng.choice(len(side), n, replace=False)] = 1
            vals.append(_frechet_factors(*side.factors(rw), *_factor(fake, fw, covariance)))
        out.append({"n": int(n), "mean": float(np.mean(vals)), "min": float(np.min(vals)), "max": float(np.max(vals)),
                    "draws": len(vals)})
    return out


def _real_side(real_stats, covariance: str):
    """(rows or None, fixed (mean, covariance) or None) of eval.frechet.FeatureStats."""
    if real_stats.rows is not None:
        return real_stats.rows, None
    return None, real_stats.mean_cov(covariance)


def fvd_interval(value: float, real_stats, fake_stats, covariance: str, b: int = DEFAULT_B_FRECHET,
                 seed: int = 0) -> dict:
    """frechet_interval for two FeatureStats (the real one may hold sums only); b = 0: no interval."""
    if b <= 0:
        return frechet_interval(value, None, fake_stats.rows, 0, seed)
    rows, fixed = _real_side(real_stats, covariance)
    return frechet_interval(value, rows, fake_stats.rows, b, seed, covariance, fixed)


def fvd_curve(real_stats, fake_stats, covariance: str, seed: int = 0) -> list[dict]:
    """n_curve for two FeatureStats."""
    rows, fixed = _real_side(real_stats, covariance)
    return n_curve(rows, fake_stats.rows, covariance, seed=seed, real_fixed=fixed)
