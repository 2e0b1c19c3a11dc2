"""C3D fine-tuned on UCF101, as TGAN2's c3d_ucf101 (the network behind the video Inception Score).

No weights ship here: `load_c3d` takes a user's checkpoint, a plain state_dict (see docs/EVAL.md, "C3D weights",
for converting the TGAN2 chainer npz or the StyleGAN-V TorchScript release). Preprocessing as TGAN2:
pixels -> x/127.5-1 in [-1, 1] -> RGB to BGR -> x*128+128 -> (resized to 112x112 by the detector) -> minus the
mean clip (3, 16, 112, 112) (TGAN2's mean2.npz cropped [8:120, 8:120]) -> 8 convs, 5 max pools
(chainer cover_all=True = ceil mode), fc6-fc8 -> 101 logits.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import EvalError

C3D_FRAMES, C3D_SIZE, C3D_CLASSES = 16, 112, 101
CONVS = (("conv1a", 3, 64), ("conv2a", 64, 128), ("conv3a", 128, 256), ("conv3b", 256, 256),
         ("conv4a", 256, 512), ("conv4b", 512, 512), ("conv5a", 512, 512), ("conv5b", 512, 512))
FCS = (("fc6", 512 * 4 * 4, 4096), ("fc7", 4096, 4096), ("fc8", 4096, C3D_CLASSES))
POOL_AFTER = {"conv1a": (1, 2, 2), "conv2a": (2, 2, 2), "conv3b": (2, 2, 2), "conv4b": (2, 2, 2), "conv5b": (2, 2, 2)}


class C3DUCF101(nn.Module):
    """forward: pixels (b, 3, 16, 112, 112) RGB in [0, 255] -> logits (b, 101)."""

    def __init__(self):
        super().__init__()
        for name, c_in, c_out in CONVS:
            self.add_module(name, nn.Conv3d(c_in, c_out, 3, padding=1))
        for name, c_in, c_out in FCS:
            self.add_module(name, nn.Linear(c_in, c_out))
        self.register_buffer("mean", torch.zeros(3, C3D_FRAMES, C3D_SIZE, C3D_SIZE))  # BGR, 0..256 scale

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels / 127.5 - 1.0).flip(1) * 128.0 + 128.0 - self.mean   # (b, 3, 16, 112, 112) BGR, mean-free
        for name, _, _ in CONVS:
            x = F.relu(getattr(self, name)(x))
            if name in POOL_AFTER:
                x = F.max_pool3d(x, POOL_AFTER[name], ceil_mode=True)
        x = x.flatten(1)                                                 # (b, 512*1*4*4)
        x = F.relu(self.fc6(x))
        x = F.relu(self.fc7(x))
        return self.fc8(x)                                               # (b, 101) logits; dropout off at test


def load_c3d(path: str | Path) -> tuple[C3DUCF101, str]:
    """A converted state_dict (.pt via torch.load(weights_only=True), or .npz without pickle) -> (net, weights id)."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"{path}: C3D checkpoint not found")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                state = {k: torch.from_numpy(f[k]) for k in f.files}
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        what = ("holds Python objects other than tensors, which we refuse to unpickle" if "Unsupported global" in str(err)
                else "is not a torch checkpoint (or is truncated)")
        raise EvalError(f"{path}: {what}; expected a plain C3D state_dict (docs/EVAL.md, C3D weights)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise EvalError(f"{path}: not a readable C3D state_dict ({type(err).__name__}); expected a .pt state_dict "
                        "or an .npz of arrays (docs/EVAL.md, C3D weights)") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EvalError(f"{path}: expected a state_dict (names -> tensors), got {type(state).__name__}")
    net = C3DUCF101()
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise EvalError(f"{path}: not a C3D-UCF101 state_dict (missing {missing[:4]}, unexpected {unexpected[:4]}); "
                        "see docs/EVAL.md for the conversion")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return net.eval().requires_grad_(False), f"c3d_ucf101:{path.name}@sha256:{digest}"


def from_tgan2_npz(model_npz: str | Path, mean_npz: str | Path) -> dict[str, torch.Tensor]:
    """TGAN2's chainer files -> our state_dict: conv3d_deepnetA_ucf.npz ("conv1a/W", "conv1a/b", ...) and
    mean2.npz ("mean", (3, 16, 128, 171) BGR). Chainer ConvolutionND/Linear W are laid out as torch's."""
    state = {}
    with np.load(model_npz, allow_pickle=False) as f:
        for name, _, _ in CONVS + FCS:
            state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(f[f"{name}/W"]))
            state[f"{name}.bias"] = torch.from_numpy(np.ascontiguousarray(f[f"{name}/b"]))
    with np.load(mean_npz, allow_pickle=False) as f:
        state["mean"] = torch.from_numpy(np.ascontiguousarray(f["mean"][:, :, 8:8 + 112, 8:8 + 112])).float()
    return state


def from_ordered_state_dict(source: dict[str, torch.Tensor], mean: torch.Tensor) -> dict[str, torch.Tensor]:
    """Any C3D state_dict whose weight/bias tensors come in layer order (e.g. the StyleGAN-V TorchScript's
    `torch.jit.load(...).state_dict()`): matched by order and checked by shape."""
    target = C3DUCF101().state_dict()
    names = [k for k in target if k != "mean"]
    tensors = [v for v in source.values() if v.ndim in (1, 2, 5)]
    if len(tensors) != len(names):
        raise ValueError(f"expected {len(names)} weight/bias tensors, found {len(tensors)}")
    state = {}
    for name, tensor in zip(names, tensors):
        if tuple(tensor.shape) != tuple(target[name].shape):
            raise ValueError(f"{name}: shape {tuple(tensor.shape)} != {tuple(target[name].shape)}")
        state[name] = tensor.detach().float().clone()
    state["mean"] = mean.float()
    return state
