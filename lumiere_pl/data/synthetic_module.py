"""SyntheticDataModule: the in-memory moving-shapes set (lumiere_pl.data.synthetic) served by the batch contract.

Batch: {"pixels": float32 in [-1, 1], (b c t h w), or (b c h w) when cfg.images; "caption": list[str];
"key": list[str]; "label": int64 (b,)}. Clips are rendered on the fly in __getitem__ (a few hundred microseconds).
"""
from __future__ import annotations

from typing import Dict, Optional

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lumiere_pl.data.config import DataConfig
from lumiere_pl.data.synthetic import clip_of, render_clip
from lumiere_pl.utils.video import from_uint8
from lumiere_pl.utils.sampler import ResumableSampler, resume_position


class ShapesDataset(Dataset):
    """Map-style: item i is clip (i mod num_videos) of a split; deterministic for (seed, split).

    Images (cfg.images, T2I pretraining): frame 0 of each clip, or with data.synthetic.image_frames=all every frame
    of the clip's cfg.frames as its own item (16x the distinct images: positions along the whole motion)."""

    def __init__(self, cfg: DataConfig, split: str, num_videos: int, length: int = 0):
        self.cfg, self.split, self.num_videos = cfg, split, num_videos
        self.per_clip = cfg.frames if cfg.images and cfg.synthetic.image_frames == "all" else 1
        self.length = length or num_videos * self.per_clip   # longer: the same items revisited (resampled epochs)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Dict[str, object]:
        s = self.cfg.synthetic
        idx, frame = divmod(i % (self.num_videos * self.per_clip), self.per_clip)
        clip = clip_of(self.cfg, idx, self.split)
        frames = frame + 1 if self.cfg.images else self.cfg.frames
        x = from_uint8(render_clip(clip, frames, self.cfg.size, s.shape_scale, s.background,
                                  frame_step=s.frame_step))   # (c t h w)
        key = f"shapes-{self.split}-{idx:06d}" + (f"-f{frame:03d}" if self.per_clip > 1 else "")
        if self.cfg.images:
            x = x[:, frame]                                                                     # (c h w)
        return {"pixels": x, "caption": clip.caption, "key": key, "label": clip.label}


class SyntheticDataModule(L.LightningDataModule):
    """Moving shapes. Training order is shuffled with a generator seeded by cfg.seed; validation is fixed.

    cfg.epoch_length > 0 gives every rank exactly that many training batches per epoch (clips are revisited);
    otherwise an epoch is one pass over cfg.synthetic.num_videos clips, split across DDP ranks by ResumableSampler
    (which also lets a resumed run continue mid-epoch at the exact batch).
    """

    def __init__(self, cfg: DataConfig):
        super().__init__()
        self.cfg = cfg
        self.train_set: Optional[ShapesDataset] = None
        self.val_set: Optional[ShapesDataset] = None

    @property
    def batch_size(self) -> int:
        """data.batch_size (Lightning's batch-size tuner reads and sets it here: data.batch_size=auto)."""
        return self.cfg.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self.cfg.batch_size = int(value)

    def setup(self, stage: Optional[str] = None) -> None:
        c = self.cfg
        world = self.trainer.world_size if self.trainer is not None else 1
        length = c.epoch_length * c.batch_size * world if c.epoch_length > 0 else 0
        self.train_set = ShapesDataset(c, "train", c.synthetic.num_videos, length)
        self.val_set = ShapesDataset(c, "val", c.synthetic.num_val_videos)

    def _loader(self, ds: Dataset, drop_last: bool, sampler: Optional[ResumableSampler] = None) -> DataLoader:
        gen = torch.Generator().manual_seed(self.cfg.seed)     # worker seeds: never drawn from the global RNG
        return DataLoader(ds, batch_size=self.cfg.batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=self.cfg.num_workers, generator=gen,
                          persistent_workers=self.cfg.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        """Order: permutation(data.seed + epoch), split by rank; a resumed run starts where its checkpoint stopped."""
        if self.train_set is None:
            self.setup("fit")
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        drop_last = len(self.train_set) >= self.cfg.batch_size * world
        sampler = ResumableSampler(self.train_set, self.cfg.batch_size, world, rank, self.cfg.seed, drop_last)
        sampler.start_at(*resume_position(self.trainer))
        return self._loader(self.train_set, drop_last, sampler)

    def val_dataloader(self) -> DataLoader:
        if self.val_set is None:
            self.setup("validate")
        return self._loader(self.val_set, drop_last=False)
