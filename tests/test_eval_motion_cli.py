"""`lumiere-eval motion` end to end: one set or real against generated (at one frame rate), from folders and shards;
the table, the JSON (summaries with intervals and N, per-video values, the flow Frechet distance, the card); bad
input is one line and exit 2."""
from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest

from _eval_helpers import bikes_frames, write_video

pytest.importorskip("cv2", reason="needs opencv-python-headless (the eval extra)")

from eval.cli import main   # noqa: E402


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """real: 4 videos at 25 fps (2 s of bikes.mp4); fake: 4 at 8 fps (the same motion, every third frame); still: 3
    still videos at 8 fps, also as a WebDataset shard."""
    root = tmp_path_factory.mktemp("motion")
    frames = bikes_frames(250, 48, 64)
    for name in ("real", "fake", "still", "npy"):
        (root / name).mkdir()
    for i in range(4):
        clip = frames[40 + 50 * i:40 + 50 * i + 50]
        write_video(root / "real" / f"r{i}.mp4", clip, fps=25)
        write_video(root / "fake" / f"{i:06d}.mp4", clip[::3], fps=8)
    for i in range(3):
        write_video(root / "still" / f"s{i}.mp4", np.repeat(frames[60 * i:60 * i + 1], 16, axis=0), fps=8)
    for i in range(2):
        np.save(root / "npy" / f"c{i}.npy", frames[100 + 20 * i:100 + 20 * i + 16])      # no timestamps
    with tarfile.open(root / "still-000000.tar", "w") as tar:
        for p in sorted((root / "still").iterdir()):
            tar.add(p, arcname=f"{p.stem}.mp4")
    return root


def _run(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_real_against_generated_at_one_frame_rate(sets, tmp_path, capsys):
    out = tmp_path / "m.json"
    code, stdout, err = _run(["motion", "--real", str(sets / "real"), "--fake", str(sets / "fake"), "--workers", "1",
                              "--bootstrap", "50", "--out", str(out)], capsys)
    assert code == 0, err
    assert "lumiere-eval: frame rate: frame rates differ (real 25 fps, generated 8 fps): both resampled to 8 fps" in err
    assert "| dynamic degree (VBench rule, DIS flow, not RAFT) |" in stdout and "flow Frechet distance" in stdout
    result = json.loads(out.read_text())
    for name in ("real", "fake"):
        s = result["sets"][name]
        assert s["n"] == 4 and len(s["per_video"]) == 4 and "features" not in s["per_video"][0]
        for m in s["summary"].values():
            assert m["low"] <= m["value"] <= m["high"] and m["n"] == 4
        assert s["summary"]["dynamic_degree"]["value"] == 1.0          # cyclists and a panning camera
    assert all(v["fps"] == 8.0 and v["frames"] == 16 for v in result["sets"]["real"]["per_video"])
    # the same motion at the same rate: magnitudes agree (the real set is resampled, not the whole 2 s at 25 fps)
    mags = [result["sets"][n]["summary"]["magnitude"]["value"] for n in ("real", "fake")]
    assert mags[0] == pytest.approx(mags[1], rel=0.15)
    f = result["flow_frechet"]
    assert f["n_real"] == f["n_fake"] == 4 and 0 <= f["low"] <= f["value"] <= f["high"]
    assert any("flow Frechet distance: 4 real clips <= 68" in w for w in result["warnings"])
    assert "lumiere-eval: warning: flow Frechet distance: 4 real clips" in err
    card = result["card"]
    assert card["metric"] == "motion" and card["flow"] == "opencv-dis" and card["fps"] == 8.0
    assert card["n_real"] == card["n_fake"] == 4 and card["flow_short_side"] == 128
    assert [f["name"] for f in result["figures"]][-1] == "flow Frechet distance"


def test_one_set_from_a_shard_is_static(sets, tmp_path, capsys):
    out = tmp_path / "s.json"
    code, stdout, err = _run(["motion", "--videos", str(sets / "still-000000.tar"), "--workers", "0",
                              "--out", str(out)], capsys)
    assert code == 0, err
    result = json.loads(out.read_text())
    summary = result["sets"]["videos"]["summary"]
    assert summary["dynamic_degree"] == {**summary["dynamic_degree"], "value": 0.0, "low": 0.0, "high": 0.0, "n": 3}
    assert summary["warping_error"]["value"] < 1e-5 and summary["magnitude"]["value"] < 1e-3
    assert "flow_frechet" not in result and result["card"]["n_videos"] == 3 and "frame rate" not in err


def test_no_intervals_with_zero_resamples(sets, tmp_path, capsys):
    code, stdout, err = _run(["motion", "--real", str(sets / "fake"), "--fake", str(sets / "fake"), "--workers", "0",
                              "--bootstrap", "0", "--bootstrap-mean", "0", "--out", str(tmp_path / "z.json")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "z.json").read_text())
    assert result["sets"]["fake"]["summary"]["magnitude"]["low"] is None and result["flow_frechet"]["low"] is None
    assert "no intervals" in stdout and "; no interval)" in stdout
    assert result["flow_frechet"]["value"] == pytest.approx(0, abs=1e-6)          # one set against itself


def test_npy_clips_take_their_rate_from_npy_fps(sets, tmp_path, capsys):
    code, _, err = _run(["motion", "--videos", str(sets / "npy"), "--npy-fps", "8", "--workers", "0",
                         "--out", str(tmp_path / "n.json")], capsys)
    assert code == 0, err
    per_video = json.loads((tmp_path / "n.json").read_text())["sets"]["videos"]["per_video"]
    assert [v["fps"] for v in per_video] == [8.0, 8.0] and per_video[0]["key"] == "c0.npy"


@pytest.mark.parametrize("argv, expected", [
    (["--videos", "{r}/still", "--frames", "3"], "--frames 3: the motion metrics need at least 5 frames"),
    (["--videos", "{r}/still", "--real", "{r}/real"], "give --videos PATH (one set) or --real PATH --fake PATH"),
    (["--real", "{r}/real"], "expected --videos PATH (one set) or both --real PATH and --fake PATH"),
    (["--videos", "{r}/nowhere"], "{r}/nowhere: no such file or folder"),
    (["--videos", "{r}/still", "--frames", "40"], "{r}/still: none of the 3 videos could be read (s0.mp4: need frame 39"),
    (["--videos", "{r}/still", "--flow-size", "4"], "--flow-size 4: expected a short side of at least 12 pixels"),
    (["--videos", "{r}/still", "--bootstrap-mean", "-1"], "--bootstrap-mean -1: expected a number of bootstrap"),
    (["--videos", "{r}/npy"], "{r}/npy: none of the 2 videos could be read (c0.npy: no frame rate (an .npy clip has "
                              "no timestamps): pass --npy-fps F"),
])
def test_bad_input_is_one_line_and_exit_2(sets, argv, expected, tmp_path, capsys):
    out = tmp_path / "out" / "m.json"
    code, _, err = _run(["motion", *[a.format(r=sets) for a in argv], "--workers", "0", "--out", str(out)], capsys)
    lines = [line for line in err.splitlines() if line.startswith("lumiere-eval ")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert expected.format(r=sets) in lines[0], lines[0]
    assert not out.exists()
