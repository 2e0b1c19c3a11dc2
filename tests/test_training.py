"""End to end on tiny configs: configs instantiate, loss goes down, T2I -> STUNet inflation, sampling CLI."""
from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
import torch

from _pipeline_helpers import sample
from lumiere_pl.checkpoint import load_checkpoint, load_parts, net_state
from lumiere_pl.cli import sample as sample_cli
from lumiere_pl.cli import train as train_cli
from lumiere_pl.config import ConfigError, to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.lit import DiffusionModule

ROOT = Path(__file__).resolve().parents[1]
# diffusers_stunet experiments need a diffusers folder: tests/test_diffusers_e2e.py instantiates them on tiny ones
EXPERIMENTS = sorted(p for p in (ROOT / "experiments").glob("*.yaml") if "diffusers_stunet" not in p.read_text())


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_every_experiment_config_instantiates(path, tiny_overrides):
    """Each experiment resolves, validates and builds its module (tiny widths; its own structure otherwise)."""
    cfg = load_config(str(path), ["text.encoder=tiny", "text.dim=16", "model.init_from=null",
                                  "model.unet.channels=16", f"out_dir={tiny_overrides[-1].split('=')[1]}"])
    module = DiffusionModule(to_dict(cfg))
    assert sum(p.numel() for p in module.net.parameters() if p.requires_grad) > 0


def _fit(overrides, steps):
    import lightning as L

    from lumiere_pl.data import build_datamodule

    cfg = load_config(None, overrides + [f"train.max_steps={steps}", f"train.val_every_n_steps={steps}",
                                         f"train.ckpt_every_n_steps={steps}", "trainer.enable_progress_bar=false"])
    cfg, state = train_cli.inherit_t2i(cfg)
    L.seed_everything(0, verbose=False)
    module = DiffusionModule(to_dict(cfg), state)
    trainer = train_cli.build_trainer(cfg)
    trainer.fit(module, datamodule=build_datamodule(cfg.data))
    return cfg, module, trainer


def test_t2i_then_stunet_end_to_end(tiny_overrides, tmp_path):
    """Pretrain T2I, inflate, train STUNet: frozen weights stay equal to the T2I's EMA weights,
    checkpoints load with weights_only and carry their config, samples and the sampling CLI write real MP4s."""
    t2i_over = tiny_overrides + ["name=t2i", "model.name=t2i", "data.images=true", "data.batch_size=16",
                                 "train.lr=2e-3", "train.warmup_steps=5", "train.val_prompts=[a red circle]",
                                 "sampler.steps=4"]
    cfg, module, trainer = _fit(t2i_over, 16)
    t2i_ckpt = cfg.run_dir / "checkpoints" / "last.ckpt"
    ckpt = load_checkpoint(t2i_ckpt)                                  # weights_only=True inside
    assert ckpt["hyper_parameters"]["config"]["model"]["name"] == "t2i"
    assert len(list((cfg.run_dir / "samples").glob("step_*/*.mp4"))) == 1

    # a T2I with model.init_from starts from the pretrained (EMA) weights, live and EMA alike: fine-tuning (a style)
    ft_cfg, ft_state = train_cli.inherit_t2i(load_config(None, t2i_over + ["name=t2i_ft",
                                                                           f"model.init_from={t2i_ckpt}"]))
    ft = DiffusionModule(to_dict(ft_cfg), ft_state)
    fresh = DiffusionModule(to_dict(ft_cfg))
    with ft.ema.apply_to(ft.net):
        ema_weights = {k: v.clone() for k, v in ft.net.state_dict().items()}
    for k, v in net_state(ckpt, ema=True).items():
        assert torch.equal(ft.net.state_dict()[k], v) and torch.equal(ema_weights[k], v), k
    assert any(not torch.equal(fresh.net.state_dict()[k], v) for k, v in net_state(ckpt, ema=True).items())

    st_over = tiny_overrides + ["name=stunet", "model.name=stunet", f"model.init_from={t2i_ckpt}",
                                "model.temporal.down_levels=[0,1]", "train.lr=2e-3", "train.warmup_steps=5",
                                "train.val_prompts=[a red circle moving left]", "sampler.steps=4"]
    cfg2, module2, trainer2 = _fit(st_over, 10)
    t2i_weights = net_state(ckpt, ema=True)
    for k, v in module2.net.t2i.state_dict().items():
        assert torch.equal(v, t2i_weights[k]), f"frozen T2I weight {k} changed"
    st_ckpt = cfg2.run_dir / "checkpoints" / "last.ckpt"
    mp4s = list((cfg2.run_dir / "samples").glob("step_*/*.mp4"))
    assert len(mp4s) == 1
    with av.open(str(mp4s[0])) as f:
        assert sum(1 for _ in f.decode(video=0)) == 8

    # sampling CLI: single prompt and a resumable JSONL batch
    out = tmp_path / "one.mp4"
    assert sample_cli.main(["--ckpt", str(st_ckpt), "--prompt", "a red circle", "--out", str(out),
                            "--steps", "3", "--frames", "16", "--device", "cpu"]) == 0
    with av.open(str(out)) as f:
        frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
    assert len(frames) == 16 and frames[0].shape == (16, 16, 3)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps({"index": i, "prompt": p}) for i, p in
                                 enumerate(["a red circle", "a blue square", "a green triangle"])))
    outdir = tmp_path / "vids"
    args = ["--ckpt", str(st_ckpt), "--prompts", str(prompts), "--out-dir", str(outdir), "--steps", "2",
            "--batch-size", "2", "--device", "cpu"]
    assert sample_cli.main(args) == 0
    assert sorted(p.name for p in outdir.glob("*.mp4")) == ["000000.mp4", "000001.mp4", "000002.mp4"]
    assert json.loads((outdir / "000001.json").read_text())["prompt"] == "a blue square"
    stamp = (outdir / "000001.mp4").stat().st_mtime_ns
    (outdir / "000002.mp4").unlink()
    assert sample_cli.main(args) == 0                                  # resume: only the missing one is redone
    assert (outdir / "000001.mp4").stat().st_mtime_ns == stamp and (outdir / "000002.mp4").exists()


