"""Reading checkpoints safely (torch.load(weights_only=True)) and rebuilding models from them.

A lumiere-pl checkpoint is a Lightning checkpoint whose "hyper_parameters" hold the resolved experiment config as a
plain dict and whose "state_dict" holds the network ("net.*") and its EMA ("ema.*"): loadable without this
repository's classes being importable.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import torch

from lumiere_pl.config import ExperimentConfig, from_dict


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise RuntimeError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from err
    for key in ("state_dict", "hyper_parameters"):
        if key not in ckpt:
            raise KeyError(f"checkpoint {path} has no {key!r}: not a lumiere-pl checkpoint")
    if "config" not in ckpt["hyper_parameters"]:
        raise KeyError(f"checkpoint {path}: hyper_parameters has no 'config': not a lumiere-pl checkpoint")
    return ckpt


def config_of(ckpt: dict) -> ExperimentConfig:
    return from_dict(ckpt["hyper_parameters"]["config"])


def net_state(ckpt: dict, ema: bool = True) -> Dict[str, torch.Tensor]:
    """The network's weights ("net.*" keys, prefix removed); with ema, trainable ones replaced by their EMA."""
    sd = ckpt["state_dict"]
    state = {k[4:]: v for k, v in sd.items() if k.startswith("net.")}
    if ema:
        for k in state:
            shadow = sd.get("ema." + k.replace(".", "__"))
            if shadow is not None:
                state[k] = shadow.to(state[k].dtype)
    return state


def load_t2i(path: str | Path) -> Tuple[ExperimentConfig, Dict[str, torch.Tensor]]:
    """The (EMA) weights and config of a pretrained T2I U-Net, to inflate."""
    ckpt = load_checkpoint(path)
    cfg = config_of(ckpt)
    if cfg.model.name != "t2i":
        raise ValueError(f"model.init_from={path}: expected a T2I checkpoint, found model.name={cfg.model.name!r}")
    return cfg, net_state(ckpt, ema=True)


def load_module(path: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild the LightningModule of a checkpoint (for sampling / evaluation)."""
    from lumiere_pl.lit import module_class

    ckpt = load_checkpoint(path, map_location)
    config = ckpt["hyper_parameters"]["config"]
    module = module_class(config["model"]["name"])(config)
    module.load_state_dict(ckpt["state_dict"])
    return module.to(map_location).eval()
