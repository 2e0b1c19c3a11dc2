"""STUNet inflation: the paper's init property, temporal resolution, freezing."""
from __future__ import annotations

import pytest
import torch

from lumiere_pl.config import TemporalConfig, UNetConfig
from lumiere_pl.models.stunet import STUNet
from lumiere_pl.models.temporal import TemporalAttention, TemporalConv, TemporalDownsample, TemporalUpsample
from lumiere_pl.models.unet import UNet

TEXT_DIM = 16


def make_t2i(seed=0, **kw) -> UNet:
    torch.manual_seed(seed)
    cfg = UNetConfig(channels=16, channel_mults=[1, 2, 2], attn_levels=[1, 2], head_dim=8, **kw)
    net = UNet(cfg, TEXT_DIM)
    with torch.no_grad():   # a "pretrained" network: no zero-initialised layer left, outputs far from 0
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net


def cond(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, 5, dtype=torch.bool)
    mask[:, 3:] = False
    return {"text": torch.randn(b, 5, TEXT_DIM, generator=g), "text_mask": mask}


@pytest.mark.parametrize("down_levels,frames", [([0, 1], 8), ([0], 6), ([], 5)])
def test_inflated_stunet_equals_t2i_on_a_still_video(down_levels, frames):
    """Lumiere's init property: every temporal module starts as the identity."""
    t2i = make_t2i()
    net = STUNet(t2i, TemporalConfig(down_levels=down_levels, attn_layers=2))
    img = torch.randn(2, 3, 16, 16)
    c_noise = torch.tensor([50.0, 700.0])
    ref = t2i(img, c_noise, cond(2))                                    # (b c h w)
    assert ref.abs().mean() > 0.01
    video = img[:, :, None].expand(-1, -1, frames, -1, -1)              # every frame the same image
    out = net(video, c_noise, cond(2))                                  # (b c t h w)
    assert out.shape == video.shape
    assert (out - ref[:, :, None]).abs().max() <= 1e-5


OPTIONS = {"emb_cond": dict(emb_cond=True), "text_attn": dict(text_attn=True), "attn_levels": dict(attn_levels=[0, 1]),
           "unfreeze_text": dict(unfreeze=["text"]),
           "linear_upsample": dict(upsample="linear"), "spacetime": dict(attn_kind="spacetime", text_attn=True),
           "all": dict(emb_cond=True, text_attn=True, attn_levels=[0, 1, 2],
                                                                 unfreeze=["text"], attn_layers=2)}


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_every_temporal_option_keeps_the_init_property(option):
    """Each option of what the temporal modules see (noise embedding, text, more attention) starts as the identity."""
    t2i = make_t2i()
    net = STUNet(t2i, TemporalConfig(down_levels=[0, 1], **OPTIONS[option]))
    img, c_noise = torch.randn(2, 3, 16, 16), torch.tensor([50.0, 700.0])
    ref = t2i(img, c_noise, cond(2))
    out = net(img[:, :, None].expand(-1, -1, 8, -1, -1), c_noise, cond(2))
    assert (out - ref[:, :, None]).abs().max() <= 1e-5
    with torch.no_grad():               # and the options are live: perturbing their weights changes the output
        for p in net.temporal.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    assert (net(img[:, :, None].expand(-1, -1, 8, -1, -1), c_noise, cond(2)) - ref[:, :, None]).abs().max() > 1e-3


def test_temporal_modules_see_noise_level_and_text_when_asked():
    """With emb_cond / text_attn a trained temporal module's output depends on c_noise / the caption; without, the
    temporal modules alone cannot tell two noise levels or captions apart (only frozen T2I features carry them)."""
    from lumiere_pl.models.temporal import TemporalContext

    for opts, key, ch in ((dict(emb_cond=True), "in0_0", 16), (dict(text_attn=True), "mid_1", 32)):
        t2i = make_t2i()
        net = STUNet(t2i, TemporalConfig(down_levels=[0], **opts))
        with torch.no_grad():
            for p in net.temporal.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        x = torch.randn(2, ch, 4, 4, 4)                                 # (b c t h w)
        a = TemporalContext(emb=torch.randn(2, t2i.emb_dim), text=torch.randn(2, 5, TEXT_DIM))
        b = TemporalContext(emb=torch.randn(2, t2i.emb_dim), text=torch.randn(2, 5, TEXT_DIM))
        assert (net.temporal[key](x, a) - net.temporal[key](x, b)).abs().max() > 1e-4, opts
        plain = STUNet(make_t2i(), TemporalConfig(down_levels=[0]))
        assert torch.equal(plain.temporal[key](x, a), plain.temporal[key](x, b))


