"""The model summary printed when training starts shows the FLOPs of our counter, not Lightning's 0."""
from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count

from lumiere_pl.config import to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.lit import DiffusionModule, callbacks
from lumiere_pl.utils.flops import forward_flops

def test_summary_prints_the_forward_flops_of_one_clip(tiny_overrides, monkeypatch, single_thread):
    cfg = load_config(None, tiny_overrides)
    module = DiffusionModule(to_dict(cfg))
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False)
    assert any(isinstance(c, callbacks.FlopsModelSummary) for c in callbacks.training_callbacks(cfg))
    printed = []
    monkeypatch.setattr(callbacks.summary_log, "info", printed.append)
    callbacks.FlopsModelSummary().on_fit_start(trainer, module)
    (table,) = printed
    shape, flops = module.forward_flops()
    assert shape == (1, 3, cfg.data.frames, cfg.data.size, cfg.data.size)
    cond = module.parts.text_condition(["a test caption"])
    assert flops == forward_flops(module.net, torch.zeros(shape), torch.full((1,), 500.0), cond) > 1e6
    total = [line for line in table.splitlines() if "FLOPs of one forward pass per clip (3, 8, 16, 16)" in line]
    assert len(total) == 1 and total[0].startswith(get_human_readable_count(flops) + " ")
    header = table.strip().splitlines()[0]
    assert "Params" in header and "FLOPs" not in header                    # the all-zero per-layer column is gone
    assert f"{get_human_readable_count(sum(p.numel() for p in module.parameters()))}" in table
