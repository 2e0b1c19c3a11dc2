"""Seeking to a clip's start: the frames equal those of a decode from frame 0, and only the clip's GOP is decoded."""
from __future__ import annotations

import io

import av
import numpy as np
import pytest

from lumiere_pl.data.video_io import decode, encode

GOP = 10


def video_with_keyframes(n: int = 100, gop: int = GOP, fps: int = 24, bframes: int = 2) -> bytes:
    """n frames of 64x48 H.264 (B-frames: decode order differs from presentation order), a keyframe every gop
    frames; each frame distinct (colour and moving lines)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": str(bframes), "crf": "20"}
        for i in range(n):
            x = np.zeros((48, 64, 3), np.uint8)
            x[:, :, 0] = (i * 7) % 256
            x[i % 48, :, 1] = 255
            x[:, (3 * i) % 64, 2] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(x, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def keyframes(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as c:
        return sum(p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size)


@pytest.mark.parametrize("indices", [[37, 38, 39, 45], [10, 20, 99], [95, 96, 97, 98, 99], [53, 41, 53], [1, 2]])
@pytest.mark.parametrize("bframes", [0, 2])
def test_seeking_gives_the_frames_of_a_decode_from_frame_0(indices, bframes):
    data = video_with_keyframes(bframes=bframes)
    assert keyframes(data) == 100 // GOP
    ref = decode(data, indices, seek=False)                             # (t h w c), decoded from frame 0
    assert ref.shape == (len(indices), 48, 64, 3)
    assert np.array_equal(decode(data, indices), ref)
    assert np.array_equal(decode(data, indices, short_side=24), decode(data, indices, short_side=24, seek=False))
    stats: dict = {}
    decode(data, indices, stats=stats)
    first_gop = min(indices) // GOP * GOP                               # the keyframe at or before the clip
    assert stats["decoded"] <= max(indices) - first_gop + 1 + bframes   # only from that keyframe on (+ reordering):
                                                                        # the seek served them, no decode from 0


def test_lossless_clips_seek_exactly_and_short_clips_still_fail():
    """A lossless clip written by encode() seeks too; frames beyond the end are reported as too short either way."""
    frames = np.random.default_rng(0).integers(0, 255, (30, 16, 16, 3), dtype=np.uint8)
    data = encode(frames, 8, lossless=True)
    assert np.array_equal(decode(data, [20, 21, 29]), frames[[20, 21, 29]])
    from lumiere_pl.data.video_io import VideoError
    with pytest.raises(VideoError, match="too short"):
        decode(data, [25, 30])
