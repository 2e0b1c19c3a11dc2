"""Tiny random diffusers pipelines built offline from configs (nothing from a hub), saved with save_pretrained.

  if_like(dir)  DeepFloyd IF stage I in miniature: pixel U-Net with 6 output channels (learned variance),
                ResnetDownsample / SimpleCrossAttn blocks, T5 text encoder (encoder_hid_proj, pooled text embedding),
                DDPMScheduler with squaredcos_cap_v2, learned_range variance, thresholding
  sd_like(dir)  Stable Diffusion in miniature: latent U-Net with CrossAttn / plain blocks, AutoencoderKL (x2; x4),
                CLIP text encoder, PNDMScheduler with scaled_linear (prediction eps or v)

Both use a word-level tokenizer built with the `tokenizers` library and wrapped as PreTrainedTokenizerFast.
"""
from __future__ import annotations

from pathlib import Path

import torch

WORDS = ("a the red blue green yellow circle square triangle moving left right up down quickly slowly dog cat car "
         "city night man rabbit grass traffic jam on in of").split()
TEXT_DIM = 16


def tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])  # as T5
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>")


def _perturb(model, seed: int, scale: float = 0.05):
    """No zero-initialised layer left (a 'trained' network): outputs depend on every layer."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model


def if_unet(seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return _perturb(UNet2DConditionModel(
        sample_size=16, in_channels=3, out_channels=6, layers_per_block=1, block_out_channels=(16, 32, 32),
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", cross_attention_dim=32, encoder_hid_dim=TEXT_DIM,
        encoder_hid_dim_type="text_proj", addition_embed_type="text", addition_embed_type_num_heads=2,
        attention_head_dim=8, norm_num_groups=8, norm_eps=1e-5, resnet_time_scale_shift="scale_shift",
        resnet_skip_time_act=True, act_fn="gelu", time_embedding_act_fn="gelu", cross_attention_norm="group_norm"),
        seed)


def sd_unet(seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return _perturb(UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32, 32),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM, attention_head_dim=4, norm_num_groups=8), seed)


def tiny_vae(seed: int = 0, levels: int = 2):
    """An AutoencoderKL downsampling by 2 ** (levels - 1)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
                         up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=(8, 16, 16, 16)[:levels],
                         latent_channels=4, norm_num_groups=8, sample_size=32)


def t5_encoder(seed: int = 0):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(vocab_size=len(WORDS) + 3, d_model=TEXT_DIM, d_kv=8, d_ff=32, num_layers=1,
                                   num_heads=2, relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
                                   decoder_start_token_id=0))


def clip_encoder(seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    return CLIPTextModel(CLIPTextConfig(vocab_size=len(WORDS) + 3, hidden_size=TEXT_DIM, intermediate_size=32,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                                        pad_token_id=0, bos_token_id=1, eos_token_id=1))


def if_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", beta_start=0.0001,
                         beta_end=0.02, variance_type="learned_range", prediction_type="epsilon", thresholding=True,
                         dynamic_thresholding_ratio=0.95, sample_max_value=1.5, clip_sample=True)


def sd_scheduler(prediction: str = "epsilon"):
    from diffusers import PNDMScheduler

    return PNDMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                         beta_end=0.012, prediction_type=prediction, steps_offset=1, skip_prk_steps=True,
                         set_alpha_to_one=False)


def if_like(root: Path) -> Path:
    root = Path(root)
    if_unet().save_pretrained(root / "unet")
    if_scheduler().save_pretrained(root / "scheduler")
    t5_encoder().save_pretrained(root / "text_encoder")
    tokenizer().save_pretrained(root / "tokenizer")
    return root


def sd_like(root: Path, prediction: str = "epsilon", vae_levels: int = 2) -> Path:
    """vae_levels=3: latents downsampled 4x instead of 2x."""
    root = Path(root)
    sd_unet().save_pretrained(root / "unet")
    tiny_vae(levels=vae_levels).save_pretrained(root / "vae")
    sd_scheduler(prediction).save_pretrained(root / "scheduler")
    clip_encoder().save_pretrained(root / "text_encoder")
    tokenizer().save_pretrained(root / "tokenizer")
    return root
