"""Bootstrap intervals (eval/bootstrap.py): the fast Frechet distance equals the scipy one, resampling weights equal
repeated rows, intervals are seeded and re-centred on the value, and FVD falls with N on samples of one Gaussian."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from eval.bootstrap import frechet_from_rows, frechet_interval, fvd_interval, mean_interval, n_curve
from eval.frechet import FeatureStats, frechet_distance


def _gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = np.linalg.qr(np.random.default_rng(99).standard_normal((d, d)))[0] * np.linspace(0.3, 2.0, d)
    return rng.standard_normal((n, d)) @ mix + shift


def _scipy(a: np.ndarray, b: np.ndarray, covariance: str = "unbiased") -> float:
    ddof = 1 if covariance == "unbiased" else 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return frechet_distance(a.mean(0), np.cov(a, rowvar=False, ddof=ddof), b.mean(0), np.cov(b, rowvar=False, ddof=ddof))


@pytest.mark.parametrize("n, d", [(300, 40), (30, 40), (25, 40)])
@pytest.mark.parametrize("covariance", ["unbiased", "biased"])
def test_fast_frechet_equals_scipy_sqrtm(n, d, covariance):
    a, b = _gaussian(n, d, 0), _gaussian(n + 7, d, 1, 0.2)
    assert frechet_from_rows(a, b, covariance=covariance) == pytest.approx(_scipy(a, b, covariance), rel=1e-6)


def test_weights_are_repeated_rows():
    a, b = _gaussian(50, 8, 0), _gaussian(60, 8, 1, 0.5)
    rng = np.random.default_rng(0)
    wa, wb = rng.integers(0, 3, 50), rng.integers(0, 3, 60)
    assert frechet_from_rows(a, b, wa, wb) == pytest.approx(_scipy(np.repeat(a, wa, 0), np.repeat(b, wb, 0)), rel=1e-9)


def test_mean_interval_is_seeded_and_covers_the_mean():
    x = np.random.default_rng(0).exponential(size=200)
    iv = mean_interval(x, b=2000, seed=1)
    assert iv == mean_interval(x, b=2000, seed=1) and iv != mean_interval(x, b=2000, seed=2)
    assert iv["low"] < x.mean() < iv["high"] and iv["n"] == 200
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))                      # the normal approximation
    assert iv["high"] - iv["low"] == pytest.approx(2 * half, rel=0.15)
    assert mean_interval([2.0, 2.0, np.nan], b=100) == {"value": 2.0, "low": 2.0, "high": 2.0, "n": 2}


def test_frechet_interval_is_recentred_seeded_and_holds_the_value():
    a, b = _gaussian(200, 20, 0), _gaussian(200, 20, 1, 0.3)
    value = frechet_from_rows(a, b)
    iv = frechet_interval(value, a, b, b=100, seed=0)
    assert iv == frechet_interval(value, a, b, b=100, seed=0)
    assert iv["low"] < value < iv["high"] and iv["resampled"] == "real and generated videos"
    assert iv["resample_shift"] > 0                      # resamples repeat videos: their distance is biased upward
    # with only statistics on the real side, only the generated videos are resampled: a narrower interval
    fixed = frechet_interval(value, None, b, b=100, seed=0,
                             real_fixed=(a.mean(0), np.cov(a, rowvar=False)))
    assert fixed["resampled"].startswith("generated videos only") and fixed["low"] < value < fixed["high"]
    assert fixed["high"] - fixed["low"] < iv["high"] - iv["low"]


def test_fvd_interval_reads_rows_kept_by_feature_stats():
    a, b = _gaussian(120, 10, 0), _gaussian(100, 10, 1, 0.3)
    real, fake = FeatureStats(10).update(a, keep_rows=True), FeatureStats(10).update(b, keep_rows=True)
    assert real.rows.shape == (120, 10) and FeatureStats(10).update(a).rows is None
    assert real.merge(fake).rows.shape == (220, 10)
    value = frechet_from_rows(a, b)
    assert fvd_interval(value, real, fake, "unbiased", 50, 0) == frechet_interval(value, real.rows, fake.rows, 50, 0)
    assert real.rows.dtype == np.float32                 # as the features come from the network
    assert fvd_interval(value, FeatureStats(10).update(a), fake, "unbiased", 50, 0)["resampled"].startswith("generated")
    assert fvd_interval(value, real, fake, "unbiased", 0)["low"] is None


def test_fvd_falls_with_n_on_samples_of_one_gaussian():
    a, b = _gaussian(256, 16, 0), _gaussian(256, 16, 1)                # the same distribution: FD -> 0 as N grows
    curve = n_curve(a, b, draws=4, seed=0)
    assert [c["n"] for c in curve] == [8, 16, 32, 64, 128, 256]
    means = [c["mean"] for c in curve]
    assert all(x > y for x, y in zip(means, means[1:])) and curve[-1]["draws"] == 1
    assert all(c["min"] <= c["mean"] <= c["max"] for c in curve)
