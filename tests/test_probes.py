"""The motion-diagnosis probes (lumiere_research/probes.py) on clips whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lumiere_pl.config import TemporalConfig, UNetConfig
from lumiere_pl.data.synthetic import COLOURS, ShapeClip, render_clip, sample_clip
from lumiere_pl.models.stunet import STUNet
from lumiere_pl.models.unet import UNet
from lumiere_research import probes


def _clip(direction="right", speed="quickly", shape="circle", colour="red"):
    return ShapeClip(shape, colour, direction, speed, 0.3, 0.6, False)


def test_appearance_reads_colour_and_shape_of_real_frames_and_not_of_wrong_ones():
    clips = [sample_clip(0, i, "test") for i in range(60)]
    frames = [render_clip(c, 1, 32)[0] for c in clips]
    assert probes.appearance(frames, [c.caption for c in clips]) == {"colour": 1.0, "shape": 1.0, "images": 60}
    # the same frames under captions naming another shape / another colour
    other_shape = [c.caption.replace(c.shape, {"circle": "square", "square": "triangle", "triangle": "circle"}[c.shape])
                   for c in clips]
    assert probes.appearance(frames, other_shape)["shape"] == 0.0
    noisy = [f.copy() for f in frames]                 # a stray pixel and a second, smaller blob of the colour
    for f, c in zip(noisy, clips):
        colour = np.array(COLOURS[c.colour], np.uint8)
        cy, cx = (int(v) for v in np.argwhere((f == colour).all(-1)).mean(0))
        f[(cy + 16) % 32, (cx + 16) % 32] = colour
        f[(cy + 12) % 32:(cy + 15) % 32 or 32, (cx + 9) % 32] = colour
    assert probes.appearance(noisy, [c.caption for c in clips])["shape"] >= 0.95
    blank = [np.zeros_like(f) for f in frames]
    assert probes.appearance(blank, [c.caption for c in clips]) == {"colour": 0.0, "shape": 0.0, "images": 60}


def test_phases_find_the_block_artefact():
    """A shape that jumps every 4th frame (held still in between) has all its motion on the block boundaries."""
    clip = _clip()
    smooth = render_clip(clip, 16, 32)                                      # moves every frame
    blocky = np.repeat(render_clip(clip, 16, 32)[::4], 4, axis=0)           # frames 0,0,0,0,4,4,4,4,...
    ph = probes.phases([smooth, blocky], [clip.caption] * 2, block=4)
    assert len(ph["per_transition"]) == 15
    one = probes.phases([smooth], [clip.caption], block=4)
    assert one["boundary_ratio"] == pytest.approx(1.0, abs=0.1)
    held = probes.phases([blocky], [clip.caption], block=4)
    assert held["inner"] < 1e-6 and held["boundary"] > 0.2 and held["boundary_ratio"] > 1e4


def test_text_swap_scores_a_generator_that_follows_the_text_and_one_that_ignores_it():
    def clip_of(prompt, direction=None):          # "a red circle moving left [slowly]"
        words = prompt.split()
        return _clip(direction or words[4], "quickly", words[2], words[1])

    def follows(prompts, seeds):                  # renders exactly what each prompt says, quickly
        return [render_clip(clip_of(p), 16, 32) for p in prompts]

    def ignores(prompts, seeds):                  # the seed decides, not the text
        return [render_clip(clip_of(p, ["left", "right", "up", "down"][s % 4]), 16, 32) for p, s in zip(prompts, seeds)]

    clips = [sample_clip(0, i, "test") for i in range(8)]
    good = probes.text_swap(follows, clips)
    assert good["separated"] == 1.0 and good["separation"] == pytest.approx(2 * 0.08, abs=0.01)
    bad = probes.text_swap(ignores, clips)
    assert bad["separated"] == 0.0 and bad["separation"] == pytest.approx(0.0, abs=1e-9)
    pairs = probes.swap_prompts(clips[:2])
    assert pairs[0][0].endswith("moving left") or "moving left " in pairs[0][0]
    assert "moving up" in pairs[1][0] and "moving down" in pairs[1][1] and pairs[1][2] == 1


def test_per_frame_t2i_equals_a_fresh_stunet_without_temporal_downsampling():
    torch.manual_seed(0)
    t2i = UNet(UNetConfig(channels=16, channel_mults=[1, 2], attn_levels=[1], head_dim=8), 8)
    with torch.no_grad():
        for p in t2i.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    net = STUNet(t2i, TemporalConfig(down_levels=[]))
    x, c = torch.randn(2, 3, 4, 8, 8), torch.tensor([30.0, 600.0])
    cond = {"text": torch.randn(2, 3, 8), "text_mask": torch.ones(2, 3, dtype=torch.bool)}
    torch.testing.assert_close(probes.PerFrame(t2i)(x, c, cond), net(x, c, cond), atol=1e-5, rtol=0)


def test_swap_direction():
    assert probes.swap_direction("a red circle moving left slowly") == "a red circle moving right slowly"
    assert probes.swap_direction("a blue square moving down") == "a blue square moving up"


class _Oracle(torch.nn.Module):
    """A v-predicting "network" that knows the clean clips: its x0 is them, frames reordered by `order`."""

    def __init__(self, x0: torch.Tensor, order: list):
        super().__init__()
        self.x0, self.order = x0, order

    def forward(self, z, c_noise, cond):
        r = torch.tan(c_noise.double() * torch.pi / 2000).float()                 # sigma / alpha of this level
        alpha = (1 / torch.sqrt(1 + r * r)).view(-1, 1, 1, 1, 1)
        sigma = alpha * r.view(-1, 1, 1, 1, 1)
        return (alpha * z - self.x0[:, :, self.order]) / sigma                   # x0 = alpha z - sigma v


def test_x0_motion_reads_the_motion_of_the_predicted_clips():
    from lumiere_pl.config import to_dict
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.lit import DiffusionModule

    from conftest import TINY

    module = DiffusionModule(to_dict(load_config(None, TINY + ["data.size=32"])))
    n, frames = 8, module.cfg.data.frames
    x0 = probes.render(module.cfg, probes.test_clips(module.cfg, n))
    times = (0.5, 0.99)
    kept = probes.x0_motion(module.parts, _Oracle(x0, list(range(frames))), n, times, batch_size=n)
    assert kept["times"] == list(times) and kept["direction_match"] == [1.0, 1.0]
    assert kept["detected"] == [1.0, 1.0] and max(kept["jerk"]) < 0.03
    reversed_ = probes.x0_motion(module.parts, _Oracle(x0, list(range(frames))[::-1]), n, times, batch_size=n)
    assert reversed_["direction_match"] == [0.0, 0.0]                             # played backwards
    blocks = probes.x0_motion(module.parts, _Oracle(x0, [i - i % 4 for i in range(frames)]), n, times, block=4,
                              batch_size=n)
    assert min(blocks["boundary_ratio"]) > 10 and min(blocks["jerk"]) > 3 * max(kept["jerk"])   # 4-frame holds
