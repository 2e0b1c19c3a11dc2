"""Reading a local diffusers folder for model.name=diffusers_stunet.

model.init_from is a pipeline folder (unet/, scheduler/, vae/, text_encoder/, tokenizer/, as DeepFloyd IF and Stable
Diffusion ship) or a unet folder alone. Nothing is downloaded (local_files_only) and only safetensors are read
(pickle weights can run code). locate() checks the files before anything heavy is loaded and names the missing one;
resolve() fills the experiment config with what the folder says (schedule, prediction type, the VAE's path) before
training, so the saved config.yaml records exactly what was inflated.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import Tensor

from lumiere_pl.diffusion.discrete import BETA_SCHEDULES
from lumiere_pl.errors import InputError
from lumiere_pl.models.diffusers_stunet import check_unet_config

WEIGHTS = "diffusion_pytorch_model.safetensors"
PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}   # diffusers' name -> diffusion.prediction


def _with_variant(name: str, variant: Optional[str]) -> str:
    """diffusers' file naming: model.safetensors -> model.fp16.safetensors."""
    if not variant:
        return name
    stem, ext = name.split(".", 1)
    return f"{stem}.{variant}.{ext}"


def _require_weights(folder: Path, what: str, variant: Optional[str]) -> None:
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{what}: missing {folder / 'config.json'}")
    single = folder / _with_variant(WEIGHTS, variant)
    sharded = folder / (f"{WEIGHTS}.index.{variant}.json" if variant else f"{WEIGHTS}.index.json")
    if single.is_file() or sharded.is_file():
        return
    pickles = sorted(p.name for p in folder.glob("*.bin"))
    hint = (f"; found {pickles[0]}, but pickle weights are not loaded (they can run code): convert it to "
            f"safetensors" if pickles else "")
    others = sorted(p.name for p in folder.glob("*.safetensors"))
    if others and not hint:
        hint = f"; found {others[0]} (another variant? set model.diffusers.variant)"
    raise FileNotFoundError(f"{what}: missing {single}{hint}")


def weight_files(folder: Path, variant: Optional[str] = None) -> List[str]:
    """The names of a folder's safetensors weights: the one file, or the index and the shards it names."""
    single = _with_variant(WEIGHTS, variant)
    if (folder / single).is_file():
        return [single]
    index = f"{WEIGHTS}.index.{variant}.json" if variant else f"{WEIGHTS}.index.json"
    shards = sorted(set(_weight_map(folder / index).values()))
    bad = [s for s in shards if Path(s).name != s or s in (".", "..") or not (folder / s).is_file()]
    if bad:
        raise InputError(f"{folder / index}: names {bad[0]!r}, which is not a file of {folder}")
    return [index, *shards]


def _json(path: Path) -> dict:
    """A config file of the folder: a JSON object (UTF-8, within the size limit), else InputError naming it."""
    from eval.command import read_text

    try:
        data = json.loads(read_text(path, "a diffusers config (a JSON object)"))
    except (json.JSONDecodeError, RecursionError) as err:
        raise InputError(f"{path}: not JSON ({getattr(err, 'msg', 'nested too deeply')}); expected a diffusers "
                         "config (a JSON object)") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a JSON {type(data).__name__}, not an object; expected a diffusers config")
    return data


def _weight_map(index: Path) -> Dict[str, str]:
    """The weight_map of a sharded folder's index: {tensor name: shard file name}."""
    weight_map = _json(index).get("weight_map", {})
    if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in weight_map.items()):
        raise InputError(f"{index}: weight_map is not an object of tensor names to file names")
    return weight_map


@dataclass
class DiffusersFolder:
    unet: Path                       # the U-Net folder: config.json + safetensors weights
    scheduler: Optional[Path]        # scheduler/scheduler_config.json beside the unet, if any
    vae: Optional[Path]              # AutoencoderKL folder (latent diffusion), if any

    def unet_config(self) -> dict:
        return _json(self.unet / "config.json")

    def vae_factor(self) -> int:
        """Spatial downsampling of the VAE (1 in pixel space)."""
        if self.vae is None:
            return 1
        return 2 ** (len(_json(self.vae / "config.json")["block_out_channels"]) - 1)


