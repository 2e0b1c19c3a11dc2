"""Reading checkpoints safely (torch.load(weights_only=True)) and rebuilding models from them.

A lumiere-pl checkpoint is a Lightning checkpoint whose "hyper_parameters" hold the resolved experiment config as a
plain dict and whose "state_dict" holds the network ("net.*") and its EMA ("ema.*"): loadable without this
repository's classes being importable.
"""
from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import torch
from omegaconf.errors import OmegaConfBaseException

from lumiere_pl.config import ExperimentConfig, ModelConfig, from_dict
from lumiere_pl.errors import CheckpointError, InputError


MODEL_NAMES = {"t2i": "a T2I U-Net", "stunet": "a STUNet", "ssr": "an SSR model",   # model.name, in words
               "diffusers_stunet": "a STUNet inflated from a diffusers U-Net"}
EXPECTED = "a checkpoint written by lumiere-train (.ckpt)"


def _what_is(path: Path) -> str:
    """What a file that torch cannot read looks like, from its first bytes."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04"):          # torch.save's zip archive, cut short or damaged
        return "a truncated or damaged torch file (its zip archive is incomplete: an interrupted copy or download?)"
    if head[:1] == b"\x80":                     # a pickle: torch's legacy format or a plain pickle
        return "a pickle that is not a complete torch file (a plain pickle, or a truncated legacy torch file)"
    if len(head) >= 9 and head[8:9] == b"{":    # 8-byte header length, then a JSON header
        return "a safetensors file (weights only, e.g. from lumiere-export), not a training checkpoint"
    return "not a torch file"


def _refused(err: Exception) -> str:
    """Our summary of torch's weights_only refusal; its text (which advises turning the safety off) is not used."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    what = f" ({found.group(1)})" if found else ""
    return (f"holds a pickled Python object{what}, which lumiere-pl never writes into a checkpoint; refused: "
            "checkpoints are read with weights_only=True (tensors and plain data only)")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict:
    """A lumiere-pl checkpoint as a dict, read with weights_only=True. Raises CheckpointError naming the file and what
    it is instead: missing, a folder, not a torch file, truncated, a torch file of something else, or one holding
    objects we refuse to unpickle. mmap: map the tensors instead of reading them (a cheap check of a large file)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; expected {EXPECTED}")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; expected {EXPECTED}")
    try:
        with warnings.catch_warnings():                      # torch's note on pickle protocols: not for the user
            warnings.simplefilter("ignore", UserWarning)
            ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if "GLOBAL" in str(err):
            raise CheckpointError(f"{path}: {_refused(err)}") from None
        if "Unsupported operand" in str(err) and _what_is(path).startswith("a pickle"):
            raise CheckpointError(f"{path}: a pickle that torch.save did not write (a plain pickle?); expected "
                                  f"{EXPECTED}") from None
        raise CheckpointError(f"{path}: {_what_is(path)}; expected {EXPECTED}") from None
    except RuntimeError as err:
        if mmap and "mmap can only be used" in str(err):     # torch's legacy (non-zip) format: read it whole
            return load_checkpoint(path, map_location)
        if zipfile.is_zipfile(path):                         # complete, yet unreadable: say what torch said
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"{path}: a torch file that torch {torch.__version__} cannot read ({first}); "
                                  f"expected {EXPECTED}") from err
        raise CheckpointError(f"{path}: {_what_is(path)}; expected {EXPECTED}") from None
    except (EOFError, KeyError, ValueError, TypeError, AttributeError, IndexError, OSError):
        raise CheckpointError(f"{path}: {_what_is(path)}; expected {EXPECTED}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: a torch file holding a {type(ckpt).__name__}, not a lumiere-pl checkpoint; "
                              f"expected {EXPECTED}")
    hp = ckpt.get("hyper_parameters")
    if "state_dict" not in ckpt or not isinstance(hp, dict) or not isinstance(hp.get("config"), dict):
        if _what_is(path).startswith("a safetensors"):
            raise CheckpointError(f"{path}: {_what_is(path)}; expected {EXPECTED}")
        raise CheckpointError(f"{path}: a torch file but not a lumiere-pl checkpoint (no 'state_dict' and "
                              f"'hyper_parameters.config'); expected {EXPECTED}")
    return ckpt


def model_name(ckpt: dict) -> str:
    model = ckpt["hyper_parameters"]["config"].get("model", {})
    return str(model.get("name", ModelConfig.name)) if isinstance(model, dict) else "?"


def check_model(path: str | Path, ckpt: dict, expect: Optional[Sequence[str]], hint: str = "") -> None:
    """A checkpoint of another model than `expect` (model.name values; None: any) -> CheckpointError."""
    name = model_name(ckpt)
    if expect is not None and name not in expect:
        what = MODEL_NAMES.get(name, "an unknown model")
        wanted = " or ".join(MODEL_NAMES.get(n, n) for n in expect)
        raise CheckpointError(f"{path}: a checkpoint of {what} (model.name={name!r}); expected a checkpoint of "
                              f"{wanted}{hint}")


def config_of(ckpt: dict, path: str | Path = "checkpoint") -> ExperimentConfig:
    try:
        return from_dict(ckpt["hyper_parameters"]["config"])
    except (OmegaConfBaseException, ValueError, TypeError) as err:
        first = (getattr(err, "msg", None) or str(err)).splitlines()[0]
        raise CheckpointError(f"{path}: its config does not fit this version of lumiere-pl ({first}); expected "
                              f"{EXPECTED} by this version") from None


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
    check_model(path, ckpt, ["t2i"], " (stage 1: lumiere-train --config experiments/t2i_*.yaml)")
    return config_of(ckpt, path), net_state(ckpt, ema=True)


def load_module(path: str | Path, map_location: str | torch.device = "cpu", expect: Optional[Sequence[str]] = None,
                hint: str = ""):
    """Rebuild the LightningModule of a checkpoint (for sampling / evaluation); expect: the model.name values
    accepted (None: any), else CheckpointError naming what the file holds. An exported folder
    (save_pretrained) is read by from_pretrained."""
    from lumiere_pl.lit import module_class

    if Path(path).is_dir():
        return from_pretrained(path, map_location)
    ckpt = load_checkpoint(path, map_location)
    check_model(path, ckpt, expect, hint)
    name = config_of(ckpt, path).model.name                 # a config this version cannot read: named, not a trace
    module = module_class(name)(ckpt["hyper_parameters"]["config"])
    try:
        module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:                             # missing / unexpected keys, shape mismatches
        first = str(err).splitlines()[1:2] or [str(err)]
        raise CheckpointError(f"{path}: its weights do not fit the model its config describes ({first[0].strip()}); "
                              f"was the file edited, or written by another version?") from None
    return module.to(map_location).eval()


# ---------------------------------------------------------------------------------------------------------------------
# Export: the (EMA) network weights alone as safetensors, the resolved config beside them as YAML.


def export_weights(ckpt_path: str | Path, out: str | Path, ema: bool = True) -> Tuple[Path, Path]:
    """checkpoint -> out (.safetensors: net weights, EMA by default) and out.yaml (the resolved config).

    The config is also stored as JSON in the safetensors metadata ("config"), so the file stands alone.
    """
    import json

    from omegaconf import OmegaConf
    from safetensors.torch import save

    from lumiere_pl.utils.atomic import write_bytes, write_text

    out = Path(out)
    if out.suffix != ".safetensors":
        raise InputError(f"--out {out}: expected a .safetensors file name")
    ckpt = load_checkpoint(ckpt_path)
    config = ckpt["hyper_parameters"]["config"]
    if config["model"]["name"] == "diffusers_stunet":
        raise InputError(f"{ckpt_path}: a diffusers_stunet exports as a folder (save_pretrained: lumiere-export "
                         f"--out DIR); its checkpoints leave the frozen U-Net weights in model.init_from")
    weights = {k: v.detach().to("cpu").clone().contiguous() for k, v in net_state(ckpt, ema=ema).items()}
    meta = {"format": "lumiere-pl", "config": json.dumps(config), "ema": str(ema).lower(),
            "global_step": str(ckpt.get("global_step", 0)), "source": str(ckpt_path)}
    write_bytes(out, save(weights, metadata=meta))          # each file complete or absent, never half-written
    cfg_path = write_text(out.with_suffix(".yaml"), OmegaConf.to_yaml(OmegaConf.create(config)))
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
            raise InputError(f"{p}: export not found; expected the .safetensors written by lumiere-export and the "
                             ".yaml beside it")
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
