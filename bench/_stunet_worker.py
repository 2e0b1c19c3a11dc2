"""Worker of bench/bench_stunet.py: one model's train step, measured in a fresh process; prints one JSON line.

  python -m bench._stunet_worker --model ours   (the project's venv: lumiere_pl's STUNet)
  bench/.venv-peer/bin/python -m bench._stunet_worker --model peer   (lumiere-pytorch's MPLumiere over KarrasUnet)

The harness (timing, peak memory, FLOP counting) is this file's and is the same for both models; only build_ours /
build_peer differ, and each imports its own package, so the project never imports lumiere_pytorch (and the peer venv
never imports lumiere_pl). Pure torch + stdlib at module level.

A train step: zero_grad, v-prediction MSE at a uniformly drawn time t (cosine schedule), backward, AdamW step over the
trainable (temporal) parameters; the spatial T2I weights are frozen in both models.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

import torch
from torch import nn

from lumiere_pl.utils.allocator import keep_freed_memory  # stdlib only: imports in the peer venv too
from lumiere_pl.utils.flops import count_flops  # pure torch: imports in the peer venv too

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["a red circle moving right", "a blue square moving down", "a green triangle moving left",
           "a yellow circle moving up"]

# Peer architecture, matched to the project's STUNet (experiments/archive/shapes32/stunet.yaml at 64 px): base width 32, three
# resolution levels 64/32/16 with widths 32/64/64, one residual block per level on the way down, spatial attention at
# 16 px only, no dropout; a temporal conv block after every residual block, temporal down/upsampling at both spatial
# down/upsamplings (T -> T/4 at the coarsest level), one temporal attention layer (2 heads of 32) at the middle.
PEER_UNET = dict(image_size=64, dim=32, dim_max=64, channels=3, num_downsamples=2, num_blocks_per_stage=1,
                 attn_res=(16,), attn_dim_head=32, dropout=0.0)
OURS_OVERRIDES = ["data.size=64", "data.frames=16", "data.batch_size=2", "model.unet.dropout=0.0", "text.max_length=16"]


# ---------------------------------------------------------------------------------------------------------------------
# measurement helpers (shared with bench_stunet.py, which imports them)

def proc_kib(key: str, path: str = "/proc/self/status") -> int:
    """The kB figure of `key` in a /proc file (this process's status, or /proc/meminfo); OSError / KeyError else."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def rss_bytes() -> int:
    """Current resident memory (VmRSS)."""
    return proc_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """Peak resident memory since the last reset_peak_rss (VmHWM); ru_maxrss where /proc is missing."""
    try:
        return proc_kib("VmHWM") * 1024
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs). False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """float32 n x n matmul throughput, best of `repeats` (after one warm-up)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def split_params(net: nn.Module) -> dict:
    """Trainable / frozen parameter counts (nn.Module.named_parameters: every parameter, once)."""
    tr = fr = 0
    for _, p in nn.Module.named_parameters(net):
        if p.requires_grad:
            tr += p.numel()
        else:
            fr += p.numel()
    return {"trainable": tr, "frozen": fr}


def v_mse(net_call, x0: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The peer's loss, written as the project's diffusion_loss (v-prediction, cosine schedule, t ~ U(0, 1))."""
    b = x0.shape[0]
    t = torch.rand(b, generator=g)
    eps = torch.randn(x0.shape, generator=g)
    alpha, sigma = (f(t * math.pi / 2).view(b, 1, 1, 1, 1) for f in (torch.cos, torch.sin))
    out = net_call(alpha * x0 + sigma * eps, t)
    return (out - (alpha * eps - sigma * x0)).pow(2).mean()


# ---------------------------------------------------------------------------------------------------------------------
# the two models: each returns (net, loss_fn () -> scalar, info dict)

