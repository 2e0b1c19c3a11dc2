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
from lumiere_pl.utils import weights


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


def _is_zip(path: Path) -> bool:
    """zipfile.is_zipfile, which raises on some damaged archives (a multi-disk end record) instead of saying no."""
    try:
        return zipfile.is_zipfile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


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
        if _is_zip(path):                                    # complete, yet unreadable: say what torch said
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"{path}: a torch file that torch {torch.__version__} cannot read ({first}); "
                                  f"expected {EXPECTED}") from err
        raise CheckpointError(f"{path}: {_what_is(path)}; expected {EXPECTED}") from None
    except (EOFError, KeyError, ValueError, TypeError, AttributeError, IndexError, OSError, zipfile.BadZipFile,
            RecursionError, MemoryError, OverflowError):
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
    """The config a file holds, its keys, types and numbers checked (NaN, int64, sizes, names: config_checks)."""
    from lumiere_pl.config_checks import check_values

    try:
        cfg = from_dict(ckpt["hyper_parameters"]["config"])
    except (OmegaConfBaseException, ValueError, TypeError) as err:
        first = (getattr(err, "msg", None) or str(err) or type(err).__name__).splitlines()[0]
        raise CheckpointError(f"{path}: its config does not fit this version of lumiere-pl ({first}); expected "
                              f"{EXPECTED} by this version") from None
    try:
        check_values(cfg)
    except InputError as err:
        raise CheckpointError(f"{path}: its config holds {err}; expected {EXPECTED}") from None
    return cfg


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
    """The (EMA) weights and config of a pretrained T2I U-Net, to inflate (its config checked to fit its weights)."""
    ckpt = load_checkpoint(path)
    check_model(path, ckpt, ["t2i"], " (stage 1: lumiere-train --config experiments/real/t2i.yaml, or another recipe's t2i.yaml)")
    cfg, state = config_of(ckpt, path), net_state(ckpt, ema=True)
    check_fits(cfg, state, path)
    return cfg, state


# ---------------------------------------------------------------------------------------------------------------------
# What a file's config asks to allocate, checked against what the file holds, before anything is allocated


def _shapes(state: Dict[str, torch.Tensor]) -> Dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in state.items()}


compare_shapes = weights.compare_shapes        # the one comparison of what a file holds with what a config needs


def check_fits(cfg: ExperimentConfig, state: Dict[str, torch.Tensor], path: str | Path) -> None:
    """A file's config describes the network its weights are (built on the meta device: nothing allocated, so a
    2 KB file describing a 64 GiB network costs nothing), and one sample of it stays within the sample limit
    (eval/limits.py). CheckpointError naming the file otherwise. A diffusers_stunet's network is its folder's
    (model.init_from, whose weights diffusers_folder checks); its sample size is checked here too."""
    from eval.limits import MIB, limits

    lim = limits()
    d, t = cfg.data, cfg.text
    channels = max(cfg.model.unet.in_channels, cfg.model.unet.out_channels, 4)
    sample = channels * max(d.frames, 1) * d.size ** 2 * 4 + t.max_length * max(t.dim, 1) * 4
    if min(d.size, d.frames, t.max_length) < 1 or sample > lim.sample_mib * MIB:
        raise CheckpointError(f"{path}: its config asks for {d.frames} frames of {d.size}x{d.size} pixels "
                              f"(text: {t.max_length} tokens), {sample / MIB:,.0f} MiB per sample, over "
                              f"{lim.describe('sample_mib')}; expected the config lumiere-train wrote")
    if cfg.model.name == "diffusers_stunet":
        return
    from lumiere_pl.models import build_model
    from lumiere_pl.models.diffusers_folder import text_dim_of

    try:
        with torch.device("meta"):
            net = build_model(cfg, text_dim_of(cfg.text), None)
    except (ValueError, TypeError, KeyError, RuntimeError, IndexError, ZeroDivisionError) as err:
        raise CheckpointError(f"{path}: its config does not describe a network this version builds "
                              f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); expected "
                              f"{EXPECTED} by this version") from None
    compare_shapes(_shapes(net.state_dict()), _shapes(state), path, f"the {cfg.model.name} its config describes")


# ---------------------------------------------------------------------------------------------------------------------
# A trained model's parts (lumiere_pl.parts.ModelParts), from a training checkpoint or an export.

PRETRAINED_WEIGHTS, PRETRAINED_CONFIG = "model.safetensors", "config.yaml"
EXPORT_FORMAT = "lumiere-pl"          # the safetensors metadata "format" of every export: how an export is recognised
EXPORT_ENTRIES = {PRETRAINED_WEIGHTS, PRETRAINED_CONFIG, "unet", "scheduler", "vae"}   # all an export folder holds


def _read_export_config(path: Path) -> dict:
    import yaml
    from omegaconf import OmegaConf

    from eval.command import read_text

    read_text(path, "the config.yaml written by lumiere-export")          # UTF-8 (else the byte offset), bounded
    try:
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except (OmegaConfBaseException, ValueError, UnicodeDecodeError, yaml.YAMLError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable config ({str(err).splitlines()[0]}); expected the config.yaml "
                              "written by lumiere-export") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected the config.yaml written by lumiere-export (a mapping)")
    return config


