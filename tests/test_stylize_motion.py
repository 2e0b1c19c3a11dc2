"""experiments/stylize_motion.py: the background it tracks against, and its argument errors."""
from __future__ import annotations

import pytest

from _scripts import load_script


def _script():
    return load_script("stylize_motion")


def test_border_colour_is_the_background_of_a_rendered_clip():
    from lumiere_pl.data.shapes_motion import summarise
    from lumiere_pl.data.synthetic import ShapeClip, render_clip

    paper = (235, 222, 190)
    clip = ShapeClip("circle", "white", "right", "quickly", 0.3, 0.5, False)
    video = render_clip(clip, 8, 16, background=paper)                  # (t h w 3), the shape off the border
    assert _script().border_colour(video) == [float(v) for v in paper]
    # tracked against it, the clip moves the caption's way; against black the whole paper passes for white
    assert summarise([video], [clip.caption], paper)["direction_match"] == 1.0
    assert summarise([video], [clip.caption], (0, 0, 0))["direction_match"] == 0.0


@pytest.mark.parametrize("args, message", [(["--alphas", "1.5"], "every alpha in [0, 1]"),
                                           (["--n", "0"], "--n and --steps must be >= 1")])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as err:
        _script().main(["--ckpt", "a.ckpt", "--style-t2i", "b.ckpt", *args])
    assert err.value.code == 2 and message in capsys.readouterr().err


def test_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert _script().main(["--ckpt", str(tmp_path / "none.ckpt"), "--style-t2i", "b.ckpt", "--n", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "none.ckpt" in err and len(err.splitlines()) == 1
