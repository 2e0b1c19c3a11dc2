"""What model.frozen_dtype=bfloat16 saves: the frozen weights' memory per GPU, from parameter counts, no weights read.

The networks are built on the meta device from their public configs (values written below), so nothing is
downloaded or allocated; a DiffusersSTUNet inflation on meta counts the trainable temporal parameters of the SD
recipe (experiments/diffusers/sd.yaml: down_levels [0, 1, 2]). The frozen bytes are float32 (4 B) against bfloat16
(2 B), the U-Net's normalisation layers' affine weights kept float32 (models/diffusers_stunet.store_frozen; the text
encoder and the VAE are cast whole). What trains
(temporal modules: weights, gradients, AdamW's two moments, the EMA) is float32 either way and not counted as saved.
Activations are not counted. No GPU measurement: these are byte counts of weights.

DeepFloyd IF-I-XL: its U-Net's count is the model card's published 4.3B parameters (its config is not rebuilt here);
T5-XXL (t5-v1_1-xxl, IF's text encoder) is built from its config. Stable Diffusion 1.5: U-Net, VAE and CLIP ViT-L/14
text encoder built from their configs (the diffusers unet/vae config.json and transformers text_encoder/config.json
of the SD 1.5 pipeline).

Then loading, measured: a random SD-like U-Net (137 M parameters) and a T5 encoder (187 M) saved in a temporary
folder as diffusers / transformers save them (the U-Net in float32 and as an fp16 variant, the T5 as an fp16 variant,
as DeepFloyd IF ships it), each loaded in a fresh process two ways: read in float32 then cast to bf16, and the way
lumiere-train loads them, straight into bf16 (models.build_diffusers_stunet; the text encoder with its dtype).
Printed: the peak resident memory over the process's baseline after imports (VmHWM; file pages of the
memory-mapped weights included) and what stays resident once loaded. --no-load skips it.

  python -m bench.bench_frozen_dtype [--no-load]
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

GB = 1e9
NORMS = (nn.GroupNorm, nn.LayerNorm)
ROOT = Path(__file__).resolve().parents[1]


def counts(model: nn.Module) -> tuple[int, int]:
    """(all parameters, parameters of normalisation layers: kept float32)."""
    norm = sum(p.numel() for m in model.modules() if isinstance(m, NORMS) for p in m.parameters(recurse=False))
    return sum(p.numel() for p in model.parameters()), norm


def t5_xxl() -> nn.Module:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                                   feed_forward_proj="gated-gelu", tie_word_embeddings=False))


def sd15_unet() -> nn.Module:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                                block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
                                attention_head_dim=8, norm_num_groups=32)


def sd15_vae() -> nn.Module:
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                         layers_per_block=2, latent_channels=4, norm_num_groups=32, sample_size=512)


def clip_l() -> nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77))


def temporal_params(unet: nn.Module, text_dim: int) -> int:
    from lumiere_pl.config import TemporalConfig
    from lumiere_pl.models.diffusers_stunet import DiffusersSTUNet

    net = DiffusersSTUNet(unet, TemporalConfig(down_levels=[0, 1, 2]), text_dim)
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def row(name: str, n: int, norm: int) -> tuple[float, float]:
    fp32, bf16 = 4 * n / GB, (2 * (n - norm) + 4 * norm) / GB
    print(f"| {name} | {n / 1e9:.3f} B | {fp32:.2f} GB | {bf16:.2f} GB | {fp32 - bf16:.2f} GB |")
    return fp32, bf16


def _kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def load_worker(net: str, way: str, folder: str, variant: str) -> None:
    """One load in this fresh process; prints 'peak held' in MiB over the baseline after imports."""
    from lumiere_pl.config import ExperimentConfig
    from lumiere_pl.models import build_diffusers_stunet
    from lumiere_pl.models.diffusers_folder import load_unet, locate
    from lumiere_pl.models.diffusers_stunet import DiffusersSTUNet
    from lumiere_pl.text.encoders import HFTextEncoder

    variant = variant or None
    cfg = ExperimentConfig()
    cfg.model.init_from, cfg.model.diffusers.variant, cfg.model.frozen_dtype = folder, variant, "bfloat16"
    Path("/proc/self/clear_refs").write_text("5")                   # VmHWM := VmRSS
    base = _kib("VmRSS")
    if net == "unet" and way == "cast":
        unet = load_unet(locate(folder, variant), variant, torch.float32)
        model = DiffusersSTUNet(unet, cfg.model.temporal, unet.config.cross_attention_dim, frozen_dtype=torch.bfloat16)
    elif net == "unet":
        model = build_diffusers_stunet(cfg, 256)
    else:
        model = HFTextEncoder(folder, "t5", kind="t5", variant=variant,
                              dtype=torch.float32 if way == "cast" else torch.bfloat16).to(torch.bfloat16)
    assert model is not None                                        # held until the figures are read
    print(f"{(_kib('VmHWM') - base) / 1024:.0f} {(_kib('VmRSS') - base) / 1024:.0f}")


def measure_loading() -> None:
    from diffusers import UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        unet = UNet2DConditionModel(sample_size=32, in_channels=4, out_channels=4, layers_per_block=2,
                                    block_out_channels=(128, 256, 512, 512), cross_attention_dim=256,
                                    attention_head_dim=8)
        unet.save_pretrained(f"{tmp}/unet")
        unet.half().save_pretrained(f"{tmp}/unet", variant="fp16")
        t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=1024, d_kv=64, d_ff=2816, num_layers=12, num_heads=16,
                                     feed_forward_proj="gated-gelu"))
        t5.half().save_pretrained(f"{tmp}/t5", variant="fp16")
        from lumiere_research.tiny_diffusers import tokenizer

        tokenizer().save_pretrained(f"{tmp}/t5")
        sizes = {"unet": sum(p.numel() for p in unet.parameters()), "t5": sum(p.numel() for p in t5.parameters())}
        del unet, t5
        print("\nloading, measured (MiB over the process's baseline after imports; a fresh process per load):")
        print("| network, file | parameters | bf16 weights | float32 then cast: peak / held | straight into bf16: "
              "peak / held | peak ratio | held ratio |")
        print("|---|---|---|---|---|---|---|")
        for net, variant in (("unet", ""), ("unet", "fp16"), ("t5", "fp16")):
            got = {}
            for way in ("cast", "direct"):
                cmd = [sys.executable, "-m", "bench.bench_frozen_dtype", "--load-worker", net, way, f"{tmp}/{net}",
                       variant]
                out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
                got[way] = [float(v) for v in out[-2:]]
            (pc, hc), (pd, hd) = got["cast"], got["direct"]
            print(f"| {'U-Net' if net == 'unet' else 'T5 encoder'}, {variant or 'float32'} file | "
                  f"{sizes[net] / 1e6:.0f} M | {2 * sizes[net] / 2**20:.0f} MiB | {pc:.0f} / {hc:.0f} | {pd:.0f} / "
                  f"{hd:.0f} | {pd / pc:.2f}x | {hd / hc:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-load", action="store_true", help="skip the measured loading")
    ap.add_argument("--load-worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_worker:
        return load_worker(*args.load_worker)
    print(f"torch {torch.__version__}, {platform.machine()}; meta-device parameter counts, no weights allocated\n")
    print("| frozen network | parameters | float32 | bfloat16 | saved per GPU |")
    print("|---|---|---|---|---|")
    with torch.device("meta"):
        t5, unet, vae, clip = t5_xxl(), sd15_unet(), sd15_vae(), clip_l()
        trainable_sd = temporal_params(unet, 768)
    if_unet = row("IF-I-XL U-Net (model card: 4.3B; norms not counted apart)", int(4.3e9), 0)
    if_text = row("T5-XXL encoder (t5-v1_1-xxl)", counts(t5)[0], 0)
    total = [a + b for a, b in zip(if_unet, if_text)]
    print(f"| **IF-I-XL + T5-XXL** | | {total[0]:.2f} GB | {total[1]:.2f} GB | **{total[0] - total[1]:.2f} GB** |")
    sd = [row("SD 1.5 U-Net", *counts(unet)), row("SD 1.5 VAE", counts(vae)[0], 0),
          row("CLIP ViT-L/14 text", counts(clip)[0], 0)]
    total = [sum(x) for x in zip(*sd)]
    print(f"| **SD 1.5 + CLIP-L + VAE** | | {total[0]:.2f} GB | {total[1]:.2f} GB | **{total[0] - total[1]:.2f} GB** |")
    n, norm = counts(unet)
    print(f"\nnormalisation weights kept float32: {norm / n:.3%} of the SD 1.5 U-Net's parameters")
    print(f"trainable temporal parameters of the SD 1.5 STUNet (down_levels [0, 1, 2]): {trainable_sd / 1e6:.1f} M, "
          f"float32 weights + grads + AdamW moments + EMA = {20 * trainable_sd / GB:.2f} GB (unchanged)")
    if not args.no_load:
        measure_loading()


if __name__ == "__main__":
    main()
