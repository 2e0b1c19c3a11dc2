"""lumiere-export: a checkpoint's EMA network weights alone as safetensors, the config as YAML beside them; the pair
rebuilds a module that samples exactly like the checkpoint's EMA."""
from __future__ import annotations

import json

import torch
from omegaconf import OmegaConf
from safetensors import safe_open

from _pipeline_helpers import sample
from lumiere_pl.pipeline import LumierePipeline
from lumiere_pl.cli import export as export_cli
from lumiere_pl.config import to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.lit import DiffusionModule


def test_export_ema_weights_and_config(tiny_overrides, tmp_path, single_thread):
    import lightning as L

    cfg = load_config(None, tiny_overrides + ["sampler.steps=2", "name=exp"])
    module = DiffusionModule(to_dict(cfg))
    module.ema.update(module.net)                             # EMA = old weights ...
    with torch.no_grad():
        for p in module.net.temporal.parameters():
            p.add_(0.1)                                       # ... live weights moved on
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    ckpt = tmp_path / "exp" / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(ckpt)

    assert export_cli.main(["--ckpt", str(ckpt)]) == 0
    out = tmp_path / "exp" / "exp.safetensors"
    ema = module.ema.averaged_state_dict(module.net)
    with safe_open(str(out), "pt") as f:
        assert set(f.keys()) == set(module.net.state_dict())                         # the network alone
        name = next(n for n, _ in module.net.temporal.named_parameters())
        key = f"temporal.{name}"
        assert torch.equal(f.get_tensor(key), ema[key])                              # EMA, not the live weights
        assert not torch.equal(f.get_tensor(key), module.net.state_dict()[key])
        assert json.loads(f.metadata()["config"]) == to_dict(cfg)
    assert OmegaConf.to_container(OmegaConf.load(out.with_suffix(".yaml"))) == to_dict(cfg)

    loaded = LumierePipeline.from_pretrained(out)
    assert loaded.net.state_dict().keys() == ema.keys()
    for k, v in loaded.net.state_dict().items():
        assert torch.equal(v, ema[k]), k
    prompts = ["a red circle moving right"]
    torch.testing.assert_close(loaded(prompts, seed=3).videos, sample(module, prompts, seed=3), atol=1e-6, rtol=0)

    assert export_cli.main(["--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "x.safetensors")]) == 2
