"""Training data: the in-memory moving-shapes set and WebDataset shards of real video.

Every DataModule yields the same batch contract: {"pixels": float32 in [-1, 1], (b c t h w) for clips or (b c h w)
when cfg.images, "caption": list[str]} plus optional "key" (list[str]) and "label" (int64 tensor).
Heavy decoders (PyAV, webdataset) are imported where they are used, not here.
"""
from __future__ import annotations

from lightning import LightningDataModule

from lumiere_pl.data.config import DataConfig, SyntheticConfig
from lumiere_pl.data.synthetic_module import SyntheticDataModule

DATAMODULES = {
    "synthetic": SyntheticDataModule,
}


def build_datamodule(cfg: DataConfig) -> LightningDataModule:
    if cfg.name not in DATAMODULES:
        raise ValueError(f"data.name={cfg.name!r} is not one of {sorted(DATAMODULES)}")
    return DATAMODULES[cfg.name](cfg)


__all__ = ["DATAMODULES", "DataConfig", "SyntheticConfig", "SyntheticDataModule", "build_datamodule"]
