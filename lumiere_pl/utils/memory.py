"""Memory of a training run per device, known before it starts (lumiere-train --dry-run).

Weights, gradients, AdamW's two moments and the EMA are counted exactly from the parameters (their dtypes: frozen
bf16 weights count 2 bytes; what trains, its gradient, moments and EMA 4), divided by the shard size under FSDP.
The frozen text encoder and VAE count as they are held: a run from encoded shards (lumiere-shards encode) holds no
text encoder and the VAE's decoder only, and the rows say so. Activations are estimated on the meta device: one training
forward at the per-device batch runs on shapes alone (no memory, no arithmetic) and the tensors it saves for backward
are summed, once each; with model.checkpointing only the inputs of each recomputed block stay, and backward then
holds one block's activations more at a time (not counted). Workspace, allocator fragmentation, the data loader and
CUDA's context (~0.5 GiB) are not counted either: leave a margin.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterator, List

import torch
from torch import Tensor

GiB = 2 ** 30


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _module_bytes(modules) -> int:
    return sum(_bytes(m.parameters()) + _bytes(m.buffers()) for m in modules if m is not None)


def frozen_rows(module) -> Dict[str, int]:
    """Bytes of the frozen networks a run holds: the text encoder (none when it trains from encoded shards: their
    stored states stand in for it), and with a VAE its encoder and its decoder apart (from encoded shards the encoder
    is not held; the decoder renders validation samples)."""
    rows = {"weights (text encoder)": sum(_module_bytes([getattr(module.text_encoder, n)])
                                          for n in module.text_encoder._held)}
    if module.codec is not None:
        vae = module.codec.vae
        rows["weights (VAE encoder)"] = _module_bytes([getattr(vae, "encoder", None), getattr(vae, "quant_conv", None)])
        rows["weights (VAE decoder)"] = _module_bytes([getattr(vae, "decoder", None),
                                                       getattr(vae, "post_quant_conv", None)])
    return rows


@contextmanager
def saved_bytes() -> Iterator[List[int]]:
    """Sum the bytes of the tensors autograd saves for backward inside the block, each tensor once."""
    seen: Dict[int, Tensor] = {}
    total = [0]

    def pack(t: Tensor) -> Tensor:
        if id(t) not in seen:
            seen[id(t)] = t
            total[0] += t.numel() * t.element_size()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield total


def activation_bytes(module, checkpointing: bool, device: str = "meta") -> int:
    """Bytes saved for backward by one training forward of the module's network at data.batch_size, on `device`,
    where the network is moved (meta: shapes only, and the weights are gone: the dry run ends there)."""
    cfg, parts = module.cfg, module.parts
    net = module.net.to(device)
    net.grad_checkpointing = checkpointing
    net.train()
    b = cfg.data.batch_size
    shape = (b, *parts.sample_shape(cfg.data.frames))
    text_dim, length = module.text_encoder.dim, cfg.text.max_length
    cond = {"text": torch.zeros(b, length, text_dim, device=device),
            "text_mask": torch.ones(b, length, dtype=torch.bool, device=device)}
    cond.update({k: v.to(device) for k, v in module.example_condition(shape).items() if isinstance(v, Tensor)})
    x = torch.zeros(shape, device=device)
    with torch.enable_grad(), saved_bytes() as total:
        net(x, torch.zeros(b, device=device), cond).float().pow(2).mean()
    return total[0]


def training_memory(module, shards: int = 1) -> Dict[str, int]:
    """Bytes per device of each part of a training run (the module docstring says what is counted and how);
    shards: processes sharing one copy of the network (FSDP), 1 otherwise. Leaves the network on the meta device."""
    params = list(module.net.parameters())
    trainable = [p for p in params if p.requires_grad]
    n_train = sum(p.numel() for p in trainable)
    return {
        "weights (network)": _bytes(params) // shards,
        **frozen_rows(module),
        "gradients": 4 * n_train // shards,
        "optimizer (AdamW moments)": 8 * n_train // shards,
        "EMA": 4 * n_train // shards,
        "activations": activation_bytes(module, bool(module.cfg.model.checkpointing)),
        "activations, other checkpointing": activation_bytes(module, not module.cfg.model.checkpointing),
    }


def memory_table(rows: Dict[str, int], checkpointing: bool, batch: int, shards: int) -> str:
    """The dry run's lines: each part, then the total with the configured checkpointing."""
    other = "on" if not checkpointing else "off"
    lines = [f"memory per device (batch {batch}{f', FSDP over {shards}' if shards > 1 else ''}; activations "
             f"estimated on the meta device, model.checkpointing={'on' if checkpointing else 'off'}):"]
    for name, value in rows.items():
        label = f"activations with checkpointing {other}" if name == "activations, other checkpointing" else name
        lines.append(f"  {label:<38s}{value / GiB:9.3f} GiB")
    total = sum(v for k, v in rows.items() if k != "activations, other checkpointing")
    lines.append(f"  {'total (without workspace and margin)':<38s}{total / GiB:9.3f} GiB")
    return "\n".join(lines)