def test_sampling_is_batch_independent(tiny_overrides):
    """Clip i is seeded by its own seed: rendering it alone or in a batch gives the same video."""
    cfg = load_config(None, tiny_overrides + ["sampler.steps=3"])
    module = DiffusionModule(to_dict(cfg)).eval()
    both = sample(module, ["a red circle", "a blue square"], seeds=[5, 9])
    alone = sample(module, ["a blue square"], seeds=[9])
    torch.testing.assert_close(both[1:], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim_eta"])
def test_stochastic_sampling_is_batch_independent(tiny_overrides, sampler):
    """With eta > 0 each clip's added noise comes from its own generator too: alone or in a batch, the same video,
    and two clips of one batch do not share noise."""
    eta = ["sampler.name=ddpm"] if sampler == "ddpm" else ["sampler.name=ddim", "sampler.eta=0.5"]
    cfg = load_config(None, tiny_overrides + ["sampler.steps=3", "sampler.guidance=1.0", *eta])
    module = DiffusionModule(to_dict(cfg)).eval()
    both = sample(module, ["a red circle", "a red circle"], seeds=[5, 9])
    alone = sample(module, ["a red circle"], seeds=[9])
    torch.testing.assert_close(both[1:], alone, atol=1e-5, rtol=0)
    assert (both[0] - both[1]).abs().mean() > 1e-3


def test_short_training_lowers_the_loss(tiny_overrides):
    """60 tiny steps on a batch of the shapes set: the mean loss of the last steps is clearly below the first."""
    from lumiere_pl.data import build_datamodule

    cfg = load_config(None, tiny_overrides + ["model.name=t2i", "data.images=true", "data.batch_size=16"])
    torch.manual_seed(0)
    module = DiffusionModule(to_dict(cfg))
    dm = build_datamodule(cfg.data)
    dm.setup("fit")
    opt = torch.optim.AdamW([p for p in module.net.parameters() if p.requires_grad], lr=5e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    fixed = next(iter(dm.train_dataloader()))
    for step in range(60):
        loss = module.parts.process.loss(module.net, fixed["pixels"], module.condition(fixed, train=True), g)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)


def test_load_parts_round_trip(tiny_overrides, tmp_path):
    """A checkpoint rebuilds the same network without the training code's objects: its EMA weights by default, the
    live ones with ema=False (every key, not a prefix of them)."""
    import lightning as L

    cfg = load_config(None, tiny_overrides)
    module = DiffusionModule(to_dict(cfg))
    with torch.no_grad():
        for p in module.net.temporal.parameters():
            p.add_(0.1)
    module.ema.update(module.net)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    averaged, live = module.ema.averaged_state_dict(module.net), module.net.state_dict()
    for ema, want in ((True, averaged), (False, live)):
        got = load_parts(path, ema=ema).net.state_dict()
        assert got.keys() == want.keys()
        for k in want:
            assert torch.equal(got[k], want[k]), k
    assert any(not torch.equal(averaged[k], live[k]) for k in live)     # the two differ: the test tells them apart


def test_the_optimizer_is_fused_adamw_and_steps_as_the_per_tensor_loop(tiny_overrides):
    """configure_optimizers: AdamW over exactly the trainable parameters, fused on the CPU (bench/bench_optimizer.py);
    five steps with the train config's lr / betas / weight decay land where the per-tensor loop lands, to float32
    rounding (a wrong hyperparameter or update moves them by orders of magnitude more). Not fused under bf16-mixed
    with gradient clipping (train.grad_clip, on by default), which Lightning refuses for a fused optimizer."""
    cfg = load_config(None, tiny_overrides + ["train.lr=1e-2", "train.weight_decay=0.1", "train.warmup_steps=1"])
    module = DiffusionModule(to_dict(cfg))
    opt = module.configure_optimizers()["optimizer"]
    params = [p for p in module.net.parameters() if p.requires_grad]
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["fused"] is True
    assert [id(p) for g in opt.param_groups for p in g["params"]] == [id(p) for p in params]
    start = [p.detach().clone() for p in params]
    twins = [p.detach().clone().requires_grad_() for p in params]
    t = cfg.train
    loop = torch.optim.AdamW(twins, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay, foreach=False)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        for p, q in zip(params, twins):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        opt.step()
        loop.step()
    travel = max(float((p.detach() - p0).abs().max()) for p, p0 in zip(params, start))
    apart = max(float((p.detach() - q.detach()).abs().max()) for p, q in zip(params, twins))
    assert travel > 0.01 and apart < 1e-6, (travel, apart)
    mixed = DiffusionModule(to_dict(load_config(None, tiny_overrides + ["trainer.precision=bf16-mixed"])))
    assert not mixed.configure_optimizers()["optimizer"].defaults["fused"]   # Lightning refuses to clip it there


def test_cli_refuses_to_start_over_an_existing_run_and_auto_resumes(tiny_overrides, capsys):
    """A second fresh run into a run folder with checkpoints would overwrite them: refused (exit 2, nothing built);
    --resume auto continues it, a finished run being a no-op (what `make train` relies on)."""
    over = tiny_overrides + ["name=again", "model.name=t2i", "data.images=true", "train.max_steps=2",
                             "train.val_every_n_steps=2", "train.ckpt_every_n_steps=2", "train.val_prompts=[]",
                             "trainer.enable_progress_bar=false"]
    assert train_cli.main(["--resume", "auto"] + over) == 0                 # no run yet: starts
    ckpt = Path(tiny_overrides[-1].split("=", 1)[1]) / "again" / "checkpoints" / "last.ckpt"
    stamp = ckpt.stat().st_mtime_ns
    capsys.readouterr()
    assert train_cli.main(over) == 2
    assert "already holds a run" in capsys.readouterr().err and ckpt.stat().st_mtime_ns == stamp
    assert train_cli.main(["--resume", "auto"] + over) == 0
    assert "resuming from" in capsys.readouterr().out
    assert load_checkpoint(ckpt)["global_step"] == 2


def test_cli_samples_the_last_step_when_it_is_not_a_validation_step(tiny_overrides, capsys):
    """max_steps 3, validation every 2: samples at steps 2 and 3 (the trained model's), MP4s and TensorBoard videos
    (the last logged after fit closed the logger); a finished run resumed writes nothing again. The STUNet's random
    T2I (model.init_from=random) is said in one line."""
    over = tiny_overrides + ["name=last", "model.name=stunet", "model.init_from=random", "train.max_steps=3",
                             "train.val_every_n_steps=2", "train.ckpt_every_n_steps=2", "train.val_prompts=[a red circle]",
                             "sampler.steps=2", "trainer.enable_progress_bar=false"]
    assert train_cli.main(["--resume", "auto"] + over) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if "model.init_from=random" in line]
    assert notes == ["note: model.init_from=random: the stunet's T2I U-Net is random, not pretrained"]
    samples = Path(tiny_overrides[-1].split("=", 1)[1]) / "last" / "samples"
    assert sorted(p.name for p in samples.iterdir()) == ["step_0000002", "step_0000003"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(samples.parent / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert [e.step for e in events.Images("samples/00")] == [2, 3]
    stamp = next((samples / "step_0000003").iterdir()).stat().st_mtime_ns
    assert train_cli.main(["--resume", "auto"] + over) == 0
    assert sorted(p.name for p in samples.iterdir()) == ["step_0000002", "step_0000003"]
    assert next((samples / "step_0000003").iterdir()).stat().st_mtime_ns == stamp


def test_last_checkpoint_holds_the_final_step_off_the_checkpoint_cadence(tiny_overrides):
    """max_steps 5, checkpoints every 3: last.ckpt holds step 5, the final weights (continued to 7 steps it gives the
    losses of a straight 7-step run), the periodic checkpoint step 3; --resume auto of the finished run trains
    nothing and rewrites nothing."""
    from _resume_helpers import read_losses

    out = Path(tiny_overrides[-1].split("=", 1)[1])
    over = tiny_overrides + ["train.ckpt_every_n_steps=3", "train.val_every_n_steps=100", "train.val_prompts=[]",
                             "trainer.enable_progress_bar=false", "train.warmup_steps=1", "train.lr=1e-3"]
    assert train_cli.main(over + ["name=run", "train.max_steps=5"]) == 0
    ckpts = out / "run" / "checkpoints"
    assert load_checkpoint(ckpts / "last.ckpt")["global_step"] == 5
    assert load_checkpoint(ckpts / "step=0000003.ckpt")["global_step"] == 3
    stamp = (ckpts / "last.ckpt").stat().st_mtime_ns
    assert train_cli.main(["--resume", "auto"] + over + ["name=run", "train.max_steps=5"]) == 0
    assert (ckpts / "last.ckpt").stat().st_mtime_ns == stamp
    assert sorted(read_losses(out / "run" / "train_loss.csv")) == [1, 2, 3, 4, 5]

    assert train_cli.main(["--resume", "last"] + over + ["name=run", "train.max_steps=7"]) == 0
    assert train_cli.main(over + ["name=ref", "train.max_steps=7"]) == 0
    run, ref = read_losses(out / "run" / "train_loss.csv"), read_losses(out / "ref" / "train_loss.csv")
    assert sorted(run) == sorted(ref) == list(range(1, 8))
    assert max(abs(run[s] - ref[s]) for s in ref) <= 1e-6, (run, ref)


def test_progress_bar_counts_steps_and_tensorboard_gets_every_loss(tiny_overrides, capsys):
    """10 steps over two epochs (8 batches each): the bar counts steps out of train.max_steps across the epoch
    boundary (Lightning's own reads `Epoch 1/-2`), and TensorBoard holds the loss and learning rate of every step;
    a resumed run's bar starts at its step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    over = tiny_overrides + ["name=bar", "train.val_every_n_steps=100", "train.ckpt_every_n_steps=100",
                             "train.val_prompts=[]", "trainer.enable_progress_bar=true"]
    assert train_cli.main(over + ["train.max_steps=10"]) == 0
    out = capsys.readouterr().out
    assert "step: 100%" in out and "10/10" in out and "Epoch" not in out and "/-" not in out, out[-2000:]
    events = EventAccumulator(str(Path(tiny_overrides[-1].split("=", 1)[1]) / "bar" / "tb"))
    events.Reload()
    for tag in ("train/loss", "lr-AdamW"):
        assert len({e.step for e in events.Scalars(tag)}) == 10, (tag, [e.step for e in events.Scalars(tag)])
    assert train_cli.main(["--resume", "last"] + over + ["train.max_steps=12"]) == 0
    bar = [line for line in capsys.readouterr().out.replace("\r", "\n").splitlines() if line.startswith("step:")]
    assert "10/12" in bar[0] and "12/12" in bar[-1], bar


@pytest.mark.parametrize("extra", [[], ["model.temporal.conditional=true"], ["model.name=t2i", "data.images=true"]])
def test_dry_run_prints_parameters_and_flops_and_builds_nothing_else(tiny_overrides, capsys, extra):
    import re

    over = tiny_overrides + extra
    assert train_cli.main(["--dry-run"] + over) == 0
    out = capsys.readouterr().out
    cfg = load_config(None, over)
    counts = DiffusionModule(to_dict(cfg)).summary()
    assert f"trainable {counts['trainable']:,}" in out and f"frozen {counts['frozen']:,}" in out
    assert float(re.search(r"GFLOPs per (?:clip|image): ([0-9.]+)", out).group(1)) > 0
    assert not cfg.run_dir.exists()                                          # nothing written


def test_learning_rate_warms_up_linearly_then_holds(tiny_overrides):
    """lr = train.lr * (step + 1) / warmup_steps for the first warmup_steps optimizer steps, then train.lr."""
    cfg = load_config(None, tiny_overrides + ["train.lr=1e-3", "train.warmup_steps=4"])
    sched = DiffusionModule(to_dict(cfg)).configure_optimizers()["lr_scheduler"]
    opt, seen = sched["scheduler"].optimizer, []
    assert sched["interval"] == "step"
    for _ in range(7):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched["scheduler"].step()
    assert seen == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3, 1e-3], rel=1e-12)


def test_validation_logs_the_loss_at_fixed_noise_levels(tiny_overrides):
    """val/loss_t{t} for each train.val_loss_times: the same clips and noise every validation (two validations of
    one model give the same numbers), the loss of that diffusion time alone (DiffusionProcess.loss(t=...)), and
    higher-noise times differ from lower ones."""
    import lightning as L

    from lumiere_pl.data import build_datamodule

    over = tiny_overrides + ["model.init_from=null", "train.val_loss_times=[0.2,0.8]", "train.val_prompts=[]"]
    cfg = load_config(None, over)
    module = DiffusionModule(to_dict(cfg))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    dm = build_datamodule(cfg.data)
    first = trainer.validate(module, datamodule=dm, verbose=False)[0]
    again = trainer.validate(module, datamodule=dm, verbose=False)[0]
    assert set(first) == {"val/loss", "val/loss_t0.2", "val/loss_t0.8"} and first == again
    assert first["val/loss_t0.2"] != first["val/loss_t0.8"]
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    from lumiere_pl.utils.rng import StepRNG
    rng = StepRNG(torch.Generator().manual_seed(0), torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = float(module.loss(batch, rng, train=False, t=0.8))
    assert len(dm.val_dataloader()) == 1                                  # one batch: its loss is the logged one
    assert first["val/loss_t0.8"] == pytest.approx(want, rel=1e-5)
    with pytest.raises(ConfigError, match="val_loss_times"):
        load_config(None, tiny_overrides + ["train.val_loss_times=[0.0]"])


@pytest.mark.slow
def test_validation_logs_motion_figures_and_fvd_to_tensorboard(tiny_overrides):
    """A short run shows, each validation, the motion figures of its samples and of the held-out clips (with their
    intervals), the flow Frechet distance between them, the loss at fixed noise levels and, with train.val_fvd,
    the FVD of that many samples against the held-out clips."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    over = tiny_overrides + ["name=figures", "train.max_steps=2",
                             "train.val_every_n_steps=1", "train.ckpt_every_n_steps=2", "sampler.steps=2",
                             "train.val_prompts=[a red circle moving left, a blue square moving up]",
                             "train.val_fvd=2", "trainer.enable_progress_bar=false"]
    assert train_cli.main(over) == 0
    events = EventAccumulator(str(Path(tiny_overrides[-1].split("=", 1)[1]) / "figures" / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for metric in ("magnitude", "dynamic_degree", "flicker", "warping_error"):
        for prefix in ("val_motion", "val_motion_real"):
            assert f"{prefix}/{metric}" in tags, (prefix, metric, sorted(tags))
    assert {"val_motion/magnitude_low", "val_motion/magnitude_high", "val_motion/flow_frechet", "val/fvd",
            "val/loss_t0.5"} <= tags
    assert [e.step for e in events.Scalars("val_motion/magnitude")] == [1, 2]
    fvd = [e.value for e in events.Scalars("val/fvd")]
    assert len(fvd) == 2 and all(v > 0 for v in fvd)
    low, mid, high = (events.Scalars(f"val_motion/magnitude{s}")[-1].value for s in ("_low", "", "_high"))
    assert low <= mid <= high


def test_keep_checkpoints_keeps_every_periodic_checkpoint(tiny_overrides):
    over = tiny_overrides + ["name=keep", "model.name=t2i", "data.images=true", "train.max_steps=4",
                             "train.ckpt_every_n_steps=1", "train.val_every_n_steps=100", "train.val_prompts=[]",
                             "trainer.enable_progress_bar=false"]
    assert train_cli.main(over + ["train.keep_checkpoints=-1"]) == 0
    folder = Path(tiny_overrides[-1].split("=", 1)[1]) / "keep" / "checkpoints"
    assert sorted(p.name for p in folder.glob("step=*.ckpt")) == [f"step={s:07d}.ckpt" for s in (1, 2, 3, 4)]
    assert train_cli.main(over + ["name=keep1"]) == 0                      # the default keeps the newest
    assert [p.name for p in (folder.parent.parent / "keep1" / "checkpoints").glob("step=*.ckpt")] == ["step=0000004.ckpt"]
    assert train_cli.main(over + ["name=keep0", "train.keep_checkpoints=0"]) == 2
