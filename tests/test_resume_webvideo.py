"""Exact resume on real-video shards: a lumiere-train run on WebDataset shards (resampled stream, 2 DataLoader
workers, shuffle buffer, random starts and crops) killed with SIGKILL mid-epoch and resumed with --resume last
repeats the uninterrupted run's per-step losses (CPU: within 1e-6)."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lumiere_pl.checkpoint import load_checkpoint

from _resume_helpers import ENV, ROOT, assert_same_losses, read_losses, start, wait_for_step, write_video_shards
from conftest import TINY

STEPS = 8


def _cmd(out: Path, shards: str, name: str, *extra: str) -> list:
    return [sys.executable, "-m", "lumiere_pl.cli.train", *TINY, f"out_dir={out}", f"name={name}",
            "data.name=webdataset", f"data.train_shards={shards}", "data.epoch_length=3", "data.num_workers=2",
            "data.shuffle_buffer=4", f"train.max_steps={STEPS}", "train.ckpt_every_n_steps=2",
            "train.val_every_n_steps=5", "train.val_prompts=[]", "train.warmup_steps=2",
            "trainer.enable_progress_bar=false", "diffusion.cond_drop=0.5", *extra]


@pytest.mark.slow
def test_killed_webvideo_run_resumes_exactly(tmp_path):
    """3 batches per epoch, checkpoints every 2 steps, validation at step 5: SIGKILL after step 5 (last checkpoint:
    step 4, epoch 1 with 1 batch done), resume: the stream continues at epoch 1's second batch."""
    shards = write_video_shards(tmp_path / "shards", 10, 5)
    ref = start(_cmd(tmp_path, shards, "ref"), tmp_path / "ref.log")
    run_dir = tmp_path / "run"
    csv = run_dir / "train_loss.csv"

    proc = start(_cmd(tmp_path, shards, "run"), tmp_path / "run1.log")
    wait_for_step(proc, csv, 5, tmp_path / "run1.log")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 4

    done = subprocess.run(_cmd(tmp_path, shards, "run", "--resume", "last"), cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert ref.wait(timeout=300) == 0, (tmp_path / "ref.log").read_text()[-3000:]
    assert_same_losses(read_losses(tmp_path / "ref" / "train_loss.csv"), read_losses(csv), STEPS)
