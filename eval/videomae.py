"""VideoMAE-v2 ViT encoder (Wang et al. 2023), the feature network of cd-fvd's content-debiased FVD
(Ge et al. 2024, "On the Content Bias in Frechet Video Distance": ViT-g/14 fine-tuned on SSv2,
vit_g_hybrid_pt_1200e_ssv2_ft.pth, 1408-d features).

The feature is VideoMAE-v2's `forward_features` with mean pooling: fc_norm(mean over tokens of the last block).
Weights load from a local file only (a state_dict of tensors: .pt read with weights_only=True, or .safetensors);
nothing is downloaded. Key names follow the VideoMAE-v2 release (patch_embed.proj, blocks.i.attn.qkv + q_bias +
v_bias, blocks.i.mlp.fc1/fc2, fc_norm); a top-level "model" or "module" entry is unwrapped.
Position embeddings are the fixed sinusoid table of the training geometry (`all_frames` x `img_size`^2); other
clip geometries are refused rather than interpolated.
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

HEADS_BY_WIDTH = {384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16}   # ViT-S/B/L/H/g of the VideoMAE releases
LN_EPS = 1e-6


def sinusoid_table(n: int, dim: int) -> torch.Tensor:
    """(n, dim): position p, channel j -> sin/cos(p / 10000^(2 floor(j/2) / dim)), sin on even j."""
    pos = np.arange(n, dtype=np.float64)[:, None]
    j = np.arange(dim)[None]
    angle = pos / np.power(10000.0, 2 * (j // 2) / dim)
    return torch.from_numpy(np.where(j % 2 == 0, np.sin(angle), np.cos(angle))).float()


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, layer_scale: bool):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=LN_EPS), nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn.q_bias, self.attn.v_bias = nn.Parameter(torch.zeros(dim)), nn.Parameter(torch.zeros(dim))
        self.attn.proj = nn.Linear(dim, dim)
        self.mlp = nn.Module()
        self.mlp.fc1, self.mlp.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        if layer_scale:
            self.gamma_1, self.gamma_2 = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape                                                    # (b, n, d)
        bias = torch.cat([self.attn.q_bias, torch.zeros_like(self.attn.v_bias), self.attn.v_bias])
        q, k, v = F.linear(x, self.attn.qkv.weight, bias).view(b, n, 3, self.heads, d // self.heads).unbind(2)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (b, h, n, dh)
        return self.attn.proj(out.transpose(1, 2).reshape(b, n, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attention(self.norm1(x))
        x = x + (a if self.gamma_1 is None else self.gamma_1 * a)
        m = self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))
        return x + (m if self.gamma_2 is None else self.gamma_2 * m)


class VideoMAEEncoder(nn.Module):
    """forward: (b, 3, t, h, w) -> (b, embed_dim) mean-pooled, fc_norm'ed features."""

    def __init__(self, embed_dim: int, depth: int, heads: int, hidden: int, patch: int, tubelet: int,
                 img_size: int = 224, all_frames: int = 16, layer_scale: bool = False):
        super().__init__()
        self.embed_dim, self.geometry = embed_dim, (all_frames // tubelet, img_size // patch, img_size // patch)
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv3d(3, embed_dim, (tubelet, patch, patch), stride=(tubelet, patch, patch))
        self.blocks = nn.ModuleList(Block(embed_dim, heads, hidden, layer_scale) for _ in range(depth))
        self.fc_norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.register_buffer("pos_embed", sinusoid_table(int(np.prod(self.geometry)), embed_dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(x)                                         # (b, d, t', h', w')
        if tuple(x.shape[2:]) != self.geometry:
            raise ValueError(f"VideoMAE was trained on token grids {self.geometry} (t', h', w'); this clip gives "
                             f"{tuple(x.shape[2:])}: use {self.geometry[0] * self.patch_embed.proj.kernel_size[0]} frames")
        x = x.flatten(2).transpose(1, 2) + self.pos_embed                    # (b, n, d)
        for block in self.blocks:
            x = block(x)
        return self.fc_norm(x.mean(1))                                       # (b, d)


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise EvalError(f"{path}: VideoMAE checkpoint not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        what = ("holds Python objects other than tensors, which we refuse to unpickle" if "Unsupported global" in str(err)
                else "is not a torch checkpoint (or is truncated)")
        raise EvalError(f"{path}: {what}; expected a state_dict of tensors (.pt or .safetensors)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise EvalError(f"{path}: not a readable VideoMAE state_dict ({type(err).__name__})") from None
    for key in ("model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            return state[key]
    return state


def load_videomae(path: str | Path, heads: int | None = None, img_size: int = 224,
                  all_frames: int = 16) -> tuple[VideoMAEEncoder, str]:
    """A VideoMAE-v2 encoder from a local state_dict; its size is read from the tensors (heads from the width)."""
    path = Path(path)
    state = _read_state(path)
    try:
        embed_dim, _, tubelet, patch, _ = state["patch_embed.proj.weight"].shape
        depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    except (KeyError, ValueError, AttributeError) as err:
        raise EvalError(f"{path}: not a VideoMAE-v2 state_dict (no patch_embed.proj / blocks.*: {err})") from None
    heads = heads or HEADS_BY_WIDTH.get(embed_dim)
    if heads is None:
        raise EvalError(f"{path}: width {embed_dim} is not a known VideoMAE size; pass the number of heads")
    net = VideoMAEEncoder(embed_dim, depth, heads, hidden, patch, tubelet, img_size, all_frames,
                          layer_scale="blocks.0.gamma_1" in state)
    wanted = {k: v for k, v in state.items() if not k.startswith(("head.", "norm.", "pos_embed"))}
    missing, unexpected = net.load_state_dict(wanted, strict=False)
    if missing or unexpected:
        raise EvalError(f"{path}: not a VideoMAE-v2 encoder (missing {missing[:4]}, unexpected {unexpected[:4]})")
    digest = hashlib.sha256()
    with path.open("rb") as f:                          # ViT-g is ~4 GB: hash it in chunks
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return net.eval().requires_grad_(False), f"videomae_v2:{path.name}@sha256:{digest.hexdigest()[:12]}"