def locate(path: str, variant: Optional[str] = None, vae: Optional[str] = None) -> DiffusersFolder:
    """The U-Net, scheduler config and VAE of a pipeline or unet folder; FileNotFoundError names a missing file."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root} (expected a diffusers pipeline folder or a unet folder)")
    if (root / "unet").is_dir():
        unet, pipeline = root / "unet", root
    elif (root / "config.json").is_file():
        unet, pipeline = root, (root.parent if root.name == "unet" else None)
    else:
        raise FileNotFoundError(f"{root} is neither a diffusers pipeline folder (missing {root / 'unet' / 'config.json'}) "
                                f"nor a unet folder (missing {root / 'config.json'})")
    _require_weights(unet, "the U-Net", variant)
    config = _json(unet / "config.json")
    if config.get("_class_name") != "UNet2DConditionModel":
        raise InputError(f"{unet / 'config.json'} describes a {config.get('_class_name')}; the STUNet inflates a "
                         f"UNet2DConditionModel")
    check_unet_config(config)
    scheduler = pipeline / "scheduler" / "scheduler_config.json" if pipeline is not None else None
    vae_dir = Path(vae) if vae else (pipeline / "vae" if pipeline is not None and (pipeline / "vae").is_dir() else None)
    if vae_dir is not None:
        _require_weights(vae_dir, "the VAE", variant)
    return DiffusersFolder(unet, scheduler if scheduler is not None and scheduler.is_file() else None, vae_dir)


def read_schedule(path: Path) -> tuple[dict, str]:
    """scheduler_config.json -> (model.t2i_schedule fields, diffusion.prediction); ValueError for what the bridge
    cannot represent."""
    c = _json(path)
    if c.get("trained_betas") is not None:
        raise InputError(f"{path}: trained_betas (an explicit beta table) is not supported; expected beta_schedule "
                         f"one of {list(BETA_SCHEDULES)}")
    if c.get("rescale_betas_zero_snr"):
        raise InputError(f"{path}: rescale_betas_zero_snr=true gives a zero terminal SNR, an infinite noise level in "
                         f"the VE view of our samplers; not supported")
    schedule = c.get("beta_schedule", "linear")
    if schedule not in BETA_SCHEDULES:
        raise InputError(f"{path}: beta_schedule={schedule!r}; supported: {list(BETA_SCHEDULES)}")
    prediction = c.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise InputError(f"{path}: prediction_type={prediction!r}; supported: {list(PREDICTION_TYPES)}")
    fields = {"beta_schedule": schedule, "beta_start": float(c.get("beta_start", 0.0001)),
              "beta_end": float(c.get("beta_end", 0.02)), "num_train_timesteps": int(c.get("num_train_timesteps", 1000))}
    return fields, PREDICTION_TYPES[prediction]


def resolve(cfg):
    """Fill cfg (an ExperimentConfig, model.name=diffusers_stunet) from its folder, before anything heavy: the
    schedule and prediction of scheduler/ (a differing experiment value is reported, then replaced), the VAE's path,
    and a check that the text encoder's width is the one the U-Net takes."""
    from lumiere_pl.models.diffusers_stunet import text_width

    m = cfg.model
    folder = locate(m.init_from, m.diffusers.variant, m.diffusers.vae)
    if folder.scheduler is not None:
        fields, prediction = read_schedule(folder.scheduler)
        ours = {k: getattr(m.t2i_schedule, k) for k in fields}
        if ours != fields or cfg.diffusion.prediction != prediction:
            print(f"note: model.t2i_schedule and diffusion.prediction taken from {folder.scheduler} "
                  f"({fields['beta_schedule']}, prediction {prediction})")
        for k, v in fields.items():
            setattr(m.t2i_schedule, k, v)
        cfg.diffusion.prediction = prediction
    if m.t2i_schedule.beta_schedule not in BETA_SCHEDULES:
        raise InputError(f"model.t2i_schedule.beta_schedule={m.t2i_schedule.beta_schedule!r}: expected one of "
                         f"{list(BETA_SCHEDULES)}")
    m.diffusers.vae = str(folder.vae) if folder.vae is not None else None
    want = text_width(folder.unet_config())
    have = _text_dim(cfg.text)
    if have is not None and have != want:
        raise InputError(f"text.encoder={cfg.text.encoder} gives {have}-d tokens; the U-Net in {folder.unet} takes "
                         f"{want}-d (its encoder_hid_dim or cross_attention_dim): use its own text encoder "
                         f"(DeepFloyd IF: t5, Stable Diffusion: clip, text.path = the pipeline folder)")
    return cfg


def text_dim_of(text) -> int:
    """The token width of a text config, read without loading the encoder (tiny: text.dim; otherwise the model
    folder's config.json); InputError when it cannot be read."""
    width = _text_dim(text)
    if width is None:
        raise InputError(f"text.encoder={text.encoder}: its token width cannot be read without loading it "
                         "(text.path names no model folder)")
    return width


