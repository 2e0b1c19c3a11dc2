"""What model.frozen_dtype=bfloat16 saves: the frozen weights' memory per GPU, from parameter counts, no weights read.

The networks are built on the meta device from their public configs (values written below), so nothing is
downloaded or allocated; a DiffusersSTUNet inflation on meta counts the trainable temporal parameters of the SD
recipe (experiments/stunet_sd.yaml: down_levels [0, 1, 2]). The frozen bytes are float32 (4 B) against bfloat16
(2 B), the U-Net's normalisation layers' affine weights kept float32 (models/diffusers_stunet.store_frozen; the text
encoder and the VAE are cast whole). What trains
(temporal modules: weights, gradients, AdamW's two moments, the EMA) is float32 either way and not counted as saved.
Activations are not counted. No GPU measurement: these are byte counts of weights.

DeepFloyd IF-I-XL: its U-Net's count is the model card's published 4.3B parameters (its config is not rebuilt here);
T5-XXL (t5-v1_1-xxl, IF's text encoder) is built from its config. Stable Diffusion 1.5: U-Net, VAE and CLIP ViT-L/14
text encoder built from their configs (the diffusers unet/vae config.json and transformers text_encoder/config.json
of the SD 1.5 pipeline).

  python bench/bench_frozen_dtype.py
"""
from __future__ import annotations

import platform

import torch
from torch import nn

GB = 1e9
NORMS = (nn.GroupNorm, nn.LayerNorm)


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


def main() -> None:
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


if __name__ == "__main__":
    main()
