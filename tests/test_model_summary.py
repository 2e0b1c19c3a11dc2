"""The model summary printed when training starts shows the FLOPs of our counter, not Lightning's 0."""
from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count

from lumiere_pl.config import to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.lit import DiffusionModule, callbacks

def _analytic_flops(module, shape) -> tuple:
    """(convolutions + linear layers, attention) FLOPs of one forward pass, from the shapes each layer sees:
    2 x MACs, written out here apart from torch's counter (a counter missing the CPU attention kernels, or counting
    a layer twice, disagrees)."""
    import torch.nn.functional as F

    dense, attention = [], []

    def layer(m, inputs, out):
        per_out = m.weight[0].numel()                                      # in / groups x kernel
        dense.append(2 * out.numel() * per_out)
    hooks = [m.register_forward_hook(layer) for m in module.net.modules()
             if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear))]
    real = F.scaled_dot_product_attention

    def sdpa(q, k, v, *a, **kw):                                           # (b h Lq d) @ (b h d Lk), then @ v
        attention.append(2 * q.shape[:-1].numel() * k.shape[-2] * (q.shape[-1] + v.shape[-1]))
        return real(q, k, v, *a, **kw)
    F.scaled_dot_product_attention = sdpa
    try:
        with torch.no_grad():
            cond = module.parts.text_condition(["a test caption"])
            module.net(torch.zeros(shape), torch.full((1,), 500.0), cond)
    finally:
        F.scaled_dot_product_attention = real
        for h in hooks:
            h.remove()
    return sum(dense), sum(attention)


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
    dense, attention = _analytic_flops(module, shape)
    assert attention > 0 and flops == dense + attention                   # convs, linears and CPU attention, once
    total = [line for line in table.splitlines() if "FLOPs of one forward pass per clip (3, 8, 16, 16)" in line]
    assert len(total) == 1 and total[0].startswith(get_human_readable_count(flops) + " ")
    header = table.strip().splitlines()[0]
    assert "Params" in header and "FLOPs" not in header                    # the all-zero per-layer column is gone
    assert f"{get_human_readable_count(sum(p.numel() for p in module.parameters()))}" in table
