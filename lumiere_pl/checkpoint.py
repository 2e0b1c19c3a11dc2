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
    """Rebuild the LightningModule of a checkpoint, or of an exported folder (save_pretrained), for sampling."""
    from lumiere_pl.lit import module_class

    if Path(path).is_dir():
        return from_pretrained(path, map_location)
    ckpt = load_checkpoint(path, map_location)
    config = ckpt["hyper_parameters"]["config"]
    module = module_class(config["model"]["name"])(config)
    module.load_state_dict(ckpt["state_dict"])
    return module.to(map_location).eval()


# ---------------------------------------------------------------------------------------------------------------------
# Export: the (EMA) network weights alone as safetensors, the resolved config beside them as YAML.


def export_weights(ckpt_path: str | Path, out: str | Path, ema: bool = True) -> Tuple[Path, Path]:
    """checkpoint -> out (.safetensors: net weights, EMA by default) and out.yaml (the resolved config).

    The config is also stored as JSON in the safetensors metadata ("config"), so the file stands alone.
    """
    import json

    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    ckpt = load_checkpoint(ckpt_path)
    config = ckpt["hyper_parameters"]["config"]
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"export path {out}: expected a .safetensors file name")
    if config["model"]["name"] == "diffusers_stunet":
        raise ValueError(f"{ckpt_path}: a diffusers_stunet exports as a folder (save_pretrained: lumiere-export "
                         f"--out DIR); its checkpoints leave the frozen U-Net weights in model.init_from")
    weights = {k: v.detach().to("cpu").clone().contiguous() for k, v in net_state(ckpt, ema=ema).items()}
    meta = {"format": "lumiere-pl", "config": json.dumps(config), "ema": str(ema).lower(),
            "global_step": str(ckpt.get("global_step", 0)), "source": str(ckpt_path)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file(weights, str(tmp), metadata=meta)
    tmp.replace(out)
    cfg_path = out.with_suffix(".yaml")
    cfg_path.write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
    return out, cfg_path


def load_exported(path: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild the LightningModule of an export (weights + the YAML beside them); its EMA equals the weights."""
    from omegaconf import OmegaConf
    from safetensors.torch import load_file

    from lumiere_pl.lit import module_class
    from lumiere_pl.utils.ema import EMA

    path = Path(path)
    cfg_path = path.with_suffix(".yaml")
    for p in (path, cfg_path):
        if not p.is_file():
            raise FileNotFoundError(f"export not found: {p}")
    config = OmegaConf.to_container(OmegaConf.load(cfg_path), resolve=True)
    module = module_class(config["model"]["name"])(config)
    module.net.load_state_dict(load_file(str(path)))
    module.ema = EMA(module.net, module.cfg.train.ema_decay)
    return module.to(map_location).eval()


# ---------------------------------------------------------------------------------------------------------------------
# Export as a folder: one call loads it back (from_pretrained); lumiere-sample --ckpt DIR accepts it.

PRETRAINED_WEIGHTS, PRETRAINED_CONFIG = "model.safetensors", "config.yaml"


def save_pretrained(module, out: str | Path, ema: bool = True) -> Path:
    """A trained module as a folder: config.yaml (the resolved experiment config) and model.safetensors (the
    network's weights, EMA by default). A diffusers_stunet also gets unet/ (its U-Net in diffusers' format, trained
    layers included), scheduler/ (the schedule it was trained with) and, latent, vae/: the folder then stands for
    model.init_from; only the text encoder stays where text.path says. Written to OUT.tmp, then renamed."""
    import json
    import shutil
    from contextlib import nullcontext

    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = module.export_config()
    state = module.ema.averaged_state_dict(module.net) if ema else dict(module.net.state_dict())
    if config["model"]["name"] == "diffusers_stunet":
        from diffusers import DDPMScheduler

        from lumiere_pl.models.diffusers_folder import PREDICTION_TYPES

        with module.ema.apply_to(module.net) if ema else nullcontext():
            module.net.unet.save_pretrained(str(tmp / "unet"), safe_serialization=True)
        state = {k: v for k, v in state.items() if not k.startswith("unet.")}
        prediction = {v: k for k, v in PREDICTION_TYPES.items()}[config["diffusion"]["prediction"]]
        DDPMScheduler(**config["model"]["t2i_schedule"], prediction_type=prediction).save_pretrained(
            str(tmp / "scheduler"))
        if module.codec is not None:
            module.codec.vae.save_pretrained(str(tmp / "vae"), safe_serialization=True)
    weights = {k: v.detach().to("cpu").clone().contiguous() for k, v in state.items()}
    save_file(weights, str(tmp / PRETRAINED_WEIGHTS),
              metadata={"format": "lumiere-pl", "config": json.dumps(config), "ema": str(ema).lower()})
    (tmp / PRETRAINED_CONFIG).write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
    old = out.with_name(out.name + ".old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def from_pretrained(path: str | Path, map_location: str | torch.device = "cpu"):
    """The LightningModule of a save_pretrained folder, ready to sample (its EMA equals the weights)."""
    from omegaconf import OmegaConf
    from safetensors.torch import load_file

    from lumiere_pl.lit import module_class
    from lumiere_pl.utils.ema import EMA

    path = Path(path)
    for name in (PRETRAINED_CONFIG, PRETRAINED_WEIGHTS):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path} is not an exported model folder: missing {path / name}")
    config = OmegaConf.to_container(OmegaConf.load(path / PRETRAINED_CONFIG), resolve=True)
    diffusers = config["model"]["name"] == "diffusers_stunet"
    if diffusers:                                       # the folder itself holds the U-Net (and the VAE)
        config["model"]["init_from"] = str(path)
        config["model"]["diffusers"].update(variant=None, vae=str(path / "vae") if (path / "vae").is_dir() else None)
    module = module_class(config["model"]["name"])(config)
    missing, unexpected = module.net.load_state_dict(load_file(str(path / PRETRAINED_WEIGHTS)), strict=False)
    missing = [k for k in missing if not (diffusers and k.startswith("unet."))]
    if missing or unexpected:
        raise ValueError(f"{path / PRETRAINED_WEIGHTS} does not match its config: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    module.ema = EMA(module.net, module.cfg.train.ema_decay)
    return module.to(map_location).eval()
