"""Callbacks every training run gets: periodic, last and on-exception checkpoints, data health, the global RNG
states in each checkpoint, a per-step loss log, a progress bar over the run's steps, validation videos and their
figures, and a clean process-group exit under DDP."""
from __future__ import annotations

import atexit
import math
import signal
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import lightning as L
import torch
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
        sigterm = isinstance(exception, SIGTERMException) or getattr(exception, "signum", None) == signal.SIGTERM
        if trainer.world_size > 1 and not (isinstance(exception, NonFiniteError) or sigterm):
            return
        trainer.save_checkpoint(self.path, weights_only=False)             # the whole training state


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


class ValidationSamples(Callback):
    """Videos and their figures at the end of each validation (not the sanity check), through LumierePipeline with
    the EMA weights.

    Videos: train.val_prompts, then the captions of the first train.val_captions held-out clips, from seeds
    train.seed + i (an SSR: the first validation batch's clips, downsampled by
    model.upscale, then upscaled; each video shows low-res | SSR | ground truth side by side), written to
    {run}/samples/step_N/NN.mp4 and logged to TensorBoard (an animated GIF per video, and its prompt).
    Figures (video models), TensorBoard scalars with their 95% bootstrap interval (eval/motion.py, weight-free flow):
      val_motion/{magnitude, dynamic, flicker, warping_error}   of the samples
      val_motion_real/...                                       of the held-out clips (up to REAL_CLIPS of them)
      val_motion/flow_frechet                                   samples against held-out clips
      val/fvd                                                   train.val_fvd > 0: that many samples of held-out
                                                                captions against the held-out clips (I3D, tf-fvd)
    From encoded shards the held-out clips are the VAE's decodes of their posterior means, decoded until the
    figures of the held-out clips are measured (once).
    Every process samples (a sharded network gathers its weights in each forward); rank 0 measures and writes."""

    REAL_CLIPS = 64

    def __init__(self) -> None:
        self._ssr_clips: Optional[tuple] = None
        self._real: List[tuple] = []                    # held-out (caption, (t h w 3) uint8), this validation
        self._real_stats: Optional[list] = None         # their motion statistics, measured once
        self._fvd = None                                # eval.fvd.FVD with the held-out clips' statistics

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        from lumiere_pl.utils.video import to_uint8

        if trainer.sanity_checking or not pl_module.parts.is_video:
            return
        if batch_idx == 0 and pl_module.parts.is_ssr:
            k = max(1, min(len(pl_module.cfg.train.val_prompts), batch["pixels"].shape[0]))
            self._ssr_clips = (batch["pixels"][:k].detach(), list(batch["caption"][:k]))
        cfg = pl_module.cfg
        take = max(0, max(self.REAL_CLIPS, cfg.train.val_fvd) - len(self._real))
        captions = list(batch["caption"][:take])
        if not captions:
            return
        if "text" in batch:     # encoded shards: the text encoder is their stored states; it takes these captions too
            pl_module.parts.text_encoder.add(captions, batch["text"][:take], batch["text_mask"][:take])
        if "pixels" in batch:
            clips = [to_uint8(clip) for clip in batch["pixels"][:take]]
        else:                   # a latent model's: decoded posterior means, until their figures are measured (once)
            needed = (cfg.train.val_motion and self._real_stats is None) or (cfg.train.val_fvd > 0 and self._fvd is None)
            part = {"latent_mean": batch["latent_mean"][:take]}
            clips = [to_uint8(c) for c in pl_module.parts.batch_pixels(part).cpu()] if needed else [None] * len(captions)
        self._real += list(zip(captions, clips))

    def render(self, pl_module) -> List[tuple]:
        """[(caption, (t h w 3) uint8 as written, (t h w 3) uint8 sample alone)] of this validation."""
        from lumiere_pl.models.ssr import downsample
        from lumiere_pl.utils.video import tile, to_uint8

        cfg, pipe = pl_module.cfg, pl_module.pipeline()
        with pl_module.ema.apply_to(pl_module.net):
            if not pl_module.parts.is_ssr:
                prompts = list(cfg.train.val_prompts) + self.held_out_captions(cfg.train.val_captions)
                if not prompts:
                    return []
                out = pipe(prompts, seed=cfg.train.seed)
                return [(prompt, out.frames(i), out.frames(i)) for i, prompt in enumerate(out.prompts)]
            if self._ssr_clips is None:
                return []
            hr, captions = self._ssr_clips                                                # b c t H W
            low = downsample(hr, cfg.model.upscale)                                       # b c t h w
            out = pipe(captions, seed=cfg.train.seed, lowres=low)
        up = cfg.model.upscale
        nearest = low.repeat_interleave(up, -1).repeat_interleave(up, -2)
        return [(c, tile([to_uint8(nearest[i]), out.frames(i), to_uint8(hr[i])]), out.frames(i))
                for i, c in enumerate(captions)]

    def held_out_captions(self, n: int) -> List[str]:
        """The captions of the first n held-out clips of this process (cycled; "" when it holds none, so every
        process samples as many clips)."""
        captions = [c for c, _ in self._real] or [""]
        return [captions[i % len(captions)] for i in range(n)]

    def fvd_samples(self, pl_module) -> List:
        """train.val_fvd clips of the held-out captions (cycled), seeds train.seed + 1000 + i: every process."""
        cfg = pl_module.cfg
        if cfg.train.val_fvd <= 0 or not self._real or pl_module.parts.is_ssr:
            return []
        captions = [self._real[i % len(self._real)][0] for i in range(cfg.train.val_fvd)]
        with pl_module.ema.apply_to(pl_module.net):
            out = pl_module.pipeline()(captions, seed=cfg.train.seed + 1000, batch_size=cfg.data.batch_size)
        return [out.frames(i) for i in range(len(out))]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        from lumiere_pl.utils.video import log_video, write_mp4

        cfg = pl_module.cfg
        if trainer.sanity_checking:
            return
        rows = self.render(pl_module)
        fakes = self.fvd_samples(pl_module)
        self._ssr_clips = None
        real, self._real = self._real, []
        if not trainer.is_global_zero:
            return
        out_dir = Path(cfg.run_dir) / "samples" / f"step_{trainer.global_step:07d}"
        writer = pl_module.logger.experiment if pl_module.logger is not None else None
        writer = writer if hasattr(writer, "file_writer") else None
        tag = "ssr" if pl_module.parts.is_ssr else "samples"
        for i, (caption, frames, _) in enumerate(rows):
            write_mp4(out_dir / f"{i:02d}.mp4", frames, fps=cfg.data.fps)
            if writer is None:
                continue
            if len(frames) > 1:
                log_video(writer, f"{tag}/{i:02d}", frames, trainer.global_step, fps=cfg.data.fps)
            else:
                writer.add_image(f"{tag}/{i:02d}", frames[0], trainer.global_step, dataformats="HWC")
            writer.add_text(f"{tag}/{i:02d}/prompt", caption, trainer.global_step)
        figures = {}
        real_clips = [clip for _, clip in real if clip is not None]
        if pl_module.parts.is_video and cfg.train.val_motion:
            figures.update(self.motion_figures([r[2] for r in rows], real_clips, cfg.data.fps))
        figures.update(self.fvd_figure(pl_module, real_clips, fakes))
        for name, value in figures.items():                 # at the step of the videos they describe
            if writer is not None:
                writer.add_scalar(name, value, trainer.global_step)

    def motion_figures(self, samples: List, real: List, fps: float) -> Dict[str, float]:
        """val_motion/* of the samples and val_motion_real/* of the held-out clips, each with _low / _high."""
        from eval.motion import MIN_FRAMES, flow_frechet, motion_stats, summarise

        if not samples or len(samples[0]) < MIN_FRAMES:
            return {}
        stats = [motion_stats(v, fps) for v in samples]
        if self._real_stats is None and real:
            self._real_stats = [motion_stats(v, fps) for v in real]
        out: Dict[str, float] = {}
        for prefix, group in (("val_motion", stats), ("val_motion_real", self._real_stats or [])):
            if not group:
                continue
            for metric, row in summarise(group, b=200).items():
                for key, suffix in (("value", ""), ("low", "_low"), ("high", "_high")):
                    if row.get(key) is not None and math.isfinite(row[key]):
                        out[f"{prefix}/{metric}{suffix}"] = float(row[key])
        if self._real_stats and len(stats) >= 2:
            with warnings.catch_warnings():                 # few clips: biased upward, compared at equal N only
                warnings.simplefilter("ignore", UserWarning)
                fd = flow_frechet(self._real_stats, stats, b=50)
            out.update({f"val_motion/flow_frechet{s}": float(fd[k]) for k, s in (("value", ""), ("low", "_low"),
                                                                                  ("high", "_high"))
                        if fd.get(k) is not None and math.isfinite(fd[k])})
        return out

    def fvd_figure(self, pl_module, real: List, fakes: List) -> Dict[str, float]:
        """val/fvd of the train.val_fvd samples against the held-out clips (I3D features, tf-fvd input)."""
        if not fakes or (self._fvd is None and not real):
            return {}
        import numpy as np

        from eval.detectors import I3DDetector
        from eval.fvd import FVD

        if self._fvd is None:
            self._fvd = FVD(detector=I3DDetector(device=pl_module.device))
            self._fvd.update(torch.from_numpy(np.stack(_fvd_clips(real))), real=True)
            self._real_fvd = self._fvd.stats(real=True)
        self._fvd.reset()
        self._fvd.set_real_stats(self._real_fvd)
        self._fvd.update(torch.from_numpy(np.stack(_fvd_clips(fakes))), real=False)
        return {"val/fvd": float(self._fvd.compute())}


