"""A mid-epoch resume passes over the trained samples without decoding them, and serves the batches the
uninterrupted pass would have served next (same samples, same random starts and crops, same order)."""
from __future__ import annotations

import multiprocessing

import pytest
import torch

import lumiere_pl.data.sample_decode as sample_decode
from lumiere_pl.data import DataConfig, build_datamodule

from _resume_helpers import write_video_shards

DECODES = multiprocessing.Value("q", 0)      # shared with forked DataLoader workers


@pytest.fixture
def count_decodes(monkeypatch):
    def counting(real):
        def decode(*args, **kwargs):
            with DECODES.get_lock():
                DECODES.value += 1
            return real(*args, **kwargs)
        return decode

    for name in ("decode", "clip_at"):               # a frame (image mode), a clip
        monkeypatch.setattr(sample_decode, name, counting(getattr(sample_decode, name)))
    DECODES.value = 0
    return DECODES


def loader(pattern, workers, epoch_length=0):
    cfg = DataConfig(name="webdataset", train_shards=pattern, frames=8, size=16, fps=8.0, batch_size=2,
                     num_workers=workers, shuffle_buffer=4, epoch_length=epoch_length)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    return dm, dm.train_dataloader()


def batches(it, n=None):
    out = []
    for b in it:
        out.append((list(b["key"]), b["pixels"]))
        if n is not None and len(out) == n:
            break
    return out


def same(a, b):
    return [k for k, _ in a] == [k for k, _ in b] and all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b))


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_skips_trained_samples_undecoded(tmp_path, workers, count_decodes):
    """2 shards of 5 clips, batch 2: 5 batches per epoch; with 2 workers the last one joins their partial batches."""
    pattern = write_video_shards(tmp_path / "shards", 10, 5)
    _, ref_loader = loader(pattern, workers)
    ref = batches(ref_loader)
    assert len(ref) == 5 and len({k for keys, _ in ref for k in keys}) == 10
    for done in (1, 3, 4):
        _, fast = loader(pattern, workers)
        fast.start_at(0, done, undecoded=True)
        count_decodes.value = 0
        assert same(batches(fast), ref[done:])
        assert count_decodes.value == 2 * (5 - done)           # only the samples still to train are decoded
        _, slow = loader(pattern, workers)
        slow.start_at(0, done)                                 # bad samples in the pass: decode and drop instead
        count_decodes.value = 0
        assert same(batches(slow), ref[done:]) and count_decodes.value == 10


def test_resume_in_resampled_mode_with_workers(tmp_path):
    """Endless per-worker streams (data.epoch_length > 0): batch k of the pass is worker k % 2's; the resumed
    loader rotates the workers so that the next batch is the one worker 3 % 2 would have served."""
    pattern = write_video_shards(tmp_path / "shards", 10, 5)
    _, ref_loader = loader(pattern, 2, epoch_length=6)
    ref = batches(ref_loader)
    assert len(ref) == 6
    _, fast = loader(pattern, 2, epoch_length=6)
    fast.start_at(0, 3, undecoded=True)
    assert same(batches(fast), ref[3:])
    assert same(batches(fast), batches(ref_loader))            # the next epoch: no skip, no rotation left over


def test_checkpoint_state_says_whether_the_pass_had_bad_samples(tmp_path):
    pattern = write_video_shards(tmp_path / "shards", 10, 5)
    dm, it = loader(pattern, 0)
    assert dm.state_dict() == {}                               # no pass begun
    batches(it, 2)
    assert dm.state_dict() == {"epoch": 0, "bad_samples": 0}
    dm.skips.add("corrupt_video", "x.tar", "k")                # a sample of this pass skipped as bad
    assert dm.state_dict() == {"epoch": 0, "bad_samples": 1}
    resumed, _ = loader(pattern, 0)
    resumed.load_state_dict({"epoch": 0, "bad_samples": 1})
    assert resumed._resumed_state["bad_samples"] == 1
