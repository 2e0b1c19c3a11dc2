"""FVD as the CLI prints it: one frame rate for both sets (issue 26), every warning on the terminal and in the JSON,
the bootstrap interval and N, the protocol card, FVD against N, and compare-results (refused on differing cards)."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json

import pytest

from _eval_helpers import bikes_frames, write_video
from eval.cli import main
from eval.i3d import default_weights_path


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Real: 3 videos at 25 fps, 50 frames (2 s); generated: 3 videos at 8 fps, 16 frames (2 s), as lumiere-sample
    writes them. Without resampling, FVD would set 0.6 s of real motion against 2 s of generated motion."""
    root = tmp_path_factory.mktemp("rates")
    frames = bikes_frames(220, 48, 64)
    (root / "real").mkdir()
    (root / "fake").mkdir()
    for i in range(3):
        write_video(root / "real" / f"r{i}.mp4", frames[50 * i:50 * i + 50], fps=25)
    for i in range(3):
        write_video(root / "fake" / f"{i:06d}.mp4", frames[5 + 50 * i:5 + 50 * i + 48:3], fps=8)
    return root


@pytest.fixture(scope="module")
def runs(sets, tmp_path_factory):
    """fvd under the default rule (16 frames), and at 10 frames with --fps 25 (twice: bootstrap seeds 0 and 1, the
    second with the real statistics from the cache): (exit code, stderr, result) per run."""
    out, cache = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("cache")
    common = ["--real", str(sets / "real"), "--fake", str(sets / "fake"), "--workers", "0", "--batch-size", "4",
              "--cache-dir", str(cache)]
    at25 = ["--fps", "25", "--frames", "10", "--bootstrap", "20"]
    argv = {"rule": [], "fps25": at25,                      # "rule": options the code before issue 26 had too
            "fps25_seed1": [*at25, "--bootstrap-seed", "1", "--n-curve", str(out / "curve.png")]}
    results = {}
    for name, extra in argv.items():
        err = io.StringIO()                                  # capsys is per test; this fixture is per module
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(["fvd", *common, *extra, "--out", str(out / f"{name}.json")])
            except SystemExit as exit_:                       # argparse: an unknown option
                code = exit_.code
        results[name] = (code, err.getvalue(), json.loads((out / f"{name}.json").read_text()) if code == 0 else None)
    return out, results


def test_sets_at_different_frame_rates_are_compared_at_the_lower_rate(runs):
    _, results = runs
    code, err, result = results["rule"]
    assert code == 0, err
    rate_lines = [l for l in err.splitlines() if "frame rate" in l]
    assert rate_lines == ["lumiere-eval: frame rate: frame rates differ (real 25 fps, generated 8 fps): both "
                          "resampled to 8 fps, the lower rate (--fps F sets another)"]
    assert result["protocol"]["fps"] == 8.0 and result["n_real"] == 3 and result["n_fake"] == 3
    assert result["card"]["fps"] == 8.0 and result["frame_rate"]["rule"] == "lower rate"
    code, err, result = results["fps25"]                                  # --fps overrides the rule
    assert code == 0 and "frame rate" not in err and result["protocol"]["fps"] == 25.0


def test_every_warning_is_printed_on_the_terminal_and_kept_in_the_json(runs):
    _, results = runs
    code, err, result = results["rule"]
    printed = [l for l in err.splitlines() if l.startswith("lumiere-eval: warning: ")]
    few = [l for l in printed if "videos < 400" in l]
    assert len(few) == 2 and any("real statistics: 3 videos" in l for l in few), err
    assert {l[len("lumiere-eval: warning: "):] for l in printed} <= set(result["warnings"])
    assert any("generated statistics: 3 videos < 400" in w for w in result["warnings"])


def test_fvd_carries_its_interval_n_and_protocol_card(runs):
    out, results = runs
    _, _, result = results["rule"]
    assert result["low"] <= result["value"] <= result["high"] and result["interval"]["b"] == 100   # the default
    assert result["interval"]["resampled"] == "real and generated videos"       # the cache keeps per-video features
    card = result["card"]
    sha = hashlib.sha256(default_weights_path().read_bytes()).hexdigest()
    assert card["weights_sha256"] == sha and card["weights"].startswith("tfhub-i3d-kinetics-400-v1@sha256:")
    for field, value in {"metric": "fvd", "detector": "i3d_logits", "size": 224, "resize": "tf1", "crop": "full",
                         "scale": "x/127.5-1", "frames": 16, "stride": 1, "offset": "first", "preset": "tf-fvd",
                         "covariance": "unbiased", "n_real": 3, "n_fake": 3, "dtype": "float32", "tf32": False}.items():
        assert card[field] == value, field
    assert "seed" not in card and "device" not in card and card["real_content"]
    assert result["figures"][0]["name"] == "FVD (tf-fvd)" and result["figures"][0]["n"] == "real 3, fake 3"
    assert "n_curve" not in result and results["fps25"][2]["interval"]["b"] == 20
    assert [c["n"] for c in results["fps25_seed1"][2]["n_curve"]] == [3] and (out / "curve.png").stat().st_size > 1000


def test_compare_results_refuses_differing_cards_unless_mixed_is_allowed(runs, capsys):
    out, results = runs
    capsys.readouterr()
    assert main(["compare-results", str(out / "fps25.json"), str(out / "fps25_seed1.json")]) == 0   # equal cards
    table = capsys.readouterr().out
    assert "| fps25.json |" in table and "| fps25_seed1.json |" in table and "Protocol cards equal" in table
    assert main(["compare-results", str(out / "rule.json"), str(out / "fps25.json")]) == 2
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("lumiere-eval ")]
    assert len(lines) == 1 and "fps: 8.0 vs 25.0" in lines[0] and "frames: 16 vs 10" in lines[0], err
    assert "--allow-mixed" in lines[0]
    assert main(["compare-results", str(out / "rule.json"), str(out / "fps25.json"), "--allow-mixed",
                 "--out", str(out / "mixed.md")]) == 0
    table = capsys.readouterr().out
    head = table.splitlines()[0]
    assert "| fps | frames |" in head and "FVD (tf-fvd)" in head and (out / "mixed.md").read_text() == table


@pytest.mark.parametrize("argv, expected", [
    (["{o}/rule.json"], "needs at least 2 result files"),
    (["{o}/rule.json", "{o}/nowhere.json"], "nowhere.json: no such file"),
    (["{o}/rule.json", "{o}/curve.png"], "curve.png: not JSON"),
    (["{o}/rule.json", "{o}/plain.json"], "plain.json: no protocol card or figures"),
])
def test_compare_results_bad_input_is_one_line_and_exit_2(runs, argv, expected, capsys):
    out, _ = runs
    (out / "plain.json").write_text('{"value": 1}')
    assert main(["compare-results", *[a.format(o=out) for a in argv]]) == 2
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("lumiere-eval ")]
    assert len(lines) == 1 and expected in lines[0], lines
