"""Diffusers U-Nets inflated into STUNets (DeepFloyd IF-like in pixels, Stable Diffusion-like in latents): the paper's
init property against the diffusers U-Net itself, freezing, refused blocks, and the schedule bridge against
diffusers' own scheduler steps. Tiny random models built offline (lumiere_research/tiny_diffusers.py)."""
from __future__ import annotations

import pytest
import torch
from lumiere_research.tiny_diffusers import TEXT_DIM, if_scheduler, if_unet, sd_scheduler, sd_unet

from lumiere_pl.config import TemporalConfig
from lumiere_pl.diffusion import Denoiser
from lumiere_pl.diffusion.discrete import DiscreteSchedule, alphas_cumprod
from lumiere_pl.models.diffusers_stunet import DiffusersSTUNet

UNETS = {"if": (if_unet, 3), "sd": (sd_unet, 4)}
OPTIONS = {"default": dict(down_levels=[0, 1]), "no_down": dict(down_levels=[]),
           "all": dict(down_levels=[0, 1], emb_cond=True, text_attn=True, attn_levels=[0, 1, 2], attn_layers=2,
                       unfreeze=["text"], conditional=True)}


def text(b, seed=0):
    return torch.randn(b, 6, TEXT_DIM, generator=torch.Generator().manual_seed(seed))


def still(img, frames):
    return img[:, :, None].expand(-1, -1, frames, -1, -1)               # every frame the same image


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("kind", sorted(UNETS))
def test_still_video_through_inflated_unet_equals_the_diffusers_unet(kind, option):
    """Lumiere's init property against the diffusers U-Net: every frame of a still video gets the U-Net's output
    (IF: its first 3 of 6 channels, the eps half), to 1e-5; perturbing the temporal weights breaks it."""
    make, c = UNETS[kind]
    unet = make()
    net = DiffusersSTUNet(unet, TemporalConfig(**OPTIONS[option]), TEXT_DIM)
    img, ts, emb = torch.randn(2, c, 16, 16), torch.tensor([3.0, 871.0]), text(2)
    cond = {"text": emb, "text_mask": torch.ones(2, 6, dtype=torch.bool)}
    if net.cond_in is not None:
        cond.update(cond_video=torch.randn(2, c, 8, 16, 16), cond_mask=torch.ones(2, 1, 8, 16, 16))
    with torch.no_grad():
        ref = unet(img, ts, encoder_hidden_states=emb).sample               # (b out h w)
        out = net(still(img, 8), ts, cond)                                   # (b c t h w)
        assert ref.shape[1] == (6 if kind == "if" else 4) and ref.abs().mean() > 0.1
        assert out.shape == (2, c, 8, 16, 16)
        assert (out - ref[:, :c, None]).abs().max() <= 1e-5
        for p in net.temporal.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        assert (net(still(img, 8), ts, cond) - ref[:, :c, None]).abs().max() > 1e-3


@pytest.mark.parametrize("kind", sorted(UNETS))
def test_only_temporal_parameters_train(kind):
    """Frozen 2D weights (state_dict keys unchanged): gradients reach the temporal modules only; unfreeze=[text]
    adds exactly the U-Net's text layers (cross-attention key/values, text projection and pooling)."""
    make, c = UNETS[kind]
    unet = make()
    keys = set(unet.state_dict())
    net = DiffusersSTUNet(unet, TemporalConfig(down_levels=[0, 1]), TEXT_DIM)
    assert {k[len("unet."):] for k in net.state_dict() if k.startswith("unet.")} == keys
    assert not any(p.requires_grad for p in net.unet.parameters())
    net(torch.randn(1, c, 4, 16, 16), torch.tensor([500.0]), {"text": text(1)}).square().mean().backward()
    assert all(p.grad is not None for p in net.temporal.parameters())
    assert all(p.grad is None for p in net.unet.parameters())

    net = DiffusersSTUNet(make(), TemporalConfig(down_levels=[0, 1], unfreeze=["text"]), TEXT_DIM)
    trained = {n for n, p in net.unet.named_parameters() if p.requires_grad}
    text_keys = ("attn2.", "norm2.", "add_k_proj", "add_v_proj", "norm_cross", "encoder_hid_proj", "add_embedding")
    assert trained and all(any(k in n for k in text_keys) for n in trained)
    assert not any("attn1." in n or ".ff." in n or "resnets" in n or n.startswith("conv_") for n in trained)
    if kind == "if":
        assert any(n.startswith("add_embedding.") for n in trained) and any("add_k_proj" in n for n in trained)


def test_blocks_the_inflation_does_not_walk_are_refused_by_name():
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("AttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "AttnUpBlock2D"), cross_attention_dim=TEXT_DIM,
                                norm_num_groups=8, attention_head_dim=4)
    with pytest.raises(ValueError, match=r"down_blocks.0 is a AttnDownBlock2D.*supported here: DownBlock2D"):
        DiffusersSTUNet(unet, TemporalConfig(down_levels=[0]), TEXT_DIM)
    with pytest.raises(ValueError, match="text encoder gives 8-d tokens, the diffusers U-Net expects 16-d"):
        DiffusersSTUNet(sd_unet(), TemporalConfig(down_levels=[0]), 8)


