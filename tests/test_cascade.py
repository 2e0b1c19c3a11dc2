"""The cascade baseline (keyframes + temporal super-resolution), its conditioning task, configs and motion metric."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lumiere_pl.cascade import TSR_SEED_OFFSET, check_pair, keyframe_condition
from lumiere_pl.conditioning import mask_for, random_video_condition
from lumiere_pl.config import ConfigError
from lumiere_pl.config_checks import load_config
from lumiere_pl.data.synthetic import DIRECTIONS, ShapeClip, render_clip
from lumiere_pl.errors import InputError
from lumiere_pl.pipeline import LumierePipeline
from lumiere_research.shapes_motion import measure, parse_caption, summarise

from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("t, k", [(16, 4), (8, 2), (12, 3)])
def test_keyframes_mask_marks_exactly_every_kth_frame(t, k):
    m = mask_for("keyframes", (3, t, 5, 7), stride=k)                      # (1 t h w)
    full = m.flatten(2).all(-1)[0]                                         # (t) frame entirely marked
    empty = (m.flatten(2) == 0).all(-1)[0]                                 # (t) frame entirely unmarked
    assert torch.nonzero(full).flatten().tolist() == list(range(0, t, k))
    assert bool((full | empty).all())                                      # whole frames only
    # the training mix draws only the configured tasks
    x0 = torch.randn(6, 3, t, 4, 4)
    c = random_video_condition(x0, torch.Generator().manual_seed(0), tasks=["keyframes"], stride=k)
    assert torch.equal(c["cond_mask"], m[None, :, :, :4, :4].expand(6, -1, -1, -1, -1))
    assert torch.equal(c["cond_video"], x0 * c["cond_mask"])


def test_default_task_mix_is_unchanged():
    """Same draws as before the task list existed: resumed runs of older configs repeat their masks."""
    x0 = torch.randn(8, 3, 4, 8, 8)
    new = random_video_condition(x0, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    picks = torch.randint(0, 3, (8,), generator=g).tolist()
    old = torch.stack([mask_for(("none", "first", "box")[i], x0.shape[1:], None, g) for i in picks])
    assert torch.equal(new["cond_mask"], old)


def _cfg(frames: int, conditional: bool, tasks=("keyframes",), stride: int = 4, name: str = "stunet"):
    """The parts of an ExperimentConfig check_pair reads."""
    return SimpleNamespace(data=SimpleNamespace(frames=frames), model=SimpleNamespace(name=name, temporal=SimpleNamespace(
        conditional=conditional, tasks=list(tasks), keyframe_stride=stride)))


def test_check_pair_rejects_mismatched_models():
    assert check_pair(_cfg(4, False), _cfg(16, True)) == (4, 16)
    with pytest.raises(ValueError, match="keyframes task"):
        check_pair(_cfg(4, False), _cfg(16, False))
    with pytest.raises(ValueError, match="keyframes task"):
        check_pair(_cfg(4, False), _cfg(16, True, tasks=("first",)))
    with pytest.raises(ValueError, match="expects 16 // 4 = 4"):
        check_pair(_cfg(8, False), _cfg(16, True))
    with pytest.raises(ValueError, match="video model"):
        check_pair(_cfg(4, False, name="t2i"), _cfg(16, True))
    with pytest.raises(ValueError, match="do not fill"):
        keyframe_condition(torch.zeros(1, 3, 3, 2, 2), 4, 16)


def test_keyframe_condition_places_keyframe_j_at_frame_jk():
    kf = torch.arange(4, dtype=torch.float32)[None, None, :, None, None] + 100 * torch.arange(2)[:, None, None, None,
                                                                                                   None]
    video, mask = keyframe_condition(kf.expand(-1, 3, -1, 2, 3), 4, 16)      # (b 3 16 h w), (b 1 16 h w)
    assert video.shape == (2, 3, 16, 2, 3) and mask.shape == (2, 1, 16, 2, 3)
    assert mask[0, 0, :, 0, 0].tolist() == [float(i % 4 == 0) for i in range(16)]
    for i in range(2):
        for t in range(16):
            want = (i * 100 + t // 4) if t % 4 == 0 else 0.0
            assert torch.all(video[i, :, t] == want), (i, t)


def _tiny_pipelines(tmp_path):
    from lumiere_pl.config import to_dict
    from lumiere_pl.lit import DiffusionModule

    def build(path, extra):
        torch.manual_seed(len(extra))
        cfg = load_config(str(ROOT / "experiments" / path), TINY + [f"out_dir={tmp_path}", "sampler.steps=2"] + extra)
        module = DiffusionModule(to_dict(cfg))
        with torch.no_grad():                  # off the zero init: the conditioning reaches the output
            for p in module.net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        return LumierePipeline(module.parts)

    return (build("archive/shapes32/cascade_keyframes.yaml", ["data.frames=4"]),
            build("archive/shapes32/cascade_tsr.yaml", ["data.frames=16"]))


def test_cascade_is_the_tsr_conditioned_on_the_keyframe_models_clips(tmp_path):
    """The cascade's clip equals the TSR sampled from seed + TSR_SEED_OFFSET with the keyframes (the keyframe model's
    T/k-frame clip from the same seed) as its known frames 0, k, 2k, ...; and each clip alone equals it in a batch."""
    kf, tsr = _tiny_pipelines(tmp_path)
    cascade = LumierePipeline(tsr.parts, keyframes=kf)
    prompts = ["a red circle moving left", "a blue square moving up"]
    out = cascade(prompts, seeds=[1, 7]).videos
    assert out.shape == (2, 3, 16, 16, 16) and torch.isfinite(out).all()
    keyframes = kf(prompts, frames=4, seeds=[1, 7]).videos                  # (2 3 4 h w)
    video, mask = keyframe_condition(keyframes, 4, 16)
    direct = tsr(prompts, seeds=[1 + TSR_SEED_OFFSET, 7 + TSR_SEED_OFFSET], video=video, mask=mask).videos
    torch.testing.assert_close(out, direct, atol=1e-5, rtol=0)
    torch.testing.assert_close(cascade(prompts[1:], seeds=[7]).videos, out[1:], atol=1e-4, rtol=0)
    unconditioned = tsr(prompts, seeds=[1 + TSR_SEED_OFFSET, 7 + TSR_SEED_OFFSET]).videos     # the task none
    assert (unconditioned - out).abs().max() > 1e-3                         # the keyframes do reach the TSR
    with pytest.raises(InputError, match="cascade: the keyframe model makes 16 frames"):
        LumierePipeline(tsr.parts, keyframes=tsr)


def test_config_errors_for_tasks_and_stride():
    with pytest.raises(ConfigError, match=r"unknown task 'keyframe'; did you mean 'keyframes'.*valid tasks"):
        load_config(None, ["model.temporal.tasks=[none,keyframe]"])
    with pytest.raises(ConfigError, match=r"model.temporal.tasks=\[\]"):
        load_config(None, ["model.temporal.tasks=[]"])
    with pytest.raises(ConfigError, match=r"data.frames=16.*keyframe_stride=3.*divisible by 3"):
        load_config(None, ["model.temporal.conditional=true", "model.temporal.tasks=[keyframes]",
                           "model.temporal.keyframe_stride=3"])
    with pytest.raises(ConfigError, match="keyframe_stride=0"):
        load_config(None, ["model.temporal.keyframe_stride=0"])
    with pytest.raises(ConfigError, match="frame_step=0"):
        load_config(None, ["data.synthetic.frame_step=0"])
    load_config(None, ["model.temporal.conditional=true", "model.temporal.tasks=[keyframes, box]"])   # valid


@pytest.mark.parametrize("family", ["shapes", "archive/shapes32"])
def test_cascade_configs_cover_the_stunets_time_span(family):
    """The keyframe model sees every k-th frame of the STUNet's motion, at 1/k of its frame rate."""
    st, kf, tsr = (load_config(str(ROOT / "experiments" / family / f"{name}.yaml"))
                   for name in ("stunet", "cascade_keyframes", "cascade_tsr"))
    k = tsr.model.temporal.keyframe_stride
    assert tsr.model.temporal.tasks == ["keyframes"] and tsr.model.temporal.conditional
    assert tsr.data.frames == st.data.frames == kf.data.frames * k and kf.data.fps * k == st.data.fps
    assert kf.data.synthetic.frame_step == k and kf.train.max_steps == tsr.train.max_steps == st.train.max_steps
    assert kf.data.frames * kf.data.batch_size == st.data.frames * st.data.batch_size    # frames per step
    clip = ShapeClip("circle", "red", "right", "quickly", 0.3, 0.6, False)
    full = render_clip(clip, st.data.frames, st.data.size)
    assert np.array_equal(render_clip(clip, kf.data.frames, kf.data.size, frame_step=k), full[::k])


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_motion_metric_recovers_direction_and_flags_shuffled_frames(direction):
    clips = [ShapeClip(shape, "green", direction, speed, x, y, False)
             for shape, speed, x, y in [("circle", "slowly", 0.9, 0.1), ("triangle", "quickly", 0.2, 0.95),
                                        ("square", "quickly", 0.5, 0.5)]]
    for clip in clips:
        video = render_clip(clip, 16, 32)                                  # (t h w 3)
        m = measure(video, clip.caption)
        assert m.direction == direction and m.detected == 1.0
        assert abs(m.jump - {"slowly": 0.03, "quickly": 0.08}[clip.speed]) < 0.01
        assert m.jerk < 0.03
        shuffled = measure(video[np.random.default_rng(0).permutation(16)], clip.caption)
        assert shuffled.jerk > 0.15 and shuffled.jump > 2 * m.jump
    s = summarise([render_clip(c, 16, 32) for c in clips], [c.caption for c in clips])
    assert s["direction_match"] == 1.0
    wrong = [c.caption.replace(direction, next(d for d in DIRECTIONS if d != direction)) for c in clips]
    assert summarise([render_clip(c, 16, 32) for c in clips], wrong)["direction_match"] == 0.0


def test_motion_metric_without_the_shape():
    video = np.zeros((8, 16, 16, 3), np.uint8)                             # no shape of the caption's colour
    m = measure(video, "a red square moving up quickly")
    assert m.direction is None and m.detected == 0.0
    assert summarise([video], ["a red square moving up"])["direction_match"] == 0.0
    with pytest.raises(ValueError, match="does not name a colour"):
        parse_caption("a dog running")
