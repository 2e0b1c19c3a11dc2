"""lumiere_research/apply_motion.py: text-to-video and image-to-video of a conditional STUNet scored beside the real
clips, and its refusals."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lumiere_research import apply_motion

ROOT = Path(__file__).resolve().parents[1]


def _ckpt(tmp_path: Path, conditional: bool) -> Path:
    from lumiere_pl.config import to_dict
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.lit import DiffusionModule

    torch.manual_seed(0)
    cfg = load_config(str(ROOT / "experiments" / "tiny" / "ssr.yaml"),
                      ["name=cond_tiny", "model.name=stunet", "model.unet.aug_embedding=false", "data.size=16",
                       f"model.temporal.conditional={str(conditional).lower()}"])
    module = DiffusionModule(to_dict(cfg))
    path = tmp_path / f"cond_{conditional}.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": module.export_config()}}, path)
    return path


def test_rows_for_each_way_of_sampling_and_the_real_clips(tmp_path, capsys, single_thread):
    assert apply_motion.main(["--ckpt", str(_ckpt(tmp_path, True)), "--n", "3", "--steps", "2"]) == 0
    rows = {line.split(" | ")[0].strip("| "): line for line in capsys.readouterr().out.splitlines()}
    assert {"text-to-video", "image-to-video", "image-to-video, opposite word", "real clips"} <= set(rows)
    assert rows["real clips"].startswith("| real clips | 100% |")              # the tracker reads the real clips
    assert rows["real clips"].endswith("| 0.000 |")                            # their first frame is the image


def test_refuses_an_unconditional_stunet_with_one_line(tmp_path, capsys):
    assert apply_motion.main(["--ckpt", str(_ckpt(tmp_path, False)), "--n", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "expected a conditional STUNet" in err and len(err.splitlines()) == 1


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as err:
        apply_motion.main(["--ckpt", "a.ckpt", "--n", "0"])
    assert err.value.code == 2 and "--n, --steps and --sheet-prompts must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:                       # before the checkpoint is read or anything sampled
        apply_motion.main(["--ckpt", "missing.ckpt", "--sheet", "sheet.jpg"])
    assert err.value.code == 2 and "--sheet sheet.jpg: expected a .png file name" in capsys.readouterr().err


@pytest.mark.parametrize("flag, name", [("--videos-dir", "v"), ("--sheet", "s.png")])
def test_an_output_that_cannot_be_written_fails_before_the_checkpoint_is_read(tmp_path, capsys, flag, name):
    (tmp_path / "afile").write_text("a file, not a folder")
    assert apply_motion.main(["--ckpt", str(tmp_path / "none.ckpt"),
                              flag, str(tmp_path / "afile" / name)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{flag} {tmp_path / 'afile' / name}: cannot write there ({tmp_path / 'afile'} is not a folder)" in err
    assert "none.ckpt" not in err
    assert len(err.splitlines()) == 1


def test_videos_and_sheet_are_the_scored_samples(tmp_path, capsys, single_thread):
    """--videos-dir holds every sample, bit-exact (the real clips' MP4s decode to the rendered clips); --sheet has one
    row per way of sampling for each of the first prompts, about 8 frames a row, at 4x."""
    import numpy as np
    from PIL import Image

    from lumiere_pl.checkpoint import read_model
    from lumiere_pl.data.video_io import decode
    from lumiere_pl.utils.video import to_uint8
    from lumiere_research import probes

    ckpt, out = _ckpt(tmp_path, True), tmp_path / "out"
    assert apply_motion.main(["--ckpt", str(ckpt), "--n", "3", "--steps", "2", "--videos-dir",
                              str(out / "videos"), "--sheet", str(out / "sheet.png"), "--sheet-prompts", "2"]) == 0
    ways = ["image_to_video", "image_to_video_opposite_word", "real_clips", "text_to_video"]
    assert sorted(p.name for p in (out / "videos").iterdir()) == ways
    assert all(len(list((out / "videos" / w).glob("*.mp4"))) == 3 for w in ways)
    cfg, _ = read_model(ckpt)
    real = probes.render(cfg, probes.test_clips(cfg, 3))
    for i in range(3):
        got = decode((out / "videos" / "real_clips" / f"{i:06d}.mp4").read_bytes())
        assert np.array_equal(got, to_uint8(real[i]))
    t, h, w = real.shape[2:]
    sheet = np.asarray(Image.open(out / "sheet.png"))
    rows, cols = 2 * 4, len(range(0, t, max(1, t // 8)))
    assert sheet.shape == (rows * (4 * h + 2) - 2, cols * (4 * w + 2) - 2, 3)
    first_real = to_uint8(real[0])[0].repeat(4, 0).repeat(4, 1)               # row 1, frame 0: prompt 0's real clip
    assert np.array_equal(sheet[:4 * h, :4 * w], first_real)
    assert "rows 5-8" in capsys.readouterr().out