def _read_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from lumiere_pl.utils.weights import read_header

    read_header(path, "the weights written by lumiere-export")      # its sizes checked before the file is read
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(err).splitlines()[0]}); expected the "
                              "weights written by lumiere-export") from None


def read_model(path: str | Path, ema: bool = True) -> Tuple[ExperimentConfig, Dict[str, torch.Tensor]]:
    """(config, network weights) of a training checkpoint (.ckpt: trainable weights replaced by their EMA unless
    ema=False), an export folder (config.yaml + model.safetensors [+ unet/, scheduler/, vae/]) or an exported
    .safetensors with its .yaml. The weights of an export are what was exported (EMA by default)."""
    path = Path(path)
    if path.is_dir():
        cfg_path, weights = path / PRETRAINED_CONFIG, path / PRETRAINED_WEIGHTS
        for p in (cfg_path, weights):
            if not p.is_file():
                raise CheckpointError(f"{path}: is a folder without {p.name}; expected {EXPECTED}, or a folder written "
                                      "by lumiere-export")
        config = _read_export_config(cfg_path)
        model = config.get("model")
        if isinstance(model, dict) and model.get("name") == "diffusers_stunet" and isinstance(
                model.get("diffusers"), dict):                                 # the folder holds its U-Net and VAE
            config["model"]["init_from"] = str(path)
            config["model"]["diffusers"]["vae"] = str(path / "vae") if (path / "vae").is_dir() else None
        return config_of({"hyper_parameters": {"config": config}}, cfg_path), _read_safetensors(weights)
    if path.suffix == ".safetensors":
        cfg_path = path.with_suffix(".yaml")
        for p in (path, cfg_path):
            if not p.is_file():
                raise CheckpointError(f"{p}: export not found; expected the .safetensors written by lumiere-export "
                                      "and the .yaml beside it")
        config = _read_export_config(cfg_path)
        return config_of({"hyper_parameters": {"config": config}}, cfg_path), _read_safetensors(path)
    ckpt = load_checkpoint(path)
    return config_of(ckpt, path), net_state(ckpt, ema=ema)


def load_parts(path: str | Path, ema: bool = True, expect: Optional[Sequence[str]] = None, hint: str = ""):
    """The ModelParts of a trained model (read_model), weights loaded, network in eval mode; expect: the model.name
    values accepted (None: any), else CheckpointError naming what the file holds."""
    from lumiere_pl.parts import ModelParts

    cfg, state = read_model(path, ema)
    check_model(path, {"hyper_parameters": {"config": {"model": {"name": cfg.model.name}}}}, expect, hint)
    check_fits(cfg, state, path)                                      # before anything is allocated
    parts = ModelParts.build(cfg)
    load_net(parts, state, path)
    parts.net.eval()
    return parts


def load_net(parts, state: Dict[str, torch.Tensor], path: str | Path) -> None:
    """Load network weights into parts.net; only the frozen pretrained weights of a diffusers_stunet (read from its
    folder when it was built) may be absent. A weight that is absent, unknown or of another shape: CheckpointError."""
    net_sd = parts.net.state_dict()
    wrong = [k for k, v in state.items() if k in net_sd and tuple(v.shape) != tuple(net_sd[k].shape)]
    if wrong:
        k = wrong[0]
        raise CheckpointError(f"{path}: its weights do not fit the model its config describes ({k} is "
                              f"{tuple(state[k].shape)}, the model's {tuple(net_sd[k].shape)}); was the file edited, "
                              "or written by another version?")
    missing, unexpected = parts.net.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in parts.pretrained_keys]
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise CheckpointError(f"{path}: its weights do not fit the model its config describes ({what}, "
                              f"{len(missing)} missing, {len(unexpected)} unexpected); was the file edited, or "
                              "written by another version?")


# ---------------------------------------------------------------------------------------------------------------------
# Export: the (EMA) network weights as safetensors with the resolved config beside them, one file or a folder.


def export_weights(ckpt_path: str | Path, out: str | Path, ema: bool = True, overwrite: bool = False
                   ) -> Tuple[Path, Path]:
    """checkpoint -> out (.safetensors: net weights, EMA by default) and out.yaml (the resolved config); the config
    is also stored as JSON in the safetensors metadata ("config"), so the file stands alone. An existing out is
    replaced only with overwrite, and only when it is an earlier export (export_kind)."""
    import json

    from omegaconf import OmegaConf
    from safetensors.torch import save

    from lumiere_pl.utils.atomic import write_bytes, write_text

    out = Path(out)
    if out.suffix != ".safetensors":
        raise InputError(f"--out {out}: expected a .safetensors file name")
    check_replaceable(out, overwrite)
    check_replaceable(out.with_suffix(".yaml"), overwrite, config_of_export=out)
    ckpt = load_checkpoint(ckpt_path)
    config = ckpt["hyper_parameters"]["config"]
    if model_name(ckpt) == "diffusers_stunet":
        raise InputError(f"{ckpt_path}: a diffusers_stunet exports as a folder (lumiere-export --out DIR): it "
                         "carries its pretrained U-Net")
    weights = {k: v.detach().to("cpu").clone().contiguous() for k, v in net_state(ckpt, ema=ema).items()}
    meta = {"format": EXPORT_FORMAT, "config": json.dumps(config), "ema": str(ema).lower(),
            "global_step": str(ckpt.get("global_step", 0)), "source": str(ckpt_path)}
    write_bytes(out, save(weights, metadata=meta))          # each file complete or absent, never half-written
    cfg_path = write_text(out.with_suffix(".yaml"), OmegaConf.to_yaml(OmegaConf.create(config)))
    return out, cfg_path


