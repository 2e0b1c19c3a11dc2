"""trainer.strategy=fsdp (FSDP2 through Lightning's ModelParallelStrategy) on 2 CPU processes (gloo).

The sharded run must train exactly what one process computes on the same global batch: per-step losses, weights and
EMA equal to 1e-5 (the EMA is kept sharded, and gathered into the checkpoint); its checkpoint resumes in a sharded run
across an epoch boundary, and loads in one process (LumierePipeline, weights_only) to sample what the reference samples.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import lightning as L
import pytest
import torch

from _pipeline_helpers import sample
from lumiere_pl.checkpoint import load_checkpoint
from lumiere_pl.pipeline import LumierePipeline
from lumiere_pl.config import ConfigError, to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.data import build_datamodule
from lumiere_pl.lit.module import DiffusionModule
from lumiere_pl.utils.ema import EMA

from _resume_helpers import ENV, ROOT, read_losses
from conftest import TINY

pytestmark = pytest.mark.xdist_group("two_processes")

FIRST, STEPS = 3, 6                   # 4 steps per epoch (32 clips, global batch 8): the resume crosses an epoch
CLIP = 0.01                           # small enough that gradient clipping acts at every step (checked below)
# the whole net trains (a random T2I's zero output conv, frozen, would leave every gradient at zero)
COMMON = ["model.temporal.freeze_spatial=false", "train.lr=1e-3", "train.warmup_steps=1", f"train.grad_clip={CLIP}",
          "train.ema_decay=0.9", "train.seed=3"]


def _run(cmd) -> subprocess.CompletedProcess:
    """lumiere-train in its own process group: on a timeout the rank Lightning started is killed too."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _fsdp_cmd(out, *extra):
    return [sys.executable, "-m", "lumiere_pl.cli.train", *TINY, *COMMON, f"out_dir={out}", "name=fsdp",
            "train.ckpt_every_n_steps=4", "train.val_every_n_steps=3", "train.val_prompts=[a red circle]",
            "sampler.steps=2", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "trainer.devices=2",
            "trainer.strategy=fsdp", *extra]


