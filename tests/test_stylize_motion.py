"""lumiere_research/stylize_motion.py: the background it tracks against, and its argument errors."""
from __future__ import annotations

import pytest

from lumiere_research import stylize_motion


def test_border_colour_is_the_background_of_a_rendered_clip():
    from lumiere_pl.data.synthetic import ShapeClip, render_clip
    from lumiere_research.shapes_motion import summarise

    paper = (235, 222, 190)
    clip = ShapeClip("circle", "white", "right", "quickly", 0.3, 0.5, False)
    video = render_clip(clip, 8, 16, background=paper)                  # (t h w 3), the shape off the border
    assert stylize_motion.border_colour(video) == [float(v) for v in paper]
    # tracked against it, the clip moves the caption's way; against black the whole paper passes for white
    assert summarise([video], [clip.caption], paper)["direction_match"] == 1.0
    assert summarise([video], [clip.caption], (0, 0, 0))["direction_match"] == 0.0


@pytest.mark.parametrize("args, message", [(["--alphas", "1.5"], "every alpha in [0, 1]"),
                                           (["--n", "0"], "--n and --steps must be >= 1")])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as err:
        stylize_motion.main(["--ckpt", "a.ckpt", "--style-t2i", "b.ckpt", *args])
    assert err.value.code == 2 and message in capsys.readouterr().err


def test_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert stylize_motion.main(["--ckpt", str(tmp_path / "none.ckpt"), "--style-t2i", "b.ckpt", "--n", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "none.ckpt" in err and len(err.splitlines()) == 1


def test_every_alpha_starts_from_the_checkpoint_s_ema_weights(tmp_path, monkeypatch, capsys, single_thread):
    """The STUNet is read once and each alpha stylizes its EMA weights afresh, not the previous alpha's result."""
    import torch

    from conftest import TINY
    from lumiere_pl.cli import apply as apply_cli
    from lumiere_pl.config import to_dict
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.lit import DiffusionModule

    def saved(name: str, seed: int, *extra: str):
        torch.manual_seed(seed)
        module = DiffusionModule(to_dict(load_config(None, TINY + [f"out_dir={tmp_path}", *extra])))
        with torch.no_grad():
            for p in module.net.parameters():                           # live weights apart from the EMA
                p.add_(0.01)
        path = tmp_path / f"{name}.ckpt"
        torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": module.export_config()}}, path)
        return module, path

    stunet, ckpt = saved("stunet", 0, "model.temporal.conditional=true")
    _, style = saved("style", 1, "model.name=t2i", "data.images=true")
    want = stunet.ema.averaged_state_dict(stunet.net)
    seen = []
    real = apply_cli.stylize_module

    def spy(module, path, alpha):
        seen.append({k: v.clone() for k, v in module.net.state_dict().items()})
        real(module, path, alpha)

    monkeypatch.setattr(apply_cli, "stylize_module", spy)
    assert stylize_motion.main(["--ckpt", str(ckpt), "--style-t2i", str(style), "--alphas", "1", "0", "--n", "1",
                                "--steps", "1"]) == 0
    assert len(seen) == 2
    for state in seen:
        assert all(torch.equal(state[k], want[k]) for k in want)
    assert len(capsys.readouterr().out.strip().splitlines()) == 4                # header, rule, one row per alpha
