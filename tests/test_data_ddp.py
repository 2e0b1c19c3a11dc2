"""2-process CPU DDP (Lightning, gloo) over an odd number of shards: equal batch counts, no repeats, no hang."""
import json
from pathlib import Path

import lightning as L
import pytest
import torch

from lumiere_pl.data import DataConfig, DataHealthCallback, WebVideoDataModule
from lumiere_pl.data.shards import Sample, ShardWriter, write_manifest
from lumiere_pl.data.synthetic import render_clip, sample_clip
from lumiere_pl.data.video_io import encode
from lumiere_pl.lit.callbacks import ReleaseProcessGroup

pytestmark = pytest.mark.xdist_group("two_processes")


class KeyRecorder(L.LightningModule):
    def __init__(self, out: str):
        super().__init__()
        self.out, self.w = out, torch.nn.Parameter(torch.zeros(1))
        self.keys = {"train": [], "val": []}

    def training_step(self, batch, i):
        self.keys["train"].append(list(batch["key"]))
        return (self.w * batch["pixels"].mean()).sum()

    def validation_step(self, batch, i):
        self.keys["val"].append(list(batch["key"]))

    def on_fit_end(self):
        Path(self.out, f"rank{self.global_rank}.json").write_text(json.dumps(self.keys))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _shards(root: Path, counts) -> None:
    """Shards train-00000{s}.tar of counts[s] samples each, and their manifest."""
    stats = []
    for s, n in enumerate(counts):
        w = ShardWriter(root / f"part{s}", "train", 1000)
        for i in range(n):
            clip = sample_clip(1, s * 100 + i)
            w.write(Sample(f"s{s}_{i:02d}", "mp4", encode(render_clip(clip, 8, 16), 8), clip.caption,
                           {"fps": 8, "frames": 8}))
        (st,) = w.close()
        (root / f"part{s}" / st["file"]).rename(root / f"train-{s:06d}.tar")
        (root / f"part{s}").rmdir()
        stats.append({**st, "file": f"train-{s:06d}.tar"})
    write_manifest(root, stats, [], {})


@pytest.mark.parametrize("workers", [0, 1])         # 1: persistent worker processes in each rank
def test_ddp_two_ranks_odd_shards(tmp_path, workers):
    _shards(tmp_path, [5, 6, 4])                      # 3 shards, 15 samples
    pattern = str(tmp_path / "train-{000000..000002}.tar")
    cfg = DataConfig(name="webdataset", train_shards=pattern, val_shards=pattern, frames=4, size=16, fps=8.0,
                     batch_size=2, num_workers=workers)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, callbacks=[DataHealthCallback(), ReleaseProcessGroup()])
    trainer.fit(KeyRecorder(str(tmp_path)), datamodule=WebVideoDataModule(cfg))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    per_epoch = [len(r["train"]) // 2 for r in ranks]
    assert len(ranks[0]["train"]) == len(ranks[1]["train"]) > 0
    assert len(ranks[0]["val"]) == len(ranks[1]["val"]) > 0
    for epoch in range(2):                            # no sample twice within an epoch, across both ranks
        keys = [k for r, n in zip(ranks, per_epoch) for b in r["train"][epoch * n:(epoch + 1) * n] for k in b]
        assert len(keys) == len(set(keys)) >= 12, keys
    for r, n in zip(ranks, per_epoch):                # each epoch is its own order (workers see the new epoch)
        assert r["train"][:n] != r["train"][n:2 * n]
    val = [k for r in ranks for b in r["val"][:len(r["val"]) // 2] for k in b]     # first epoch's validation
    assert len(val) == len(set(val)) >= 12
