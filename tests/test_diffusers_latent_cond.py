"""Lumiere's <noisy video, C, M> conditional input in latent space (a Stable Diffusion-like U-Net with a VAE): the mask
rule of the latent grid, the encoding of C, the zero-init property of a fresh conditional latent STUNet, and training
plus image-to-video / inpainting from the command lines. Tiny random models built offline
(lumiere_research/tiny_diffusers.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lumiere_research.tiny_diffusers import TEXT_DIM, sd_like, sd_unet, tiny_vae
from PIL import Image

from lumiere_pl.pipeline import LumierePipeline
from lumiere_pl.cli import apply as apply_cli
from lumiere_pl.cli import export as export_cli
from lumiere_pl.cli import train as train_cli
from lumiere_pl.config import TemporalConfig
from lumiere_pl.data.video_io import decode
from lumiere_pl.models.diffusers_stunet import DiffusersSTUNet
from lumiere_pl.models.latent import LatentCodec
from lumiere_pl.utils.video import from_uint8

ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = ["text.max_length=8", "data.name=synthetic", "data.train_shards=null", "data.frames=8", "data.size=16",
            "data.batch_size=2", "data.num_workers=0", "data.synthetic.num_videos=8",
            "data.synthetic.num_val_videos=2", "model.temporal.down_levels=[0,1]", "train.max_steps=3",
            "train.val_every_n_steps=3", "train.ckpt_every_n_steps=3", "train.warmup_steps=1", "train.lr=1e-2",
            "train.ema_decay=0.5", "train.val_prompts=[a red circle moving left]", "sampler.steps=2",
            "sampler.guidance=1.0", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.strategy=auto",
            "trainer.precision=32-true", "model.frozen_dtype=float32", "trainer.enable_progress_bar=false",
            "trainer.log_every_n_steps=1"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    return sd_like(tmp_path_factory.mktemp("pipelines") / "sd")


def test_latent_mask_rule_a_cell_is_known_only_if_every_pixel_under_it_is():
    """VAE x2: each latent cell covers a 2 x 2 pixel patch; one unknown pixel makes the cell unknown."""
    codec = LatentCodec(tiny_vae(), chunk=2)
    known = torch.ones(1, 1, 2, 4, 4)                                   # (b 1 t H W), 1 = known
    known[0, 0, 0, 0, 1] = 0.0                                          # frame 0: one pixel of the top-left patch
    known[0, 0, 0, 2:, 2:] = 0.0                                        # frame 0: the whole bottom-right patch
    known[0, 0, 1] = 0.0                                                # frame 1: nothing known...
    known[0, 0, 1, 2:, :2] = 1.0                                        # ...but the bottom-left patch
    expected = torch.tensor([[[1 - 1, 1], [1, 0]],                      # frame 0 (h w)
                             [[0, 0], [1, 0]]], dtype=torch.float32)    # frame 1
    assert codec.factor == 2
    torch.testing.assert_close(codec.known_latent(known), expected[None, None], rtol=0, atol=0)


def test_condition_is_the_masked_clips_posterior_mean_on_known_cells_only():
    """C = scaled posterior mean of (video * M) where the latent mask is 1, zero elsewhere; frames without a known
    cell are not encoded (image-to-video encodes one frame per clip); the task none (M = 0) gives zeros."""
    vae = tiny_vae()
    codec = LatentCodec(vae, chunk=2)
    seen = []
    vae.encoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    video = torch.rand(2, 3, 5, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    known = torch.zeros(2, 1, 5, 16, 16)
    known[0, :, 0] = 1.0                                                # clip 0: image-to-video (frame 0)
    known[1] = 1.0
    known[1, :, :, 3:9, 5:12] = 0.0                                     # clip 1: a hole on every frame
    cond = codec.encode_condition(video, known)
    c, m = cond["cond_video"], cond["cond_mask"]                        # (2 4 5 8 8), (2 1 5 8 8)
    assert c.shape == (2, 4, 5, 8, 8) and m.shape == (2, 1, 5, 8, 8) and sum(seen) == 1 + 5
    with torch.no_grad():
        frames = (video * known).transpose(1, 2).reshape(10, 3, 16, 16)
        mean = vae.encode(frames).latent_dist.mean * vae.config.scaling_factor        # ((b t) 4 8 8)
    ref = mean.reshape(2, 5, 4, 8, 8).transpose(1, 2) * m
    torch.testing.assert_close(c, ref, atol=1e-5, rtol=1e-5)
    assert c[0, :, 1:].eq(0).all() and c[0, :, 0].abs().mean() > 0.01 and m[0, 0, 0].eq(1).all()
    assert m[1, 0, :, 1:5, 2:6].eq(0).all() and m[1, 0, :, 5:].eq(1).all()   # hole rows 3..8 -> cells 1..4
    none = codec.encode_condition(video, torch.zeros_like(known))
    assert none["cond_video"].eq(0).all() and none["cond_mask"].eq(0).all()


def test_fresh_conditional_latent_stunet_equals_the_unconditional_one():
    """The zero-init property in latents: on the same (non-still) latent clip, a freshly inflated conditional STUNet,
    given the VAE-encoded <C, M> of an image-to-video and an inpainting task, equals the unconditional one to 1e-5;
    moving its new input conv changes the output (the conditioning does reach the network)."""
    unet = sd_unet()
    uncond = DiffusersSTUNet(unet, TemporalConfig(down_levels=[0, 1]), TEXT_DIM)
    cond_net = DiffusersSTUNet(unet, TemporalConfig(down_levels=[0, 1], conditional=True), TEXT_DIM)
    codec = LatentCodec(tiny_vae(), chunk=4)
    g = torch.Generator().manual_seed(0)
    video = torch.rand(2, 3, 8, 32, 32, generator=g) * 2 - 1
    known = torch.zeros(2, 1, 8, 32, 32)
    known[0, :, 0] = 1.0
    known[1] = 1.0
    known[1, :, :, 8:20, 8:24] = 0.0
    cond = codec.encode_condition(video, known)
    assert cond["cond_video"].abs().mean() > 0.01
    x, ts = torch.randn(2, 4, 8, 16, 16, generator=g), torch.tensor([20.0, 640.0])
    text = {"text": torch.randn(2, 6, TEXT_DIM, generator=g)}
    with torch.no_grad():
        ref = uncond(x, ts, text)
        out = cond_net(x, ts, {**text, **cond})
        assert ref.abs().mean() > 0.1 and (out - ref).abs().max() <= 1e-5
        cond_net.cond_in.weight.add_(0.05)
        assert (cond_net(x, ts, {**text, **cond}) - ref).abs().max() > 1e-3


# ---------------------------------------------------------------------------------------------------------------------
# training and lumiere-apply, end to end


def _image(path: Path) -> np.ndarray:
    yy, xx = np.mgrid[0:20, 0:24]
    image = np.stack([xx * 10, yy * 12, np.full_like(xx, 90)], -1).astype(np.uint8)      # (h w 3), smooth
    image[6:12, 8:14] = (230, 40, 40)
    Image.fromarray(image).save(path)
    return image


@pytest.fixture(scope="module")
def trained(pipeline, tmp_path_factory):
    """lumiere-train: experiments/diffusers/sd.yaml with model.temporal.conditional=true, 3 steps (the tasks none / first / box)."""
    out = tmp_path_factory.mktemp("runs")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = train_cli.main(["--config", str(ROOT / "experiments/diffusers/sd.yaml"), f"model.init_from={pipeline}",
                             f"out_dir={out}", "model.temporal.conditional=true", *TINY_RUN])
    finally:
        torch.set_num_threads(n)
    assert rc == 0
    return out / "stunet_sd" / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_conditional_latent_training_then_i2v_and_inpaint_from_the_cli(trained, tmp_path, monkeypatch, single_thread):
    """A conditional latent STUNet trains (its <C, M> encoded from the clips each step; the new input conv moves),
    then lumiere-apply i2v feeds the network the VAE encoding of the image on frame 0 only, M = [1, 0, ...] on the
    latent grid; inpaint runs too, from the checkpoint and from an exported folder; stylize is refused by name."""
    pipe = LumierePipeline.from_pretrained(trained)
    assert pipe.net.cond_in is not None and pipe.net.cond_in.weight.abs().max() > 0
    seen = {}
    real = DiffusersSTUNet._forward

    def spy(self, x, timestep, cond):
        seen.update({k: cond[k] for k in ("cond_video", "cond_mask")})
        return real(self, x, timestep, cond)
    monkeypatch.setattr(DiffusersSTUNet, "_forward", spy)
    image = _image(tmp_path / "image.png")
    out = tmp_path / "i2v.mp4"
    assert apply_cli.main(["i2v", "--ckpt", str(trained), "--image", str(tmp_path / "image.png"), "--prompt",
                           "a red square", "--out", str(out), "--steps", "2", "--lossless"]) == 0
    assert decode(out.read_bytes()).shape == (8, 16, 16, 3)
    c, m = seen["cond_video"], seen["cond_mask"]                       # (1 4 8 8 8), (1 1 8 8 8): latents
    assert c.shape == (1, 4, 8, 8, 8) and m.shape == (1, 1, 8, 8, 8)
    assert m[0, 0, :, 0, 0].tolist() == [1.0] + [0.0] * 7 and m[:, :, 0].eq(1).all()
    fitted = from_uint8(apply_cli.fit(image[None], 16))                 # (3 1 16 16) in [-1, 1]
    expected = pipe.parts.codec.encode_condition(fitted[None], torch.ones(1, 1, 1, 16, 16))["cond_video"]
    torch.testing.assert_close(c[:, :, :1], expected, atol=1e-5, rtol=1e-5)
    assert c[:, :, 1:].eq(0).all()

    mask = np.zeros((20, 24), np.uint8)
    mask[4:14, 6:18] = 255                                              # white = fill
    Image.fromarray(mask).save(tmp_path / "mask.png")
    video = np.stack([np.roll(image, 2 * i, axis=1) for i in range(10)])
    from lumiere_pl.data.video_io import encode
    (tmp_path / "video.mp4").write_bytes(encode(video, 8.0, lossless=True))
    export = tmp_path / "export"
    assert export_cli.main(["--ckpt", str(trained), "--out", str(export)]) == 0
    out = tmp_path / "inpaint.mp4"
    assert apply_cli.main(["inpaint", "--ckpt", str(export), "--video", str(tmp_path / "video.mp4"), "--mask",
                           str(tmp_path / "mask.png"), "--prompt", "a red square", "--out", str(out), "--steps", "2",
                           "--lossless"]) == 0
    frames, expected = decode(out.read_bytes()), apply_cli.fit(video[:8], 16)
    keep = ~apply_cli.fit_mask(mask[None] > 127, 16, 8, tmp_path / "mask.png")
    assert np.array_equal(frames[keep], expected[keep])                # --paste-known (default for inpaint)
    m = seen["cond_mask"]
    assert m.shape == (1, 1, 8, 8, 8) and 0 < float(m.mean()) < 1

    # stylize interpolates the spatial weights with a T2I of this project: refused by name for a diffusers STUNet
    assert apply_cli.main(["stylize", "--ckpt", str(trained), "--style-t2i", str(trained), "--alpha", "0.5",
                           "--prompt", "x", "--out", str(tmp_path / "s.mp4")]) == 2


@pytest.mark.slow
def test_i2v_respects_the_known_frame_with_a_network_that_does(trained, tmp_path, monkeypatch, single_thread):
    """The known frame comes back through the whole latent path (pixels -> VAE mean -> latent C, M -> sampler ->
    VAE decode -> MP4): with a denoiser that keeps the known latent cells (x0 = C where M = 1, what a trained model
    learns; a 3-step model cannot), the decoded first frame of lumiere-apply i2v is the VAE's own reconstruction of
    the image, to a few 8-bit levels, while an unconditioned sample's first frame is far from it."""
    pipe = LumierePipeline.from_pretrained(trained)
    image = _image(tmp_path / "image.png")
    fitted = from_uint8(apply_cli.fit(image[None], 16))[None]           # (1 3 1 16 16)
    with torch.no_grad():
        recon = pipe.parts.codec.decode(pipe.parts.codec.encode_condition(fitted, torch.ones(1, 1, 1, 16, 16))["cond_video"])
    recon = ((recon[0, :, 0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).numpy()  # (16 16 3)
    import lumiere_pl.pipeline

    real = lumiere_pl.pipeline.multidiffusion

    def keeps_known(denoise, *args, **kwargs):        # the pipeline's last wrapper around the denoiser
        inner = real(denoise, *args, **kwargs)

        def d(x, s, cond):
            m = cond["cond_mask"]
            return m * cond["cond_video"] + (1 - m) * inner(x, s, cond)
        return d
    monkeypatch.setattr(lumiere_pl.pipeline, "multidiffusion", keeps_known)
    out = tmp_path / "i2v.mp4"
    assert apply_cli.main(["i2v", "--ckpt", str(trained), "--image", str(tmp_path / "image.png"), "--prompt",
                           "a red square", "--out", str(out), "--steps", "4", "--lossless", "--seed", "1"]) == 0
    first = decode(out.read_bytes())[0].astype(float)                  # (16 16 3)
    plain = pipe(["a red square"], frames=8, steps=4, seeds=[1]).videos       # no conditioning: task none
    plain = ((plain[0, :, 0].permute(1, 2, 0) + 1) * 127.5).numpy()
    err, far = np.abs(first - recon).mean(), np.abs(plain - recon).mean()
    assert err <= 2.0 and far >= 10 * max(err, 0.5), (err, far)
