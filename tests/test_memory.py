"""lumiere-train --dry-run knows a run's memory per device before it starts (lumiere_pl/utils/memory.py)."""
from __future__ import annotations

import torch

from lumiere_pl.cli import train as train_cli
from lumiere_pl.config import to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.lit import DiffusionModule
from lumiere_pl.utils.memory import activation_bytes, training_memory


def _module(tiny_overrides, *extra):
    return DiffusionModule(to_dict(load_config(None, tiny_overrides + list(extra))))


def test_meta_estimate_equals_the_real_forward_and_checkpointing_shrinks_it(tiny_overrides):
    """The meta device runs the same ops as the CPU: the bytes saved for backward agree to 1%; the real ones, by
    their storages, are what the process holds."""
    module = _module(tiny_overrides)
    cpu = DiffusionModule(to_dict(module.cfg))
    real = activation_bytes(cpu, checkpointing=False, device="cpu")
    storages, seen = 0, set()
    b = module.cfg.data.batch_size
    x = torch.zeros(b, *module.parts.sample_shape())
    cond = module.parts.text_condition(["a red circle"] * b)

    def pack(t):                                        # what the process holds: each storage once
        nonlocal storages
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            storages += t.untyped_storage().nbytes()
        return t
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        cpu.net(x, torch.zeros(b), cond).float().pow(2).mean()
    meta = activation_bytes(module, checkpointing=False)
    assert abs(meta - real) <= 0.01 * real and abs(storages - real) <= 0.05 * real, (meta, real, storages)
    ckpt = activation_bytes(_module(tiny_overrides), checkpointing=True)
    assert 0 < ckpt < 0.5 * meta
    double = activation_bytes(_module(tiny_overrides, "data.batch_size=8"), checkpointing=False)
    assert 1.9 * meta <= double <= 2 * meta                                # per clip, and a few shared tables


def test_weights_gradients_moments_and_ema_are_counted_from_the_parameters(tiny_overrides):
    module = _module(tiny_overrides)
    n = sum(p.numel() for p in module.net.parameters() if p.requires_grad)
    total = sum(p.numel() for p in module.net.parameters())
    rows = training_memory(module, shards=2)
    assert rows["weights (network)"] == 4 * total // 2 and rows["gradients"] == 4 * n // 2
    assert rows["optimizer (AdamW moments)"] == 8 * n // 2 and rows["EMA"] == 4 * n // 2
    assert rows["weights (text encoder)"] == 0                             # the tiny encoder holds no network
    assert "weights (VAE encoder)" not in rows                             # pixel space: no VAE rows


def test_dry_run_prints_the_memory_per_device(tiny_overrides, capsys):
    assert train_cli.main(["--dry-run"] + tiny_overrides) == 0
    out = capsys.readouterr().out
    assert "memory per device (batch 4; activations estimated on the meta device" in out
    for row in ("weights (network)", "gradients", "optimizer (AdamW moments)", "EMA", "activations",
                "activations with checkpointing on", "total"):
        assert f"  {row}" in out
