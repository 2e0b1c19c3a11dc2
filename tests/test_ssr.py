"""SSR: the network, the on-the-fly (low-res, high-res) pairs, 80 frames at x4 through MultiDiffusion, training."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lumiere_pl.config import ConfigError, to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.lit import DiffusionModule
from lumiere_pl.models import UNet, build_model
from lumiere_pl.models.ssr import downsample, upsample

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "experiments" / "tiny" / "ssr.yaml")


@pytest.fixture(scope="module")
def module() -> DiffusionModule:
    torch.manual_seed(0)
    return DiffusionModule(to_dict(load_config(TINY)))


def test_ssr_configs_instantiate():
    for path in sorted((ROOT / "experiments").glob("ssr_*.yaml")):
        cfg = load_config(str(path))
        assert cfg.model.name == "ssr" and cfg.data.size % cfg.model.upscale == 0
        net = build_model(cfg, text_dim=8)
        assert net.t2i.cfg.cond_channels == 3 and net.temporal_halvings == len(cfg.model.temporal.down_levels)
    with pytest.raises(ConfigError, match="model.upscale"):
        load_config(TINY, ["model.upscale=3"])


def test_pairs_made_on_the_fly(module):
    torch.manual_seed(0)
    hr = torch.rand(2, 3, 8, 64, 64) * 2 - 1                                       # b c t H W
    batch = {"pixels": hr, "caption": ["a red circle moving right", "a blue square"]}
    low = downsample(hr, 4)
    assert low.shape == (2, 3, 8, 16, 16)
    torch.testing.assert_close(low[:, :, 3, :4, :4].mean(), hr[:, :, 3, :16, :16].mean())  # area average
    clean = module.condition(batch, train=False)                                    # no augmentation
    assert clean["concat"].shape == hr.shape and clean["aug_noise"].shape == (2,)
    assert torch.equal(clean["concat"], upsample(low, 64))
    noisy = module.condition(batch, train=True)                                     # t_aug ~ U(0, cond_aug_max)
    assert not torch.equal(noisy["concat"], clean["concat"])
    assert (noisy["aug_noise"] >= clean["aug_noise"]).all() and noisy["aug_noise"].unique().numel() == 2
    assert {"text", "text_mask", "null_text", "null_text_mask"} <= set(noisy)


def test_aug_level_reaches_the_network(module):
    """Zero-initialised layers (aug embedding, residual outputs) are perturbed, as training would: then both the aug
    level and the low-res video change the output."""
    net = DiffusionModule(to_dict(load_config(TINY))).net
    x = torch.randn(1, 3, 8, 64, 64)
    cond = {**module.parts.text_condition(["a"]), **module.example_condition(x.shape)}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
        a = net(x, torch.ones(1), cond)
        b = net(x, torch.ones(1), {**cond, "aug_noise": cond["aug_noise"] + 300.0})
        c = net(x, torch.ones(1), {**cond, "concat": torch.zeros_like(cond["concat"]) + 0.5})
    assert not torch.allclose(a, b) and not torch.allclose(a, c)


def test_t2i_weights_seed_the_ssr():
    """A plain T2I checkpoint loads into the SSR; the new conv_in channels start at zero, so the SSR starts as the
    T2I (per frame) whatever the low-res input, while those channels and the aug embedding stay trainable."""
    cfg = load_config(TINY, ["model.temporal.freeze_spatial=true"])
    t2i_cfg = load_config(TINY, ["model.name=t2i", "data.images=true"])
    t2i_cfg.model.unet.aug_embedding = False
    torch.manual_seed(0)
    t2i = UNet(t2i_cfg.model.unet, 16)
    with torch.no_grad():
        for p in t2i.out.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ssr = build_model(cfg, 16, t2i.state_dict())
    assert ssr.t2i.conv_in.weight.requires_grad and ssr.t2i.aug_embed[0].weight.requires_grad
    assert not ssr.t2i.input_blocks[0][0].conv1.weight.requires_grad               # the rest stays frozen
    x = torch.randn(1, 3, 8, 64, 64)
    text = {"text": torch.randn(1, 4, 16), "text_mask": torch.ones(1, 4, dtype=torch.bool)}
    with torch.no_grad():
        y = ssr(x, torch.full((1,), 500.0), {**text, "concat": torch.randn_like(x), "aug_noise": torch.full((1,), 80.0)})
        ref = torch.stack([t2i(x[:, :, i], torch.full((1,), 500.0), text) for i in range(8)], 2)
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)


def test_80_frames_x4_through_multidiffusion(module):
    low = torch.rand(1, 3, 80, 16, 16) * 2 - 1                                     # b c t h w
    calls = []
    net_forward = module.net.forward

    def counting(x, c_noise, cond):
        calls.append(x.shape)
        return net_forward(x, c_noise, cond)
    module.net.forward = counting
    try:
        out = module.pipeline()(["a red circle moving right"], lowres=low, steps=1).videos
    finally:
        module.net.forward = net_forward
    assert out.shape == (1, 3, 80, 64, 64) and torch.isfinite(out).all()
    # 13 windows of 8 frames (stride 6, the last one flush with frame 80), 4 per call: 4 calls, every one 8 frames
    assert [s[0] for s in calls] == [4, 4, 4, 1] and all(s[2:] == (8, 64, 64) for s in calls)


def test_upscale_of_a_clip_does_not_depend_on_its_batch(module):
    """With augmentation noise (aug > 0) too: clip i's noise is seeded by seeds[i] alone."""
    import copy

    module = copy.deepcopy(module)
    with torch.no_grad():                      # off the zero init, so the low-res input reaches the output
        for p in module.net.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    low = torch.rand(3, 3, 8, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    prompts = ["a red circle moving right", "a blue square moving up", "a white triangle moving left"]
    pipe = module.pipeline()
    together = pipe(prompts, lowres=low, aug=0.3, steps=2, seeds=[5, 6, 7]).videos
    plain = pipe(prompts, lowres=low, aug=0.0, steps=2, seeds=[5, 6, 7]).videos
    assert (together - plain).abs().max() > 1e-3                                # the augmentation noise matters
    alone = torch.cat([pipe([p], lowres=low[i:i + 1], aug=0.3, steps=2, seed=s).videos
                       for i, (p, s) in enumerate(zip(prompts, [5, 6, 7]))])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_fast_dev_run_writes_side_by_side_videos(tmp_path):
    import lightning as L

    from lumiere_pl.data import build_datamodule
    from lumiere_pl.lit.callbacks import ValidationSamples

    cfg = load_config(TINY, [f"out_dir={tmp_path}", "sampler.steps=1"])
    module = DiffusionModule(to_dict(cfg))
    trainer = L.Trainer(fast_dev_run=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[ValidationSamples()])
    trainer.fit(module, datamodule=build_datamodule(cfg.data))
    videos = sorted((tmp_path / cfg.name / "samples").glob("step_*/*.mp4"))
    assert videos, "validation wrote no MP4"
    from lumiere_pl.data.video_io import decode
    frames = decode(videos[0].read_bytes())                                        # t h w 3
    assert frames.shape[0] == cfg.data.frames and frames.shape[1:3] == (64, 3 * 64)


# ---------------------------------------------------------------------------------------------------------------------
# lumiere-sample: base -> SSR, and SSR alone on a video file


def _save_ckpt(module, path: Path) -> Path:
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": module.export_config()}}, path)
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    from lumiere_pl.lit import DiffusionModule

    d = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    ssr = _save_ckpt(DiffusionModule(to_dict(load_config(TINY))), d / "ssr.ckpt")
    base_cfg = load_config(TINY, ["name=base_tiny", "model.name=stunet", "model.unet.aug_embedding=false", "data.size=16"])
    base = _save_ckpt(DiffusionModule(to_dict(base_cfg)), d / "base.ckpt")
    return base, ssr


def _frames(path: Path):
    from lumiere_pl.data.video_io import decode
    return decode(path.read_bytes())                                               # t h w 3


def test_sample_base_then_ssr_writes_one_mp4_per_stage(ckpts, tmp_path):
    from lumiere_pl.cli.sample import main

    base, ssr = ckpts
    out = tmp_path / "a.mp4"
    rc = main(["--ckpt", str(base), "--ssr-ckpt", str(ssr), "--prompt", "a red circle moving right", "--out", str(out),
               "--frames", "10", "--steps", "1", "--ssr-steps", "1", "--device", "cpu"])
    assert rc == 0
    assert _frames(out).shape == (10, 16, 16, 3)                                   # base stage
    assert _frames(tmp_path / "a_ssr.mp4").shape == (10, 64, 64, 3)               # SSR stage, windows (0,8), (2,10)


def test_sample_upscales_a_batch_in_one_ssr_call_and_the_same_videos_as_one_by_one(ckpts, tmp_path, monkeypatch):
    """--ssr-ckpt with --prompts: the SSR takes the base batch in one call (halved on out-of-memory), and every SSR
    video equals the one rendered alone (per-clip seeds, lossless MP4s compared exactly)."""
    import json

    from lumiere_pl.cli.sample import main

    base, ssr = ckpts
    prompts = ["a red circle moving right", "a blue square moving up", "a green triangle moving left"]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"index": i, "prompt": p}) + "\n"
                                              for i, p in enumerate(prompts)))
    common = ["--ckpt", str(base), "--ssr-ckpt", str(ssr), "--prompts", str(tmp_path / "p.jsonl"), "--frames", "4",
              "--steps", "1", "--ssr-steps", "2", "--ssr-aug", "0.3", "--device", "cpu", "--lossless"]
    assert main([*common, "--out-dir", str(tmp_path / "one"), "--batch-size", "1"]) == 0
    from lumiere_pl.pipeline import LumierePipeline

    calls, sample = [], LumierePipeline._sample

    def small_memory(self, prompts, *a, **k):                     # a device that holds two SSR clips
        if self.parts.is_ssr:
            calls.append(len(prompts))
            if len(prompts) > 2:
                raise torch.OutOfMemoryError("CUDA out of memory")
        return sample(self, prompts, *a, **k)
    monkeypatch.setattr(LumierePipeline, "_sample", small_memory)
    assert main([*common, "--out-dir", str(tmp_path / "batch"), "--batch-size", "3"]) == 0
    assert calls == [3, 2, 1]                                     # 3 clips -> out of memory -> 2 + 1
    for i in range(3):
        one, batch = (_frames(tmp_path / d / "ssr" / f"{i:06d}.mp4") for d in ("one", "batch"))
        assert one.shape == (4, 64, 64, 3) and (one == batch).all()


def test_sample_ssr_alone_on_a_video_file(ckpts, tmp_path):
    import numpy as np

    from lumiere_pl.cli.sample import main
    from lumiere_pl.utils.video import write_mp4

    _, ssr = ckpts
    src = write_mp4(tmp_path / "low.mp4", np.random.default_rng(0).integers(0, 255, (11, 20, 24, 3), dtype=np.uint8))
    out = tmp_path / "high.mp4"
    rc = main(["--ckpt", str(ssr), "--input-video", str(src), "--prompt", "", "--out", str(out), "--ssr-steps", "1",
               "--ssr-window", "4", "--device", "cpu"])
    assert rc == 0 and _frames(out).shape == (11, 64, 64, 3)                       # 20x24 cropped to 20, fit to 16
    assert main(["--ckpt", str(ckpts[0]), "--input-video", str(src), "--prompt", "", "--out",
                 str(tmp_path / "other.mp4")]) == 2
