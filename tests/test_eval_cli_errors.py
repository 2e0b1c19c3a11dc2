"""lumiere-eval on bad input: exit code 2, one line on stderr naming the input, no traceback, no output left behind
(not the JSON, not a temporary file); the traceback only under --debug or LUMIERE_DEBUG=1."""
from __future__ import annotations

import errno
import pathlib

import numpy as np
import pytest
import torch

from _eval_helpers import bikes_frames, write_video
from eval.cache import save_stats
from eval.cli import main
from eval.errors import EvalError
from eval.frechet import FeatureStats


class Smuggled:  # a class torch's weights-only unpickler refuses
    pass


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "empty").mkdir()
    (root / "corrupt").mkdir()
    for name in ("a.mp4", "b.mp4", "c.avi", "d.mp4"):
        (root / "corrupt" / name).write_bytes(b"\x00not a video" * 10)
    (root / "short").mkdir()
    write_video(root / "short" / "four_frames.mp4", bikes_frames(4))
    (root / "good").mkdir()
    frames = bikes_frames(20)
    for i in range(2):
        write_video(root / "good" / f"{i}.mp4", np.roll(frames, 2 * i, axis=0)[:16])
    save_stats(FeatureStats(400).update(np.zeros((3, 400))), {"detector": "i3d_logits", "weights": "other-i3d@sha256:0",
                                                              "frames": 8}, root / "other_protocol.npz")
    (root / "garbage.npz").write_bytes(b"PK\x03\x04 truncated")
    (root / "garbage.pt").write_bytes(b"\x80\x02 not a checkpoint")
    torch.save({"conv1a.weight": torch.zeros(1), "extra": Smuggled()}, root / "smuggled.pt")
    (root / "prompts.txt").write_text("ApplyEyeMakeup\ta person applying eye makeup\nArchery with no separator\n")
    (root / "no_splits").mkdir()
    write_video(root / "no_splits" / "v.avi", bikes_frames(16))
    return root


CASES = {
    # name: (argv with {r} = the inputs folder, text the message must hold)
    "fvd, real path missing": (["fvd", "--real", "{r}/nowhere", "--fake", "{r}/good"], "{r}/nowhere: no such file or folder"),
    "fvd, fake folder empty": (["fvd", "--real", "{r}/good", "--fake", "{r}/empty"], "{r}/empty: no videos found"),
    "is, all corrupt": (["is", "--videos", "{r}/corrupt", "--workers", "0"],
                        "{r}/corrupt: none of the 4 videos could be read (a.mp4: not decodable (Invalid data found when "
                        "processing input); b.mp4: not decodable"),
    "is, video shorter than the clip": (["is", "--videos", "{r}/short", "--workers", "0"],
                                        "{r}/short: none of the 1 videos could be read (four_frames.mp4: need frame 15"),
    "stats, path missing": (["stats", "--videos", "{r}/nowhere", "--out", "{o}/s.npz"], "{r}/nowhere: no such file"),
    "fvd, stats file of another protocol": (["fvd", "--real", "{r}/other_protocol.npz", "--fake", "{r}/good"],
                                            "{r}/other_protocol.npz: made under another protocol (crop: file None"),
    "fvd, not a stats file": (["fvd", "--real", "{r}/garbage.npz", "--fake", "{r}/good"],
                              "{r}/garbage.npz: not a statistics file"),
    "fvd, stats file missing": (["fvd", "--real", "{r}/missing.npz", "--fake", "{r}/good"],
                                "{r}/missing.npz: statistics file not found"),
    "ucf101, folder without split files": (["ucf101", "--real", "{r}/no_splits", "--fake", "{r}/good"],
                                           "{r}/no_splits: no UCF101 split files found: expected ucfTrainTestlist/"),
    "fvd, --split on a file": (["fvd", "--real", "{r}/no_splits/v.avi", "--split", "train", "--fake", "{r}/good"],
                               "{r}/no_splits/v.avi: not a folder"),
    "is, C3D checkpoint not a torch file": (["is", "--videos", "{r}/good", "--c3d-ckpt", "{r}/garbage.pt"],
                                            "{r}/garbage.pt: is not a torch checkpoint"),
    "is, C3D checkpoint with objects": (["is", "--videos", "{r}/good", "--c3d-ckpt", "{r}/smuggled.pt"],
                                        "{r}/smuggled.pt: holds Python objects other than tensors"),
    "is, C3D checkpoint missing": (["is", "--videos", "{r}/good", "--c3d-ckpt", "{r}/none.pt"],
                                   "{r}/none.pt: C3D checkpoint not found"),
    "fvd, too few frames for the I3D": (["fvd", "--real", "{r}/good", "--fake", "{r}/good", "--frames", "8"],
                                        "--frames 8: the I3D needs at least 9 frames"),
    "fvd, --out through a file (before any video is read)": (["fvd", "--real", "{r}/nowhere", "--fake", "{r}/good",
                                                              "--out", "{r}/prompts.txt/r.json"],
                                                             "--out {r}/prompts.txt/r.json: cannot write there "
                                                             "({r}/prompts.txt is not a folder)"),
    "ucf101, --report-dir through a file": (["ucf101", "--real", "{r}/no_splits", "--fake", "{r}/good",
                                             "--report-dir", "{r}/prompts.txt/report"],
                                            "--report-dir {r}/prompts.txt/report: cannot write there"),
    "fvd, negative --bootstrap (before any video is read)": (["fvd", "--real", "{r}/nowhere", "--fake", "{r}/good",
                                                              "--bootstrap", "-1"],
                                                             "--bootstrap -1: expected a number of bootstrap resamples"),
    "fvd, --n-curve through a file": (["fvd", "--real", "{r}/good", "--fake", "{r}/good",
                                       "--n-curve", "{r}/prompts.txt/n.png"], "--n-curve {r}/prompts.txt/n.png: cannot write"),
    "ucf101-prompts, malformed prompt file": (["ucf101-prompts", "--n", "10", "--prompt-file", "{r}/prompts.txt"],
                                              "{r}/prompts.txt:2: expected 'ClassName<TAB or |>prompt'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line_naming_it(case, inputs, tmp_path, capsys):
    argv, expected = CASES[case]
    out_dir = tmp_path / "out"
    argv = [a.format(r=inputs, o=out_dir) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(out_dir / ("p.jsonl" if argv[0] == "ucf101-prompts" else "result.json"))]
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lumiere-eval ")]   # not tqdm's bars, not warnings
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert expected.format(r=inputs) in lines[0], lines[0]
    assert "weights_only" not in err                       # never suggest turning the safety off
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_disk_full_leaves_neither_file_nor_temporary(tmp_path, capsys, monkeypatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    out = tmp_path / "out" / "prompts.jsonl"
    assert main(["ucf101-prompts", "--n", "10", "--out", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert not any((tmp_path / "out").iterdir())


def test_debug_shows_the_traceback(inputs, monkeypatch):
    with pytest.raises(EvalError, match="no videos found"):
        main(["fvd", "--real", str(inputs / "good"), "--fake", str(inputs / "empty"), "--debug"])
    monkeypatch.setenv("LUMIERE_DEBUG", "1")
    with pytest.raises(EvalError, match="no such file or folder"):
        main(["fvd", "--real", str(inputs / "nowhere"), "--fake", str(inputs / "good")])
