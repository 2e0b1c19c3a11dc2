"""Training data: the in-memory moving-shapes set and WebDataset shards of real video.

Every DataModule yields the same batch contract: {"pixels": float32 in [-1, 1], (b c t h w) for clips or (b c h w)
when cfg.images, "caption": list[str]} plus optional "key" (list[str]) and "label" (int64 tensor).
Bad samples are skipped and counted; add DataHealthCallback to the Trainer to log `data/skipped`.
"""
from __future__ import annotations

from lightning import LightningDataModule

from lumiere_pl.data.config import DataConfig, SyntheticConfig
from lumiere_pl.data.health import DataHealthCallback
from lumiere_pl.data.synthetic_module import SyntheticDataModule
from lumiere_pl.data.webvideo import WebVideoDataModule

DATAMODULES = {
    "synthetic": SyntheticDataModule,
    "webdataset": WebVideoDataModule,
}


def build_datamodule(cfg: DataConfig) -> LightningDataModule:
    if cfg.name not in DATAMODULES:
        raise ValueError(f"data.name={cfg.name!r} is not one of {sorted(DATAMODULES)}")
    return DATAMODULES[cfg.name](cfg)


__all__ = ["DATAMODULES", "DataConfig", "DataHealthCallback", "SyntheticConfig", "SyntheticDataModule",
           "WebVideoDataModule", "build_datamodule"]
