"""Non-finite losses and gradients: the step is skipped (weights, optimizer and EMA untouched) and counted; after
train.max_bad_steps consecutive ones the run stops with an error naming the step and the last good checkpoint."""
from __future__ import annotations

import math

import pytest
import torch

from lumiere_pl.cli import train as train_cli
from lumiere_pl.config import to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.data import build_datamodule
from lumiere_pl.lit import DiffusionModule
from lumiere_pl.lit.callbacks import GuardState
from lumiere_pl.lit.guard import NonFiniteError


class Poisoned:
    """A train loader whose batches number `bad` (0-based, over the whole run) have NaN or inf pixels."""

    def __init__(self, loader, bad, value=math.nan):
        self.loader, self.bad, self.value, self.seen = loader, set(bad), value, 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if self.seen in self.bad:
                batch = {**batch, "pixels": batch["pixels"].clone()}
                batch["pixels"][0, :, 0, 0, 0] = self.value
            self.seen += 1
            yield batch


def _setup(tiny_overrides, extra=()):
    cfg = load_config(None, tiny_overrides + ["model.name=stunet", "train.val_prompts=[]", "train.warmup_steps=1",
                                              "trainer.enable_progress_bar=false", "train.val_every_n_steps=1000",
                                              *extra])
    module = DiffusionModule(to_dict(cfg))
    dm = build_datamodule(cfg.data)
    dm.setup("fit")
    return cfg, module, dm


def _trainable(module):
    return {k: v.detach().clone() for k, v in module.net.named_parameters() if v.requires_grad}


def test_nonfinite_loss_and_grads_are_skipped_and_counted(tiny_overrides, single_thread):
    import lightning as L

    cfg, module, dm = _setup(tiny_overrides, ["train.max_steps=6", "train.max_bad_steps=3"])
    snaps = []                                           # (weights, EMA updates, global_step) before each batch

    class Watch(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            snaps.append((_trainable(pl_module), int(pl_module.ema.num_updates), trainer.global_step))

        def on_train_end(self, trainer, pl_module):
            self.on_train_batch_start(trainer, pl_module, None, -1)

    # batch 1: NaN pixels -> NaN loss; batch 3: finite loss, but one gradient turned into inf by a hook
    p = next(p for p in module.net.parameters() if p.requires_grad)
    p.register_hook(lambda g: g * math.inf if module.trainer.fit_loop.epoch_loop.batch_idx == 3 else g)
    trainer = L.Trainer(max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        callbacks=[Watch()], limit_val_batches=0, gradient_clip_val=1.0)
    trainer.fit(module, train_dataloaders=Poisoned(dm.train_dataloader(), {1}))
    for i in range(6):
        (before, n0, _), (after, n1, _) = snaps[i], snaps[i + 1]
        moved = any(not torch.equal(before[k], after[k]) for k in before)
        if i in (1, 3):                                  # skipped: weights and EMA did not move
            assert n1 == n0 and not moved, f"batch {i} was not skipped"
        else:
            assert n1 == n0 + 1 and moved, f"batch {i} was not applied"
    assert float(trainer.callback_metrics["train/skipped_nonfinite"]) == 2.0 and module.guard.consecutive == 0
    assert all(torch.isfinite(v).all() for v in module.state_dict().values() if v.is_floating_point())


def test_consecutive_nonfinite_steps_stop_the_run(tiny_overrides, single_thread, capsys):
    """After max_bad_steps in a row: NonFiniteError naming the step and the last good checkpoint; the CLI's
    callbacks (build_trainer) write no periodic checkpoint on bad steps, and on_exception.ckpt at the error (finite
    weights: the bad steps changed nothing)."""
    from lumiere_pl.checkpoint import load_checkpoint

    cfg, module, dm = _setup(tiny_overrides, ["train.max_steps=20", "train.max_bad_steps=3",
                                              "train.ckpt_every_n_steps=2"])
    trainer = train_cli.build_trainer(cfg)
    with pytest.raises(NonFiniteError) as err:
        trainer.fit(module, train_dataloaders=Poisoned(dm.train_dataloader(), range(5, 100), math.inf))
    msg = str(err.value)
    ckpt_dir = cfg.run_dir / "checkpoints"
    assert "train.max_bad_steps=3" in msg and f"step {trainer.global_step}" in msg, msg
    assert f"last good checkpoint: {ckpt_dir / 'last.ckpt'} (step 4)" in msg, msg
    state = load_checkpoint(ckpt_dir / "on_exception.ckpt")["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_skipped_count_survives_a_resume(tiny_overrides, single_thread, tmp_path):
    """One bad step before the checkpoint, one after the resume: the resumed run's counter says 2, not 1."""
    import lightning as L

    def fit(max_steps, bad, ckpt_path=None):
        cfg, module, dm = _setup(tiny_overrides, [f"train.max_steps={max_steps}"])
        trainer = L.Trainer(max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            callbacks=[GuardState()], limit_val_batches=0)
        trainer.fit(module, train_dataloaders=Poisoned(dm.train_dataloader(), bad), ckpt_path=ckpt_path)
        return trainer, module

    trainer, module = fit(3, {1})
    assert module.guard.skipped == 1
    trainer.save_checkpoint(tmp_path / "mid.ckpt")
    trainer, module = fit(5, {0}, ckpt_path=tmp_path / "mid.ckpt")     # the resumed run's first batch is bad
    assert trainer.global_step == 5
    assert module.guard.skipped == 2 and float(trainer.callback_metrics["train/skipped_nonfinite"]) == 2.0
