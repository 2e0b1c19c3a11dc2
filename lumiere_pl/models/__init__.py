"""Networks. MODELS maps model.name to a builder(cfg, text_dim) -> nn.Module; go-to-definition works on each."""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
from torch import nn

from lumiere_pl.config import ExperimentConfig
from lumiere_pl.models.diffusers_stunet import DiffusersSTUNet
from lumiere_pl.models.ssr import build_ssr
from lumiere_pl.models.stunet import STUNet
from lumiere_pl.models.unet import UNet


def build_t2i(cfg: ExperimentConfig, text_dim: int, t2i_state: Optional[dict] = None) -> UNet:
    """A T2I U-Net; t2i_state (model.init_from) starts it from a pretrained one: fine-tuning, e.g. on a style."""
    net = UNet(cfg.model.unet, text_dim)
    if t2i_state is not None:
        net.load_state_dict(t2i_state)
    return net


def build_stunet(cfg: ExperimentConfig, text_dim: int, t2i_state: Optional[dict] = None) -> STUNet:
    """Inflate a T2I U-Net into a STUNet; t2i_state (the pretrained weights) is loaded before inflation."""
    t2i = UNet(cfg.model.unet, text_dim)
    if t2i_state is not None:
        t2i.load_state_dict(t2i_state)
    return STUNet(t2i, cfg.model.temporal)


def build_diffusers_stunet(cfg: ExperimentConfig, text_dim: int, t2i_state: Optional[dict] = None) -> DiffusersSTUNet:
    """Inflate the diffusers U-Net of model.init_from (a local pipeline or unet folder, safetensors only); t2i_state,
    if given, replaces its weights (a diffusers U-Net state_dict).

    Under model.frozen_dtype=bfloat16 the U-Net is read straight into bf16, so loading never holds a float32 copy of
    it; the few weights kept float32 (what trains, the normalisation layers) are then read again from the folder at
    full precision, so they equal a float32 load's."""
    from lumiere_pl.models.diffusers_folder import load_unet, locate, read_tensors

    d, frozen = cfg.model.diffusers, getattr(torch, cfg.model.frozen_dtype)
    folder = locate(cfg.model.init_from, d.variant, d.vae)
    unet = load_unet(folder, d.variant, frozen).train()                 # from_pretrained leaves it in eval mode
    net = DiffusersSTUNet(unet, cfg.model.temporal, text_dim, frozen_dtype=frozen,
                          grad_checkpointing=d.grad_checkpointing or cfg.model.checkpointing)
    if net.widened:
        with torch.no_grad():
            for name, value in read_tensors(folder.unet, net.widened, d.variant).items():
                net.unet.get_parameter(name).copy_(value)
    if t2i_state is not None:
        net.unet.load_state_dict(t2i_state)
    return net


MODELS: Dict[str, Callable[..., nn.Module]] = {
    "t2i": build_t2i,
    "stunet": build_stunet,
    "ssr": build_ssr,
    "diffusers_stunet": build_diffusers_stunet,     # DeepFloyd IF / Stable Diffusion U-Nets (docs/DIFFUSERS.md)
}


# Module classes trainer.fsdp.shard_modules may name: each is called through its own forward by its parent (FSDP2
# gathers a unit's weights in that forward's hook), in every model above but diffusers_stunet (diffusers' classes).
SHARD_UNITS = ("ResBlock", "AttentionBlock", "Downsample", "Upsample",
               "TemporalConv", "TemporalAttention", "TemporalDownsample", "TemporalUpsample")


def build_model(cfg: ExperimentConfig, text_dim: int, t2i_state: Optional[dict] = None) -> nn.Module:
    if cfg.model.name not in MODELS:
        raise KeyError(f"model.name={cfg.model.name!r}: known models are {sorted(MODELS)}")
    net = MODELS[cfg.model.name](cfg, text_dim, t2i_state)
    if cfg.model.checkpointing:
        net.grad_checkpointing = True        # every network recomputes its blocks in backward when this is set
    return net


def count_parameters(net: nn.Module) -> Dict[str, int]:
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return {"trainable": trainable, "frozen": sum(p.numel() for p in net.parameters()) - trainable}


__all__ = ["MODELS", "SHARD_UNITS", "DiffusersSTUNet", "STUNet", "UNet", "build_model", "count_parameters"]
