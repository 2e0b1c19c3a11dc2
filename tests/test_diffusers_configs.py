"""Diffusers U-Nets of other shapes than the tiny IF / SD pipelines of lumiere_research/tiny_diffusers.py: 2, 3 and 4 levels,
1 or 2 resnets per block, linear projections and 2 transformer layers per block (SD 2.x), one cross-attention width
per block, pixels and latents. Each folder passes the config checks, inflates with the still-video identity against
the diffusers U-Net, and takes a training step; text widths the U-Net does not take are one-line errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lumiere_pl.cli import train as train_cli
from lumiere_pl.config import to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.lit import DiffusionModule
from lumiere_research.tiny_diffusers import TEXT_DIM, if_scheduler, sd_scheduler, tiny_vae

WIDTHS = (16, 32, 32, 32)


def sd_config(levels: int, per_block: int, in_channels: int = 3, **extra) -> dict:
    return {**dict(sample_size=8, in_channels=in_channels, out_channels=in_channels, layers_per_block=per_block,
                   block_out_channels=WIDTHS[:levels],
                   down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
                   up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
                   cross_attention_dim=TEXT_DIM, attention_head_dim=4, norm_num_groups=8), **extra}


def if_config(levels: int, per_block: int) -> dict:
    return dict(sample_size=16, in_channels=3, out_channels=6, layers_per_block=per_block,
                block_out_channels=WIDTHS[:levels],
                down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * (levels - 1),
                up_block_types=("SimpleCrossAttnUpBlock2D",) * (levels - 1) + ("ResnetUpsampleBlock2D",),
                mid_block_type="UNetMidBlock2DSimpleCrossAttn", cross_attention_dim=32, encoder_hid_dim=TEXT_DIM,
                encoder_hid_dim_type="text_proj", addition_embed_type="text", addition_embed_type_num_heads=2,
                attention_head_dim=8, norm_num_groups=8, resnet_time_scale_shift="scale_shift",
                resnet_skip_time_act=True, act_fn="gelu", time_embedding_act_fn="gelu",
                cross_attention_norm="group_norm")


CASES = {   # name: (U-Net config, VAE or not, model.temporal.down_levels)
    "sd_2_levels_2_resnets": (sd_config(2, 2), False, [0]),
    "sd_4_levels_linear_2_transformer_layers": (
        sd_config(4, 1, use_linear_projection=True, transformer_layers_per_block=2), False, [0, 1]),
    "sd_3_levels_2_resnets_latent_per_block_widths": (
        sd_config(3, 2, in_channels=4, cross_attention_dim=(TEXT_DIM,) * 3), True, [0, 1]),
    "if_2_levels_2_resnets": (if_config(2, 2), False, [0]),
    "if_4_levels": (if_config(4, 1), False, [0, 1, 2]),
}


def save_folder(root: Path, unet_config: dict, vae: bool, seed: int = 0) -> Path:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_config)
    with torch.no_grad():                   # no zero-initialised layer left: every layer shows in the output
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    unet.save_pretrained(root / "unet")
    (if_scheduler() if unet_config["out_channels"] == 6 else sd_scheduler()).save_pretrained(root / "scheduler")
    if vae:
        tiny_vae().save_pretrained(root / "vae")
    return root


def overrides(folder: Path, tmp: Path, size: int, *extra: str) -> list:
    return ["model.name=diffusers_stunet", f"model.init_from={folder}", "text.encoder=tiny", f"text.dim={TEXT_DIM}",
            "text.max_length=8", f"data.size={size}", "data.frames=8", f"out_dir={tmp}", *extra]


@pytest.mark.parametrize("name", sorted(CASES))
def test_diffusers_unets_of_other_shapes_inflate_and_train(name, tmp_path, single_thread):
    from diffusers import UNet2DConditionModel

    unet_config, vae, down = CASES[name]
    folder = save_folder(tmp_path / name, unet_config, vae)
    levels, factor = len(unet_config["block_out_channels"]), 2 if vae else 1
    size = 2 ** (levels - 1) * factor * 2
    cfg = load_config(None, overrides(folder, tmp_path, size, f"model.temporal.down_levels={down}"))
    module = DiffusionModule(to_dict(train_cli.inherit_t2i(cfg)[0]))
    assert (module.codec is not None) == vae

    # the paper's init property: a still video through the inflated U-Net is the diffusers U-Net on every frame
    unet = UNet2DConditionModel.from_pretrained(str(folder / "unet"))
    c, s = unet_config["in_channels"], size // factor
    img, ts = torch.randn(2, c, s, s), torch.tensor([3.0, 871.0])
    text = torch.randn(2, 6, TEXT_DIM, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = unet(img, ts, encoder_hidden_states=text).sample[:, :c]              # (b c h w)
        out = module.net(img[:, :, None].expand(-1, -1, 8, -1, -1), ts, {"text": text})   # (b c t h w)
    assert ref.abs().mean() > 0.1 and out.shape == (2, c, 8, s, s)
    assert (out - ref[:, :, None]).abs().max() <= 1e-5

    # a training step: a finite loss, gradients on every temporal module and on nothing frozen
    batch = {"pixels": torch.rand(2, 3, 8, size, size) * 2 - 1, "caption": ["a red circle", "a dog on the grass"]}
    loss = module.step_loss(batch, 0, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.net.temporal.parameters())
    assert all(p.grad is None for p in module.net.unet.parameters())


def test_text_widths_the_unet_does_not_take_are_one_line_errors(tmp_path, capsys):
    """Blocks of different cross-attention widths (one text encoder cannot feed them), and a text encoder whose width
    is not the U-Net's: lumiere-train exits 2 with one line, before building anything."""
    mixed = save_folder(tmp_path / "mixed", sd_config(2, 1, cross_attention_dim=(TEXT_DIM, 32)), False)
    wide = save_folder(tmp_path / "wide", sd_config(2, 1, cross_attention_dim=32), False)
    for folder, expected in ((mixed, "cross_attention_dim=[16, 32]: its blocks take text of different widths"),
                             (wide, "text.encoder=tiny gives 16-d tokens; the U-Net in")):
        rc = train_cli.main(["--dry-run", *overrides(folder, tmp_path, 4, "model.temporal.down_levels=[0]")])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and expected in err, err
