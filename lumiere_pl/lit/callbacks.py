"""Callbacks every training run gets: periodic, last and on-exception checkpoints, data health, the global RNG
states in each checkpoint, a per-step loss log, a progress bar over the run's steps, and a clean process-group exit
under DDP."""
from __future__ import annotations

import atexit
import math
from pathlib import Path
from typing import List, Optional

import lightning as L
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ModelSummary, TQDMProgressBar
from lightning.pytorch.callbacks.model_summary import log as summary_log
from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lumiere_pl.config import ExperimentConfig
from lumiere_pl.data import DataHealthCallback
from lumiere_pl.lit.guard import NonFiniteError
from lumiere_pl.utils.rng import rng_state, set_rng_state


EXCEPTION_CKPT = "on_exception.ckpt"


class StepCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that writes no periodic checkpoint on a step whose update was skipped as non-finite (so the
    last checkpoint before a run of bad steps is the one a NonFiniteError names), and writes last.ckpt at the final
    step (train.max_steps) whatever the cadence: a finished run's last.ckpt holds its final weights, and resuming it
    is a no-op. Written from the final batch's end, as the periodic ones, so it resumes exactly to a larger max_steps;
    not when the guard stops the run at that step (the run did not finish)."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        guard = getattr(pl_module, "guard", None)
        if guard is None or guard.applied:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        final = 0 < trainer.max_steps <= trainer.global_step
        if (final and self._last_global_step_saved != trainer.global_step and not trainer.sanity_checking
                and not (guard is not None and guard.stops)):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class ExceptionCheckpoint(Callback):
    """Writes checkpoints/on_exception.ckpt when training raises after at least one step (NonFiniteError, SIGTERM,
    Ctrl-C, ...); `lumiere-train --resume last` takes the newer of it and last.ckpt. Under DDP only for exceptions
    every rank raises at once (NonFiniteError, SIGTERM): saving has a barrier another rank might never reach.

    Not Lightning's OnExceptionCheckpoint: its presence makes every `fit(ckpt_path=None)` resume silently."""

    def __init__(self, dirpath: str | Path) -> None:
        self.path = Path(dirpath) / EXCEPTION_CKPT

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.global_step == 0 or trainer.sanity_checking:
            return
        if trainer.world_size > 1 and not isinstance(exception, (NonFiniteError, SIGTERMException)):
            return
        trainer.save_checkpoint(self.path)


class RngStateCallback(Callback):
    """Saves the global RNG states with each checkpoint and puts them back when a resumed run starts training
    (after its sanity-check validation, which may draw from them). Rank 0's states are saved and restored on every
    rank. The training step's own draws do not need them (lumiere_pl.utils.rng.step_rng)."""

    def __init__(self) -> None:
        self._loaded: Optional[dict] = None

    def state_dict(self) -> dict:
        return {"rng": rng_state()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._loaded = state_dict.get("rng")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._loaded is not None:
            set_rng_state(self._loaded)
            self._loaded = None


class GuardState(Callback):
    """Carries the module's non-finite step counters (lumiere_pl.lit.guard) through checkpoints, so a resumed run
    keeps counting `train/skipped_nonfinite` (and a run of bad steps) where the checkpoint left off."""

    KEY = "nonfinite_guard"

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        guard = getattr(pl_module, "guard", None)
        if guard is not None:
            checkpoint[self.KEY] = guard.state_dict()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        guard = getattr(pl_module, "guard", None)
        if guard is not None and self.KEY in checkpoint:
            guard.load_state_dict(checkpoint[self.KEY])


class LossCSV(Callback):
    """Appends `step,epoch,batch,loss` for every training batch to a CSV (rank 0's loss; `nan` for a skipped step).
    A resumed run appends too: a step re-run after a kill appears twice, the later row is the resumed run's."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if not trainer.is_global_zero:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else None
        value = float(loss) if loss is not None else math.nan
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            if new:
                f.write("step,epoch,batch,loss\n")
            f.write(f"{trainer.global_step},{trainer.current_epoch},{batch_idx},{value!r}\n")


def _destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class FlopsModelSummary(ModelSummary):
    """Lightning's model summary with the FLOPs of our counter (lumiere_pl/utils/flops.py, CPU attention included).
    Lightning's own FLOPs need an example_input_array (our network takes a noise level and a conditioning dict, not
    a batch) and printed 0 for every layer and in total: the per-layer column goes, the total is one forward pass
    of one sample. Computed on every rank: under a sharding strategy the forward gathers parameters collectively."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._max_depth:
            return
        summary = self._summary(trainer, pl_module)
        columns = [(name, col) for name, col in summary._get_summary_data() if name != "FLOPs"]
        shape, flops = pl_module.forward_flops()
        if trainer.is_global_zero:
            table = _format_summary_table(summary.total_parameters, summary.trainable_parameters, summary.model_size,
                                          summary.total_training_modes, flops, *columns)
            what = f"FLOPs of one forward pass per {'clip' if len(shape) == 5 else 'image'} {tuple(shape[1:])}"
            summary_log.info("\n" + table.replace("Total Flops", what))


class StepProgressBar(TQDMProgressBar):
    """One bar for the whole run: optimizer steps out of train.max_steps (`step: 40%| 4/10 [...]`), starting at the
    resumed step, across epochs; the postfix shows the logged loss. Lightning's bars count the batches of each
    epoch, and with max_steps alone their epoch total reads `Epoch 2/-2`."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        bar = self.train_progress_bar = self.init_train_tqdm()
        bar.reset(total=trainer.max_steps)
        bar.initial = bar.n = trainer.global_step              # a resumed run: the rate counts this run's steps
        bar.set_description("step")
        bar.refresh()

    def on_train_epoch_start(self, trainer: L.Trainer, *_) -> None:
        pass                                                    # not reset each epoch

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        bar = self.train_progress_bar
        if bar is not None and not bar.disable and self._should_update(trainer.global_step, bar.total):
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module))     # refreshes the bar

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass                                                    # closed once, at the end of training


class ReleaseProcessGroup(Callback):
    """Destroys the process group when each DDP process exits. Left to interpreter shutdown, torch 2.13's gloo group
    aborts about one process exit in three ("terminate called without an active exception", SIGABRT) after a
    finished run; Lightning destroys only NCCL groups at exit. At exit, not at teardown: a script may fit, then
    validate, on the same group."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.world_size > 1:
            atexit.unregister(_destroy_process_group)     # once per process, however many fits
            atexit.register(_destroy_process_group)


def training_callbacks(cfg: ExperimentConfig) -> List[Callback]:
    """The callbacks of a lumiere-train run (StepProgressBar when trainer.enable_progress_bar)."""
    ckpt_dir = str(cfg.run_dir / "checkpoints")
    ckpt = StepCheckpoint(dirpath=ckpt_dir, filename="step={step:07d}",
                          auto_insert_metric_name=False, every_n_train_steps=cfg.train.ckpt_every_n_steps,
                          save_last=True, save_top_k=1, monitor=None,
                          enable_version_counter=False)   # one last.ckpt per run folder, also after a resume
    bar = [StepProgressBar()] if cfg.trainer.enable_progress_bar else []
    return [ckpt, ExceptionCheckpoint(ckpt_dir), RngStateCallback(), GuardState(),
            LossCSV(cfg.run_dir / "train_loss.csv"), DataHealthCallback(), ReleaseProcessGroup(), FlopsModelSummary(),
            *bar]
