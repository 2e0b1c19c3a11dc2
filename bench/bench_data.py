"""DataModule decode throughput (clips/s) vs a plain sequential PyAV decode of the same clips, 1 and 2 workers; and
the gain of seeking to a clip's start (keyframe before it, then decode forward) over decoding from frame 0 on a long
video (--seek-only: that part alone).

Both sides do the same work per clip: open the MP4 bytes, decode the 16 frames needed at 8 fps (from 16 fps),
resize to a 32 px short side, centre crop to 32x32, convert to float in [-1, 1]. The pipeline adds tar reading,
shuffling, worker processes, batching and the bad-data checks. Workers start once per DataModule (persistent
across passes). The machine is noisy: the three measurements are interleaved in ROUNDS rounds and the median of the
per-round ratios is reported.
"""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from lumiere_pl.data import DataConfig, build_datamodule
from lumiere_pl.data.tar_reader import expand, iter_shard
from lumiere_pl.data.video_io import crop, decode, probe, resampled_indices

REPEATS = 5   # passes over the clips per measurement
ROUNDS = 5    # interleaved rounds of (sequential, 1 worker, 2 workers)


def shard_dir() -> Path:
    default = Path("data/shards/real")
    if (default / "manifest.json").is_file():
        return default
    tmp = Path(tempfile.mkdtemp(prefix="bench_shards_"))
    subprocess.check_call([sys.executable, "-m", "lumiere_pl.cli.shards", "real", str(tmp)])
    return tmp


def baseline(videos, cfg: DataConfig) -> float:
    t0, n = time.perf_counter(), 0
    for _ in range(REPEATS):
        for data in videos:
            info = probe(data)
            frames = decode(data, resampled_indices(info.frames, info.fps, cfg.fps, cfg.frames, None), cfg.size)
            x = torch.from_numpy(np.ascontiguousarray(crop(frames, cfg.size))).permute(3, 0, 1, 2).float() / 127.5 - 1
            n += x.shape[1] > 0
    return n / (time.perf_counter() - t0)


def pipeline(cfg: DataConfig) -> float:
    dm = build_datamodule(cfg)
    dm.setup("fit")
    loader = dm.train_dataloader()
    t0, n = time.perf_counter(), 0
    for _ in range(REPEATS):
        for batch in loader:
            n += len(batch["caption"])
    return n / (time.perf_counter() - t0)


def long_video(seconds: int, fps: int, gop: int, w: int, h: int) -> bytes:
    """A long H.264 video (B-frames, a keyframe every gop frames, as typical web video), distinct frames."""
    import io

    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "2", "crf": "23",
                     "preset": "veryfast"}
        for i in range(seconds * fps):
            x = np.roll(noise, 4 * i, axis=1)                                  # a pan: real motion to code
            for p in s.encode(av.VideoFrame.from_ndarray(x, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def seek_gain(rounds: int = 3) -> None:
    """16 frames at 8 fps (a 2 s clip) from random starts of a 2-minute 30 fps video, 320x240, keyframe every 2 s:
    decode seeking vs decode from frame 0 (the same frames, checked), interleaved rounds, median ratio."""
    seconds, fps, gop, w, h = 120, 30, 60, 320, 240
    t0 = time.perf_counter()
    data = long_video(seconds, fps, gop, w, h)
    info = probe(data)
    print(f"seek: {w}x{h} H.264 video, {info.frames} frames at {fps} fps ({seconds} s), keyframe every {gop} frames, "
          f"{len(data) / 1e6:.1f} MB (encoded in {time.perf_counter() - t0:.0f} s); clip: 16 frames at 8 fps, "
          f"short side 32", flush=True)
    starts = np.random.default_rng(1).integers(0, info.frames - 60, 8)
    clips = [resampled_indices(info.frames, info.fps, 8.0, 16, int(s)) for s in starts]
    times: dict = {True: [], False: []}
    for r in range(rounds):
        for seek in (True, False):
            t0 = time.perf_counter()
            out = [decode(data, idx, 32, seek=seek) for idx in clips]
            times[seek].append((time.perf_counter() - t0) / len(clips))
            if r == 0 and seek:
                ref = out
            elif r == 0:
                assert all(np.array_equal(a, b) for a, b in zip(ref, out)), "seeked frames differ"
        print(f"  round {r + 1}: seek {1e3 * times[True][-1]:7.1f} ms/clip, from frame 0 "
              f"{1e3 * times[False][-1]:7.1f} ms/clip", flush=True)
    med = statistics.median
    ratio = med([b / a for a, b in zip(times[True], times[False])])
    print(f"decode of a clip, seeking: {1e3 * med(times[True]):.1f} ms, from frame 0: {1e3 * med(times[False]):.1f} ms "
          f"-> seeking {ratio:.1f}x faster (median of {rounds} per-round ratios, same frames)")


def main() -> None:
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__}, "
          f"PyAV {av.__version__}")
    seek_gain()
    if "--seek-only" in sys.argv:
        return
    root = shard_dir()
    pattern = str(root) + "/train-{000000..%06d}.tar" % (len(list(root.glob("train-*.tar"))) - 1)
    videos = [bytes(s["mp4"]) for u in expand(pattern) for s in iter_shard(u)]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__}, "
          f"PyAV {av.__version__}; {len(videos)} clips of {pattern}, {REPEATS} passes, 16 frames @ 8 fps, 32x32")
    torch.set_num_threads(1)
    base_cfg = DataConfig(frames=16, size=32, fps=8.0)
    rates: dict = {"seq": [], 1: [], 2: []}
    for r in range(ROUNDS):
        rates["seq"].append(baseline(videos, base_cfg))
        for workers in (1, 2):
            cfg = DataConfig(name="webdataset", train_shards=pattern, frames=16, size=32, fps=8.0, batch_size=4,
                             num_workers=workers, shuffle_buffer=16)
            rates[workers].append(pipeline(cfg))
        print(f"  round {r + 1}: sequential {rates['seq'][-1]:6.1f}, 1 worker {rates[1][-1]:6.1f}, "
              f"2 workers {rates[2][-1]:6.1f} clips/s", flush=True)
    med = statistics.median
    print(f"sequential PyAV decode (main process):        {med(rates['seq']):7.1f} clips/s (median of {ROUNDS})")
    for workers in (1, 2):
        ratio = med([w / s for w, s in zip(rates[workers], rates["seq"])])
        print(f"DataModule, {workers} worker(s):                    {med(rates[workers]):7.1f} clips/s   "
              f"ratio {ratio:.2f} (median per-round; overhead {100 * (1 - ratio):+.1f}% vs sequential)")

if __name__ == "__main__":
    main()
