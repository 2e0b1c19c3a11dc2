"""One video decoder (eval/decode.py) for training data, sampling inputs and evaluation: one re-timing rule (the frame
on screen at t_start + k / fps, by timestamp), one list of extensions, and its limits checked before allocating."""
from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import pytest

import eval.decode as dec
import eval.video_io as eval_io
import lumiere_pl.data.video_io as data_io
from eval.limits import limits
from lumiere_pl.config import DataConfig
from lumiere_pl.data.health import SkipCounter
from lumiere_pl.data.sample_decode import decode_sample

from _hostile import huge_gif

PTS_MS = [0, 40, 70, 130, 160, 200, 260, 280, 330, 400, 430, 470, 520, 560, 610, 650, 700, 720, 790, 830]


def numbered(n: int, side: int = 16) -> np.ndarray:
    """Frame i is filled with 6 * i: decoded exactly from a lossless file, the value names the frame."""
    return np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None] * 6, side * side * 3).reshape(n, side, side, 3)


def variable_rate(pts_ms=PTS_MS) -> bytes:
    """A lossless MP4 whose frames are shown at irregular times (pts in ms): no frame rate describes it."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264rgb", rate=25)
        s.width = s.height = 16
        s.pix_fmt, s.options = "rgb24", {"qp": "0", "bf": "0"}
        s.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(pts_ms):
            f = av.VideoFrame.from_ndarray(numbered(len(pts_ms))[i], format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def ids(frames: np.ndarray) -> list:
    return (frames[:, 0, 0, 0] // 6).tolist()


@pytest.mark.parametrize("src_fps, fps", [(24, 10), (24, 8), (30, 8), (16, 8), (8, 16), (25, 25)])
def test_training_sampling_and_eval_take_the_same_frames(tmp_path, src_fps, fps):
    """A constant-rate video: the frames a training clip, lumiere-eval's clip and the nominal index rule pick are
    the frames on screen at k / fps (floor(k x src / fps): 30 -> 8 fps gives 0, 3, 7, 11, not the nearest 0, 4, ...)."""
    data = data_io.encode(numbered(40), src_fps, lossless=True)
    path = tmp_path / "v.mp4"
    path.write_bytes(data)
    want = [int(k * src_fps / fps + 1e-9) for k in range(8)]
    eval_clip, _ = eval_io.read_clip(path, "v.mp4", eval_io.ClipSpec(frames=8, fps=fps))
    train_clip, _ = dec.clip_at(data, 0, 8, fps)
    assert ids(eval_clip) == ids(train_clip) == want == data_io.resampled_indices(40, src_fps, fps, 8, 0)
    times = dec.decode_all(data).times
    assert dec.retimed(0, 8, fps, times).tolist() == want
    for start in (3, 10):                                  # seeking to a later start gives the same frames
        assert ids(dec.clip_at(data, start, 8, fps)[0]) == ids(dec.clip_at(data, start, 8, fps, seek=False)[0]) \
            == dec.retimed(start, 8, fps, times).tolist()


def test_a_variable_rate_video_is_retimed_by_its_timestamps():
    """Index arithmetic from the declared (average) rate would pick other frames; every reader follows the pts."""
    data = variable_rate()
    times = np.asarray(PTS_MS) / 1000
    assert np.allclose(dec.decode_all(data).times, times)
    for start, n in ((0, 8), (5, 6)):
        want = dec.shown(times, times[start] + np.arange(n) / 10).tolist()
        assert ids(dec.clip_at(data, start, n, 10.0)[0]) == want
        assert ids(dec.clip_at(data, start, n, 10.0, seek=False)[0]) == want
    info = dec.probe(data)
    by_index = data_io.resampled_indices(info.frames, info.fps, 10.0, 8, 0)        # what a rate-based rule gives
    assert ids(dec.clip_at(data, 0, 8, 10.0)[0]) == [0, 2, 5, 7, 9, 11, 13, 16] != by_index


def test_training_samples_use_the_rule():
    """decode_sample (WebDataset training and validation) takes a clip by the same rule: the centred validation
    clip of a 30 fps video at data.fps 8 is frames start + floor(3.75 k)."""
    data = data_io.encode(numbered(40, 32), 30, lossless=True)
    cfg = DataConfig(name="webdataset", frames=8, size=32, fps=8.0)
    ex = decode_sample({"__key__": "k", "__url__": "u", "mp4": data, "txt": b"a caption"}, cfg, None, SkipCounter())
    got = (((ex["pixels"][0, :, 0, 0] + 1) * 127.5).round() // 6).int().tolist()          # (c t h w)
    last = dec.last_start(dec.nominal_times(40, 30.0), 8.0, 8)
    assert got == [last // 2 + int(k * 3.75 + 1e-9) for k in range(8)]


def test_one_list_of_extensions():
    assert data_io.VIDEO_EXTS is dec.VIDEO_EXTS
    assert eval_io.CLIP_EXTS == tuple(f".{e}" for e in dec.VIDEO_EXTS) + (".npy",)
    from lumiere_pl.data import sample_decode, tar_reader
    assert sample_decode.VIDEO_EXTS is tar_reader.VIDEO_EXTS is dec.VIDEO_EXTS


def test_declared_frame_size_is_refused_before_decoding():
    gif = huge_gif()
    for read in (dec.probe, lambda d: dec.clip_at(d, 0, 2, 8.0), dec.decode_all, lambda d: dec.frames_at(d, [0])):
        with pytest.raises(dec.VideoError, match=r"declares 16000x16000 frames .* over the limit of 9,437,184 pixels "
                                                 r"\(LUMIERE_LIMIT_FRAME_PIXELS"):
            read(gif)
    assert dec.probe(gif, limits(frame_pixels=16000 ** 2)).width == 16000        # raised by config or environment


def test_decoded_bytes_are_bounded():
    data = data_io.encode(numbered(40, 128), 8, lossless=True)                    # 40 x 48 KiB decoded
    with pytest.raises(dec.VideoError, match=r"take more than the limit of 1 MiB"):
        dec.decode_all(data, lim=limits(clip_mib=1))
    assert len(dec.decode_all(data, max_frames=16, lim=limits(clip_mib=1)).frames) == 16
    assert dec.clip_at(data, 20, 8, 4.0, lim=limits(clip_mib=1))[0].shape == (8, 128, 128, 3)   # only its frames
