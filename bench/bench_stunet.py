"""The base model's cost: our STUNet versus the peer lumiere-pytorch (MPLumiere over KarrasUnet), and the compute saved
by temporal down/up-sampling. Every figure, and every ratio, comes from this one run.

  1. Train step on clips (2, 3, 16, 64, 64), ours vs peer, at each base width of --widths (both U-Nets alike: 32, the
     recipe's, and 128, nearer real T2I U-Nets, where convolutions outweigh the memory-bound passes): clips/s,
     train-step FLOPs (torch.utils.flop_counter over forward + backward), achieved GFLOP/s, its share of the CPU's
     float32 matmul GFLOP/s (2048^2 torch.mm, measured between the steps: the ceiling), peak extra memory (each model
     in its own fresh process: rise of the peak RSS from after the model, data and optimizer were built), trainable /
     frozen parameters.
     The peer lives in its own venv, bench/.venv-peer (created here on first use, gitignored): the project never
     imports lumiere_pytorch. Both models run in long-lived worker processes (bench/_stunet_worker.py, one harness for
     both) whose steps are interleaved round by round with the matmul ceiling, so the machine's load hits all alike.
  2. FLOPs per clip of one forward of our STUNet with temporal down/up-sampling (down_levels=[0, 1]) versus without
     (down_levels=[]), at 16 and 80 frames: Lumiere's compute argument as a number.

  python -m bench.bench_stunet [--quick] [--rounds 6] [--no-peer] [--widths 32,128]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
from bench import _stunet_worker as W  # the measurement harness shared with the workers
from lumiere_pl.utils.atomic import write_bytes  # results appear whole or not at all

PEER_VENV = Path(os.environ.get("PEER_VENV", HERE / ".venv-peer"))     # gitignored (bench/.venv-*/)
PEER_PACKAGES = ["lumiere-pytorch", "denoising-diffusion-pytorch"]
SHAPE = (2, 3, 16, 64, 64)
RESULTS = HERE / "results" / "stunet.json"


# ---------------------------------------------------------------------------------------------------------------------
# machine

def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(threads: int) -> None:
    import lightning

    avail = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine   {cpu_name()}; {os.cpu_count()} logical CPUs ({avail} usable); torch threads {threads}; "
          f"{platform.system()} {platform.release()}")
    print(f"versions  python {platform.python_version()}, torch {torch.__version__}, lightning {lightning.__version__}")


# ---------------------------------------------------------------------------------------------------------------------
# the peer's venv

def _run(cmd: list, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _peer_versions(py: Path) -> dict | None:
    code = ("import importlib.metadata as m, json, torch, lumiere_pytorch; "
            f"print(json.dumps({{p: m.version(p) for p in {PEER_PACKAGES!r}}} | {{'torch': torch.__version__}}))")
    try:
        r = _run([str(py), "-c", code], 120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None


def _describe(v: dict) -> str:
    text = f"{PEER_VENV}: " + ", ".join(f"{k} {x}" for k, x in v.items())
    if v["torch"].split("+")[0] != torch.__version__.split("+")[0]:
        text += f" (WARNING: not our torch {torch.__version__}; timings compare two torch builds)"
    return text


def ensure_peer_venv() -> tuple[Path | None, str]:
    """(python of bench/.venv-peer, versions) or (None, why not). Reused when it already imports the peer.

    torch goes in first, pinned to the project's version (PEER_TORCH overrides, like the Makefile's TORCH): a plain
    `torch` would pull the multi-GB CUDA build. The pin is repeated in the second install, else pip would upgrade
    torch to satisfy the newest torchvision (a denoising-diffusion-pytorch dependency, unused here)."""
    py = PEER_VENV / "bin" / "python"
    if py.exists() and (v := _peer_versions(py)):
        return py, "reused " + _describe(v)
    torch_spec = os.environ.get("PEER_TORCH", f"torch=={torch.__version__.split('+')[0]}")
    print(f"creating {PEER_VENV} ({torch_spec}, then {' '.join(PEER_PACKAGES)}); a few minutes",
          flush=True)
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(PEER_VENV)
        pip = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        for step in (pip + torch_spec.split(), pip + PEER_PACKAGES + torch_spec.split()):
            r = _run(step, 900)
            if r.returncode != 0:
                lines = [x for x in (r.stderr or r.stdout).strip().splitlines() if "is ignored" not in x]
                tail = "\n".join("          " + x for x in lines[-4:])
                return None, f"`{' '.join(step[2:])}` failed (no network?):\n{tail}"
    except (OSError, subprocess.SubprocessError) as err:
        return None, f"could not create the venv: {err}"
    v = _peer_versions(py)
    if not v:
        return None, "the venv was built but does not import lumiere_pytorch"
    return py, "installed " + _describe(v)


# ---------------------------------------------------------------------------------------------------------------------
# workers

class Worker:
    """A worker process serving one model (`argv`: its command line): step / report commands on stdin, @@-prefixed
    JSON replies on stdout (an @@error reply raises). Used here and by bench_diffusers.py."""

    def __init__(self, name: str, argv: list, threads: int):
        self.name = name
        self.log = tempfile.TemporaryFile(mode="w+")
        # run from the repository root, which is also the path of modules: `-m bench.<worker>` finds bench there,
        # and the peer's venv (no lumiere_pl installed) the harness's lumiere_pl.utils imports
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
               "OMP_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1, env=env, cwd=ROOT)

    def read(self):
        """The next reply (the first one says the model is built)."""
        for line in self.proc.stdout:
            if line.startswith("@@"):
                kind, payload = line[2:].split(" ", 1)
                if kind == "error":
                    raise RuntimeError(f"{self.name} worker: {json.loads(payload)}")
                return json.loads(payload)
        self.log.seek(0)
        tail = "\n".join(self.log.read().strip().splitlines()[-8:])
        raise RuntimeError(f"{self.name} worker exited (rc {self.proc.wait()}):\n{tail}")

    def call(self, cmd: str):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


def stunet_worker(name: str, python: Path | str, threads: int, width: int) -> Worker:
    return Worker(name, [python, "-m", "bench._stunet_worker", "--model", name, "--threads", threads,
                         "--shape", ",".join(map(str, SHAPE)), "--width", width], threads)


def train_step_comparison(peer_py: Path | None, threads: int, warmup: int, rounds: int, width: int) -> dict:
    workers = {"ours": stunet_worker("ours", sys.executable, threads, width)}
    if peer_py is not None:
        workers["peer"] = stunet_worker("peer", peer_py, threads, width)
    out: dict = {"width": width, "ceiling_gflops": [], "step_s": {k: [] for k in workers}, "errors": {}}
    try:
        for name, w in list(workers.items()):                   # both build at once; nothing is timed yet
            try:
                w.read()
            except RuntimeError as err:
                if name == "ours":
                    raise
                out["errors"][name] = str(err)
                w.close()
                del workers[name], out["step_s"][name]
        print(f"warm-up   {warmup} step(s) per model", flush=True)
        for _ in range(warmup):
            for w in workers.values():
                w.call("step")
        print(f"{'round':>5} {'matmul GFLOP/s':>15} " + " ".join(f"{k + ' step s':>13}" for k in workers), flush=True)
        order = list(workers)
        for r in range(rounds):
            out["ceiling_gflops"].append(W.matmul_gflops())
            for k in (order if r % 2 == 0 else order[::-1]):       # alternate who goes first
                out["step_s"][k].append(workers[k].call("step"))
            print(f"{r + 1:>5} {out['ceiling_gflops'][-1]:>15.1f} "
                  + " ".join(f"{out['step_s'][k][-1]:>13.2f}" for k in workers), flush=True)
        out["reports"] = {k: w.call("report") for k, w in workers.items()}
    finally:
        for w in workers.values():
            w.close()
    return out


# ---------------------------------------------------------------------------------------------------------------------
# printing

def gi(x: float) -> str:
    return f"{x / 1e9:,.1f} G"


def mib(x: float) -> str:
    return f"{x / 2 ** 20:,.0f} MiB"


def print_comparison(res: dict) -> dict:
    rep, steps = res["reports"], res["step_s"]
    ceiling = statistics.median(res["ceiling_gflops"])
    ceiling_best = max(res["ceiling_gflops"])
    b = SHAPE[0]
    rows = {}
    for k in rep:
        med, best, flops = statistics.median(steps[k]), min(steps[k]), rep[k]["train_step_flops"]
        rows[k] = {"trainable": rep[k]["params"]["trainable"], "frozen": rep[k]["params"]["frozen"],
                   "flops": flops, "step_med": med, "step_min": best, "clips_s": b / med, "clips_s_best": b / best,
                   "gflops_s": flops / med / 1e9, "gflops_s_best": flops / best / 1e9,
                   "peak": rep[k]["peak_rss_bytes"]}
        rows[k]["ceiling_pct"] = 100 * rows[k]["gflops_s"] / ceiling
        rows[k]["ceiling_pct_best"] = 100 * rows[k]["gflops_s_best"] / ceiling_best
    print()
    for k in rep:
        print(f"{k:<5} {rep[k]['package']}: {rep[k]['arch']}")
        if not rep[k]["loss_finite"]:
            print(f"      WARNING: {k} produced a non-finite loss")
        if not rep[k]["hwm_reset"]:
            print(f"      note: could not reset VmHWM; {k}'s peak includes the build")
        print(f"      glibc malloc: {'tuned as lumiere-train tunes it' if rep[k].get('malloc_tuned') else 'defaults'}")
    have_peer = "peer" in rows
    cols = ["ours (STUNet)"] + (["peer (MPLumiere)", "ours / peer"] if have_peer else [])
    print(f"\nclip {tuple(SHAPE)} (b c t h w), base width {res['width']}, float32, {rep['ours']['threads']} threads; "
          f"median of {len(steps['ours'])} interleaved rounds; matmul ceiling (2048^2 float32 torch.mm) {ceiling:.1f} "
          f"GFLOP/s median, {ceiling_best:.1f} best (range {min(res['ceiling_gflops']):.1f}-{ceiling_best:.1f}). "
          f"The machine is shared: 'best' is the least-disturbed estimate, the per-round ratio the fairest.")
    print(f"{'':<32}" + "".join(f"{c:>20}" for c in cols))
    spec = [("parameters, trainable", "trainable", lambda v: f"{v:,}"),
            ("parameters, frozen", "frozen", lambda v: f"{v:,}"),
            ("train-step FLOPs (fwd+bwd)", "flops", gi),
            ("train step s, median", "step_med", lambda v: f"{v:.2f}"),
            ("train step s, best", "step_min", lambda v: f"{v:.2f}"),
            ("clips/s, median", "clips_s", lambda v: f"{v:.3f}"),
            ("clips/s, best", "clips_s_best", lambda v: f"{v:.3f}"),
            ("achieved GFLOP/s, median", "gflops_s", lambda v: f"{v:.1f}"),
            ("achieved GFLOP/s, best", "gflops_s_best", lambda v: f"{v:.1f}"),
            ("  % of matmul, median/median", "ceiling_pct", lambda v: f"{v:.1f} %"),
            ("  % of matmul, best/best", "ceiling_pct_best", lambda v: f"{v:.1f} %"),
            ("peak extra memory (RSS)", "peak", mib)]
    for label, key, fmt in spec:
        cells = [fmt(rows["ours"][key])]
        if have_peer:
            cells += [fmt(rows["peer"][key]), f"{rows['ours'][key] / rows['peer'][key]:.2f}x"]
        print(f"{label:<32}" + "".join(f"{c:>20}" for c in cells))
    if have_peer:
        per_round = [o / p for o, p in zip(steps["ours"], steps["peer"])]
        print(f"step-time ratio ours/peer per round: {', '.join(f'{x:.2f}' for x in per_round)} "
              f"(median {statistics.median(per_round):.2f}; < 1: ours is faster)")
    return rows


def print_by_width(rows: dict) -> None:
    """The share of the matmul ceiling against the width: convolution FLOPs grow as width^2, the memory-bound passes
    (norms, activations, residuals) as width, so the share rises with the width for both models."""
    if len(rows) < 2:
        return
    print("\nby base width (median of each width's rounds; each width has its own ceiling, measured beside it)")
    print(f"{'width':>6} {'params ours / peer':>24} {'% of matmul, ours':>18} {'peer':>6} {'clips/s ours / peer':>20}")
    for width, r in rows.items():
        o, p = r["ours"], r.get("peer")
        params = f"{(o['trainable'] + o['frozen']) / 1e6:.1f}M" + (
            f" / {(p['trainable'] + p['frozen']) / 1e6:.1f}M" if p else "")
        print(f"{width:>6} {params:>24} {o['ceiling_pct']:>16.1f} % "
              + (f"{p['ceiling_pct']:>4.0f} % {o['clips_s'] / p['clips_s']:>19.2f}x" if p else ""))


# ---------------------------------------------------------------------------------------------------------------------
# 2. compute saved by temporal down/up-sampling

def temporal_flops_table(frames_list: list, repeats: int, threads: int) -> list:
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.models import build_model
    from lumiere_pl.text import build_text_encoder
    from lumiere_pl.utils.flops import forward_flops

    torch.set_num_threads(threads)
    yaml = str(ROOT / "experiments" / "archive" / "shapes32" / "stunet.yaml")
    variants = [("down_levels=[0, 1]", "[0,1]"), ("down_levels=[] (off)", "[]")]
    base = load_config(yaml, W.OURS_OVERRIDES)
    enc = build_text_encoder(base.text)
    text, mask = enc([W.PROMPTS[0]])
    cond = {"text": text, "text_mask": mask}
    c_noise = torch.full((1,), 500.0)
    rows = []
    for frames in frames_list:
        for label, dl in variants:
            cfg = load_config(yaml, W.OURS_OVERRIDES + [f"model.temporal.down_levels={dl}", f"data.frames={frames}",
                                                        "data.batch_size=1"])
            torch.manual_seed(0)
            net = build_model(cfg, enc.dim).eval()
            x = torch.randn(1, 3, frames, SHAPE[3], SHAPE[4])
            with torch.no_grad():
                flops = forward_flops(net, x, c_noise, cond)             # CPU attention counted (utils.flops)
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    net(x, c_noise, cond)
                    times.append(time.perf_counter() - t0)
            rows.append({"frames": frames, "variant": label, "coarsest_frames": net.coarsest_frames(frames),
                         "flops": flops, "forward_s": min(times)})
            print(f"  counted {label:<22} T={frames:<3} {gi(flops):>10}  ({min(times):.2f} s)", flush=True)
            del net
    return rows


def print_temporal(rows: list) -> None:
    print(f"\nFLOPs per clip, one forward of our STUNet, clip (1, 3, T, {SHAPE[3]}, {SHAPE[4]}), with vs without "
          f"temporal down/up-sampling (the same network otherwise)")
    print(f"{'T':>4} {'variant':<22} {'coarsest T':>10} {'GFLOP/clip':>11} {'per frame':>10} {'vs off':>8} "
          f"{'fwd s (best)':>13}")
    by_t: dict = {}
    for r in rows:
        by_t.setdefault(r["frames"], []).append(r)
    for frames, rs in by_t.items():
        off = next(r for r in rs if "off" in r["variant"])
        for r in rs:
            print(f"{frames:>4} {r['variant']:<22} {r['coarsest_frames']:>10} {r['flops'] / 1e9:>11.2f} "
                  f"{r['flops'] / frames / 1e9:>10.3f} {r['flops'] / off['flops']:>7.2f}x {r['forward_s']:>13.2f}")


# ---------------------------------------------------------------------------------------------------------------------

def workers_gib(width: int, peer: bool) -> float:
    """Peak resident memory of the two workers together at a base width, with a margin: measured 4.5 / 7.8 / 14.9 GiB
    at widths 32 / 64 / 128 (ours + peer, clip (2, 3, 16, 64, 64); docs/results/2026-12-03-benchmarks-stunet.md); ours
    alone about 40 % of it."""
    both = 1.5 + 0.11 * width
    return both if peer else 0.45 * both


def mem_available_gib() -> float | None:
    """MemAvailable of /proc/meminfo in GiB; None where there is no such file."""
    try:
        return W.proc_kib("MemAvailable", "/proc/meminfo") / 2 ** 20
    except (OSError, KeyError):
        return None


def int_list(text: str) -> list:
    """argparse type: "32,128" -> [32, 128]; anything else is one usage error."""
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers separated by commas, e.g. 32,128")
    return values


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 warm-up step, 2 timed rounds, 1 timed forward per variant")
    ap.add_argument("--rounds", type=int, default=6, help="timed train steps per model, interleaved")
    ap.add_argument("--warmup", type=int, default=1, help="untimed train steps per model first")
    ap.add_argument("--frames", type=int_list, default="16,80",
                    help="clip lengths of the temporal down/up-sampling table")
    ap.add_argument("--no-peer", action="store_true", help="skip lumiere-pytorch (no venv, no install)")
    ap.add_argument("--widths", type=int_list, default="32,128",
                    help="base widths of the train-step comparison (both U-Nets)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.warmup = 2, 1
    torch.set_num_threads(a.threads)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t_start = time.perf_counter()
    header(a.threads)

    if a.no_peer:
        peer_py, why = None, "skipped (--no-peer)"
    else:
        peer_py, why = ensure_peer_venv()
    print(f"peer      {why if peer_py else 'SKIPPED: ' + why}", flush=True)

    runs, rows = {}, {}
    for width in a.widths:                                        # one pair of workers at a time: memory
        print(f"\n[1] train step, ours vs peer, clip {SHAPE}, base width {width}")
        need, have = workers_gib(width, peer_py is not None), mem_available_gib()
        if have is not None and have < need:
            print(f"SKIPPED: the workers would need about {need:.0f} GiB at width {width}, {have:.1f} GiB is "
                  f"available (--widths 32 runs the small one)")
            continue
        runs[width] = train_step_comparison(peer_py, a.threads, a.warmup, a.rounds, width)
        for name, err in runs[width]["errors"].items():
            print(f"{name} SKIPPED: {err}")
        rows[width] = print_comparison(runs[width])
    print_by_width(rows)

    frames = a.frames
    print(f"\n[2] temporal down/up-sampling on vs off, T in {frames}")
    trows = temporal_flops_table(frames, 1 if a.quick else 2, a.threads)
    print_temporal(trows)

    record = {"shape": SHAPE, "peer": why, "train_step": runs, "summary": rows, "temporal": trows}
    write_bytes(RESULTS, json.dumps(record, indent=1).encode())
    print(f"\nraw figures: {RESULTS.relative_to(ROOT)}; total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
