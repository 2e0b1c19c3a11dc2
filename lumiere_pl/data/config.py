"""Data configuration (owned by lumiere_pl.data; imported by lumiere_pl.config)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class SyntheticConfig:
    num_videos: int = 512           # distinct clips in the in-memory "moving shapes" set
    num_val_videos: int = 16
    seed: int = 0
    speed_word_prob: float = 0.5    # probability that a caption ends with its speed word ("... moving left quickly")
    shape_scale: float = 0.2        # shape half-size (radius) as a fraction of the frame side
    background: List[int] = field(default_factory=lambda: [0, 0, 0])   # plain background colour, RGB 0..255
    directions: List[str] = field(default_factory=lambda: ["left", "right", "up", "down"])   # drawn from; one
                                    # direction = the single-direction oracle of docs/MOTION.md
    image_frames: str = "first"     # images (T2I pretraining): first = frame 0 of each clip | all = every frame
    frame_step: int = 1             # clip frame i shows motion frame i * frame_step: the same motion at 1/frame_step
                                    # the frame rate (keyframe models of the cascade baseline; set data.fps to match)


@dataclass
class DataConfig:
    name: str = "synthetic"         # registry key in lumiere_pl.data.DATAMODULES: synthetic | webdataset
    images: bool = False            # serve single frames (b c h w) for T2I pretraining instead of clips
    frames: int = 16                # T, frames per clip
    size: int = 32                  # square side in pixels after resize + centre crop
    fps: float = 8.0                # target frame rate (frame-rate conversion on decode)
    batch_size: int = 8
    num_workers: int = 0
    train_shards: Optional[str] = None   # path, brace pattern or URL (webdataset)
    val_shards: Optional[str] = None
    epoch_length: int = 0           # >0: resampled mode, this many batches per epoch on every rank
    shuffle_buffer: int = 256
    seed: int = 0
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
