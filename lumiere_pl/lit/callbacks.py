"""Callbacks every training run gets."""
from __future__ import annotations

from typing import List

from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lumiere_pl.config import ExperimentConfig
from lumiere_pl.data import DataHealthCallback


def training_callbacks(cfg: ExperimentConfig) -> List[Callback]:
    ckpt = ModelCheckpoint(dirpath=str(cfg.run_dir / "checkpoints"), filename="step={step:07d}",
                           auto_insert_metric_name=False, every_n_train_steps=cfg.train.ckpt_every_n_steps,
                           save_last=True, save_top_k=1, monitor=None)
    return [ckpt, DataHealthCallback()]
