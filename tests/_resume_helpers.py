"""Helpers shared by the kill-and-resume tests: run lumiere-train in a subprocess, wait for a step, read and compare
per-step losses; small WebDataset video shards for the real-video resume tests."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def read_losses(csv: Path) -> dict:
    """step -> loss from a LossCSV file; a step logged twice (re-run after a kill) keeps its later value."""
    out = {}
    if csv.exists():
        for line in csv.read_text().splitlines()[1:]:
            parts = line.split(",")
            if len(parts) == 4:                       # a line being written when the process died is incomplete
                out[int(parts[0])] = float(parts[3])
    return out


def assert_same_losses(ref: dict, run: dict, steps: int) -> None:
    assert sorted(ref) == sorted(run) == list(range(1, steps + 1)), (sorted(ref), sorted(run))
    worst = max(abs(ref[s] - run[s]) for s in ref)
    assert worst <= 1e-6, {s: (ref[s], run[s]) for s in ref if abs(ref[s] - run[s]) > 1e-6}


def start(cmd: list, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_for_step(proc: subprocess.Popen, csv: Path, step: int, log: Path, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while max(read_losses(csv), default=0) < step:
        if proc.poll() is not None:
            pytest.fail(f"training exited (rc {proc.returncode}) before step {step}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail(f"no step {step} after {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.01)


def write_video_shards(out: Path, num: int, per_shard: int, frames: int = 12) -> str:
    """`num` moving-shapes clips (frames at 8 fps, 24x20 px: random starts and crops at 8 frames of 16 px) in
    shards of `per_shard`, with manifest.json; returns the brace pattern."""
    from lumiere_pl.data.shards import Sample, ShardWriter, write_manifest
    from lumiere_pl.data.synthetic import render_clip, sample_clip
    from lumiere_pl.data.video_io import encode

    w = ShardWriter(out, "train", per_shard)
    for i in range(num):
        clip = sample_clip(0, i)
        video = encode(render_clip(clip, frames, 24, height=20), 8)
        w.write(Sample(f"clip{i:04d}", "mp4", video, clip.caption, {"fps": 8, "frames": frames}))
    stats = w.close()
    write_manifest(out, stats, [], {})
    return str(out / f"train-{{000000..{len(stats) - 1:06d}}}.tar")
