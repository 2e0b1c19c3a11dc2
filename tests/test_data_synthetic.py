"""The in-memory moving-shapes set: batch contract, determinism, captions match pixels, wrap-around motion."""
import numpy as np
import pytest
import torch

from lumiere_pl.data import DATAMODULES, DataConfig, build_datamodule
from lumiere_pl.data.synthetic import SHAPES, ShapeClip, all_captions, render_clip, sample_clip


def _batch(**kw):
    dm = build_datamodule(DataConfig(name="synthetic", batch_size=4, **kw))
    dm.setup("fit")
    return next(iter(dm.train_dataloader())), dm


def test_registry():
    assert "synthetic" in DATAMODULES


def test_clip_batch_contract():
    b, _ = _batch(frames=8, size=16)
    assert b["pixels"].shape == (4, 3, 8, 16, 16) and b["pixels"].dtype == torch.float32
    assert b["pixels"].min() >= -1 and b["pixels"].max() <= 1
    assert isinstance(b["caption"], list) and len(b["caption"]) == 4 and all(isinstance(c, str) for c in b["caption"])
    assert len(b["key"]) == 4 and b["label"].shape == (4,)


def test_image_batch_contract():
    b, _ = _batch(images=True, size=24)
    assert b["pixels"].shape == (4, 3, 24, 24)


def test_deterministic_and_val_fixed():
    b1, dm1 = _batch(frames=4, size=16)
    b2, dm2 = _batch(frames=4, size=16)
    assert torch.equal(b1["pixels"], b2["pixels"]) and b1["caption"] == b2["caption"]
    v1 = [b["key"] for b in dm1.val_dataloader()]
    v2 = [b["key"] for b in dm2.val_dataloader()]
    assert v1 == v2 and sum(len(k) for k in v1) == 16
    assert set(k for ks in v1 for k in ks).isdisjoint(b1["key"])   # val keys are their own split


def test_captions():
    caps = [sample_clip(0, i).caption for i in range(200)]
    assert any(c.endswith(("slowly", "quickly")) for c in caps)
    assert any(not c.endswith(("slowly", "quickly")) for c in caps)
    base = set(all_captions())
    assert all(" ".join(c.split()[:5]) in base for c in caps)


def _centroid(frame: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(frame.any(-1))
    return np.array([xs.mean(), ys.mean()])


def test_motion_matches_caption_and_wraps():
    for direction, (ux, uy) in {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}.items():
        clip = ShapeClip("square", "red", direction, "slowly", 0.5, 0.5, False)
        v = render_clip(clip, frames=6, size=40)                    # (t h w c)
        step = _centroid(v[5]) - _centroid(v[0])
        assert np.sign(step[0]) == ux and np.sign(step[1]) == uy, direction
        assert (v[0, 20, 20] == (230, 25, 25)).all()
    # a long clip wraps: the whole shape is in frame (same area up to rasterisation at sub-pixel positions) throughout
    clip = ShapeClip("circle", "blue", "right", "quickly", 0.9, 0.3, True)
    v = render_clip(clip, frames=40, size=32)
    counts = v.any(-1).sum((1, 2))
    assert counts.min() > 0.9 * counts.max()
    assert v[:, :, 0].any() and v[:, :, -1].any()                  # it crossed the right edge and came back left


def test_shapes_differ():
    masks = [render_clip(ShapeClip(s, "white", "left", "slowly", 0.5, 0.5, False), 1, 32).any(-1) for s in SHAPES]
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])


def test_epoch_length():
    dm = build_datamodule(DataConfig(name="synthetic", batch_size=4, epoch_length=7))
    dm.setup("fit")
    assert len(dm.train_dataloader()) == 7


def test_image_frames_all_serves_every_frame_of_every_clip():
    """T2I pretraining on all frames: item (clip, frame) is that frame of the clip as rendered for the STUNet."""
    from lumiere_pl.data.config import DataConfig, SyntheticConfig
    from lumiere_pl.data.synthetic import clip_of, render_clip
    from lumiere_pl.data.synthetic_module import ShapesDataset
    from lumiere_pl.utils.video import from_uint8

    syn = SyntheticConfig(num_videos=3, image_frames="all")
    data = DataConfig(images=True, frames=4, size=16, synthetic=syn)
    ds = ShapesDataset(data, "train", 3)
    assert len(ds) == 12
    video = from_uint8(render_clip(clip_of(data, 2, "train"), 4, 16, syn.shape_scale, syn.background))  # (c t h w)
    for frame in range(4):
        item = ds[2 * 4 + frame]
        assert item["key"] == f"shapes-train-000002-f{frame:03d}"
        assert torch.equal(item["pixels"], video[:, frame])
    first = ShapesDataset(DataConfig(images=True, frames=4, size=16, synthetic=SyntheticConfig(num_videos=3)),
                          "train", 3)
    assert len(first) == 3 and torch.equal(first[2]["pixels"], video[:, 0])


def test_start_across_puts_the_middle_frame_in_the_middle_and_keeps_every_other_draw():
    """start=across: the same clips as start=anywhere except the start, and at the middle motion frame the centre
    lies in [0.35, 0.65] along the motion (the other axis untouched); so frame 0's position tells the direction."""
    from lumiere_pl.data.synthetic import DIRECTIONS, SPEEDS
    frames = 16
    first_x = {"left": [], "right": []}
    for i in range(200):
        free, across = sample_clip(0, i, "test"), sample_clip(0, i, "test", across=frames)
        assert (free.shape, free.colour, free.direction, free.speed, free.caption) == \
            (across.shape, across.colour, across.direction, across.speed, across.caption)
        ux, uy = DIRECTIONS[across.direction]
        mid = (np.array([across.x0, across.y0]) + np.array([ux, uy]) * SPEEDS[across.speed] * (frames - 1) / 2) % 1
        along, other = (0, 1) if ux else (1, 0)
        assert 0.35 - 1e-9 <= mid[along] <= 0.65 + 1e-9
        assert [across.x0, across.y0][other] == [free.x0, free.y0][other]
        if across.direction in first_x and across.speed == "slowly":
            first_x[across.direction].append(across.x0)
    assert max(first_x["right"]) < 0.5 < min(first_x["left"])           # slow shapes start on the side they leave


def test_start_across_reaches_the_datamodule_and_a_bad_value_is_refused():
    from lumiere_pl.config_checks import ConfigError, load_config
    from lumiere_pl.data.synthetic import clip_of

    cfg = load_config(None, ["data.synthetic.start=across", "data.frames=8"])
    assert clip_of(cfg.data, 3) == sample_clip(0, 3, "train", across=8)
    with pytest.raises(ConfigError, match="data.synthetic.start"):
        load_config(None, ["data.synthetic.start=sideways"])
