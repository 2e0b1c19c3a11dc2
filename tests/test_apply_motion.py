"""experiments/apply_motion.py: text-to-video and image-to-video of a conditional STUNet scored beside the real
clips, and its refusals."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from _scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


def _ckpt(tmp_path: Path, conditional: bool) -> Path:
    from lumiere_pl.config import to_dict
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.lit import DiffusionModule

    torch.manual_seed(0)
    cfg = load_config(str(ROOT / "experiments" / "ssr_tiny.yaml"),
                      ["name=cond_tiny", "model.name=stunet", "model.unet.aug_embedding=false", "data.size=16",
                       f"model.temporal.conditional={str(conditional).lower()}"])
    module = DiffusionModule(to_dict(cfg))
    path = tmp_path / f"cond_{conditional}.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": module.export_config()}}, path)
    return path


def test_rows_for_each_way_of_sampling_and_the_real_clips(tmp_path, capsys, single_thread):
    assert load_script("apply_motion").main(["--ckpt", str(_ckpt(tmp_path, True)), "--n", "3", "--steps", "2"]) == 0
    rows = {line.split(" | ")[0].strip("| "): line for line in capsys.readouterr().out.splitlines()}
    assert {"text-to-video", "image-to-video", "image-to-video, opposite word", "real clips"} <= set(rows)
    assert rows["real clips"].startswith("| real clips | 100% |")              # the tracker reads the real clips
    assert rows["real clips"].endswith("| 0.000 |")                            # their first frame is the image


def test_refuses_an_unconditional_stunet_with_one_line(tmp_path, capsys):
    assert load_script("apply_motion").main(["--ckpt", str(_ckpt(tmp_path, False)), "--n", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "expected a conditional STUNet" in err and len(err.splitlines()) == 1


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as err:
        load_script("apply_motion").main(["--ckpt", "a.ckpt", "--n", "0"])
    assert err.value.code == 2 and "--n and --steps must be >= 1" in capsys.readouterr().err
