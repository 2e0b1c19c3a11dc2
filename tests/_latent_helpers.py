"""Shared by the encoded-shards tests: a tiny SD-like pipeline (lumiere_research/tiny_diffusers.py), synthetic pixel
shards of 8-frame 16 px clips, and the overrides of experiments/diffusers/sd.yaml that train it for a few steps."""
from __future__ import annotations

from pathlib import Path
from typing import List

from _resume_helpers import ROOT

SD_CONFIG = str(ROOT / "experiments" / "diffusers" / "sd.yaml")
PROMPTS = ["a red circle moving left"]


def make_pipeline_and_shards(root: Path) -> dict:
    """{"sd": pipeline folder, "src": pixel shards (train: 2 shards of 4 clips, val: 1 of 2)}."""
    from lumiere_research.tiny_diffusers import sd_like

    from lumiere_pl.cli import shards as shards_cli

    sd = sd_like(root / "sd")
    src = root / "src"
    assert shards_cli.main(["synthetic", str(src), "--num", "8", "--num-val", "2", "--frames", "8", "--size", "16",
                            "--fps", "8", "--per-shard", "4"]) == 0
    return {"sd": sd, "src": src}


def train_shards(folder: Path) -> List[str]:
    return [f"data.train_shards={folder}/train-{{000000..000001}}.tar", f"data.val_shards={folder}/val-000000.tar"]


def run_overrides(sd: Path, shards: Path, out: Path, *extra: str) -> List[str]:
    """experiments/diffusers/sd.yaml, tiny and on the CPU, reading `shards` (pixel or encoded)."""
    return [f"model.init_from={sd}", "data.size=16", "data.frames=8", "data.fps=8", "text.max_length=8",
            "data.batch_size=2", "data.num_workers=0", "data.shuffle_buffer=4", "model.temporal.down_levels=[0,1]",
            *train_shards(shards), f"train.val_prompts={PROMPTS}".replace("'", ""), "trainer.accelerator=cpu",
            "trainer.devices=1", "trainer.strategy=auto", "trainer.precision=32-true", "model.frozen_dtype=float32",
            "train.max_steps=3", "train.val_every_n_steps=3", "train.ckpt_every_n_steps=3", "train.warmup_steps=1",
            "train.lr=1e-2", "train.ema_decay=0.5", "sampler.steps=2", "diffusion.cond_drop=0.5",
            "trainer.enable_progress_bar=false", f"out_dir={out}", *extra]


def encode_args(sd: Path, src: Path, out: Path, *extra: str) -> List[str]:
    """lumiere-shards encode of the run's pixel shards into `out`."""
    return ["encode", "--config", SD_CONFIG, *run_overrides(sd, src, out.parent / "unused"), "--out", str(out),
            "--batch", "3", *extra]
