"""2-process CPU DDP (gloo) of lumiere-train with validation: it finishes, only rank 0 writes logs, samples and
checkpoints, and its checkpoint resumes in a single process."""
from __future__ import annotations

import subprocess
import sys

import pytest

from lumiere_pl.checkpoint import load_checkpoint

from conftest import TINY
from test_resume import ENV, ROOT, read_losses

pytestmark = pytest.mark.xdist_group("two_processes")


def _cmd(out, *extra):
    return [sys.executable, "-m", "lumiere_pl.cli.train", *TINY, f"out_dir={out}", "name=ddp",
            "train.ckpt_every_n_steps=3", "train.val_every_n_steps=3", "train.val_prompts=[a red circle]",
            "sampler.steps=2", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", *extra]


def test_ddp_two_processes_then_single_process_resume(tmp_path):
    ddp = subprocess.run(_cmd(tmp_path, "train.max_steps=6", "trainer.devices=2", "trainer.strategy=ddp"),
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    out = ddp.stdout + ddp.stderr
    assert ddp.returncode == 0, out[-4000:]
    assert "world_size: 2" in out or "distributed_backend=gloo" in out, out[-4000:]
    run = tmp_path / "ddp"
    assert out.count("Done: ddp (6 steps)") == 1                                  # rank 0 reports
    assert len(list((run / "tb").rglob("events.out.tfevents.*"))) == 1           # one TensorBoard writer
    assert sorted(read_losses(run / "train_loss.csv")) == list(range(1, 7))      # each step logged once
    assert len((run / "train_loss.csv").read_text().splitlines()) == 7
    mp4s = sorted(p.relative_to(run / "samples").as_posix() for p in (run / "samples").rglob("*.mp4"))
    assert mp4s == ["step_0000003/00.mp4", "step_0000006/00.mp4"], mp4s           # rank 0's samples only
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")                    # weights_only=True
    assert ckpt["global_step"] == 6 and any(k.startswith("ema.") for k in ckpt["state_dict"])

    single = subprocess.run(_cmd(tmp_path, "train.max_steps=9", "--resume", "last"),
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, (single.stdout + single.stderr)[-4000:]
    assert "Done: ddp (9 steps)" in single.stdout
    assert sorted(read_losses(run / "train_loss.csv")) == list(range(1, 10))
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 9