def _text_dim(text) -> Optional[int]:
    """Token width of a text config without loading the encoder (None when it cannot be read cheaply)."""
    from lumiere_pl.text.encoders import minilm_path, model_folders

    if text.encoder == "tiny":
        return text.dim
    path = text.path or (minilm_path() if text.encoder == "minilm" else None)
    if not path:
        return None
    model_dir, _ = model_folders(path)
    c = _json(model_dir / "config.json")
    c = c.get("text_config", c)                      # a full CLIPModel folder nests its text config
    width = c.get("hidden_size", c.get("d_model"))
    return int(width) if width is not None else None


def check_weights(folder: Path, model_cls, variant: Optional[str] = None) -> None:
    """The safetensors weights of a diffusers model folder have the shapes its config.json describes: the model is
    built from the config on the meta device (nothing allocated) and compared with the files' headers
    (lumiere_pl/utils/weights.py). A config that does not build, or weights of other shapes, are InputErrors naming
    the file: never loaded with sizes ignored, as diffusers would advise. Keys only one side has are left to
    diffusers (it renames the keys of older formats)."""
    from lumiere_pl.utils.weights import compare_shapes, shapes

    config_path = folder / "config.json"
    config = _json(config_path)
    try:
        with torch.device("meta"):
            model = model_cls.from_config(config)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, RuntimeError, ZeroDivisionError) as err:
        first = (str(err) or type(err).__name__).strip().splitlines()[0][:200]
        raise InputError(f"{config_path}: does not describe a {model_cls.__name__} ({type(err).__name__}: {first}); "
                         "expected the config.json saved with its weights") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    stored: Dict[str, tuple] = {}
    names = weight_files(folder, variant)
    for name in (n for n in names if n.endswith(".safetensors")):
        stored.update(shapes(folder / name, f"the weights of {config_path}"))
    common = set(expected) & set(stored)
    if not common:
        raise InputError(f"{folder}: none of its weights ({', '.join(names)}) is a weight of the {model_cls.__name__} "
                         f"its config.json describes; expected the weights saved with it")
    compare_shapes({k: expected[k] for k in common}, {k: stored[k] for k in common}, folder / names[-1],
                   f"the {model_cls.__name__} of {config_path}")


def load_unet(folder: DiffusersFolder, variant: Optional[str] = None, dtype: torch.dtype = torch.float32):
    """The U-Net, its weights read straight into dtype (model.frozen_dtype: no float32 copy of a bf16 model), after
    check_weights."""
    from diffusers import UNet2DConditionModel

    check_weights(folder.unet, UNet2DConditionModel, variant)
    return UNet2DConditionModel.from_pretrained(str(folder.unet), local_files_only=True, use_safetensors=True,
                                                variant=variant, torch_dtype=dtype)


def load_vae(path: str, variant: Optional[str] = None, dtype: torch.dtype = torch.float32):
    from diffusers import AutoencoderKL

    check_weights(Path(path), AutoencoderKL, variant)
    return AutoencoderKL.from_pretrained(path, local_files_only=True, use_safetensors=True, variant=variant,
                                         torch_dtype=dtype)


def read_tensors(folder: Path, names: List[str], variant: Optional[str] = None) -> Dict[str, Tensor]:
    """The named tensors of a folder's safetensors weights, as stored (one file, or the shards its index names)."""
    from safetensors import safe_open

    single = folder / _with_variant(WEIGHTS, variant)
    if single.is_file():
        where = {n: single for n in names}
    else:
        index = folder / (f"{WEIGHTS}.index.{variant}.json" if variant else f"{WEIGHTS}.index.json")
        weight_map = _weight_map(index)
        missing = [n for n in names if n not in weight_map]
        if missing:
            raise InputError(f"{index}: no entry for {missing[0]} (a key the loaded model has); "
                             f"model.frozen_dtype=float32 loads it without reading weights again")
        where = {n: folder / weight_map[n] for n in names}
    from lumiere_pl.utils.weights import read_header

    out: Dict[str, Tensor] = {}
    for path in sorted(set(where.values())):
        read_header(path, f"the weights of {folder / 'config.json'}")
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            for n in (n for n in names if where[n] == path):
                if n not in keys:
                    raise InputError(f"{path}: no tensor {n} (a key the loaded model has); model.frozen_dtype=float32 "
                                     f"loads it without reading weights again")
                out[n] = f.get_tensor(n)
    return out