class TwoRanksInOne(DiffusionModule):
    """The single-process reference: a global batch of 8 whose even / odd clips are what ranks 0 / 1 get (the
    DistributedSampler's split), each half drawing its rank's noise; the loss is their mean, which FSDP's gradient
    average reproduces. Records rank 0's loss (what train_loss.csv holds), the gradient norms, the EMA at FIRST."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rank0_losses, self.grad_norms, self.ema_at_first = [], [], None

    def training_step(self, batch, batch_idx):
        losses = [self.step_loss({k: v[r::2] for k, v in batch.items()}, batch_idx, r) for r in (0, 1)]
        self.rank0_losses.append(float(losses[0].detach()))
        return (losses[0] + losses[1]) / 2

    def on_before_optimizer_step(self, optimizer):
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        self.grad_norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.global_step == FIRST:
            self.ema_at_first = {k: v.clone() for k, v in self.ema.state_dict().items()}


def _reference(tmp_path):
    cfg = load_config(None, TINY + COMMON + [f"out_dir={tmp_path}", "data.batch_size=8"])
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)          # as lumiere-train: the same init
    module = TwoRanksInOne(to_dict(cfg))
    initial = {k: v.clone() for k, v in module.ema.state_dict().items() if k != "num_updates"}
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=STEPS, gradient_clip_val=CLIP, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0)
    trainer.fit(module, datamodule=build_datamodule(cfg.data))
    return module, initial


def _ema(state_dict):
    return {k[4:]: v for k, v in state_dict.items() if k.startswith("ema.")}


def _assert_close(a: dict, b: dict, tol: float = 1e-5):
    assert sorted(a) == sorted(b)
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= tol, worst


@pytest.mark.slow
def test_fsdp_two_processes_equal_one_then_resume_and_sample(tmp_path, single_thread):
    """Checkpoints every 4 steps: both runs end off that cadence (steps 3 and 6), so last.ckpt must be written at the
    final step itself (gathered on rank 0), and the resume starts from it."""
    first = _run(_fsdp_cmd(tmp_path, f"train.max_steps={FIRST}"))
    out = first.stdout + first.stderr
    assert first.returncode == 0, out[-4000:]
    assert "distributed_backend=gloo" in out and "FSDPSTUNet" in out, out[-4000:]    # 2 processes, sharded net
    run = tmp_path / "fsdp"
    at_first = load_checkpoint(run / "checkpoints" / "last.ckpt")                   # weights_only=True
    assert at_first["global_step"] == FIRST
    assert (run / "samples" / f"step_{FIRST:07d}" / "00.mp4").is_file()             # validation sampled with the EMA

    again = _run(_fsdp_cmd(tmp_path, f"train.max_steps={STEPS}", "--resume", "last"))
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert f"Done: fsdp ({STEPS} steps)" in again.stdout
    final = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert final["global_step"] == STEPS
    assert load_checkpoint(run / "checkpoints" / "step=0000004.ckpt")["global_step"] == 4     # the periodic one

    ref, initial = _reference(tmp_path / "ref")
    assert min(ref.grad_norms) > 10 * CLIP                                          # clipping acted at every step
    losses = read_losses(run / "train_loss.csv")
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert max(abs(losses[s + 1] - ref.rank0_losses[s]) for s in range(STEPS)) <= 1e-5, (losses, ref.rank0_losses)

    # the EMA: gathered to full tensors, equal to the reference's at the end of each run, and really averaged
    for ckpt, want in ((at_first, ref.ema_at_first), (final, ref.ema.state_dict())):
        ema = _ema(ckpt["state_dict"])
        assert all(type(v) is torch.Tensor for v in ema.values())                  # full tensors, not DTensors
        _assert_close(ema, want)
    assert int(final["state_dict"]["ema.num_updates"]) == STEPS
    moved = max(float((ref.ema.state_dict()[k] - initial[k]).abs().max()) for k in initial)
    assert moved > 1e-3                                   # the EMA moved far more than the tolerance: a stale one fails
    net = {k[4:]: v for k, v in final["state_dict"].items() if k.startswith("net.")}
    _assert_close(net, ref.net.state_dict())

    # one process samples the sharded run's checkpoint as the reference samples its own EMA weights
    pipe = LumierePipeline.from_pretrained(run / "checkpoints" / "last.ckpt")
    assert not any(k.startswith("_fsdp") for k in pipe.net.state_dict())
    got = pipe(["a red circle"], steps=2, seed=5).videos
    want = sample(ref, ["a red circle"], steps=2, seed=5)
    assert got.shape == (1, 3, 8, 16, 16) and torch.isfinite(got).all()
    assert float((got - want).abs().max()) <= 1e-4


# --- the EMA alone, sharded over 2 processes (fast) --------------------------------------------------------------


def _ema_worker(rank: int, port: int, out: dict) -> None:
    import os

    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    from lumiere_pl.utils.ema import EMA

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Linear(7, 3))      # 7 rows: uneven shards
        ema = EMA(net, decay=0.5)
        fully_shard(net, mesh=init_device_mesh("cpu", (2,)))
        ema.shard_like(net)
        buf = getattr(ema, "0__weight")
        assert isinstance(buf, DTensor) and buf.placements == net[0].weight.placements
        with torch.no_grad():
            for step in range(3):
                for p in net.parameters():
                    p.add_(float(step + 1))                                           # a known trajectory
                ema.update(net)
        full = ema.averaged_state_dict(net)
        if rank == 0:
            out.update({k: v.clone() for k, v in full.items()})
    finally:
        dist.destroy_process_group()


def test_sharded_ema_updates_locally_and_gathers_full():
    import socket

    import torch.multiprocessing as mp

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Linear(7, 3))
    ema = EMA(net, decay=0.5)
    with torch.no_grad():
        for step in range(3):
            for p in net.parameters():
                p.add_(float(step + 1))
            ema.update(net)
    want = ema.averaged_state_dict(net)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_ema_worker, args=(port, out), nprocs=2, join=True)
        got = dict(out)
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].shape == want[k].shape and torch.allclose(got[k], want[k], atol=1e-6), k
    assert not torch.allclose(want["0.weight"], net[0].weight)          # the EMA is not the weights: it averages


@pytest.mark.parametrize("override,expected", [
    ("trainer.fsdp.param_dtype=bf16", "trainer.fsdp.param_dtype='bf16' is not one of"),
    ("trainer.fsdp.shard_modules=[ResBlok]", "did you mean 'ResBlock'"),
    ("trainer.fsdp.shard_size=-1", "trainer.fsdp.shard_size=-1: expected an integer >= 0"),
])
def test_fsdp_keys_are_checked(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert expected in str(err.value)


def test_shard_size_must_divide_the_world():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["trainer.strategy=fsdp", "trainer.devices=8", "trainer.fsdp.shard_size=3"])
    assert "trainer.fsdp.shard_size=3 does not divide the 8 processes" in str(err.value)
    cfg = load_config(None, ["trainer.strategy=fsdp", "trainer.devices=8", "trainer.num_nodes=2",
                             "trainer.fsdp.shard_size=8"])
    assert cfg.trainer.fsdp.shard_size == 8