# ---------------------------------------------------------------------------------------------------------------------
# the schedule bridge

def test_discrete_schedule_is_exact_at_the_training_timesteps():
    ac = alphas_cumprod("squaredcos_cap_v2", 0.0001, 0.02, 1000)
    sched = DiscreteSchedule(ac)
    i = torch.tensor([0, 1, 37, 500, 998, 999])
    logsnr = sched.logsnr(i.double() / 999)
    torch.testing.assert_close(logsnr, torch.log(ac[i] / (1 - ac[i])), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sched.timestep(logsnr.float()), i.float(), rtol=0, atol=2e-3)
    t = torch.rand(64, dtype=torch.float64)                              # between the steps: a continuous inverse
    torch.testing.assert_close(sched.timestep(sched.logsnr(t)).double(), t * 999, rtol=0, atol=1e-4)
    assert sched.timestep(torch.tensor([1e3, -1e3])).tolist() == [0.0, 999.0]   # clamped to the table
    with pytest.raises(ValueError, match="zero terminal SNR"):
        DiscreteSchedule(torch.cat([ac[:-1], torch.zeros(1, dtype=ac.dtype)]))


@pytest.mark.parametrize("kind,prediction", [("if", "epsilon"), ("sd", "epsilon"), ("sd", "v_prediction")])
def test_wrapped_x0_equals_the_diffusers_scheduler_step(kind, prediction):
    """At the same (x, t), our Denoiser around the inflated STUNet (VE view, discrete timesteps bridged) gives the
    pred_original_sample of diffusers' own step on the U-Net's output: DDPMScheduler with IF's learned_range variance
    (it splits off the 3 variance channels itself), DDIMScheduler for SD with eps and v."""
    from diffusers import DDIMScheduler

    make, c = UNETS[kind]
    unet = make()
    if kind == "if":
        sched = if_scheduler()
        sched = type(sched).from_config({**sched.config, "thresholding": False, "clip_sample": False})
    else:
        sched = DDIMScheduler.from_config({**sd_scheduler(prediction).config, "clip_sample": False})
        sched.set_timesteps(50)
    ours = DiscreteSchedule(sched.alphas_cumprod)
    net = DiffusersSTUNet(unet, TemporalConfig(down_levels=[0, 1]), TEXT_DIM)
    denoise = Denoiser(net, {"epsilon": "eps", "v_prediction": "v"}[prediction], noise_cond=ours.timestep)
    emb = text(1)
    for step in (999, 500, 37, 0):
        z = torch.randn(1, c, 16, 16, generator=torch.Generator().manual_seed(step))    # VP noisy input at step
        ac = sched.alphas_cumprod[step]
        with torch.no_grad():
            out = unet(z, step, encoder_hidden_states=emb).sample
            ref = sched.step(out, step, z, generator=torch.Generator().manual_seed(0)).pred_original_sample
            s = ((1 - ac) / ac).sqrt().reshape(1)                                        # VE noise level
            x0 = denoise(still(z / ac.sqrt(), 4), s, {"text": emb})                     # (1 c 4 h w)
        tol = 1e-4 * max(1.0, float(ref.abs().max()))
        assert (x0 - ref[:, :, None]).abs().max() <= tol, step


def test_gradient_checkpointing_gives_the_same_gradients():
    """model.diffusers.grad_checkpointing recomputes the 2D layers in backward: same loss, same temporal gradients."""
    unet = if_unet()
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        net = DiffusersSTUNet(unet, TemporalConfig(down_levels=[0, 1], emb_cond=True), TEXT_DIM, grad_checkpointing=ckpt)
        with torch.no_grad():
            for p in net.temporal.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        x = torch.randn(1, 3, 4, 16, 16, generator=torch.Generator().manual_seed(1))
        net(x, torch.tensor([300.0]), {"text": text(1)}).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.temporal.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-5)


def test_dynamic_thresholding_matches_diffusers():
    """sampler.threshold: the x0 of each clip is clipped to its |x0| quantile (clamped to [1, max]) and rescaled,
    as diffusers' DDPMScheduler thresholds IF's samples; x0 within [-1, 1] is untouched."""
    from lumiere_pl.diffusion.thresholding import dynamic_threshold

    x0 = torch.randn(3, 3, 4, 8, 8) * torch.tensor([0.2, 1.3, 3.0]).view(3, 1, 1, 1, 1)   # inside, mild, saturated
    fn = dynamic_threshold(lambda x, s, cond: x, 0.95, 1.5)
    sched = if_scheduler()
    ref = sched._threshold_sample(x0)
    torch.testing.assert_close(fn(x0, None, {}), ref)
    assert torch.equal(fn(x0, None, {})[0], x0[0]) and fn(x0, None, {}).abs().max() <= 1.0
    assert dynamic_threshold(fn, 0.0, 1.5) is fn
