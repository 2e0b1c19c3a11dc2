"""Inception Score properties, the C3D network and its checkpoint loading."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from eval.c3d import C3DUCF101, from_ordered_state_dict, load_c3d
from eval.detectors import C3DDetector
from eval.inception import inception_score


def test_uniform_predictions_give_one():
    probs = np.full((64, 101), 1 / 101)
    assert inception_score(probs)[0] == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("k", [2, 10, 101])
def test_confident_even_predictions_give_k(k):
    probs = np.eye(101)[np.arange(10 * k) % k]          # one-hot, each of k classes equally often
    mean, std = inception_score(probs, splits=1)
    assert mean == pytest.approx(k, rel=1e-6)
    mean, std = inception_score(probs[np.argsort(np.arange(10 * k) // k, kind="stable")], splits=10, repeats=3)
    assert mean <= k + 1e-6                              # per split: at most k


def test_splits_and_repeats_are_seeded():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((200, 101)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    a = inception_score(probs, splits=10, repeats=2, seed=42)
    assert a == inception_score(probs, splits=10, repeats=2, seed=42)
    assert 1 < a[0] < 101 and a[1] > 0


def test_rejects_non_probabilities():
    with pytest.raises(ValueError):
        inception_score(np.ones((10, 5)))


@pytest.fixture(scope="module")
def c3d_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    net = C3DUCF101()
    path = tmp_path_factory.mktemp("c3d") / "c3d_random.pt"
    torch.save(net.state_dict(), path)
    return path


def test_c3d_detector_from_checkpoint(c3d_ckpt):
    detector = C3DDetector(str(c3d_ckpt))
    videos = np.random.default_rng(1).integers(0, 256, (2, 16, 64, 80, 3), dtype=np.uint8)
    probs = detector(videos)                                    # (2, 101)
    assert probs.shape == (2, 101)
    torch.testing.assert_close(probs.sum(1), torch.ones(2), rtol=0, atol=1e-5)
    assert detector.protocol()["weights"].startswith("c3d_ucf101:c3d_random.pt@sha256:")


def test_c3d_rejects_foreign_state_dict(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(KeyError, match="not a C3D-UCF101"):
        load_c3d(path)


def test_c3d_ordered_conversion_roundtrip(c3d_ckpt):
    source = torch.load(c3d_ckpt, weights_only=True)
    renamed = {f"layer{i}.param": v for i, (k, v) in enumerate(source.items()) if k != "mean"}
    state = from_ordered_state_dict(renamed, torch.zeros(3, 16, 112, 112))
    net = C3DUCF101()
    net.load_state_dict(state)
    torch.testing.assert_close(net.fc8.weight, source["fc8.weight"])
