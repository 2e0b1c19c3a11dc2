"""Shards written by video2dataset ({key}.mp4, {key}.txt, {key}.json per sample, its own _stats.json and .parquet
beside the tar, no manifest.json of ours) train as they are."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import torch

from lumiere_pl.cli import train as train_cli
from lumiere_pl.data import DataConfig, build_datamodule
from lumiere_pl.data.video_io import crop, decode, encode, resampled_indices
from lumiere_pl.utils.video import from_uint8

from conftest import TINY

CAPTIONS = ["a red car drives away", "waves on a beach", "a dog runs", "leaves in the wind", "a city at night"]


def clip(i: int) -> np.ndarray:
    """12 frames of 24x20 at 8 fps, distinct per sample: (t h w c) uint8."""
    x = np.zeros((12, 20, 24, 3), np.uint8)
    x[..., 0] = 40 * i
    for t in range(12):
        x[t, 4:10, t:t + 6, 1] = 255
    return x


def write_video2dataset_shard(folder: Path) -> str:
    """One shard as video2dataset writes it: keys {shard:05d}{index:04d}, its json fields, lossless mp4s."""
    folder.mkdir(parents=True)
    with tarfile.open(folder / "00000.tar", "w") as tar:
        for i, caption in enumerate(CAPTIONS):
            key = f"00000{i:04d}"
            meta = {"url": f"https://example.com/{i}.mp4", "key": key, "status": "success", "error_message": None,
                    "caption": caption, "duration": 1.5, "video_metadata": {"streams": [{"codec_name": "h264"}]}}
            for ext, data in (("mp4", encode(clip(i), 8, lossless=True)), ("txt", caption.encode()),
                              ("json", json.dumps(meta).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    (folder / "00000_stats.json").write_text(json.dumps({"count": 5, "successes": 5, "failed_to_download": 0}))
    (folder / "00000.parquet").write_bytes(b"PAR1")          # video2dataset's per-shard table, not read by us
    assert not (folder / "manifest.json").exists()
    return str(folder / "00000.tar")


def test_video2dataset_shard_serves_every_sample(tmp_path):
    shard = write_video2dataset_shard(tmp_path / "v2d")
    cfg = DataConfig(name="webdataset", train_shards=shard, frames=8, size=16, fps=8.0, batch_size=2,
                     shuffle_buffer=0)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    batches = list(dm.val_dataloader())                        # no manifest: one pass to the end, last batch partial
    got = {k: (c, p) for b in batches for k, c, p in zip(b["key"], b["caption"], b["pixels"])}
    assert sorted(got) == [f"00000{i:04d}" for i in range(5)] and dm.skips.total == 0
    for i, caption in enumerate(CAPTIONS):
        c, pixels = got[f"00000{i:04d}"]
        frames = decode(encode(clip(i), 8, lossless=True), resampled_indices(12, 8.0, 8.0, 8, None), 16)
        assert c == caption and pixels.shape == (3, 8, 16, 16)
        assert torch.equal(pixels, from_uint8(crop(frames, 16)))   # the centred view, read from the video itself
        assert pixels[0].mean() > -1 + 80 * i / 255 - 0.05     # and it is this sample's clip (red = 40 i)


def test_lumiere_train_runs_on_video2dataset_shards(tmp_path, single_thread):
    shard = write_video2dataset_shard(tmp_path / "v2d")
    # the run goes into a folder of its own: lumiere-train does not write into the shards' folder (docs/ROBUSTNESS.md)
    rc = train_cli.main([*TINY, f"out_dir={tmp_path}", "name=run", "data.name=webdataset", f"data.train_shards={shard}",
                         "data.batch_size=2", "train.max_steps=3", "train.val_prompts=[]", "train.val_every_n_steps=3",
                         "trainer.enable_progress_bar=false"])
    assert rc == 0
    rows = (tmp_path / "run" / "train_loss.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3]
    assert all(float(r.split(",")[3]) > 0 for r in rows)
