"""Clip sampling (frame-rate conversion by timestamps, seeded offsets), codec provenance, UCF101 split files,
and extraction (workers, one decode for several detectors, rank x worker partition)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from _eval_helpers import bikes_frames, make_ucf101, write_video
from eval import extract as extract_mod
from eval.detectors import Detector
from eval.errors import EvalError
from eval.extract import extract
from eval.preprocess import Preprocess
from eval.ucf101 import local_real_clip_list, split_videos, ucf101_clip_list
from eval.video_io import ClipSpec, decode, iter_items, read_clip, read_clip_list, take_clip


def _numbered(n: int, h: int = 16, w: int = 16) -> np.ndarray:
    """Frame i is filled with 8 * i: decoded exactly from a lossless file, the value names the frame."""
    return np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None] * 8, h * w * 3).reshape(n, h, w, 3)


def test_fps_resampling_picks_the_frame_on_screen_by_timestamp(tmp_path):
    path = write_video(tmp_path / "n24.mp4", _numbered(30), fps=24, lossless=True)
    clip, codec = read_clip(path, "n24.mp4", ClipSpec(frames=10, fps=10))
    picked = clip[:, 0, 0, 0] // 8
    # frame k at k/10 s: the 24 fps frame on screen then is floor(2.4 k) (eval/decode.py's rule, StyleGAN-V's:
    # the project's one re-timing rule; the nearest frame, round(2.4 k), would differ at k = 2, 4, 7, 9)
    assert picked.tolist() == [int(2.4 * k + 1e-9) for k in range(10)] == [0, 2, 4, 7, 9, 12, 14, 16, 19, 21]
    assert codec == "h264 gbrp qp=0 (lossless)"
    same, _ = read_clip(path, "n24.mp4", ClipSpec(frames=10, fps=24))            # native rate: every frame
    assert (same[:, 0, 0, 0] // 8).tolist() == list(range(10))
    with pytest.raises(ValueError, match="need"):
        read_clip(path, "n24.mp4", ClipSpec(frames=10, fps=5))                    # 1.8 s > the 1.21 s video


def test_random_offsets_are_seeded_per_video_and_valid(tmp_path):
    path = write_video(tmp_path / "n.mp4", _numbered(30), fps=8, lossless=True)
    decoded = decode(path)
    spec = ClipSpec(frames=8, offset="random", seed=3)
    firsts = {k: take_clip(decoded, spec, k)[0, 0, 0, 0] // 8 for k in ("a.mp4", "b.mp4", "c.mp4", "d.mp4")}
    assert all(0 <= f <= 22 for f in firsts.values()) and len(set(firsts.values())) > 1
    assert firsts["a.mp4"] == take_clip(decoded, spec, "a.mp4")[0, 0, 0, 0] // 8           # deterministic
    clip = take_clip(decoded, spec, "a.mp4")
    assert (np.diff(clip[:, 0, 0, 0].astype(int)) == 8).all()                              # consecutive frames
    assert take_clip(decoded, ClipSpec(frames=8), "a.mp4")[0, 0, 0, 0] == 0                 # "first"


def test_codec_and_crf_are_read_from_the_stream(tmp_path):
    frames = bikes_frames(8)
    assert decode(write_video(tmp_path / "a.mp4", frames, crf=18)).codec == "h264 yuv420p crf=18.0"
    assert decode(write_video(tmp_path / "b.avi", frames)).codec == "mpeg4 yuv420p"


@pytest.mark.parametrize("layout", ["beside", "inside"])
def test_split_files_are_read_as_split_files(tmp_path, layout):
    data, _ = make_ucf101(tmp_path, layout)
    train, protocol = split_videos(data, "train", 1)
    assert train == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c02.avi",
                     "Archery/v_Archery_g08_c01.avi", "YoYo/v_YoYo_g08_c01.avi"]
    assert protocol["ucf101_split"] == "train" and protocol["listed"] == 4
    test, _ = split_videos(data, "test", 1)
    assert len(test) == 3 and all("_g01_" in r for r in test)
    assert split_videos(data, "all", 1)[0] == train + test
    path, info = ucf101_clip_list(data, tmp_path / "clips.txt", "train", 1)
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and all(line.endswith(".avi 0") for line in lines)   # the label is not a start frame
    assert info["missing"] == 0 and info["subset"] == "all"


def test_split_subset_is_seeded_random_and_errors_name_the_file(tmp_path):
    data, lists = make_ucf101(tmp_path)
    _, info = ucf101_clip_list(data, tmp_path / "a.txt", "all", 1, max_videos=3, seed=0)
    chosen = (tmp_path / "a.txt").read_text()
    assert info["subset"] == "random 3 of 7 (seed 0)"
    assert chosen == ucf101_clip_list(data, tmp_path / "b.txt", "all", 1, max_videos=3, seed=0)[0].read_text()
    picks = {ucf101_clip_list(data, tmp_path / f"s{s}.txt", "all", 1, 3, s)[0].read_text() for s in range(6)}
    assert len(picks) > 1                                     # not simply the first three lines of the list
    with pytest.raises(EvalError, match="ucfTrainTestlist/trainlist01.txt"):
        split_videos(tmp_path / "a" / "elsewhere", "train", 1)
    (lists / "trainlist01.txt").write_text("Archery/v_Archery_g08_c01.avi 7\n")
    with pytest.raises(EvalError, match=r"trainlist01.txt:1: label 7 is not class Archery's index 3"):
        split_videos(data, "train", 1)
    (lists / "trainlist01.txt").write_text("v_Archery_g08_c01.avi 3\n")
    with pytest.raises(EvalError, match=r"trainlist01.txt:1: expected 'ClassName/"):
        split_videos(data, "train", 1)


class MeanDetector(Detector):
    """A cheap detector: per-channel mean of each frame, (b, 3 * t)."""

    name, feature_dim = "mean", 3 * 8

    def __init__(self, preprocess: Preprocess):
        super().__init__("cpu", channels_last=False)
        self.preprocess = preprocess

    def _net(self, x):
        return x.mean((3, 4)).flatten(1)                     # (b, 3, t) -> (b, 3 t)

    def protocol(self):
        return {"detector": self.name, **self.preprocess.protocol()}


def test_workers_decode_once_and_keep_source_order(tmp_path, monkeypatch):
    frames = bikes_frames(40)
    for i in range(5):
        write_video(tmp_path / f"{i:02d}.mp4", np.roll(frames, 3 * i, axis=0)[:12])
    (tmp_path / "03.mp4").write_bytes(b"not a video")
    detectors = {"a": MeanDetector(Preprocess(32, "tf1")), "b": MeanDetector(Preprocess(24, "half-pixel", "center"))}
    calls = []
    read = extract_mod.read_clip
    monkeypatch.setattr(extract_mod, "read_clip", lambda *a, **k: calls.append(a[1]) or read(*a, **k))
    with pytest.warns(UserWarning, match=r"1 of 5 videos skipped \(03.mp4: "):
        inline = extract(tmp_path, detectors, ClipSpec(frames=8), batch_size=2, workers=0, progress=False)
    assert sorted(calls) == [f"{i:02d}.mp4" for i in range(5)]           # one decode per video for both detectors
    assert inline.keys == ["00.mp4", "01.mp4", "02.mp4", "04.mp4"] and len(inline.skipped) == 1
    assert inline.skipped[0].startswith("03.mp4: ") and inline.codecs == {"h264 yuv420p crf=10.0": 4}
    with pytest.warns(UserWarning):
        pooled = extract(tmp_path, detectors, ClipSpec(frames=8), batch_size=3, workers=2, progress=False)
    assert pooled.keys == inline.keys
    for name in detectors:
        np.testing.assert_array_equal(pooled.features[name], inline.features[name])
    direct = detectors["b"](np.stack([read_clip(tmp_path / "02.mp4", "02.mp4", ClipSpec(frames=8))[0]]))
    torch.testing.assert_close(torch.from_numpy(inline.features["b"][2:3]), direct)


def test_rank_and_worker_shares_partition_the_source(tmp_path):
    for i in range(11):
        np.save(tmp_path / f"{i:02d}.npy", np.zeros((2, 4, 4, 3), np.uint8))
    world, workers = 2, 3
    shares = [[i for i, *_ in iter_items(tmp_path, r * workers + w, world * workers)]
              for r in range(world) for w in range(workers)]
    flat = sorted(i for share in shares for i in share)
    assert flat == list(range(11))


def test_local_stand_in_clips_at_a_frame_rate_are_disjoint_and_readable(tmp_path):
    spec = ClipSpec(frames=16, fps=8)                              # 2 s windows of 25-30 fps videos
    clips = read_clip_list(local_real_clip_list(tmp_path / "local.txt", spec))
    bikes = [start for path, start in clips if path.name == "bikes.mp4"]
    assert bikes == [0, 50, 100, 150, 200]                          # 10 s of 25 fps: five 2 s windows
    for path, start in clips:
        assert read_clip(path, path.name, spec, "", start)[0].shape[0] == 16
