"""Inception Score properties, the C3D network and its checkpoint loading."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from eval.c3d import C3DUCF101, from_ordered_state_dict, load_c3d
from eval.detectors import C3DDetector
from eval.errors import EvalError
from eval.inception import IS_PRESETS, ISProtocol, inception_score


def _probs(n: int, k: int = 101, seed: int = 0) -> np.ndarray:
    logits = np.random.default_rng(seed).standard_normal((n, k)) * 3
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def test_uniform_predictions_give_one():
    probs = np.full((64, 101), 1 / 101)
    assert inception_score(probs, replace(IS_PRESETS["stylegan-v"], samples=64))[0] == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("k", [2, 10, 101])
def test_confident_even_predictions_give_k(k):
    probs = np.eye(101)[np.arange(10 * k) % k]          # one-hot, each of k classes equally often
    one = ISProtocol("stylegan-v", samples=10 * k, loops=1, splits=1, shuffle_seed=None, eps=0.0)
    assert inception_score(probs, one)[0] == pytest.approx(k, rel=1e-9)
    tgan2 = replace(IS_PRESETS["tgan2"], samples=10 * k, loops=1)  # eps 1e-20 moves nothing measurable
    assert inception_score(probs, tgan2)[0] == pytest.approx(k, rel=1e-9)
    grouped = probs[np.argsort(np.arange(10 * k) % k, kind="stable")]   # classes in blocks: splits see fewer classes
    assert inception_score(grouped, replace(one, splits=10))[0] <= k + 1e-9


def test_stylegan_v_slicing_equals_a_literal_computation():
    # StyleGAN-V's compute_isv written out: RandomState(42).shuffle, parts [i*n//s, (i+1)*n//s), no epsilon
    n, s = 2045, 10                                      # n not divisible by s: the boundaries matter
    probs = _probs(n).astype(np.float64)
    literal = probs.copy()
    np.random.RandomState(42).shuffle(literal)
    scores = []
    for i in range(s):
        part = literal[i * n // s:(i + 1) * n // s]
        kl = part * (np.log(part) - np.log(np.mean(part, axis=0, keepdims=True)))
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    mean, std, ours = inception_score(probs, replace(IS_PRESETS["stylegan-v"], samples=n))
    np.testing.assert_allclose(ours, scores, rtol=1e-12)
    assert (mean, std) == pytest.approx((np.mean(scores), np.std(scores)), rel=1e-12)
    sizes = [len(p) for p in np.array_split(np.arange(n), s)]
    assert sizes != [(i + 1) * n // s - i * n // s for i in range(s)]   # array_split would cut elsewhere


def test_tgan2_loops_take_disjoint_fresh_sets():
    probs = _probs(3 * 50, seed=1)
    protocol = replace(IS_PRESETS["tgan2"], samples=50, loops=3)
    mean, std, scores = inception_score(probs, protocol)
    literal = []
    for loop in range(3):                                # TGAN2: splits=1 per loop, eps 1e-20, std over loops
        part = probs[loop * 50:(loop + 1) * 50] + 1e-20
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        literal.append(np.exp(np.mean(np.sum(kl, 1))))
    np.testing.assert_allclose(scores, literal, rtol=1e-12)
    assert std == pytest.approx(np.std(literal), rel=1e-9) and std > 0
    assert IS_PRESETS["tgan2"].samples * IS_PRESETS["tgan2"].loops == 20480
    with pytest.raises(EvalError, match="needs 10 x 2048 = 20480 videos"):
        inception_score(probs, IS_PRESETS["tgan2"])


def test_protocol_record_says_when_a_preset_was_changed():
    assert IS_PRESETS["stylegan-v"].record()["exact_preset"]
    assert not IS_PRESETS["stylegan-v"].with_overrides(samples=64).record()["exact_preset"]


def test_rejects_non_probabilities():
    with pytest.raises(ValueError):
        inception_score(np.ones((10, 5)), replace(IS_PRESETS["stylegan-v"], samples=10, splits=1))


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
    with pytest.raises(EvalError, match="not a C3D-UCF101"):
        load_c3d(path)


def test_c3d_ordered_conversion_roundtrip(c3d_ckpt):
    source = torch.load(c3d_ckpt, weights_only=True)
    renamed = {f"layer{i}.param": v for i, (k, v) in enumerate(source.items()) if k != "mean"}
    state = from_ordered_state_dict(renamed, torch.zeros(3, 16, 112, 112))
    net = C3DUCF101()
    net.load_state_dict(state)
    torch.testing.assert_close(net.fc8.weight, source["fc8.weight"])
