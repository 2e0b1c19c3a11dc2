"""trainer.precision=bf16-mixed on the CPU, on every path the docs name: our T2I, STUNet (both memory layouts) and
SSR, and the diffusers IF-like (pixels) and SD-like (latents, 2x and 4x VAEs) STUNets. torch's CPU GroupNorm
backward on channels-last input of fewer than 2048 positions per sample segfaults when the input needs no gradient
(lumiere_pl/models/kernels.py), which the first temporal module of an inflated U-Net on small latents meets: each
check runs in a subprocess, so a segfault fails the test instead of killing pytest."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from _resume_helpers import ENV, ROOT

GROUP_NORM = textwrap.dedent("""
    import torch
    import torch.nn.functional as F
    from lumiere_pl.models.layers import GroupNorm

    torch.manual_seed(0)
    for shape in [(2, 32, 8, 8), (2, 32, 8, 8, 8), (2, 16, 4, 8, 8)]:     # c h w / t h w < 2048 positions
        fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
        x = torch.randn(shape).to(memory_format=fmt)                      # a frozen layer's output: no gradient
        ref = torch.nn.GroupNorm(8, shape[1])
        F.group_norm(x.contiguous(), 8, ref.weight, ref.bias).square().sum().backward()
        for autocast in (False, True):
            gn = GroupNorm(8, shape[1])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                y = gn(x)
            y.float().square().sum().backward()
            tol = 0.05 if autocast else 1e-4
            for got, want in ((gn.weight.grad, ref.weight.grad), (gn.bias.grad, ref.bias.grad)):
                assert (got - want).abs().max() <= tol * want.abs().max(), (shape, autocast)
    print("group norm ok")
""")

PATHS = textwrap.dedent("""
    import tempfile
    from pathlib import Path

    import torch
    from conftest import TINY

    from lumiere_pl.cli.train import inherit_t2i
    from lumiere_pl.config import to_dict
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.lit import DiffusionModule
    from lumiere_research.tiny_diffusers import if_like, sd_like

    tmp = Path(tempfile.mkdtemp())
    bf16 = ["trainer.precision=bf16-mixed", f"out_dir={tmp}"]
    diffusers = ["model.name=diffusers_stunet", "text.encoder=tiny", "text.dim=16", "text.max_length=8",
                 "data.frames=8", "model.temporal.down_levels=[0,1]"]
    paths = {   # name: (config, overrides, time-major STUNet, clip side)
        "t2i": (None, [*TINY, "model.name=t2i", "data.images=true"], None, 16),
        "stunet (b c t h w)": (None, TINY, False, 16),
        "stunet time-major": (None, [*TINY, "data.frames=4", "model.temporal.down_levels=[0]"], True, 16),
        "ssr": ("experiments/tiny/ssr.yaml", ["data.size=32", "model.upscale=2"], None, 32),
        "diffusers IF-like": (None, [*diffusers, f"model.init_from={if_like(tmp / 'if')}"], None, 16),
        "diffusers SD-like, VAE x2": (None, [*diffusers, f"model.init_from={sd_like(tmp / 'sd2')}"], None, 32),
        "diffusers SD-like, VAE x4": (None, [*diffusers, f"model.init_from={sd_like(tmp / 'sd4', vae_levels=3)}"],
                                      None, 32),
    }
    for name, (config, overrides, time_major, size) in paths.items():
        cfg = inherit_t2i(load_config(config, [*overrides, f"data.size={size}", *bf16]))[0]
        torch.manual_seed(0)
        module = DiffusionModule(to_dict(cfg))
        if time_major is not None:
            module.net.time_major = time_major
        d = cfg.data
        pixels = torch.rand(2, 3, size, size) if d.images else torch.rand(2, 3, d.frames, size, size)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = module.step_loss({"pixels": pixels * 2 - 1, "caption": ["a red circle", "a dog"]}, 0, 0)
        loss.backward()
        grads = [p.grad for p in module.net.parameters() if p.requires_grad]
        assert torch.isfinite(loss) and grads and all(g is not None and torch.isfinite(g).all() for g in grads), name
        print("ok:", name, flush=True)
""")


def _run(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), ENV["PYTHONPATH"]])}   # conftest's TINY
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_group_norm_backward_on_a_frozen_channels_last_input_under_bf16_autocast():
    """A trainable GroupNorm on channels-last input that needs no gradient, under bf16 autocast: weight and bias
    gradients as a float32 reference computes them (to bf16 precision), no segfault; the float32 path too."""
    done = _run(GROUP_NORM)
    assert done.returncode == 0 and "group norm ok" in done.stdout, (done.returncode, done.stderr[-3000:])


def test_bf16_mixed_trains_a_step_on_every_path():
    """One training step under bf16 autocast (what trainer.precision=bf16-mixed runs) on each path: a finite loss and
    finite gradients on every trainable parameter."""
    done = _run(PATHS)
    ok = [line for line in done.stdout.splitlines() if line.startswith("ok:")]
    assert done.returncode == 0 and len(ok) == 7, (done.returncode, ok, done.stderr[-3000:])
