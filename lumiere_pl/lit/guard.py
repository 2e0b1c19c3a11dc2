"""Non-finite losses and gradients: the step is skipped (no update, no EMA update) and counted; after
train.max_bad_steps consecutive skipped steps the run stops with NonFiniteError, naming the step and the last good
checkpoint.

Decisions are taken on every DDP rank at once (a bad loss on one rank skips the step everywhere), so ranks never
disagree on whether to run backward (which would hang the gradient all-reduce).
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor


class NonFiniteError(RuntimeError):
    """Too many consecutive steps with a non-finite loss or gradients."""


def _any_rank(flag: bool, strategy) -> bool:
    return bool(strategy.reduce_boolean_decision(flag, all=False)) if strategy is not None else flag


def last_checkpoint(trainer) -> str:
    """The newest checkpoint the run's ModelCheckpoint wrote (path and step), for error messages. Periodic
    checkpoints are not written on skipped steps (lumiere_pl.lit.callbacks.StepCheckpoint), so it predates the run of
    bad steps."""
    ckpt = trainer.checkpoint_callback
    path = getattr(ckpt, "last_model_path", "") or getattr(ckpt, "best_model_path", "")
    if not path:
        return "none saved yet"
    step = getattr(ckpt, "_last_global_step_saved", None)
    return f"{path} (step {step})" if step else path


class NonFiniteGuard:
    """Owned by the LightningModule, called from its hooks: loss_ok (training_step), check_grads
    (on_before_optimizer_step), `applied` (after the optimizer step: update the EMA?) and end_step
    (on_train_batch_end)."""

    def __init__(self, max_bad_steps: int):
        self.max_bad_steps = max_bad_steps
        self.skipped = 0                 # steps skipped in the run, across resumes (logged: train/skipped_nonfinite)
        self.consecutive = 0
        self._bad_loss = self._bad_grads = False

    def state_dict(self) -> dict:
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict) -> None:
        self.skipped, self.consecutive = int(state["skipped"]), int(state["consecutive"])

    def loss_ok(self, loss: Tensor, strategy=None) -> bool:
        """False (on every rank) when any rank's loss is NaN or inf: training_step then returns None."""
        self._bad_grads = False
        self._bad_loss = _any_rank(not bool(torch.isfinite(loss.detach()).all()), strategy)
        return not self._bad_loss

    @torch.no_grad()
    def check_grads(self, params: Iterable[nn.Parameter], strategy=None) -> None:
        """Before the optimizer step (and clipping): drop all gradients if any is non-finite, so nothing moves."""
        params = [p for p in params if p.grad is not None]
        local = [g.to_local() if isinstance(g, DTensor) else g for g in (p.grad for p in params)]  # FSDP: shards
        bad = bool(local) and not bool(torch.stack([torch.isfinite(g).all() for g in local]).all())
        self._bad_grads = _any_rank(bad, strategy)
        if self._bad_grads:
            for p in params:
                p.grad = None

    @property
    def applied(self) -> bool:
        """Whether the current batch's update went through (finite loss and gradients)."""
        return not (self._bad_loss or self._bad_grads)

    @property
    def stops(self) -> bool:
        """Whether end_step will stop the run after the current batch (its update skipped, max_bad_steps reached)."""
        return not self.applied and self.consecutive + 1 >= self.max_bad_steps

    def end_step(self, module) -> None:
        """After a batch: count, log, and raise NonFiniteError after max_bad_steps skipped steps in a row."""
        self.consecutive = 0 if self.applied else self.consecutive + 1
        self.skipped += 0 if self.applied else 1
        module.log("train/skipped_nonfinite", float(self.skipped), on_step=True, on_epoch=False, rank_zero_only=True)
        if self.consecutive >= self.max_bad_steps:
            trainer = module.trainer
            raise NonFiniteError(
                f"training stopped at step {trainer.global_step} (epoch {trainer.current_epoch}): "
                f"{self.consecutive} consecutive steps had a non-finite loss or gradients "
                f"(train.max_bad_steps={self.max_bad_steps}); last good checkpoint: {last_checkpoint(trainer)}")
