"""MultiDiffusion over time with the tiny SSR (experiments/tiny/ssr.yaml): one denoising step of an 80-frame clip.

Reports, measured in this run:
  time   MultiDiffusion (window 8, stride 6) vs its bound (number of windows x one window's time), for several
         window batches, and vs non-overlapping windows (stride 8);
  memory peak extra memory of MultiDiffusion vs all 80 frames in one call (each in a fresh process: CUDA peak
         allocation on GPU, the rise of the process's peak RSS, VmHWM, on CPU).
  python -m bench.bench_multidiffusion [--frames 80] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

from lumiere_pl.config import to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.diffusion.multidiffusion import MultiDiffusion, temporal_windows
from lumiere_pl.lit import DiffusionModule

CONFIG = str(ROOT / "experiments" / "tiny" / "ssr.yaml")


def setup(frames: int, device: str):
    torch.manual_seed(0)
    module = DiffusionModule(to_dict(load_config(CONFIG))).to(device).eval()
    size = module.cfg.data.size
    low = torch.rand(1, 3, frames, module.parts.low_size, module.parts.low_size, device=device) * 2 - 1   # b c t h w
    cond = {**module.parts.text_condition(["a red circle moving right"]),
            **module.parts.lowres_condition(low, torch.zeros(1, device=device))}
    x = torch.randn(1, 3, frames, size, size, device=device) * 5.0                             # b c t H W
    s = torch.full((1,), 5.0, device=device)
    return module, x, s, cond


def timed_all(fns: dict, repeats: int, device: str) -> dict:
    """Median seconds of each fn, measured round-robin (one run of each per round), so a load change on a shared
    machine hits every configuration alike and the ratios stay comparable."""
    times: dict = {k: [] for k in fns}
    for fn in fns.values():
        fn()                                                                                   # warm-up
    for _ in range(repeats):
        for k, fn in fns.items():
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def high_water_rss() -> int:
    """Peak resident memory of this process image in bytes (VmHWM; unlike ru_maxrss it does not inherit the
    parent's peak across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024                     # non-Linux fallback


def memory_child(frames: int, window: int, window_batch: int, device: str) -> None:
    """Run in a fresh process: print the peak extra memory (MiB) of one MultiDiffusion step."""
    module, x, s, cond = setup(frames, device)
    denoiser = module.parts.process.denoiser(module.net)
    den = MultiDiffusion(denoiser, window, module.cfg.sampler.stride, window_batch) if window else denoiser
    with torch.no_grad():
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            den(x, s, cond)
            peak = torch.cuda.max_memory_allocated() - base
        else:
            base = high_water_rss()
            den(x, s, cond)
            peak = high_water_rss() - base
    print(json.dumps({"peak_mib": peak / 2 ** 20}))


def peak_memory(frames: int, window: int, window_batch: int, device: str) -> float:
    cmd = [sys.executable, "-m", "bench.bench_multidiffusion", "--memory-child", f"{frames},{window},{window_batch}",
           "--device", device]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return json.loads(out)["peak_mib"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=80)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(*map(int, args.memory_child.split(",")), args.device)
        return 0

    dev, T = args.device, args.frames
    module, x, s, cond = setup(T, dev)
    sc, size = module.cfg.sampler, module.cfg.data.size
    name = torch.cuda.get_device_name() if dev == "cuda" else f"{platform.processor() or platform.machine()}"
    print(f"machine: {platform.node()} {name}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    if hasattr(os, "getloadavg"):
        print(f"load average at the start: {os.getloadavg()[0]:.2f}")
    print(f"versions: python {platform.python_version()}, torch {torch.__version__}")
    print(f"model: ssr_tiny ({sum(p.numel() for p in module.net.parameters()):,} parameters), "
          f"x{module.cfg.model.upscale} {module.parts.low_size}->{size}px; clip x (1, 3, {T}, {size}, {size}); one "
          f"denoiser call (one sampling step), median of {args.repeats}")
    den = module.parts.process.denoiser(module.net)
    w = sc.window
    md_spans, no_spans = temporal_windows(T, w, sc.stride), temporal_windows(T, w, w)
    wb = sc.window_batch
    batches = sorted({1, wb, len(md_spans)})
    fns = {"window": lambda: den(x[:, :, :w], s, {**cond, "concat": cond["concat"][:, :, :w]}),
           **{f"md{b}": (lambda b=b: MultiDiffusion(den, w, sc.stride, b)(x, s, cond)) for b in batches},
           "nonoverlap": lambda: MultiDiffusion(den, w, w, wb)(x, s, cond),
           "all": lambda: den(x, s, cond)}
    with torch.no_grad():
        t = timed_all(fns, args.repeats, dev)
    bound = len(md_spans) * t["window"]
    print(f"\none window ({w} frames): {t['window'] * 1e3:.1f} ms")
    print(f"windows: overlapping (stride {sc.stride}) {len(md_spans)}, non-overlapping (stride {w}) {len(no_spans)}")
    for b in batches:
        print(f"MultiDiffusion, window_batch {b:2d}: {t[f'md{b}'] * 1e3:8.1f} ms   "
              f"/ bound ({len(md_spans)} x one window = {bound * 1e3:.1f} ms) = {t[f'md{b}'] / bound:.2f}")
    print(f"non-overlapping windows, window_batch {wb}: {t['nonoverlap'] * 1e3:.1f} ms;  MultiDiffusion / "
          f"non-overlapping = {t[f'md{wb}'] / t['nonoverlap']:.2f} (window-count ratio {len(md_spans) / len(no_spans):.2f})")
    print(f"all {T} frames in one call: {t['all'] * 1e3:.1f} ms;  MultiDiffusion (window_batch {wb}) / all = "
          f"{t[f'md{wb}'] / t['all']:.2f}")

    unit = "CUDA peak allocated" if dev == "cuda" else "rise of peak RSS"
    print(f"\npeak extra memory of one step ({unit}, fresh process each):")
    m_all = peak_memory(T, 0, 1, dev)
    print(f"  all {T} frames at once          : {m_all:8.1f} MiB")
    for b in batches:
        m = peak_memory(T, w, b, dev)
        print(f"  MultiDiffusion window_batch {b:2d} : {m:8.1f} MiB   ({m / max(m_all, 1e-9):.2f} x all frames)")
    if hasattr(os, "getloadavg"):
        print(f"\nload average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (CPU timings are only "
              f"meaningful on an otherwise idle machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
