"""What training from encoded shards (lumiere-shards encode) saves: step time and peak memory on a tiny SD-like
pipeline, measured; bytes per clip and the memory freed per device at paper scale, counted on the meta device.

1. Measured (--device, default cpu): a tiny random SD-like pipeline (lumiere_research/tiny_diffusers.sd_like: VAE x2,
   CLIP, U-Net of 16/32/32 channels) and synthetic shards of --clips clips at --size px and --frames frames, encoded
   once (its time is printed). Each case runs in a fresh process: the module and DataModule of
   experiments/diffusers/sd.yaml (tiny overrides, float32, one process, data.num_workers=0), then --warmup + --steps
   training steps (data loading, the loss, backward, AdamW, EMA) timed each; the step time is the median. Peak
   memory: on the CPU the process's peak resident memory (VmHWM) over its baseline after imports, on a GPU
   torch.cuda.max_memory_allocated. The two cases alternate over --rounds rounds; each ratio is the median of the
   per-round ratios (cached / on the fly). The same clips in the same order both ways (data.augment=false).
2. Counted on the meta device (no weights allocated; public configs in bench/bench_frozen_dtype.py): the bytes of one
   80-frame clip at 128x128 (Lumiere's base shape) and at 256x256 (experiments/diffusers/sd.yaml) as stored (the SD 1.5
   VAE's posterior mean and log-variance, 4 x 80 x H/8 x W/8 each) and of one caption's states (77 tokens of T5-XXL,
   IF's encoder, and of CLIP ViT-L/14, SD's), in float32 and bfloat16; and the memory freed on each training device:
   the weights of the text encoder and of the VAE encoder (what a run from encoded shards does not hold), in
   bfloat16 (model.frozen_dtype of both recipes); with the FLOPs of encoding one clip against one training step's.

  python -m bench.bench_latent_cache [--size 32 --frames 16 --batch 2 --steps 8 --rounds 3] [--no-meta]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
GB, MiB = 1e9, 2 ** 20


def _kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def overrides(a: argparse.Namespace, sd: str, shards: str) -> list:
    return [f"model.init_from={sd}", f"data.size={a.size}", f"data.frames={a.frames}", "data.fps=8",
            "text.max_length=16", f"data.batch_size={a.batch}", "data.num_workers=0", "data.shuffle_buffer=1",
            "model.temporal.down_levels=[0,1]", f"data.train_shards={shards}/train-{{000000..000001}}.tar",
            f"data.val_shards={shards}/val-000000.tar", "train.val_prompts=[a red circle moving left]",
            f"trainer.accelerator={'gpu' if a.device == 'cuda' else 'cpu'}", "trainer.precision=32-true",
            "model.frozen_dtype=float32", "data.augment=false", "train.warmup_steps=1"]


def worker(a: argparse.Namespace) -> None:
    """One case in this fresh process: prints JSON {"ms": [per step], "peak_mib": ...}."""
    from lumiere_pl.cli.train import inherit_t2i
    from lumiere_pl.config import to_dict
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.data import build_datamodule
    from lumiere_pl.data.encoded import check_encoded
    from lumiere_pl.lit import DiffusionModule

    torch.set_num_threads(a.threads)
    cuda = a.device == "cuda"
    base = _kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")                   # VmHWM := VmRSS
    cfg = load_config(str(ROOT / "experiments" / "diffusers" / "sd.yaml"), overrides(a, a.sd, a.worker))
    cfg, _ = inherit_t2i(cfg)
    check_encoded(cfg)
    module = DiffusionModule(to_dict(cfg)).to(a.device)
    dm = build_datamodule(cfg.data)
    dm.setup()
    opt = module.configure_optimizers()["optimizer"]
    it = iter(dm.train_dataloader())
    times = []
    for i in range(a.warmup + a.steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        batch = {k: v.to(a.device) if isinstance(v, torch.Tensor) else v for k, v in next(it).items()}
        loss = module.step_loss(batch, i, 0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        module.ema.update(module.net)
        if cuda:
            torch.cuda.synchronize()
        times.append(1e3 * (time.perf_counter() - t0))
    peak = torch.cuda.max_memory_allocated() / MiB if cuda else (_kib("VmHWM") - base) / 1024
    print(json.dumps({"ms": times[a.warmup:], "peak_mib": peak}))


def measure(a: argparse.Namespace) -> None:
    from lumiere_research.tiny_diffusers import sd_like

    from lumiere_pl.cli import shards as shards_cli

    with tempfile.TemporaryDirectory() as tmp:
        sd, src, enc = sd_like(Path(tmp) / "sd"), Path(tmp) / "src", Path(tmp) / "enc"
        per = max(1, a.clips // 2)
        assert shards_cli.main(["synthetic", str(src), "--num", str(2 * per), "--num-val", "2", "--frames",
                                str(a.frames), "--size", str(a.size), "--per-shard", str(per)]) == 0
        t0 = time.perf_counter()
        assert shards_cli.main(["encode", "--config", str(ROOT / "experiments" / "diffusers" / "sd.yaml"),
                                *overrides(a, str(sd), str(src)), "--out", str(enc), "--device", a.device]) == 0
        seconds = time.perf_counter() - t0
        pix = sum(f.stat().st_size for f in src.glob("*.tar"))
        cached = sum(f.stat().st_size for f in enc.glob("*.tar"))
        print(f"\nencode: {2 * per + 2} clips in {seconds:.1f} s (model loading included); shards {pix / MiB:.2f} MiB "
              f"(H.264) -> {cached / MiB:.2f} MiB encoded (float32 posteriors and states)")
        runs = {"on the fly": [], "cached": []}
        for _ in range(a.rounds):
            for name, shards in (("on the fly", src), ("cached", enc)):
                cmd = [sys.executable, "-m", "bench.bench_latent_cache", "--worker", str(shards), "--sd", str(sd),
                       *sys.argv[1:]]
                out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(f"{name} failed:\n{out.stderr[-2000:]}")
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    what = "peak GPU memory allocated" if a.device == "cuda" else "peak resident memory over the baseline"
    print(f"\n{a.device}: {a.steps} steps after {a.warmup} warm-up, batch {a.batch} x {a.frames} frames at "
          f"{a.size}x{a.size} (latents {a.size // 2}x{a.size // 2}), {a.rounds} rounds; {what}")
    print("| case | ms / step (median; per round) | peak memory MiB (per round) |")
    print("|---|---|---|")
    for name, rs in runs.items():
        ms = [statistics.median(r["ms"]) for r in rs]
        peaks = [r["peak_mib"] for r in rs]
        print(f"| {name} | {statistics.median(ms):.1f} ({', '.join(f'{m:.1f}' for m in ms)}) | "
              f"{statistics.median(peaks):.0f} ({', '.join(f'{p:.0f}' for p in peaks)}) |")
    step = [statistics.median(c["ms"]) / statistics.median(f["ms"]) for f, c in zip(runs["on the fly"], runs["cached"])]
    mem = [c["peak_mib"] / f["peak_mib"] for f, c in zip(runs["on the fly"], runs["cached"])]
    print(f"ratio cached / on the fly: step time {statistics.median(step):.2f}x, peak memory "
          f"{statistics.median(mem):.2f}x (medians of the per-round ratios)")


def paper_scale() -> None:
    from bench.bench_frozen_dtype import clip_l, sd15_unet, sd15_vae, t5_xxl
    from lumiere_pl.config import TemporalConfig
    from lumiere_pl.models.diffusers_stunet import DiffusersSTUNet
    from lumiere_pl.utils.flops import count_flops, forward_flops

    with torch.device("meta"):
        t5, clip, vae, unet = t5_xxl(), clip_l(), sd15_vae(), sd15_unet()
    print("\nmeta device: bytes per clip as stored (80 frames; latents: the SD 1.5 VAE's mean + log-variance)")
    print("| what | shape | float32 | bfloat16 |")
    print("|---|---|---|---|")
    for side in (128, 256):
        n = 2 * 4 * 80 * (side // 8) ** 2
        print(f"| latents of an 80x{side}x{side} clip | 2 x (4, 80, {side // 8}, {side // 8}) | {4 * n / MiB:.2f} MiB "
              f"| {2 * n / MiB:.2f} MiB |")
    for name, dim in (("T5-XXL states (IF)", 4096), ("CLIP ViT-L/14 states (SD)", 768)):
        n = 77 * dim
        print(f"| {name} of a caption | (77, {dim}) | {4 * n / MiB:.2f} MiB | {2 * n / MiB:.2f} MiB |")
    pixels = 80 * 3 * 128 * 128
    print(f"(for scale: the decoded 80x128x128 clip itself, uint8: {pixels / MiB:.2f} MiB)")

    def params(*ms) -> int:
        return sum(p.numel() for m in ms if m is not None for p in m.parameters())
    enc = params(vae.encoder, vae.quant_conv)
    rows = [("T5-XXL encoder (IF)", params(t5)), ("CLIP ViT-L/14 text (SD)", params(clip)),
            ("SD 1.5 VAE encoder (+ quant_conv)", enc),
            ("SD 1.5 VAE decoder (kept: validation samples)", params(vae.decoder, vae.post_quant_conv))]
    print("\nmemory freed on each training device (weights in bfloat16, model.frozen_dtype of both recipes)")
    print("| frozen network | parameters | bfloat16 weights | held from encoded shards |")
    print("|---|---|---|---|")
    for name, n in rows:
        print(f"| {name} | {n / 1e6:.0f} M | {2 * n / GB:.3f} GB | {'yes' if 'decoder' in name else 'no'} |")
    print(f"| **SD recipe freed (CLIP + VAE encoder)** | | **{2 * (rows[1][1] + enc) / GB:.3f} GB** | |")
    print(f"| **T5-XXL + SD VAE encoder freed** | | **{2 * (rows[0][1] + enc) / GB:.3f} GB** | |")

    print("\nFLOPs per 80-frame clip (meta device): encoding against one training step of the SD 1.5 STUNet")
    with torch.device("meta"):
        net = DiffusersSTUNet(unet, TemporalConfig(down_levels=[0, 1, 2]), 768)
        ids = torch.zeros(1, 77, dtype=torch.long)
        text_flops = {"T5-XXL": forward_flops(t5, ids), "CLIP-L": forward_flops(clip, ids)}
    print("| side | VAE encoder | CLIP-L | T5-XXL | STUNet step (forward + backward) | (VAE + CLIP) / step |")
    print("|---|---|---|---|---|---|")
    for side in (128, 256):
        with torch.device("meta"):
            v = forward_flops(vae.encoder, torch.zeros(80, 3, side, side))
            x = torch.zeros(1, 4, 80, side // 8, side // 8, requires_grad=False)
            text = torch.zeros(1, 77, 768)
            step = count_flops(lambda: net(x, torch.zeros(1), {"text": text}).float().sum().backward())
        print(f"| {side} | {v / 1e12:.2f} T | {text_flops['CLIP-L'] / 1e9:.1f} G | {text_flops['T5-XXL'] / 1e12:.2f} T "
              f"| {step / 1e12:.2f} T | {(v + text_flops['CLIP-L']) / step:.1%} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--clips", type=int, default=24, help="training clips in the synthetic shards")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each case")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--no-meta", action="store_true", help="skip the meta-device counts")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--sd", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a)
    print(f"python {platform.python_version()}, torch {torch.__version__}, {platform.machine()}, "
          f"{a.threads} thread(s) per case" + (f", {torch.cuda.get_device_name(0)}" if a.device == "cuda" else ""))
    measure(a)
    if not a.no_meta:
        paper_scale()


if __name__ == "__main__":
    main()
