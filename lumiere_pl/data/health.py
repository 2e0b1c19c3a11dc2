"""Bad-data accounting: skipped samples are warned about (shard, key, reason), counted and logged as a metric.

The counter lives in shared memory (multiprocessing.Array), so skips counted inside DataLoader worker processes are
seen by the training process. Each DDP rank has its own counter (made in DataModule.setup, which runs per rank);
the callback logs the sum over ranks.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
from typing import Dict

import lightning as L

log = logging.getLogger("lumiere_pl.data")

REASONS = (
    "corrupt_video",    # bytes that do not decode, or a video over a limit (eval/limits.py: declared frame size,
                        # decoded bytes)
    "empty_video",      # zero-byte video member
    "no_video",         # sample without a video member
    "truncated_tar",    # the shard ends (or breaks) inside a sample
    "short_clip",       # fewer frames than T at the target fps
    "no_caption",       # sample without a .txt member
    "bad_caption",      # caption not UTF-8
    "bad_json",         # .json member that does not parse
    "unreadable_shard", # the shard cannot be opened at all
    "bad_encoding",     # an encoded sample that does not read, or of another key (lumiere_pl/data/encoded.py)
    "oversized_member", # a tar member declaring more than data.limits.member_mib bytes, or sparse: skipped unread
)


class SkipCounter:
    """Per-reason counts of skipped samples, shared with worker processes."""

    def __init__(self) -> None:
        self._counts = mp.get_context("spawn").Array("q", len(REASONS))

    def add(self, reason: str, shard: str, key: str, detail: str = "") -> None:
        with self._counts.get_lock():
            self._counts[REASONS.index(reason)] += 1
        log.warning("skipped sample: shard=%s key=%s reason=%s %s", shard, key, reason, detail)

    @property
    def total(self) -> int:
        return int(sum(self._counts[:]))

    def as_dict(self) -> Dict[str, int]:
        return {r: int(n) for r, n in zip(REASONS, self._counts[:]) if n}


class DataHealthCallback(L.Callback):
    """Logs `data/skipped` (cumulative skipped samples, summed over ranks) from the datamodule's SkipCounter."""

    def __init__(self, every_n_steps: int = 50):
        self.every_n_steps = every_n_steps

    @staticmethod
    def _counter(trainer: L.Trainer):
        dm = getattr(trainer, "datamodule", None)
        return getattr(dm, "skips", None)

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        skips = self._counter(trainer)
        if skips is not None:
            pl_module.log("data/skipped", float(skips.total), reduce_fx="sum", sync_dist=True,
                          on_step=False, on_epoch=True)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        skips = self._counter(trainer)
        if skips is not None and batch_idx % self.every_n_steps == 0 and trainer.logger is not None:
            # this rank only, no collective: cheap to log often; the epoch-end value is the all-rank sum
            trainer.logger.log_metrics({"data/skipped_rank": float(skips.total)}, step=trainer.global_step)