def build_ours(shape: tuple, g: torch.Generator, width: int = 32):
    import lightning

    from lumiere_pl.config import to_dict
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.lit.module import DiffusionModule

    b, _, t, h, _ = shape
    cfg = load_config(str(ROOT / "experiments" / "archive" / "shapes32" / "stunet.yaml"),
                      OURS_OVERRIDES + [f"data.frames={t}", f"data.size={h}", f"data.batch_size={b}",
                                        f"model.unet.channels={width}"])
    module = DiffusionModule(to_dict(cfg))
    net = module.net.train()
    cond = module.parts.text_condition([PROMPTS[i % len(PROMPTS)] for i in range(b)])   # frozen: outside the step
    x0 = torch.rand(shape, generator=g) * 2 - 1

    def loss_fn():
        return module.parts.process.loss(net, x0, cond, generator=g)

    u, tc = cfg.model.unet, cfg.model.temporal
    info = {"package": f"lumiere_pl (lightning {lightning.__version__})",
            "arch": f"STUNet over UNet(channels={u.channels}, channel_mults={list(u.channel_mults)}, "
                    f"num_res_blocks={u.num_res_blocks}, attn_levels={list(u.attn_levels)}, head_dim={u.head_dim}); "
                    f"temporal(down_levels={list(tc.down_levels)}, kernel={tc.kernel}, attn_layers={tc.attn_layers}); "
                    f"text {cfg.text.encoder} x{cfg.text.max_length} tokens (cross-attention)"}
    del module.ema                                                 # not part of the step (peer has none)
    return net, loss_fn, info


def build_recipe(name: str, g: torch.Generator):
    """An experiment config's module (random T2I weights) and the loss of one train step on its own clip shape:
    (module, loss_fn, shape). For the benches that time make train's recipes (bench_layout, bench_optimizer)."""
    from lumiere_pl.config import to_dict
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.lit.module import DiffusionModule

    module = DiffusionModule(to_dict(load_config(str(ROOT / "experiments" / f"{name}.yaml"), ["model.init_from=random"])))
    d = module.cfg.data
    shape = (d.batch_size, 3, d.frames, d.size, d.size)
    cond = module.parts.text_condition([PROMPTS[0]] * d.batch_size)      # frozen encoder: outside the step
    x0 = torch.rand(shape, generator=g) * 2 - 1

    def loss_fn():
        return module.parts.process.loss(module.net, x0, cond, generator=g)
    return module, loss_fn, shape


def _import_karras_unet():
    """denoising_diffusion_pytorch.karras_unet without the package's __init__, which imports torchvision for its
    Trainer: PyPI's torchvision is linked against the CUDA torch and fails to load ("operator torchvision::nms does
    not exist") beside the CPU torch this venv holds on purpose. karras_unet.py itself needs torch and einops only."""
    import importlib.util
    import types

    if "denoising_diffusion_pytorch" not in sys.modules:
        spec = importlib.util.find_spec("denoising_diffusion_pytorch")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("denoising-diffusion-pytorch is not installed")
        pkg = types.ModuleType("denoising_diffusion_pytorch")
        pkg.__path__ = list(spec.submodule_search_locations)         # a bare package: submodules import, __init__ not
        sys.modules["denoising_diffusion_pytorch"] = pkg
    import denoising_diffusion_pytorch.karras_unet as karras_unet
    return karras_unet


def _peer_module_names(unet) -> dict:
    ku = _import_karras_unet()
    Decoder, Encoder = ku.Decoder, ku.Encoder

    downs = [f"downs.{i}" for i, m in enumerate(unet.downs)]
    ups = [f"ups.{i}" for i, m in enumerate(unet.ups)]
    return {
        "conv_module_names": downs + ["mids.0", "mids.1"] + ups,                # after every residual block
        "attn_module_names": ["mids.0"],                                           # the coarsest level
        "downsample_module_names": [f"downs.{i}" for i, m in enumerate(unet.downs)
                                    if isinstance(m, Encoder) and m.downsample],
        "upsample_module_names": [f"ups.{i}" for i, m in enumerate(unet.ups)
                                  if isinstance(m, Decoder) and m.upsample],
    }


