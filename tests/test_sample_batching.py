"""Rendering at the largest batch that fits: lumiere_pl/utils/batching.py and lumiere-sample --batch-size auto.
A batch that runs out of memory is retried in halves; seeds are per video, so the batch never changes a video."""
from __future__ import annotations

import json

import pytest
import torch

from eval.video_io import decode
from lumiere_pl.utils.batching import auto_batch_size, fitting_batches


def _fits(limit, log):
    def run(batch):
        log.append(len(batch))
        if len(batch) > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 10 for x in batch]
    return run


def test_out_of_memory_halves_the_batch_and_keeps_the_size_that_fitted():
    log = []
    done = list(fitting_batches(list(range(11)), 8, _fits(3, log)))
    assert [b for b, _ in done] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10]]
    assert [y for _, out in done for y in out] == [x * 10 for x in range(11)]     # every item once, in order
    assert log == [8, 4, 2, 2, 2, 2, 2, 1]


def test_cpu_allocator_refusal_is_out_of_memory_and_other_errors_pass():
    def run(batch):
        if len(batch) > 1:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        return batch
    assert [b for b, _ in fitting_batches([1, 2, 3], 4, run)] == [[1], [2], [3]]
    with pytest.raises(RuntimeError, match="shape mismatch"):
        list(fitting_batches([1, 2], 2, lambda b: (_ for _ in ()).throw(RuntimeError("shape mismatch"))))
    with pytest.raises(torch.OutOfMemoryError):                    # one item that does not fit: nothing to halve
        list(fitting_batches([1, 2], 2, _fits(0, [])))


def test_auto_starts_with_everything_on_a_gpu_and_a_cap_on_the_cpu():
    assert auto_batch_size(100, "cuda") == 100 and auto_batch_size(100, "cpu") == 16 and auto_batch_size(5, "cpu") == 5


def test_sample_auto_batch_renders_the_same_videos_as_batch_one(tmp_path, tiny_sample_ckpt, monkeypatch):
    from lumiere_pl.cli.sample import main
    from lumiere_pl.pipeline import LumierePipeline

    prompts = ["a red circle moving right", "a blue square moving up", "a green triangle moving left"]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"index": i, "prompt": p}) + "\n"
                                              for i, p in enumerate(prompts)))
    common = ["--ckpt", str(tiny_sample_ckpt), "--prompts", str(tmp_path / "p.jsonl"), "--frames", "4", "--steps", "2",
              "--device", "cpu", "--lossless"]
    assert main([*common, "--out-dir", str(tmp_path / "one"), "--batch-size", "1"]) == 0
    sample, calls = LumierePipeline._sample, []
    def small_memory(self, prompts, *a, **k):                     # a device that holds two videos
        calls.append(len(prompts))
        if len(prompts) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return sample(self, prompts, *a, **k)
    monkeypatch.setattr(LumierePipeline, "_sample", small_memory)
    assert main([*common, "--out-dir", str(tmp_path / "auto"), "--batch-size", "auto"]) == 0
    assert calls == [3, 2, 1]                                      # 3 (all, the CPU cap is 16) -> 2 + 1
    for i in range(3):
        one, auto = (decode(tmp_path / d / f"{i:06d}.mp4").frames for d in ("one", "auto"))
        assert (one == auto).all()
    with pytest.raises(SystemExit) as err:                       # argparse's type: one line, exit 2, nothing done
        main([*common, "--out-dir", str(tmp_path / "x"), "--batch-size", "0"])
    assert err.value.code == 2 and not (tmp_path / "x").exists()


def test_a_rerun_skips_videos_of_the_same_settings_and_renders_others_again(tmp_path, tiny_sample_ckpt, capsys):
    """--prompts is resumable: the same options (any batch size) skip every video; other sampler steps render them
    again, said in one line (they were kept as they were: a stale result)."""
    from lumiere_pl.cli.sample import main

    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"index": i, "prompt": p}) + "\n"
                                              for i, p in enumerate(["a red circle moving right", "a blue square"])))
    common = ["--ckpt", str(tiny_sample_ckpt), "--prompts", str(tmp_path / "p.jsonl"), "--frames", "4",
              "--device", "cpu", "--lossless", "--out-dir", str(tmp_path / "v")]
    assert main([*common, "--steps", "2"]) == 0
    first = {i: (tmp_path / "v" / f"{i:06d}.mp4").read_bytes() for i in range(2)}
    capsys.readouterr()
    assert main([*common, "--steps", "2", "--batch-size", "2"]) == 0
    assert "2 videos already rendered, 0 to go" in capsys.readouterr().out
    assert main([*common, "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "2 videos in" in out and "other settings (steps 2 -> 3); rendering them again" in out
    assert all((tmp_path / "v" / f"{i:06d}.mp4").read_bytes() != first[i] for i in range(2))
    assert json.loads((tmp_path / "v" / "000000.json").read_text())["settings"]["steps"] == 3
