"""Frechet distance identities, streaming statistics, and an exact 2-process DDP merge (gloo, CPU)."""
from __future__ import annotations

import os
import socket
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from eval.frechet import FeatureStats, frechet_distance, fvd_from_stats
from eval.fvd import FVD


def _random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_closed_form_diagonal_gaussians():
    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    v1, v2 = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_closed_form_commuting_full_covariances():
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T: distance = |dmu|^2 + sum (sqrt a - sqrt b)^2
    rng = np.random.default_rng(1)
    d = 12
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    mu = rng.standard_normal(d)
    value = frechet_distance(mu, q @ np.diag(a) @ q.T, np.zeros(d), q @ np.diag(b) @ q.T)
    assert value == pytest.approx(mu @ mu + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2), rel=1e-8)


def test_matches_direct_scipy_on_random_features():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((600, 32)), rng.standard_normal((500, 32)) * 1.3 + 0.2
    mu1, s1, mu2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    stats = fvd_from_stats(FeatureStats(32).update(x), FeatureStats(32).update(y))
    assert stats == pytest.approx(direct, rel=1e-6)


def test_self_distance_is_zero():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 24))
    s = FeatureStats(24).update(x)
    assert abs(fvd_from_stats(s, s)) < 1e-8


def test_streaming_in_chunks_equals_all_at_once():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((257, 10)) * 5 + 3
    whole = FeatureStats(10).update(x)
    chunked = FeatureStats(10)
    for part in np.array_split(x, 7):
        chunked.update(part)
    mu, cov = chunked.mean_cov()
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(chunked.mean_cov()[1], whole.mean_cov()[1], rtol=1e-12)
    merged = FeatureStats(10).update(x[:100]).merge(FeatureStats(10).update(x[100:]))
    np.testing.assert_allclose(merged.mean_cov()[1], whole.mean_cov()[1], rtol=1e-12)


def test_few_samples_warn():
    rng = np.random.default_rng(5)
    s = FeatureStats(8).update(rng.standard_normal((50, 8)))
    with pytest.warns(UserWarning, match="< 400"):
        fvd_from_stats(s, s)


def test_metric_matches_numpy_and_accepts_real_override():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((450, 8)), rng.standard_normal((420, 8)) + 1
    metric = FVD(dim=8)
    for part in np.array_split(x, 3):
        metric.update(torch.from_numpy(part).float(), real=True)
    metric.update(torch.from_numpy(y).float(), real=False)
    expected = fvd_from_stats(FeatureStats(8).update(x.astype(np.float32)), FeatureStats(8).update(y.astype(np.float32)))
    assert metric.compute().item() == pytest.approx(expected, rel=1e-9)
    other = FVD(dim=8)
    other.set_real_stats(FeatureStats(8).update(x.astype(np.float32)))
    other.update(torch.from_numpy(y).float(), real=False)
    assert other.compute().item() == pytest.approx(expected, rel=1e-9)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, x: np.ndarray, y: np.ndarray, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        metric = FVD(dim=x.shape[1])
        metric.update(torch.from_numpy(x[rank::world]), real=True)   # each rank sees a disjoint share
        metric.update(torch.from_numpy(y[rank::world]), real=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = metric.compute().item()                          # states summed across ranks first
        with metric.sync_context():
            n = metric.stats(real=True).n
        out[rank] = (value, n)
    finally:
        dist.destroy_process_group()


@pytest.mark.xdist_group("two_processes")
def test_two_process_ddp_merge_equals_one_process():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((101, 6)).astype(np.float32)
    y = (rng.standard_normal((99, 6)) * 2).astype(np.float32)
    single = FVD(dim=6)
    single.update(torch.from_numpy(x), real=True)
    single.update(torch.from_numpy(y), real=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = single.compute().item()
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_ddp_worker, args=(2, _free_port(), x, y, out), nprocs=2, join=True)
    for rank in range(2):
        value, n = out[rank]
        assert n == 101
        assert value == pytest.approx(expected, rel=1e-12)
