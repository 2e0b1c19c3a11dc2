"""lumiere_research/score_motion.py: one checkpoint scored for motion as the sweeps score it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lumiere_research import score_motion

ROOT = Path(__file__).resolve().parents[1]


def test_scores_the_samples_of_unseen_captions_beside_the_real_clips(tiny_sample_ckpt, tmp_path, single_thread):
    from lumiere_pl.checkpoint import read_model
    from lumiere_research.probes import test_clips

    out = tmp_path / "scores.json"
    assert score_motion.main(["--ckpt", str(tiny_sample_ckpt), "--n", "3", "--steps", "2", "--out", str(out),
                              "--videos-dir", str(tmp_path / "videos")]) == 0
    record = json.loads(out.read_text())
    cfg, _ = read_model(tiny_sample_ckpt)
    assert record["prompts"] == [c.caption for c in test_clips(cfg, 3)]          # the test split, first 3
    assert record["seeds"] == [0, 1, 2] and record["step"] == -1
    assert record["samples"]["clips"] == 3 and record["real"]["clips"] == 3
    assert record["real"]["direction_match"] == 1.0                              # the tracker reads the real clips
    assert record["real"]["jerk"] < 0.05
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["000000.mp4", "000001.mp4", "000002.mp4"]


def test_refuses_a_t2i_checkpoint_with_one_line(tmp_path, capsys):
    from lumiere_pl.config import to_dict
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.lit import DiffusionModule

    cfg = load_config(str(ROOT / "experiments" / "tiny" / "ssr.yaml"),
                      ["name=t2i_tiny", "model.name=t2i", "model.unet.aug_embedding=false", "data.size=16",
                       "data.images=true"])
    module = DiffusionModule(to_dict(cfg))
    ckpt = tmp_path / "t2i.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": module.export_config()}}, ckpt)
    assert score_motion.main(["--ckpt", str(ckpt)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "T2I U-Net" in err and str(ckpt) in err


@pytest.mark.parametrize("flag, name", [("--out", "figures.json"), ("--videos-dir", "videos")])
def test_an_output_that_cannot_be_written_fails_before_the_checkpoint_is_read(tmp_path, capsys, flag, name):
    (tmp_path / "afile").write_text("a file, not a folder")
    assert score_motion.main(["--ckpt", str(tmp_path / "none.ckpt"), flag, str(tmp_path / "afile" / name)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{flag} {tmp_path / 'afile' / name}: cannot write there ({tmp_path / 'afile'} is not a folder)" in err
    assert "none.ckpt" not in err and len(err.splitlines()) == 1