def test_attn_levels_add_temporal_attention_after_each_resblock_of_those_levels():
    t2i = make_t2i()
    net = STUNet(t2i, TemporalConfig(down_levels=[0, 1], attn_levels=[1]))
    attn_keys = sorted(k for k in net.temporal if k.endswith("_attn"))
    # level 1: one ResBlock on the way down (in2), two on the way up (out2, out3)
    assert attn_keys == ["in2_0_attn", "out2_0_attn", "out3_0_attn"]
    seen = []
    for k in attn_keys:
        net.temporal[k].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[2:]))
    net(torch.randn(1, 3, 8, 16, 16), torch.tensor([10.0]), cond(1))
    assert seen == [(4, 8, 8)] * 3                      # level 1: T/2 frames at 8x8


def test_unfreeze_text_trains_only_temporal_and_text_layers():
    t2i = make_t2i()
    net = STUNet(t2i, TemporalConfig(down_levels=[0], unfreeze=["text"]))
    trainable = {n for n, p in net.named_parameters() if p.requires_grad and n.startswith("t2i.")}
    assert {"t2i.text_proj.weight", "t2i.text_pool.weight"} <= trainable
    assert trainable and all(n.startswith(("t2i.text_", "t2i.middle_block.1.norm2", "t2i.middle_block.1.cross_attn"))
                             or ".cross_attn." in n or ".norm2." in n for n in trainable)
    assert not any(".conv" in n or "self_attn" in n for n in trainable)


def test_no_temporal_down_equals_the_per_frame_t2i_on_any_video():
    """down_levels=[] at init: every temporal module is the identity, so any video (not only a still one) goes
    through the STUNet exactly as its frames through the T2I U-Net one by one."""
    t2i = make_t2i()
    net = STUNet(t2i, TemporalConfig(down_levels=[], attn_layers=2))
    video, c_noise = torch.randn(2, 3, 5, 16, 16), torch.tensor([50.0, 700.0])
    per_frame = torch.stack([t2i(video[:, :, i], c_noise, cond(2)) for i in range(5)], dim=2)
    assert (net(video, c_noise, cond(2)) - per_frame).abs().max() <= 1e-5


def test_random_init_ablation_is_not_the_identity():
    t2i = make_t2i()
    net = STUNet(t2i, TemporalConfig(down_levels=[0], init="random"))
    img, c_noise = torch.randn(1, 3, 16, 16), torch.tensor([300.0])
    out = net(img[:, :, None].expand(-1, -1, 4, -1, -1), c_noise, cond(1))
    assert (out - t2i(img, c_noise, cond(1))[:, :, None]).abs().max() > 1e-2


def test_perturbed_temporal_weights_break_the_identity():
    t2i = make_t2i()
    net = STUNet(t2i, TemporalConfig(down_levels=[0, 1]))
    img, c_noise = torch.randn(1, 3, 16, 16), torch.tensor([300.0])
    ref = t2i(img, c_noise, cond(1))
    with torch.no_grad():
        for p in net.temporal.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    out = net(img[:, :, None].expand(-1, -1, 8, -1, -1), c_noise, cond(1))
    assert (out - ref[:, :, None]).abs().max() > 1e-3


@pytest.mark.parametrize("frames,down_levels,coarsest", [(16, [0, 1], 4), (80, [0, 1], 20), (16, [0], 8)])
def test_coarsest_level_sees_t_over_2k_frames(frames, down_levels, coarsest):
    net = STUNet(make_t2i(), TemporalConfig(down_levels=down_levels))
    seen = []
    attn = [m for m in net.temporal.modules() if isinstance(m, TemporalAttention)]
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[2])) for m in attn]
    x = torch.randn(1, 3, frames, 16, 16)
    out = net(x, torch.tensor([100.0]), cond(1))
    for h in hooks:
        h.remove()
    assert out.shape == x.shape
    assert seen == [coarsest] * len(attn) and net.coarsest_frames(frames) == coarsest