def build_peer(shape: tuple, g: torch.Generator, width: int = 32):
    import importlib.metadata as md

    from lumiere_pytorch import MPLumiere

    KarrasUnet = _import_karras_unet().KarrasUnet

    b, c, t, h, w = shape
    kw = {**PEER_UNET, "image_size": h, "channels": c, "dim": width, "dim_max": 2 * width}
    unet = KarrasUnet(**kw)
    names = _peer_module_names(unet)
    heads = 2 * width // 32                                    # heads of 32 over the coarsest width, as ours
    net = MPLumiere(unet, image_size=h, unet_time_kwarg="time", channels=c,
                    attn_inflation_kwargs=dict(heads=heads, dim_head=32), **names).train()
    x0 = torch.rand(shape, generator=g) * 2 - 1

    def loss_fn():
        return v_mse(lambda z, tt: net(z, time=tt), x0, g)

    vers = {p: md.version(p) for p in ("lumiere-pytorch", "denoising-diffusion-pytorch")}
    info = {"package": ", ".join(f"{k} {v}" for k, v in vers.items()),
            "arch": f"MPLumiere over KarrasUnet({', '.join(f'{k}={v}' for k, v in kw.items())}); "
                    f"temporal: conv after {len(names['conv_module_names'])} blocks, down/up after "
                    f"{names['downsample_module_names']}/{names['upsample_module_names']}, attention after "
                    f"{names['attn_module_names']} ({heads} heads x 32); unconditional (KarrasUnet has no text input)"}
    return net, loss_fn, info


# ---------------------------------------------------------------------------------------------------------------------

class Session:
    """One model, built once; its train step run on command, so the parent can interleave the two models' steps
    (and its matmul ceiling) round by round: on a shared, noisy machine both then see the same load."""

    def __init__(self, model: str, shape: tuple, threads: int, width: int = 32):
        self.malloc_tuned = keep_freed_memory()                # glibc tuned as lumiere-train runs, for both models
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        self.net, self.loss_fn, self.info = (build_ours if model == "ours" else build_peer)(shape, g, width)
        self.model, self.shape = model, shape
        trainable = [p for p in nn.Module.parameters(self.net) if p.requires_grad]
        self.opt = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.01)
        self.losses: list = []
        gc.collect()
        self.base = rss_bytes()                                # after imports, model, data, optimizer (no state yet)
        self.hwm_reset = reset_peak_rss()

    def step(self) -> float:
        """One train step (the first one also allocates the AdamW state); returns its wall time."""
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn()
        loss.backward()
        self.opt.step()
        dt = time.perf_counter() - t0
        self.losses.append(float(loss.detach()))
        return dt

    def report(self) -> dict:
        """Peak extra memory of the steps run so far, then one more step under the FLOP counter."""
        peak = peak_rss_bytes() - self.base
        flops = count_flops(self.step)
        return {"model": self.model, **self.info, "params": split_params(self.net), "torch": torch.__version__,
                "python": sys.version.split()[0], "threads": torch.get_num_threads(), "train_step_flops": flops,
                "peak_rss_bytes": peak, "baseline_rss_bytes": self.base, "hwm_reset": self.hwm_reset,
                "malloc_tuned": self.malloc_tuned, "loss_finite": all(math.isfinite(x) for x in self.losses),
                "steps_run": len(self.losses)}


def reply(kind: str, payload) -> None:
    print(f"@@{kind} " + json.dumps(payload), flush=True)      # the parent reads only lines starting with @@


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["ours", "peer"], required=True)
    ap.add_argument("--shape", default="2,3,16,64,64", help="b,c,t,h,w")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--width", type=int, default=32, help="base width of the U-Net (the coarser levels 2x)")
    ap.add_argument("--steps", type=int, default=0, help="standalone: run this many steps (1 warm-up first), print "
                                                         "the times and the report, exit; 0: serve commands on stdin")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    shape = tuple(int(x) for x in a.shape.split(","))
    try:
        sess = Session(a.model, shape, a.threads, a.width)
    except Exception as err:                                   # noqa: BLE001  (reported to the parent, which goes on)
        reply("error", f"{type(err).__name__}: {err}")
        raise
    if a.steps:
        sess.step()
        times = [sess.step() for _ in range(a.steps)]
        reply("report", {**sess.report(), "step_s": times})
        return 0
    reply("ready", {"model": a.model})
    for line in sys.stdin:                                     # commands: step | report | quit
        cmd = line.strip()
        if cmd == "step":
            reply("step", sess.step())
        elif cmd == "report":
            reply("report", sess.report())
        elif cmd == "quit":
            break
        else:
            reply("error", f"unknown command {cmd!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
