"""Lumiere's compute argument at paper scale, counted on the meta device (no memory, no weights, seconds).

FLOPs of one forward pass (1 multiply-add = 2 FLOPs; torch.utils.flop_counter, attention included) that produce one
80-frame 128x128 clip, for an Imagen-like base U-Net inflated three ways:
  stunet      Lumiere's STUNet: temporal down/up-sampling after the spatial resizes of 4 levels (80 -> 5 frames at
              the coarsest level), temporal convs everywhere, 2 temporal attention layers at the coarsest level
  no_down     the same network without temporal down/up-sampling (every level at 80 frames)
  cascade     a keyframe model (the no_down network on 80/k keyframes) plus a temporal super-resolution model (the
              no_down network with the <C, M> input, on all 80 frames): the Imagen Video / Video LDM pattern, one TSR
              stage, same resolution
and the same comparison for this project's tiny CPU config (the `make train` STUNet, 16 frames at 32x32).
The Imagen-like widths are an assumption (Imagen's base U-Net is not public): channels, levels and attention
resolutions are printed; the ratios are what the argument is about.

  python -m bench.bench_paper_compute [--channels 256] [--frames 80] [--size 128] [--keyframe-stride 5]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time

import torch

from lumiere_pl.config import TemporalConfig, UNetConfig
from lumiere_pl.models.stunet import STUNet
from lumiere_pl.models.unet import UNet
from lumiere_pl.utils.flops import count_flops

TEXT_DIM, TOKENS = 4096, 64                      # T5-XXL tokens, as Imagen


def clip_flops(ucfg: UNetConfig, tcfg: TemporalConfig, frames: int, size: int) -> tuple[float, float]:
    """(forward FLOPs for one clip, parameters) of the STUNet built from ucfg/tcfg, counted on the meta device."""
    with torch.device("meta"):
        net = STUNet(UNet(ucfg, TEXT_DIM), tcfg)
        x = torch.zeros(1, 3, frames, size, size)
        cond = {"text": torch.zeros(1, TOKENS, TEXT_DIM), "text_mask": torch.ones(1, TOKENS, dtype=torch.bool)}
        if tcfg.conditional:
            cond.update(cond_video=torch.zeros(1, 3, frames, size, size), cond_mask=torch.zeros(1, 1, frames, size, size))
        flops = count_flops(lambda: net(x, torch.zeros(1), cond))
    return float(flops), float(sum(p.numel() for p in net.parameters()))


def compare(name: str, ucfg: UNetConfig, down: list, attn_layers: int, frames: int, size: int, stride: int) -> None:
    t0 = time.perf_counter()
    base = dict(attn_layers=attn_layers, max_frames=max(frames, 128))
    stunet, params = clip_flops(ucfg, TemporalConfig(down_levels=down, **base), frames, size)
    no_down, _ = clip_flops(ucfg, TemporalConfig(down_levels=[], **base), frames, size)
    keyframes, _ = clip_flops(ucfg, TemporalConfig(down_levels=[], **base), frames // stride, size)
    tsr, _ = clip_flops(ucfg, TemporalConfig(down_levels=[], conditional=True, **base), frames, size)
    print(f"\n{name}: {frames} frames at {size}x{size}; U-Net channels {ucfg.channels} x {list(ucfg.channel_mults)}, "
          f"{ucfg.num_res_blocks} res blocks per level, spatial attention at levels {list(ucfg.attn_levels)}; "
          f"{params / 1e6:.0f} M parameters (STUNet); temporal down_levels {down} -> {frames // 2 ** len(down)} frames "
          f"at the coarsest level; counted in {time.perf_counter() - t0:.0f} s")
    print("| pipeline | GFLOPs per clip (one forward) | GFLOPs per frame | vs STUNet |\n|---|---|---|---|")
    rows = [("STUNet (temporal down/up)", stunet), ("no temporal down/up", no_down),
            (f"cascade: keyframes ({frames // stride}) + TSR ({frames})", keyframes + tsr)]
    for label, f in rows:
        print(f"| {label} | {f / 1e9:,.1f} | {f / frames / 1e9:.2f} | {f / stunet:.2f}x |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--frames", type=int, default=80)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--keyframe-stride", type=int, default=5, help="keyframes every k frames (80 / 5 = 16 keyframes)")
    args = ap.parse_args()
    print(f"machine   {platform.machine()}; torch {torch.__version__}; FLOPs counted on the meta device (no compute)")
    imagen = UNetConfig(channels=args.channels, channel_mults=[1, 2, 3, 4, 4], num_res_blocks=3, attn_levels=[3, 4],
                        head_dim=64)
    compare("Imagen-like base, paper scale", imagen, [0, 1, 2, 3], 2, args.frames, args.size, args.keyframe_stride)
    tiny = UNetConfig(channels=32, channel_mults=[1, 2, 2], num_res_blocks=1, attn_levels=[2], head_dim=32)
    compare("this project's make-train STUNet", tiny, [0, 1], 1, 16, 32, 4)
    return 0


if __name__ == "__main__":
    sys.exit(main())
