"""The cascade baseline (keyframes + temporal super-resolution), its conditioning task, configs and motion metric."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lumiere_pl.cascade import TSR_SEED_OFFSET, keyframe_condition, sample_cascade
from lumiere_pl.config import ConfigError
from lumiere_pl.config_checks import load_config
from lumiere_pl.data.shapes_motion import measure, parse_caption, summarise
from lumiere_pl.data.synthetic import DIRECTIONS, ShapeClip, render_clip
from lumiere_pl.lit.conditioning import mask_for, random_video_condition

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


class _Stub:
    """A module stand-in with the attributes sample_cascade reads and a generate() one can reason about."""

    def __init__(self, frames: int, conditional: bool, fill=None, tasks=("keyframes",), stride: int = 4):
        self.cfg = SimpleNamespace(data=SimpleNamespace(frames=frames),
                                   model=SimpleNamespace(temporal=SimpleNamespace(
                                       conditional=conditional, tasks=list(tasks), keyframe_stride=stride)))
        self.is_video, self.device, self.fill, self.calls = True, torch.device("cpu"), fill, []

    def generate(self, prompts, frames=None, seeds=None, extra_cond=None, **kwargs):
        self.calls.append({"frames": frames, "seeds": list(seeds), "extra_cond": extra_cond})
        if self.fill is not None:                     # keyframe model: frame j of clip i is the constant i*100 + j
            v = torch.arange(frames, dtype=torch.float32)[None, :] + 100 * torch.arange(len(prompts))[:, None]
            return v[:, None, :, None, None].expand(-1, 3, -1, 2, 3).clone()       # (b 3 n h w)
        return extra_cond["cond_video"] - 1.0         # TSR: its conditioning video, shifted (b 3 T h w)


def test_sample_cascade_places_keyframes_at_every_kth_frame():
    kf, tsr = _Stub(4, False, fill=True), _Stub(16, True)
    out = sample_cascade(kf, tsr, ["a", "b"], seeds=[5, 9])
    assert out.shape == (2, 3, 16, 2, 3)
    assert kf.calls[0]["frames"] == 4 and tsr.calls[0]["frames"] == 16
    assert tsr.calls[0]["seeds"] == [5 + TSR_SEED_OFFSET, 9 + TSR_SEED_OFFSET]
    mask = tsr.calls[0]["extra_cond"]["cond_mask"]                          # (b 1 T h w)
    assert mask[0, 0, :, 0, 0].tolist() == [float(i % 4 == 0) for i in range(16)]
    for i in range(2):
        for t in range(16):
            want = (i * 100 + t // 4 - 1.0) if t % 4 == 0 else -1.0       # keyframe t/4 of clip i, else C = 0
            assert torch.all(out[i, :, t] == want), (i, t)
    pasted = sample_cascade(kf, tsr, ["a", "b"], seeds=[5, 9], paste_keyframes=True)
    assert torch.all(pasted[1, :, 8] == 102.0) and torch.all(pasted[1, :, 9] == -1.0)


def test_sample_cascade_rejects_mismatched_models():
    with pytest.raises(ValueError, match="keyframes task"):
        sample_cascade(_Stub(4, False, fill=True), _Stub(16, False), ["a"])
    with pytest.raises(ValueError, match="expects 16 // 4 = 4"):
        sample_cascade(_Stub(8, False, fill=True), _Stub(16, True), ["a"])
    with pytest.raises(ValueError, match="do not fill"):
        keyframe_condition(torch.zeros(1, 3, 3, 2, 2), 4, 16)


def test_sample_cascade_with_real_tiny_modules(tmp_path):
    """Real tiny STUNets through the real samplers: shapes, and the keyframes reach the TSR at frames 0, k, ..."""
    from lumiere_pl.config import to_dict
    from lumiere_pl.lit import module_class

    def build(path, extra):
        cfg = load_config(str(ROOT / "experiments" / path), TINY + [f"out_dir={tmp_path}", "sampler.steps=2"] + extra)
        return module_class(cfg.model.name)(to_dict(cfg))

    kf = build("cascade_keyframes_shapes32.yaml", ["data.frames=4"])
    tsr = build("cascade_tsr_shapes32.yaml", ["data.frames=16"])
    seen = {}
    generate = tsr.generate
    tsr.generate = lambda *a, **kw: seen.update(kw) or generate(*a, **kw)
    out = sample_cascade(kf, tsr, ["a red circle moving left"], seed=1)
    assert out.shape == (1, 3, 16, 16, 16) and torch.isfinite(out).all()
    keyframes = kf.generate(["a red circle moving left"], frames=4, seeds=[1])
    cond = seen["extra_cond"]["cond_video"]                                 # (1 3 16 h w)
    assert torch.equal(cond[:, :, [0, 4, 8, 12]], keyframes)
    assert cond[:, :, [t for t in range(16) if t % 4]].abs().sum() == 0
    # without <C, M> a conditional model samples the task none (validation previews): no KeyError, M = 0
    assert torch.isfinite(generate(["a blue square moving up"])).all()


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


@pytest.mark.parametrize("family", ["shapes", "shapes32"])
def test_cascade_configs_cover_the_stunets_time_span(family):
    """The keyframe model sees every k-th frame of the STUNet's motion, at 1/k of its frame rate."""
    st = load_config(str(ROOT / "experiments" / f"stunet_{family}.yaml"))
    kf = load_config(str(ROOT / "experiments" / f"cascade_keyframes_{family}.yaml"))
    tsr = load_config(str(ROOT / "experiments" / f"cascade_tsr_{family}.yaml"))
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
