"""I3D feature throughput (clips/s at 16x224x224) and peak memory at batch 1, 4, 8; FVD end to end for N clips
versus the feature extraction alone. Prints machine and versions beside the figures; ratios are from this run."""
from __future__ import annotations

import os
import platform
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eval.detectors import I3DDetector  # noqa: E402
from eval.frechet import FeatureStats, fvd_from_stats  # noqa: E402
from eval.i3d import weights_id  # noqa: E402
from eval.scoring import fvd  # noqa: E402
from eval.video_io import ClipSpec  # noqa: E402


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


def main() -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else ""))
    print(f"versions: python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}; "
          f"weights {weights_id()}")
    print("\nI3D features, input (b, 3, 16, 224, 224) float32, no_grad; peak memory = process max RSS on CPU "
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

    n = 16
    print(f"\nFVD end to end, N = {n} real + {n} fake .npy clips of (16, 240, 320, 3) uint8, batch 8")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("real", "fake"):
            (Path(tmp) / side).mkdir()
            for i in range(n):
                np.save(Path(tmp) / side / f"{i:04d}.npy", rng.integers(0, 256, (16, 240, 320, 3), dtype=np.uint8))
        detector = I3DDetector(device=device)
        x = torch.stack([detector.prepare(np.load(Path(tmp) / "real" / f"{i:04d}.npy")) for i in range(8)])
        t0 = time.perf_counter()
        for _ in range(2 * n // 8):
            detector.features(x)
        t_features = time.perf_counter() - t0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            result = fvd(Path(tmp) / "real", Path(tmp) / "fake", detector, ClipSpec(), use_cache=False)
            t_total = time.perf_counter() - t0
            feats = np.random.default_rng(1).standard_normal((2, 512, 400))
            t0 = time.perf_counter()
            fvd_from_stats(FeatureStats(400).update(feats[0]), FeatureStats(400).update(feats[1]))
            t_frechet = time.perf_counter() - t0
    print(f"feature extraction alone ({2 * n} clips): {t_features:.1f} s")
    print(f"FVD end to end (load .npy, resize, extract, stats, Frechet): {t_total:.1f} s "
          f"= {t_total / t_features:.2f}x the extraction alone (FVD {result['value']:.1f}, meaningless on noise)")
    print(f"Frechet distance alone (400-d, scipy sqrtm, full-rank): {t_frechet:.2f} s")


if __name__ == "__main__":
    main()