def test_indivisible_frame_count_fails_clearly():
    net = STUNet(make_t2i(), TemporalConfig(down_levels=[0, 1]))
    with pytest.raises(ValueError, match=r"10 frames cannot be halved 2 times.*multiple of 4"):
        net(torch.randn(1, 3, 10, 16, 16), torch.tensor([1.0]), cond(1))
    with pytest.raises(ValueError, match="resolution 14x14 cannot be halved 2 times"):
        net(torch.randn(1, 3, 8, 14, 14), torch.tensor([1.0]), cond(1))
    with pytest.raises(ValueError, match=r"videos \(b c t h w\)"):
        net(torch.randn(1, 3, 16, 16), torch.tensor([1.0]), cond(1))


def test_module_layout():
    """Temporal conv after every ResBlock, down/up pairs at the chosen levels, attention only in the middle."""
    t2i = make_t2i()
    net = STUNet(t2i, TemporalConfig(down_levels=[0, 1], attn_layers=3))
    kinds = [type(m) for m in net.temporal.values()]
    n_res = sum(type(m).__name__ == "ResBlock" for m in t2i.modules())
    assert kinds.count(TemporalConv) == n_res
    assert kinds.count(TemporalDownsample) == 2 and kinds.count(TemporalUpsample) == 2
    assert sum(isinstance(m, TemporalAttention) for m in net.temporal.modules()) == 3
    assert list(net.temporal.keys())[-1].startswith("out")


def test_frozen_t2i_only_temporal_trains():
    t2i = make_t2i()
    net = STUNet(t2i, TemporalConfig(down_levels=[0], conditional=True))
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("temporal.", "cond_in.")) for n in trainable)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randn(2, 3, 4, 16, 16)
    extra = {"cond_video": torch.randn(2, 3, 4, 16, 16), "cond_mask": torch.ones(2, 1, 4, 16, 16)}
    for _ in range(2):
        net(x, torch.tensor([10.0, 500.0]), {**cond(2), **extra}).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    changed = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable
    assert all(torch.equal(p, before[n]) for n, p in net.named_parameters() if n.startswith("t2i."))


def test_unfrozen_trains_everything():
    net = STUNet(make_t2i(), TemporalConfig(down_levels=[0], freeze_spatial=False))
    assert all(p.requires_grad for p in net.parameters())


def test_t2i_state_dict_keys_are_kept():
    """The spatial weights keep the T2I's own names under 't2i.', so a T2I checkpoint (or a style-tuned one)
    loads into the STUNet directly."""
    t2i = make_t2i()
    net = STUNet(t2i, TemporalConfig())
    keys = {k[4:] for k in net.state_dict() if k.startswith("t2i.")}
    assert keys == set(t2i.state_dict())


def test_conditional_input_is_identity_at_init():
    """<J, C, M> enters through a zero-initialised conv: at init the conditional STUNet ignores C and M."""
    t2i = make_t2i()
    plain = STUNet(t2i, TemporalConfig(down_levels=[0]))
    cond_net = STUNet(t2i, TemporalConfig(down_levels=[0], conditional=True))
    cond_net.temporal.load_state_dict(plain.temporal.state_dict())
    x = torch.randn(1, 3, 4, 16, 16)
    extra = {"cond_video": torch.randn(1, 3, 4, 16, 16), "cond_mask": torch.ones(1, 1, 4, 16, 16)}
    c = torch.tensor([200.0])
    torch.testing.assert_close(cond_net(x, c, {**cond(1), **extra}), plain(x, c, cond(1)))


def test_spacetime_attention_mixes_positions_across_frames_and_temporal_does_not():
    """attn_kind=spacetime: a change at one position of frame 0 reaches other positions of later frames
    (motion-compensated gathering); per-position temporal attention keeps positions apart."""
    from lumiere_pl.models.temporal import TemporalAttention, TemporalContext

    torch.manual_seed(0)
    x = torch.randn(1, 16, 4, 6, 6)                                    # (b c t h w)
    poke = x.clone()
    poke[:, :, 0, 1, 1] += 3.0 * torch.randn(16)                       # frame 0, position (1, 1)
    for spacetime in (False, True):
        attn = TemporalAttention(16, 8, max_frames=8, spacetime=spacetime)
        with torch.no_grad():
            for p in attn.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        diff = (attn(poke, TemporalContext()) - attn(x, TemporalContext())).abs()[0].sum(0)   # (t h w)
        other = diff.clone()
        other[:, 1, 1] = 0.0                                           # everywhere but the poked position
        assert (other.max() > 1e-3) == spacetime
        assert diff[1:, 1, 1].max() > 1e-3                             # later frames at the same position: both
