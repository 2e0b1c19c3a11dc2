"""Lumiere's STUNet versus AnimateDiff's motion modules on the same 2D base: our inflation of a diffusers U-Net
(DiffusersSTUNet: temporal convs after every resnet, temporal down/up-sampling at levels 0-2, temporal attention at
the coarsest level) against diffusers' UNetMotionModel (a temporal transformer after every resnet / attention of
every block and the mid block, all frames at every level). The paper's compute argument, against the most-used open
video U-Net. Every figure and ratio comes from this one run.

  1. Train step on a latent clip (1, 4, 16, 16, 16) (a 128 px clip through SD's VAE): step time (interleaved rounds,
     each model in its own long-lived process), train-step FLOPs (forward + backward, torch.utils.flop_counter),
     peak extra memory (rise of each process's peak RSS over the steps, AdamW state included), parameters.
  2. FLOPs per clip of one forward at 16 and 80 frames, both models and the 2D U-Net alone (per frame).

Both are built from one tiny Stable Diffusion-like UNet2DConditionModel (same config, same seed, same 2D weights:
UNetMotionModel.from_unet2d copies them), 2D weights frozen in both, the same eps-prediction loss on the same
scaled_linear schedule, AdamW over the trainable (temporal) parameters, float32.

  python -m bench.bench_diffusers [--quick] [--rounds 5] [--frames 16,80]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

from bench import _stunet_worker as W  # peak-RSS and parameter helpers
from bench.bench_stunet import Worker  # the parent's side of a worker process
from lumiere_pl.utils.atomic import write_bytes  # results appear whole or not at all

SHAPE = (1, 4, 16, 16, 16)                      # (b c t h w) latents: a 16-frame 128 px clip through SD's VAE
TEXT = (1, 77, 64)                              # CLIP-like tokens (b L d)
UNET = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 64, 128, 128),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=64, attention_head_dim=8, norm_num_groups=32)   # SD 1.5's layout, 1/10 the width
OURS = dict(down_levels=[0, 1, 2], kernel=3, attn_layers=1, max_frames=128)    # experiments/diffusers/sd.yaml's
MOTION = dict(block_out_channels=UNET["block_out_channels"], motion_layers_per_block=2, motion_num_attention_heads=8,
              motion_norm_num_groups=32, motion_max_seq_length=128, use_motion_mid_block=True)   # AnimateDiff v2-like
RESULTS = HERE / "results" / "diffusers.json"


# ---------------------------------------------------------------------------------------------------------------------
# the two models (built the same way in the workers and for the FLOP table)

def build(name: str):
    """(net, call(x (b c t h w), timestep, text) -> (b c t h w)) with frozen 2D weights."""
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
    from diffusers.utils import logging

    logging.set_verbosity_error()                 # from_unet2d's notice about float32 modules (there are none)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**UNET)
    if name == "unet2d":
        def call2d(x, ts, text):                                    # per frame: ((b t) c h w)
            b, c, t, h, w = x.shape
            y = unet(x.transpose(1, 2).reshape(b * t, c, h, w), ts.repeat_interleave(t),
                     encoder_hidden_states=text.repeat_interleave(t, 0)).sample
            return y.reshape(b, t, c, h, w).transpose(1, 2)
        return unet.requires_grad_(False), call2d
    if name == "ours":
        from lumiere_pl.config import TemporalConfig
        from lumiere_pl.models.diffusers_stunet import DiffusersSTUNet

        net = DiffusersSTUNet(unet, TemporalConfig(**OURS), UNET["cross_attention_dim"])
        return net, lambda x, ts, text: net(x, ts, {"text": text})
    torch.manual_seed(1)
    net = UNetMotionModel.from_unet2d(unet, MotionAdapter(**MOTION))
    net.freeze_unet2d_params()
    # the AnimateDiff pipeline repeats the text per frame before the call; UNetMotionModel folds frames itself
    return net, lambda x, ts, text: net(x, ts, encoder_hidden_states=text.repeat_interleave(x.shape[2], 0)).sample


def describe(name: str) -> str:
    if name == "ours":
        return (f"DiffusersSTUNet (lumiere_pl) over the U-Net: temporal conv after every resnet, temporal "
                f"down/up-sampling at levels {OURS['down_levels']}, {OURS['attn_layers']} temporal attention layer "
                f"at the coarsest level")
    return (f"UNetMotionModel.from_unet2d (diffusers, AnimateDiff): motion transformer after every resnet/attention "
            f"({MOTION['motion_layers_per_block']} per block), motion mid block, {MOTION['motion_num_attention_heads']}"
            f" heads, no temporal downsampling")


def loss_fn(call, x0: torch.Tensor, text: torch.Tensor, g: torch.Generator):
    """eps-prediction MSE at a uniformly drawn timestep of SD's scaled_linear schedule (the same for both)."""
    from lumiere_pl.diffusion.discrete import alphas_cumprod

    ac = alphas_cumprod("scaled_linear", 0.00085, 0.012, 1000).float()

    def fn():
        i = torch.randint(0, 1000, (x0.shape[0],), generator=g)
        a = ac[i].view(-1, 1, 1, 1, 1)
        eps = torch.randn(x0.shape, generator=g)
        return (call(a.sqrt() * x0 + (1 - a).sqrt() * eps, i.float(), text) - eps).pow(2).mean()
    return fn


