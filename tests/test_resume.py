"""Exact resume: a run killed for real (SIGKILL, then SIGTERM) and resumed continues with the same per-step losses
as an uninterrupted run (CPU: within 1e-6), and ends with the same weights, EMA, optimizer and scheduler state;
T2I and SSR resume exactly too; atomic checkpoints survive a kill in the middle of a save."""
from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lumiere_pl.checkpoint import load_checkpoint
from lumiere_pl.cli import train as train_cli

from _resume_helpers import ENV, ROOT, assert_same_losses, read_losses, start, wait_for_step
from conftest import TINY

STEPS = 24


def assert_same_state(a_path: Path, b_path: Path) -> None:
    """Weights, EMA (buffers in the state_dict), optimizer and scheduler state of two checkpoints."""
    a, b = load_checkpoint(a_path), load_checkpoint(b_path)
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, atol=1e-6, rtol=0, msg=k)
    assert any(k.startswith("ema.") for k in a["state_dict"])
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert sa.keys() == sb.keys() and len(sa) > 0
    for i in sa:
        for k in sa[i]:
            torch.testing.assert_close(sb[i][k], sa[i][k], atol=1e-6, rtol=0, msg=f"optimizer {i}.{k}")
    assert a["lr_schedulers"] == b["lr_schedulers"]


def _train_cmd(out: Path, name: str, *extra: str) -> list:
    return [sys.executable, "-m", "lumiere_pl.cli.train", *TINY, f"out_dir={out}", f"name={name}",
            f"train.max_steps={STEPS}", "train.ckpt_every_n_steps=4", "train.val_every_n_steps=10",
            "train.val_prompts=[]", "train.warmup_steps=5", "trainer.enable_progress_bar=false",
            "model.temporal.conditional=true", "diffusion.cond_drop=0.5", *extra]


def test_killed_run_resumes_exactly(tmp_path):
    """STUNet with conditional inputs and caption dropout (every random draw of a step in use), 8 batches per
    epoch, validation at step 10 and 20: SIGKILL after step 10 (last checkpoint: step 8), resume with --resume,
    SIGTERM after step 17 (on_exception.ckpt), resume again, finish at step 24. Same losses, same final state."""
    ref = start(_train_cmd(tmp_path, "ref"), tmp_path / "ref.log")
    run_dir = tmp_path / "run"
    csv, ckpts = run_dir / "train_loss.csv", run_dir / "checkpoints"

    proc = start(_train_cmd(tmp_path, "run"), tmp_path / "run1.log")
    wait_for_step(proc, csv, 10, tmp_path / "run1.log")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(ckpts / "last.ckpt")["global_step"] == 8

    proc = start(_train_cmd(tmp_path, "run", "--resume", "last"), tmp_path / "run2.log")
    wait_for_step(proc, csv, 17, tmp_path / "run2.log")
    proc.send_signal(signal.SIGTERM)                  # preemption notice: finish the step, checkpoint, exit
    proc.wait(timeout=60)
    preempted = load_checkpoint(ckpts / "on_exception.ckpt")["global_step"]
    assert 17 <= preempted < STEPS, preempted

    done = subprocess.run(_train_cmd(tmp_path, "run", "--resume", "last"), cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"Restored all states from the checkpoint at {ckpts / 'on_exception.ckpt'}" in done.stdout + done.stderr
    assert ref.wait(timeout=300) == 0, (tmp_path / "ref.log").read_text()[-3000:]

    assert_same_losses(read_losses(tmp_path / "ref" / "train_loss.csv"), read_losses(csv), STEPS)
    assert_same_state(tmp_path / "ref" / "checkpoints" / "last.ckpt", ckpts / "last.ckpt")


@pytest.mark.parametrize("model", ["t2i", "ssr"])
def test_resume_is_exact_for_t2i_and_ssr(model, tmp_path, single_thread):
    """In process: run to step 7, resume from the mid-epoch checkpoint of step 4 (ckpt_path via --resume PATH)
    to step 10, across an epoch boundary; the losses and final state equal an uninterrupted 10-step run."""
    extra = {"t2i": ["model.name=t2i", "data.images=true"],
             "ssr": [f"--config={ROOT / 'experiments' / 'tiny' / 'ssr.yaml'}", "data.size=16", "model.upscale=2",
                     "data.batch_size=4", "data.synthetic.num_videos=24", "diffusion.cond_aug_max=0.3"]}[model]
    config = [a for a in extra if a.startswith("--")]
    over = TINY + [a for a in extra if not a.startswith("--")] + [
        f"out_dir={tmp_path}", "train.ckpt_every_n_steps=4", "train.val_every_n_steps=100", "train.val_prompts=[]",
        "train.warmup_steps=3", "trainer.enable_progress_bar=false", "diffusion.cond_drop=0.5"]
    assert train_cli.main(config + over + ["name=ref", "train.max_steps=10"]) == 0
    assert train_cli.main(config + over + ["name=run", "train.max_steps=7"]) == 0
    step4 = tmp_path / "run" / "checkpoints" / "step=0000004.ckpt"
    assert train_cli.main(config + ["--resume", str(step4)] + over + ["name=run", "train.max_steps=10"]) == 0
    assert_same_losses(read_losses(tmp_path / "ref" / "train_loss.csv"),
                       read_losses(tmp_path / "run" / "train_loss.csv"), 10)
    assert_same_state(tmp_path / "ref" / "checkpoints" / "last.ckpt", tmp_path / "run" / "checkpoints" / "last.ckpt")


SAVER = """
import sys, torch
from lumiere_pl.lit.checkpoint_io import AtomicCheckpointIO
io, path = AtomicCheckpointIO(), sys.argv[1]
for i in range(1, 10_000):
    io.save_checkpoint({"i": i, "blob": torch.full((24 * 2**20,), float(i))}, path)   # ~100 MB per save
"""


def test_kill_during_checkpoint_save_keeps_the_previous_one(tmp_path):
    """SIGKILL a process while AtomicCheckpointIO is writing (its temporary file is there): the checkpoint in place
    is the previous, complete one and loads with weights_only=True."""
    path = tmp_path / "model.ckpt"

    def temporary():                     # eval/atomic.py's unique name beside the target: .model.ckpt.XXXX.tmp.ckpt
        for p in tmp_path.glob(".model.ckpt.*.tmp.ckpt"):
            try:
                if p.stat().st_size > 0:
                    return p
            except FileNotFoundError:            # renamed into place between the listing and the look
                pass
        return None

    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 120
        while not (path.exists() and (tmp := temporary()) is not None):
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < end, "no save in progress after 120 s"
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    full = 24 * 2**20 * 4
    assert tmp.exists() and tmp.stat().st_size < full, "the kill did not land inside a save"
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["i"] >= 1 and ckpt["blob"].numel() == 24 * 2**20
    assert torch.equal(ckpt["blob"], torch.full_like(ckpt["blob"], float(ckpt["i"])))
    assert not math.isnan(float(ckpt["blob"][-1]))
    # a SIGKILL cannot be cleaned up after: its temporary file stays (SIGINT and SIGTERM remove it, test_interrupts)
    # until the next save of the same checkpoint removes it
    from lumiere_pl.lit.checkpoint_io import atomic_torch_save
    atomic_torch_save({"i": 0}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]


def test_trainer_writes_checkpoints_atomically(tiny_overrides):
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.lit.checkpoint_io import AtomicCheckpointIO

    trainer = train_cli.build_trainer(load_config(None, tiny_overrides))
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
