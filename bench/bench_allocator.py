"""glibc's allocator as every lumiere-* command tunes it (eval/allocator.py) against its defaults.

Each figure comes from a fresh process per (allocator, round), the two allocators alternating round by round:
  sample  one guided DDIM call per video of `make train`'s STUNet (experiments/real/stunet.yaml, 32 px, 16 frames)
          at batch 8, the batch make eval used;
  train   one train step (forward, backward, AdamW) of the STUNet of bench_stunet.py, clip (2, 3, 16, 64, 64);
  i3d     FVD's I3D features (lumiere-eval) of a batch of 4 clips of 16 x 224 x 224.
Per figure: wall seconds, CPU seconds in user and kernel mode, minor page faults, peak memory (VmHWM), and whether
the outputs (the videos' sum of |x|, the last loss, the features' sum of |x|) are identical across allocators (they
must be: malloc moves memory, not arithmetic).
  python -m bench.bench_allocator [--rounds 2]
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

ROOT = Path(__file__).resolve().parents[1]


def child(kind: str) -> None:
    """Run in a fresh process: measure `kind` and print one JSON line."""
    from eval.allocator import keep_freed_memory

    tuned = keep_freed_memory()                          # off under LUMIERE_MALLOC=system
    import torch

    torch.manual_seed(0)
    if kind == "sample":
        from lumiere_pl.config import to_dict
        from lumiere_pl.config_checks import load_config
        from lumiere_pl.lit import DiffusionModule

        module = DiffusionModule(to_dict(load_config(str(ROOT / "experiments" / "real" / "stunet.yaml")))).eval()
        prompts, calls = ["a person riding a horse on a beach"] * 8, 4

        def work():                                     # steps + 1 sigmas: `calls` network calls
            return float(module.pipeline()(prompts, steps=calls).videos.double().abs().sum())
        per = len(prompts) * calls
    elif kind == "i3d":
        from eval.detectors import I3DDetector

        detector, clips = I3DDetector(), torch.rand(4, 3, 16, 224, 224) * 2 - 1

        def work():
            return float(detector.features(clips).double().abs().sum())
        per = 1
    else:
        from bench import _stunet_worker as W

        net, loss_fn, _ = W.build_ours((2, 3, 16, 64, 64), torch.Generator().manual_seed(0))
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)

        def work():
            for _ in range(2):
                opt.zero_grad(set_to_none=True)
                loss = loss_fn()
                loss.backward()
                opt.step()
            return float(loss)
        per = 2
    work()                                              # warm-up
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    value = work()
    r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
    hwm = next(int(x.split()[1]) for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM"))
    print(json.dumps({"tuned": tuned, "value": value, "wall": wall / per, "user": (r1.ru_utime - r0.ru_utime) / per,
                      "sys": (r1.ru_stime - r0.ru_stime) / per, "faults": (r1.ru_minflt - r0.ru_minflt) / per,
                      "peak_mib": hwm / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", choices=["sample", "train", "i3d"])
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    import torch

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, torch {torch.__version__}, glibc "
          f"{'-'.join(platform.libc_ver())}; median of {args.rounds} alternating rounds, a fresh process each")
    for kind, unit in (("sample", "per network call per video"), ("train", "per train step"),
                       ("i3d", "per batch of 4 clips")):
        runs: dict = {"system": [], "tuned": []}
        for _ in range(args.rounds):
            for name in runs:
                env = {**os.environ, "LUMIERE_MALLOC": "system" if name == "system" else "tuned"}
                out = subprocess.run([sys.executable, "-m", "bench.bench_allocator", "--child", kind], env=env,
                                     cwd=ROOT, capture_output=True, text=True, check=True)
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
        med = {n: {k: statistics.median(r[k] for r in rs) for k in ("wall", "user", "sys", "faults", "peak_mib")}
               for n, rs in runs.items()}
        print(f"\n{kind} ({unit}):")
        for n, m in med.items():
            print(f"  {n:6s}  wall {m['wall']:.3f} s  user {m['user']:.3f} s  kernel {m['sys']:.3f} s  "
                  f"faults {m['faults']:,.0f}  peak {m['peak_mib']:,.0f} MiB")
        same = len({r["value"] for rs in runs.values() for r in rs}) == 1
        s, t = med["system"], med["tuned"]
        cpu = (t["user"] + t["sys"]) / (s["user"] + s["sys"])
        print(f"  tuned / system: wall {t['wall'] / s['wall']:.2f}x, CPU time {cpu:.2f}x, peak memory "
              f"{t['peak_mib'] / s['peak_mib']:.2f}x; outputs "
              f"{'identical' if same else 'DIFFER'} across allocators and rounds")


if __name__ == "__main__":
    main()