# ---------------------------------------------------------------------------------------------------------------------
# worker: one model per process, steps on command (stdin), @@-prefixed JSON replies (stdout)

def worker(name: str, threads: int) -> None:
    torch.set_num_threads(threads)

    def reply(kind: str, payload) -> None:
        print(f"@@{kind} {json.dumps(payload)}", flush=True)

    try:
        net, call = build(name)
        net.train()
        g = torch.Generator().manual_seed(0)
        x0, text = torch.randn(SHAPE, generator=g), torch.randn(TEXT, generator=g)
        step_loss = loss_fn(call, x0, text, g)
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = step_loss()
            loss.backward()
            opt.step()
            return loss

        flops = W.count_flops(lambda: step_loss().backward())
        opt.zero_grad(set_to_none=True)
        finite = True
        hwm_reset = W.reset_peak_rss()
        base = W.rss_bytes()
        reply("ready", {})
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "step":
                t0 = time.perf_counter()
                finite &= bool(torch.isfinite(step()))
                reply("ok", time.perf_counter() - t0)
            elif cmd == "report":
                reply("ok", {"params": W.split_params(net), "train_step_flops": flops, "loss_finite": finite,
                             "peak_rss_bytes": W.peak_rss_bytes() - base, "hwm_reset": hwm_reset,
                             "arch": describe(name)})
            elif cmd == "quit":
                return
    except Exception as err:  # noqa: BLE001 - reported to the parent, which prints it
        reply("error", f"{type(err).__name__}: {err}")


def train_steps(threads: int, warmup: int, rounds: int) -> dict:
    workers = {k: Worker(k, [sys.executable, "-m", "bench.bench_diffusers", "--worker", k, "--threads", threads],
                         threads) for k in ("ours", "motion")}
    steps: dict = {k: [] for k in workers}
    try:
        for w in workers.values():
            w.read()                                                    # built (both at once, nothing timed)
        for _ in range(warmup):
            for w in workers.values():
                w.call("step")
        print(f"{'round':>5} {'ours step s':>12} {'motion step s':>14}", flush=True)
        order = list(workers)
        for r in range(rounds):
            for k in (order if r % 2 == 0 else order[::-1]):            # alternate who goes first
                steps[k].append(workers[k].call("step"))
            print(f"{r + 1:>5} {steps['ours'][-1]:>12.2f} {steps['motion'][-1]:>14.2f}", flush=True)
        reports = {k: w.call("report") for k, w in workers.items()}
    finally:
        for w in workers.values():
            w.close()
    return {"step_s": steps, "reports": reports}


# ---------------------------------------------------------------------------------------------------------------------
# FLOPs per clip, one forward, 16 and 80 frames

def forward_flops_table(frames_list: list, threads: int) -> list:
    torch.set_num_threads(threads)
    rows = []
    for name in ("unet2d", "ours", "motion"):
        net, call = build(name)
        net.eval()
        for t in frames_list:
            g = torch.Generator().manual_seed(0)
            x, text = torch.randn(1, 4, t, SHAPE[3], SHAPE[4], generator=g), torch.randn(TEXT, generator=g)
            with torch.no_grad():
                flops = W.count_flops(lambda: call(x, torch.tensor([500.0]), text))
            rows.append({"model": name, "frames": t, "flops": flops})
            print(f"  counted {name:<7} T={t:<3} {flops / 1e9:>9.1f} GFLOP", flush=True)
        del net
    return rows