def export_kind(path: Path) -> Optional[str]:
    """"file" / "folder" when path is an export lumiere-export wrote (a .safetensors whose metadata says format
    lumiere-pl; a folder holding only an export's entries, its model.safetensors such a file), else None."""
    from safetensors import SafetensorError, safe_open

    from lumiere_pl.utils.weights import read_header

    def ours(f: Path) -> bool:
        try:
            read_header(f)
            with safe_open(str(f), framework="pt") as st:
                return (st.metadata() or {}).get("format") == EXPORT_FORMAT
        except (SafetensorError, OSError, ValueError):                # CheckpointError: a ValueError
            return False

    if path.is_file() and not path.is_symlink():
        return "file" if path.suffix == ".safetensors" and ours(path) else None
    if path.is_dir() and not path.is_symlink():
        names = {p.name for p in path.iterdir()}
        if names <= EXPORT_ENTRIES and PRETRAINED_WEIGHTS in names and ours(path / PRETRAINED_WEIGHTS):
            return "folder"
    return None


def check_replaceable(out: Path, overwrite: bool, config_of_export: Optional[Path] = None) -> None:
    """An output that exists may be replaced only with overwrite, and only when it is an earlier export (the .yaml
    beside an export counts as part of it); anything else that exists is refused, so export never deletes or
    overwrites what it did not write."""
    if not out.exists() and not out.is_symlink():
        return
    ours = (config_of_export is not None and export_kind(config_of_export) == "file") or export_kind(out) is not None
    if not ours:
        raise InputError(f"--out {out}: exists and is not an earlier export of lumiere-export; expected a new name "
                         "(export never replaces what it did not write)")
    if not overwrite:
        raise InputError(f"--out {out}: an earlier export is there; add --overwrite to replace it, or choose a new "
                         "name")


def save_parts(parts, out: str | Path, overwrite: bool = False) -> Path:
    """A trained model as a folder: config.yaml (the resolved config) and model.safetensors (the network's weights
    as loaded: the EMA ones by default). A diffusers_stunet's folder also holds unet/ and vae/, copies of the
    pretrained files byte for byte (the frozen weights stay exactly the pretrained ones; model.safetensors holds
    every weight that trained, the U-Net's included), and scheduler/ (the schedule it was trained with): it then
    stands for model.init_from; only the text encoder stays where text.path says. Built in a temporary folder
    beside `out`, then renamed into place; an existing out is replaced only with overwrite, and only when it is an
    earlier export."""
    import json
    import shutil
    import tempfile

    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    from lumiere_pl.config import to_dict

    out = Path(out)
    check_replaceable(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        config = to_dict(parts.cfg)
        state = {k: v for k, v in parts.net.state_dict().items() if k not in parts.pretrained_keys}
        if config["model"]["name"] == "diffusers_stunet":
            _copy_pretrained(parts.cfg, tmp)
        weights = {k: v.detach().to("cpu").clone().contiguous() for k, v in state.items()}
        save_file(weights, str(tmp / PRETRAINED_WEIGHTS), metadata={"format": EXPORT_FORMAT,
                                                                    "config": json.dumps(config)})
        (tmp / PRETRAINED_CONFIG).write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            out.rename(old / out.name)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _copy_pretrained(cfg: ExperimentConfig, dest: Path) -> None:
    """unet/ and vae/ of model.init_from copied file for file (config and the safetensors of the variant in use),
    scheduler/ written from model.t2i_schedule and diffusion.prediction."""
    import dataclasses
    import shutil

    from diffusers import DDPMScheduler

    from lumiere_pl.models.diffusers_folder import PREDICTION_TYPES, locate, weight_files

    from lumiere_pl.utils.paths import inside

    d = cfg.model.diffusers
    folder = locate(cfg.model.init_from, d.variant, d.vae)
    for name, src in (("unet", folder.unet), ("vae", folder.vae)):
        if src is None:
            continue
        (dest / name).mkdir()
        for f in ["config.json", *weight_files(src, d.variant)]:
            shutil.copyfile(src / f, inside(dest / name, f, what=f"{src}: a weight file name"))
    prediction = {v: k for k, v in PREDICTION_TYPES.items()}[cfg.diffusion.prediction]
    DDPMScheduler(**dataclasses.asdict(cfg.model.t2i_schedule), prediction_type=prediction).save_pretrained(
        str(dest / "scheduler"))
