"""data.batch_size=auto (lumiere_pl/lit/batch_size.py): refused in one line on the CPU and on several devices; on a
GPU, Lightning's tuner (binsearch) runs before training and the run trains with, records and resumes with the batch it
found. No GPU here: the GPU path runs on the CPU with the tuner replaced by one that answers 3."""
from __future__ import annotations

import pytest
import yaml

from lumiere_pl.cli import train as train_cli
from lumiere_pl.lit import batch_size as auto
from lumiere_pl.lit.module import DiffusionModule

RUN = ["data.batch_size=auto", "train.max_steps=2", "train.val_every_n_steps=100", "train.ckpt_every_n_steps=100",
       "train.val_prompts=[]", "trainer.enable_progress_bar=false", "name=auto"]


def test_auto_is_refused_on_the_cpu_and_on_several_devices(tiny_overrides, capsys, monkeypatch):
    for accel in ("cpu", "auto"):                        # auto: this machine has no CUDA GPU
        monkeypatch.setattr(auto.torch.cuda, "is_available", lambda: False)
        rc = train_cli.main(tiny_overrides + RUN + [f"trainer.accelerator={accel}"])
        err = capsys.readouterr().err
        assert rc == 2 and "data.batch_size=auto" in err and "expected an integer data.batch_size" in err, err
        assert len(err.strip().splitlines()) == 1
    monkeypatch.setattr(auto, "on_cuda", lambda cfg: True)
    rc = train_cli.main(tiny_overrides + RUN + ["trainer.devices=2"])
    err = capsys.readouterr().err
    assert rc == 2 and "finds the batch on one device; run with trainer.devices=1" in err, err
    rc = train_cli.main(tiny_overrides + ["data.batch_size=0"])
    assert rc == 2 and "expected an integer >= 1, or auto" in capsys.readouterr().err


def test_on_a_gpu_the_tuner_finds_the_batch_and_the_run_trains_records_and_resumes_with_it(tiny_overrides, tmp_path,
                                                                                           monkeypatch, capsys,
                                                                                           single_thread):
    from lightning.pytorch.tuner import Tuner

    calls, seen = [], []

    def tuner(self, model, datamodule=None, mode="power", init_val=2, **kw):
        calls.append((mode, init_val, datamodule.batch_size))
        return 3
    real_step = DiffusionModule.step_loss

    def step_loss(self, batch, batch_idx, rank):
        seen.append(len(batch["caption"]))
        return real_step(self, batch, batch_idx, rank)
    monkeypatch.setattr(auto, "on_cuda", lambda cfg: True)
    monkeypatch.setattr(Tuner, "scale_batch_size", tuner)
    monkeypatch.setattr(DiffusionModule, "step_loss", step_loss)
    assert train_cli.main(tiny_overrides + RUN + ["trainer.accelerator=cpu"]) == 0
    assert calls == [("binsearch", 1, 1)] and seen == [3, 3]
    assert "data.batch_size=auto: 3, the largest batch that fits" in capsys.readouterr().out
    saved = yaml.safe_load((tmp_path / "auto" / "config.yaml").read_text())
    assert saved["data"]["batch_size"] == 3
    from lumiere_pl.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "auto" / "checkpoints" / "last.ckpt")
    assert ckpt["hyper_parameters"]["config"]["data"]["batch_size"] == 3
    seen.clear()
    assert train_cli.main(tiny_overrides + RUN + ["trainer.accelerator=cpu", "train.max_steps=3", "--resume"]) == 0
    assert calls == [("binsearch", 1, 1)] and seen == [3]                 # no second search: the checkpoint's size
    assert "data.batch_size=auto: the resumed run's 3" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["auto", 4])
def test_the_dry_run_prints_memory_with_auto_too(tiny_overrides, capsys, value):
    assert train_cli.main(["--dry-run"] + tiny_overrides + [f"data.batch_size={value}"]) == 0
    out = capsys.readouterr().out
    assert f"memory per device (batch {1 if value == 'auto' else 4};" in out
    assert ("activations per clip below (batch 1)" in out) == (value == "auto")