def init_property() -> dict:
    """Max |difference| between each video model on a still clip and the 2D U-Net per frame, and the 2D output's
    scale: ours starts as the identity (Lumiere's init); diffusers' MotionAdapter() is randomly initialised."""
    g = torch.Generator().manual_seed(0)
    img, text = torch.randn(1, 4, 1, SHAPE[3], SHAPE[4], generator=g), torch.randn(TEXT, generator=g)
    with torch.no_grad():
        r = build("unet2d")[1](img, torch.tensor([500.0]), text)
        out = {"2D output max |x|": float(r.abs().max())}
        for name in ("ours", "motion"):
            v = build(name)[1](img.expand(-1, -1, 8, -1, -1), torch.tensor([500.0]), text)
            out[name] = float((v - r).abs().max())
    return out


# ---------------------------------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 timed rounds")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--frames", default="16,80", help="clip lengths of the FLOP table")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.threads)
        return 0
    if a.quick:
        a.rounds = 2
    torch.set_num_threads(a.threads)
    from bench import bench_stunet
    import diffusers

    t_start = time.perf_counter()
    bench_stunet.header(a.threads)
    print(f"versions  diffusers {diffusers.__version__}")
    print(f"2D base   UNet2DConditionModel({', '.join(f'{k}={v}' for k, v in UNET.items())}), random weights, "
          f"frozen in both")
    for k in ("ours", "motion"):
        print(f"{k:<9} {describe(k)}")
    print("init      still clip through each video model vs the 2D U-Net per frame, max |diff|: "
          + ", ".join(f"{k} {v:.1e}" for k, v in init_property().items()))

    print(f"\n[1] train step, latent clip {SHAPE} (b c t h w), text {TEXT}, float32, {a.threads} threads")
    res = train_steps(a.threads, a.warmup, a.rounds)
    rep, steps = res["reports"], res["step_s"]
    med = {k: statistics.median(v) for k, v in steps.items()}
    best = {k: min(v) for k, v in steps.items()}
    print(f"\n{'':<30}{'ours (STUNet)':>18}{'UNetMotionModel':>18}{'ours / motion':>16}")
    table = [("parameters, trainable", lambda k: rep[k]["params"]["trainable"], lambda v: f"{v:,}"),
             ("parameters, frozen", lambda k: rep[k]["params"]["frozen"], lambda v: f"{v:,}"),
             ("train-step GFLOPs (fwd+bwd)", lambda k: rep[k]["train_step_flops"] / 1e9, lambda v: f"{v:,.1f}"),
             ("train step s, median", lambda k: med[k], lambda v: f"{v:.2f}"),
             ("train step s, best", lambda k: best[k], lambda v: f"{v:.2f}"),
             ("peak extra memory MiB (RSS)", lambda k: rep[k]["peak_rss_bytes"] / 2 ** 20, lambda v: f"{v:,.0f}")]
    for label, get, fmt in table:
        o, m = get("ours"), get("motion")
        print(f"{label:<30}{fmt(o):>18}{fmt(m):>18}{o / m:>15.2f}x")
    per_round = [o / m for o, m in zip(steps["ours"], steps["motion"])]
    print(f"step-time ratio ours/motion per round: {', '.join(f'{x:.2f}' for x in per_round)} "
          f"(median {statistics.median(per_round):.2f}; < 1: ours is faster)")
    for k in rep:
        if not rep[k]["loss_finite"]:
            print(f"WARNING: {k} produced a non-finite loss")
        if not rep[k]["hwm_reset"]:
            print(f"note: could not reset VmHWM; {k}'s peak includes the build")

    frames = [int(f) for f in a.frames.split(",")]
    print(f"\n[2] FLOPs per clip, one forward, latents (1, 4, T, {SHAPE[3]}, {SHAPE[4]}), T in {frames}")
    rows = forward_flops_table(frames, a.threads)
    by = {(r["model"], r["frames"]): r["flops"] for r in rows}
    print(f"\n{'T':>4} {'2D U-Net x T':>14} {'ours':>12} {'motion':>12} {'ours / motion':>14} "
          f"{'ours / 2D':>10} {'motion / 2D':>12}   (GFLOP per clip)")
    for t in frames:
        u, o, m = by[("unet2d", t)], by[("ours", t)], by[("motion", t)]
        print(f"{t:>4} {u / 1e9:>14.1f} {o / 1e9:>12.1f} {m / 1e9:>12.1f} {o / m:>13.2f}x {o / u:>9.2f}x "
              f"{m / u:>11.2f}x")

    record = {"shape": SHAPE, "unet": {k: list(v) if isinstance(v, tuple) else v for k, v in UNET.items()},
              "ours": OURS, "motion": MOTION, "train_step": res, "flops": rows}
    write_bytes(RESULTS, json.dumps(record, indent=1).encode())
    print(f"\nraw figures: {RESULTS.relative_to(ROOT)}; total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
