"""The value checks of an experiment config: everything that can be known before building a model or reading data.

Apart from lumiere_pl/config.py, which imports nothing of the project: these checks read the registries (models,
schedules, samplers, text encoders, datamodules, conditioning tasks), so they sit above them. Every config loaded
for use goes through load_config here: lumiere-train, the sweep runner, tests and benches.
"""
from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import List, Optional

from lumiere_pl.config import FROZEN_DTYPES, FSDP_DTYPES, RANDOM_INIT, ConfigError, ExperimentConfig, read_config


def load_config(path: Optional[str] = None, overrides: Optional[List[str]] = None) -> ExperimentConfig:
    """Defaults <- YAML (with its `base:` chain) <- `key=value` overrides (lumiere_pl.config.read_config), then
    validated."""
    cfg = read_config(path, overrides)
    validate(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------------------------------
# Validation: everything that can be known before building a model or reading data.


def _choice(key: str, value: str, allowed) -> None:
    if value not in allowed:
        close = difflib.get_close_matches(value, list(allowed), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{key}={value!r} is not one of {sorted(allowed)}{hint}")


def validate(cfg: ExperimentConfig) -> None:
    # imported here: the registries import torch-heavy modules, the dataclasses above do not
    from lumiere_pl.data import DATAMODULES
    from lumiere_pl.diffusion import SAMPLERS, SCHEDULES
    from lumiere_pl.models import MODELS
    from lumiere_pl.text import ENCODERS

    m, u, t, d = cfg.model, cfg.model.unet, cfg.model.temporal, cfg.data
    _check_numbers(cfg)                         # NaN, inf, 2^64, negative sizes: before anything reads them
    _check_names(cfg)                           # paths built from config values stay inside their folders
    _choice("model.name", m.name, MODELS)
    diffusers_levels = _check_diffusers(cfg) if m.name == "diffusers_stunet" else 0
    _choice("diffusion.schedule", cfg.diffusion.schedule, SCHEDULES)
    _choice("diffusion.prediction", cfg.diffusion.prediction, ("v", "eps", "x0"))
    _choice("sampler.name", cfg.sampler.name, SAMPLERS)
    _choice("text.encoder", cfg.text.encoder, ENCODERS)
    _choice("data.name", d.name, DATAMODULES)
    _choice("model.temporal.init", t.init, ("identity", "random"))

    _check_tasks(cfg)
    for group in t.unfreeze:
        _choice("model.temporal.unfreeze", group, ("text",))
    _choice("model.temporal.upsample", t.upsample, ("nearest", "linear"))
    _choice("model.temporal.attn_kind", t.attn_kind, ("temporal", "spacetime"))
    levels = diffusers_levels or len(u.channel_mults)
    if levels < 1:
        raise ConfigError("model.unet.channel_mults must list at least one level, e.g. [1, 2, 2]")
    level_keys = [("model.temporal.down_levels", t.down_levels), ("model.temporal.attn_levels", t.attn_levels)]
    if not diffusers_levels:                    # model.unet.* is our own U-Net's; a diffusers folder has its own
        level_keys.insert(0, ("model.unet.attn_levels", u.attn_levels))
        if u.channels % 32 and u.channels % 8:
            raise ConfigError(f"model.unet.channels={u.channels}: must be a multiple of 8 (GroupNorm groups)")
    for key, lv in level_keys:
        bad = [x for x in lv if not 0 <= x < levels]
        if bad:
            raise ConfigError(f"{key}={list(lv)}: levels {bad} do not exist; levels are 0..{levels - 1}")
    if not diffusers_levels and d.size % (2 ** (levels - 1)):      # diffusers: checked with the VAE's factor
        raise ConfigError(
            f"data.size={d.size}: the U-Net halves the resolution {levels - 1} times "
            f"(model.unet.channel_mults={list(u.channel_mults)}), so the size must be divisible by {2 ** (levels - 1)}")
    if m.name in ("stunet", "ssr", "diffusers_stunet") and not d.images:
        # temporal downsampling happens after the spatial downsample of a level, which the last level does not have
        tdown = [x for x in t.down_levels if x < levels - 1]
        if len(tdown) != len(set(t.down_levels)):
            raise ConfigError(
                f"model.temporal.down_levels={list(t.down_levels)}: level {levels - 1} is the coarsest and has no "
                f"downsample to attach a temporal downsample to; use levels 0..{levels - 2}")
        k = len(tdown)
        if d.frames % (2 ** k):
            raise ConfigError(
                f"data.frames={d.frames}: model.temporal.down_levels={list(t.down_levels)} halves time {k} times, "
                f"so the frame count must be divisible by {2 ** k} (e.g. {d.frames - d.frames % 2 ** k or 2 ** k})")
        if d.frames // 2 ** k > t.max_frames:
            raise ConfigError(f"model.temporal.max_frames={t.max_frames} < {d.frames // 2 ** k} frames at the coarsest level")
    if m.name == "t2i" and not d.images:
        raise ConfigError("model.name=t2i trains on images: set data.images=true")
    if m.init_from and m.init_from != RANDOM_INIT and m.name != "diffusers_stunet" and not Path(m.init_from).is_file():
        raise ConfigError(f"model.init_from={m.init_from!r}: no such checkpoint file")
    if cfg.text.encoder in ("t5", "clip") and not cfg.text.path:
        raise ConfigError(f"text.encoder={cfg.text.encoder} needs text.path: a local folder with the model (or a "
                          f"diffusers pipeline folder; no hub downloads here)")
    if cfg.text.cache_mib < 0:
        raise ConfigError(f"text.cache_mib={cfg.text.cache_mib}: expected >= 0 (MiB; 0 = no cache)")
    if not 0.0 <= cfg.diffusion.cond_drop < 1.0:
        raise ConfigError(f"diffusion.cond_drop={cfg.diffusion.cond_drop}: expected a probability in [0, 1)")
    if cfg.sampler.steps < 1:
        raise ConfigError(f"sampler.steps={cfg.sampler.steps}: expected >= 1")
    if cfg.sampler.window and cfg.sampler.stride > cfg.sampler.window:
        raise ConfigError(f"sampler.stride={cfg.sampler.stride} > sampler.window={cfg.sampler.window}: frames would be skipped")
    if m.name in ("stunet", "ssr", "diffusers_stunet") and cfg.sampler.window:
        k = len([x for x in t.down_levels if x < levels - 1])
        if cfg.sampler.window % 2 ** k:
            raise ConfigError(f"sampler.window={cfg.sampler.window}: each window goes through the STUNet, which "
                              f"halves time {k} times (model.temporal.down_levels={list(t.down_levels)}); "
                              f"use a multiple of {2 ** k}")
    if not 0.0 <= cfg.sampler.threshold < 1.0 or cfg.sampler.threshold_max < 1.0:
        raise ConfigError(f"sampler.threshold={cfg.sampler.threshold}, sampler.threshold_max="
                          f"{cfg.sampler.threshold_max}: expected a quantile in [0, 1) (0 = off) and a max >= 1")
    if cfg.sampler.window_batch < 1:
        raise ConfigError(f"sampler.window_batch={cfg.sampler.window_batch}: expected >= 1")
    if m.name == "ssr" and (m.upscale < 1 or d.size % m.upscale):
        raise ConfigError(f"model.upscale={m.upscale}: must be >= 1 and divide data.size={d.size} "
                          f"(the low-res input is data.size / upscale pixels)")
    if not 0.0 <= cfg.diffusion.cond_aug_max <= 1.0:
        raise ConfigError(f"diffusion.cond_aug_max={cfg.diffusion.cond_aug_max}: expected a time in [0, 1]")
    if d.batch_size != "auto" and (isinstance(d.batch_size, str) or d.batch_size < 1):
        raise ConfigError(f"data.batch_size={d.batch_size}: expected an integer >= 1, or auto (the largest that fits "
                          f"one GPU)")
    if d.name == "webdataset" and not d.train_shards:
        raise ConfigError("data.train_shards=None: data.name=webdataset needs a shard path, brace pattern or URL, "
                          "e.g. data/shards/real/train-{000000..000003}.tar")
    for key in ("max_steps", "ckpt_every_n_steps", "val_every_n_steps", "max_bad_steps"):
        if getattr(cfg.train, key) < 1:
            raise ConfigError(f"train.{key}={getattr(cfg.train, key)}: expected >= 1")
    if cfg.train.keep_checkpoints < -1 or cfg.train.keep_checkpoints == 0:
        raise ConfigError(f"train.keep_checkpoints={cfg.train.keep_checkpoints}: expected -1 (all) or a number >= 1")
    for key in ("val_captions", "val_fvd"):
        if getattr(cfg.train, key) < 0:
            raise ConfigError(f"train.{key}={getattr(cfg.train, key)}: expected a number of clips >= 0")
    bad = [x for x in cfg.train.val_loss_times if not 0.0 < x < 1.0]
    if bad:
        raise ConfigError(f"train.val_loss_times={list(cfg.train.val_loss_times)}: {bad[0]} is not a diffusion time "
                          "in (0, 1)")
    if cfg.trainer.log_every_n_steps < 1:
        raise ConfigError(f"trainer.log_every_n_steps={cfg.trainer.log_every_n_steps}: expected >= 1")
    _check_fsdp(cfg)
    _check_frozen_dtype(cfg)


MAX_SEED = 2 ** 32 - 1        # numpy's and Lightning's seed range (Lightning replaces a larger seed by 0: refused here)
# (key, least value) of the integer and float keys that are counts, sizes or rates; every other number is only
# required to be finite (floats) and within int64 (integers)
LOWER_BOUNDS = {
    "data.size": 1, "data.frames": 1, "data.num_workers": 0, "data.shuffle_buffer": 0, "data.epoch_length": 0,
    "data.fps": 0.0, "data.synthetic.num_videos": 1, "data.synthetic.num_val_videos": 0,
    "model.unet.in_channels": 1, "model.unet.out_channels": 1, "model.unet.channels": 1,
    "model.unet.num_res_blocks": 1, "model.unet.head_dim": 1, "model.unet.text_dim": 0,
    "model.unet.cond_channels": 0, "model.unet.dropout": 0.0, "model.temporal.kernel": 1,
    "model.temporal.attn_layers": 0, "model.temporal.max_frames": 1, "model.upscale": 1,
    "model.t2i_schedule.num_train_timesteps": 1, "diffusion.shift_base": 0,
    "text.max_length": 1, "text.dim": 1, "train.lr": 0.0, "train.weight_decay": 0.0, "train.warmup_steps": 0,
    "train.grad_clip": 0.0, "train.ema_decay": 0.0, "train.val_fvd": 0, "trainer.num_nodes": 1,
    "trainer.accumulate_grad_batches": 1, "data.synthetic.shape_scale": 0.0,
}
SEEDS = ("train.seed", "data.seed", "data.synthetic.seed")


def _leaves(node, prefix: str = ""):
    """(dotted key, value) of every number of a config as a plain dict (lists: key[i])."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        key = f"{prefix}{k}" if isinstance(node, dict) else f"{prefix[:-1]}[{k}]."
        if isinstance(v, (dict, list)):
            yield from _leaves(v, f"{key}." if isinstance(node, dict) else key)
        else:
            yield key.rstrip("."), v


def _check_numbers(cfg: ExperimentConfig) -> None:
    """Every float finite, every integer within int64, counts and sizes at their least values, seeds in numpy's
    range, data.limits.* positive: a NaN learning rate or a seed past 2^64 is refused before any work."""
    from lumiere_pl.config import to_dict

    for key, value in _leaves(to_dict(cfg)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}={value}: expected a finite number")
        if isinstance(value, int) and not -2 ** 63 <= value < 2 ** 63:
            raise ConfigError(f"{key}={value}: out of range; expected an integer within int64")
        low = LOWER_BOUNDS.get(key)
        if key in SEEDS and not 0 <= value <= MAX_SEED:
            raise ConfigError(f"{key}={value}: expected a seed in [0, {MAX_SEED}]")
        if key.startswith("data.limits.") and value < 1:
            raise ConfigError(f"{key}={value}: expected a positive bound (eval/limits.py), or null for the default")
        if key.startswith(("model.unet.channel_mults[", "trainer.fsdp.shard_size")):
            low = 1 if "channel_mults" in key else 0
        if low is not None and value < low:
            raise ConfigError(f"{key}={value}: expected {'an integer' if isinstance(low, int) else 'a value'} >= {low}")
    if not 0.0 <= cfg.train.ema_decay <= 1.0:
        raise ConfigError(f"train.ema_decay={cfg.train.ema_decay}: expected a decay in [0, 1]")


def check_values(cfg: ExperimentConfig) -> None:
    """The checks of a config read from a file lumiere-pl wrote (a checkpoint, an export): its numbers and names,
    not what depends on this machine (files, registries)."""
    _check_numbers(cfg)
    _check_names(cfg)


def _check_names(cfg: ExperimentConfig) -> None:
    """name is a folder inside out_dir (lumiere_pl/utils/paths.py); weight-file variants are plain names."""
    from lumiere_pl.errors import InputError
    from lumiere_pl.utils.paths import check_name, inside

    try:
        inside(cfg.out_dir, cfg.name, what="name")
        for key, value in (("model.diffusers.variant", cfg.model.diffusers.variant),
                           ("text.variant", cfg.text.variant)):
            if value is not None:
                check_name(value, key)
    except InputError as err:
        raise ConfigError(f"{err} (the run folder is out_dir/name)" if "name" in str(err)[:5] else str(err)) from None


def _check_fsdp(cfg: ExperimentConfig) -> None:
    """trainer.fsdp.*: checked whatever the strategy, so that a typo fails before a run switches to fsdp."""
    tr, f = cfg.trainer, cfg.trainer.fsdp
    for key in ("param_dtype", "reduce_dtype"):
        _choice(f"trainer.fsdp.{key}", getattr(f, key), FSDP_DTYPES)
    if f.shard_size < 0:
        raise ConfigError(f"trainer.fsdp.shard_size={f.shard_size}: expected >= 0 (0: shard over all processes)")
    world = tr.devices * tr.num_nodes if isinstance(tr.devices, int) and tr.devices > 0 else None
    if tr.strategy == "fsdp" and world and f.shard_size and world % f.shard_size:
        raise ConfigError(f"trainer.fsdp.shard_size={f.shard_size} does not divide the {world} processes "
                          f"(trainer.devices={tr.devices} x trainer.num_nodes={tr.num_nodes})")
    if cfg.model.name != "diffusers_stunet":          # diffusers' own classes are checked when the model is sharded
        from lumiere_pl.models import SHARD_UNITS
        for name in f.shard_modules:
            _choice("trainer.fsdp.shard_modules", name, SHARD_UNITS)


def _check_diffusers(cfg: ExperimentConfig) -> int:
    """model.name=diffusers_stunet: the folder holds what will be loaded (config.json and safetensors weights of the
    U-Net, of the VAE), the size fits the U-Net and the VAE. Returns the U-Net's number of resolution levels."""
    from lumiere_pl.models.diffusers_folder import locate

    m, d = cfg.model, cfg.data
    if not m.init_from or m.init_from == RANDOM_INIT:
        raise ConfigError(f"model.name=diffusers_stunet needs model.init_from (got {m.init_from!r}): a local diffusers "
                          f"pipeline folder (with unet/, e.g. DeepFloyd IF or Stable Diffusion) or a unet folder")
    try:
        folder = locate(m.init_from, m.diffusers.variant, m.diffusers.vae)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"model.init_from={m.init_from!r}: {err}") from None
    if m.diffusers.vae_chunk < 1:
        raise ConfigError(f"model.diffusers.vae_chunk={m.diffusers.vae_chunk}: expected >= 1 frames")
    levels, f = len(folder.unet_config()["block_out_channels"]), folder.vae_factor()
    if d.size % (2 ** (levels - 1) * f):
        raise ConfigError(f"data.size={d.size}: the VAE downsamples by {f} and the U-Net halves {levels - 1} times, so "
                          f"the size must be divisible by {2 ** (levels - 1) * f}")
    return levels


def _check_frozen_dtype(cfg: ExperimentConfig) -> None:
    """model.frozen_dtype: bfloat16 stores the frozen weights of a diffusers_stunet in bf16, which only its forward
    under bf16 autocast (trainer.precision=bf16-mixed) handles, and which FSDP2 cannot shard beside float32 weights."""
    m, tr = cfg.model, cfg.trainer
    _choice("model.frozen_dtype", m.frozen_dtype, FROZEN_DTYPES)
    if m.frozen_dtype == "float32":
        return
    if m.name != "diffusers_stunet":
        raise ConfigError(f"model.frozen_dtype={m.frozen_dtype} is implemented for model.name=diffusers_stunet only "
                          f"(got model.name={m.name}); use float32")
    if tr.precision != "bf16-mixed":
        raise ConfigError(f"model.frozen_dtype={m.frozen_dtype} needs trainer.precision=bf16-mixed (got "
                          f"{tr.precision!r}): the frozen bf16 weights run under bf16 autocast beside the float32 "
                          f"trainable ones")
    if tr.strategy == "fsdp":
        raise ConfigError(f"model.frozen_dtype={m.frozen_dtype} with trainer.strategy=fsdp is not supported: FSDP2 "
                          f"shards each unit's weights in one dtype; under FSDP the frozen weights are already split "
                          f"over the processes (trainer.fsdp.param_dtype=bfloat16 gathers them in bf16); use ddp")


def _check_tasks(cfg: ExperimentConfig) -> None:
    """model.temporal.tasks / keyframe_stride, and data.synthetic.frame_step."""
    from lumiere_pl.conditioning import TASKS

    t, d = cfg.model.temporal, cfg.data
    if not t.tasks:
        raise ConfigError(f"model.temporal.tasks=[]: list at least one conditioning task; valid tasks: {list(TASKS)}")
    for task in t.tasks:
        if task not in TASKS:
            close = difflib.get_close_matches(task, list(TASKS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"model.temporal.tasks={list(t.tasks)}: unknown task {task!r}{hint} "
                              f"(valid tasks: {list(TASKS)})")
    if t.keyframe_stride < 1:
        raise ConfigError(f"model.temporal.keyframe_stride={t.keyframe_stride}: expected >= 1")
    if t.conditional and "keyframes" in t.tasks and not d.images and d.frames % t.keyframe_stride:
        # the TSR fills T frames from the T/k keyframes 0, k, ..., T-k that a keyframe model of T/k frames generates
        raise ConfigError(
            f"data.frames={d.frames}: the keyframes task (model.temporal.tasks) marks every "
            f"model.temporal.keyframe_stride={t.keyframe_stride}-th frame, so the frame count must be divisible by "
            f"{t.keyframe_stride} (e.g. {d.frames - d.frames % t.keyframe_stride or t.keyframe_stride})")
    from lumiere_pl.data.synthetic import DIRECTIONS
    if not d.synthetic.directions:
        raise ConfigError(f"data.synthetic.directions=[]: list at least one of {list(DIRECTIONS)}")
    for direction in d.synthetic.directions:
        _choice("data.synthetic.directions", direction, DIRECTIONS)
    _choice("data.synthetic.image_frames", d.synthetic.image_frames, ("first", "all"))
    _choice("data.synthetic.start", d.synthetic.start, ("anywhere", "across"))
    if d.synthetic.frame_step < 1:
        raise ConfigError(f"data.synthetic.frame_step={d.synthetic.frame_step}: expected >= 1")


def random_t2i(cfg: ExperimentConfig) -> bool:
    """Whether the model inflates a T2I U-Net that is not pretrained: a stunet, or an ssr whose spatial layers stay
    frozen (model.temporal.freeze_spatial), without a checkpoint in model.init_from."""
    m = cfg.model
    inflates = m.name == "stunet" or (m.name == "ssr" and m.temporal.freeze_spatial)
    return inflates and (not m.init_from or m.init_from == RANDOM_INIT)


def check_init(cfg: ExperimentConfig) -> None:
    """A STUNet (an SSR with frozen spatial layers) trains on a random T2I only when asked: model.init_from names
    the pretrained T2I checkpoint, or is `random`. Apart from validate() because a config is meaningful without its
    T2I (building a model in a test, a dry run, a sweep planned before its T2I is trained); lumiere-train calls it."""
    m = cfg.model
    if random_t2i(cfg) and not m.init_from:
        frozen = " and keep it frozen" if m.temporal.freeze_spatial else ""
        raise ConfigError(f"model.init_from is not set: the {m.name} would inflate a random T2I U-Net{frozen}; give "
                          f"the pretrained T2I checkpoint (model.init_from=runs/t2i_real/checkpoints/last.ckpt, "
                          f"stage 1 of `make train`), or model.init_from={RANDOM_INIT} to train on a random one")


def check_files(cfg: ExperimentConfig) -> None:
    """The files a run will read exist: local shards (data.train_shards, data.val_shards) and text.path; the
    shards' clips are long enough for data.frames at data.fps (their manifest.json, lumiere_pl/data/shard_check.py).

    Apart from validate() because a config is meaningful without its data (building a model, a dry run, tests on a
    fresh clone before `make shards`); lumiere-train calls both before building anything.
    """
    if cfg.text.path and not Path(cfg.text.path).exists():
        raise ConfigError(f"text.path={cfg.text.path!r}: no such file or folder (expected a local model folder)")
    d = cfg.data
    for key, pattern in (("data.train_shards", d.train_shards), ("data.val_shards", d.val_shards)):
        if d.name == "webdataset" and pattern:
            _check_shards(key, pattern)
    if d.name == "webdataset":
        from lumiere_pl.data.shard_check import check_shards
        check_shards(d)                         # clips too short for data.frames: refused here (the notes: at setup)


_LOCAL_PREFIX = re.compile(r"^file:(//)?")                        # file:x.tar, file:///abs/x.tar: local paths
_REMOTE = re.compile(r"^(pipe:|[a-zA-Z][a-zA-Z0-9+.-]+://)")      # other URLs and pipe: commands: not checked


def _check_shards(key: str, pattern: str) -> None:
    """A local shard path or brace pattern must name files that exist (before any data is read)."""
    from lumiere_pl.data.tar_reader import expand

    try:
        urls = expand(pattern)
    except ValueError as err:
        raise ConfigError(f"{key}={pattern!r}: {err}") from None
    local = [_LOCAL_PREFIX.sub("", u) for u in urls if _LOCAL_PREFIX.match(u) or not _REMOTE.match(u)]
    missing = [u for u in local if not Path(u).is_file()]
    if missing:
        raise ConfigError(f"{key}={pattern!r}: {len(missing)} of {len(urls)} shards do not exist "
                          f"(first: {missing[0]}); expected existing .tar files, a brace pattern over them, "
                          f"or a URL / pipe: command")