def _fvd_clips(clips: List) -> List:
    """Clips the I3D takes (at least 9 frames): shorter clips shown at twice their rate, every frame twice (2t - 1
    frames), real and generated alike (as the sweep's FVD reads them)."""
    import numpy as np

    if len(clips[0]) >= 16:
        return [c[:16] for c in clips]
    return [np.repeat(c, 2, axis=0)[:-1] for c in clips]


def training_callbacks(cfg: ExperimentConfig) -> List[Callback]:
    """The callbacks of a lumiere-train run (StepProgressBar when trainer.enable_progress_bar)."""
    ckpt_dir = str(cfg.run_dir / "checkpoints")
    ckpt = StepCheckpoint(dirpath=ckpt_dir, filename="step={step:07d}",
                          auto_insert_metric_name=False, every_n_train_steps=cfg.train.ckpt_every_n_steps,
                          save_last=True, save_top_k=cfg.train.keep_checkpoints, monitor=None,
                          enable_version_counter=False)   # one last.ckpt per run folder, also after a resume
    bar = [StepProgressBar()] if cfg.trainer.enable_progress_bar else []
    return [ckpt, ExceptionCheckpoint(ckpt_dir), RngStateCallback(), GuardState(),
            LossCSV(cfg.run_dir / "train_loss.csv"), DataHealthCallback(), ReleaseProcessGroup(), FlopsModelSummary(),
            ValidationSamples(), *bar]
