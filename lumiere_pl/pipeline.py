"""LumierePipeline: the one way to sample from a trained model.

    pipe = LumierePipeline.from_pretrained("runs/stunet_real/checkpoints/last.ckpt")     # or an exported folder
    out = pipe(["a rabbit on the grass"], steps=25, guidance=3.0, seeds=[0])
    out.save("rabbit.mp4")                                                                # (out.videos: b 3 t h w)

A pipeline owns a model's parts (lumiere_pl.parts.ModelParts: network, text encoder, VAE, diffusion process, the
resolved config), the device and the dtype; a call owns the batching, the guidance, and one noise seed per clip, so a
clip never depends on its batch, its batch size or the process it runs in. The config supplies the defaults of every
sampling option and is never changed: a call's options override them for that call only.

Stages, as diffusers' cascades:
  keyframes=  the cascade baseline (Sec. 1, 5): a keyframe model makes T/k frames, this model (a TSR: a conditional
              STUNet trained on the keyframes task) fills the frames between them (lumiere_pl/cascade.py)
  ssr=        spatial super-resolution (Sec. 3.2): an SSR pipeline upscales every clip this one makes, over
              MultiDiffusion windows; the output then holds both stages (out.base, out.videos)
"""
from __future__ import annotations

import dataclasses
import math
from contextlib import nullcontext
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from lumiere_pl.cascade import TSR_SEED_OFFSET, check_pair, keyframe_condition
from lumiere_pl.config import ExperimentConfig, SamplerConfig
from lumiere_pl.diffusion import SAMPLERS, guided
from lumiere_pl.diffusion.multidiffusion import multidiffusion
from lumiere_pl.diffusion.thresholding import dynamic_threshold
from lumiere_pl.errors import InputError
from lumiere_pl.parts import ModelParts
from lumiere_pl.utils.batching import auto_batch_size, fitting_batches
from lumiere_pl.utils.video import to_uint8, write_mp4

NOISE_SEED_OFFSET = 7_919_993     # the stochastic sampler noise of clip seed k is seeded k + this
SSR_SEED_OFFSET = 1               # the SSR's augmentation noise of clip seed k is seeded k + this
MAX_SEED = 2 ** 63 - 1 - 2 * TSR_SEED_OFFSET - NOISE_SEED_OFFSET    # every derived seed fits torch's int64 seeds
MAX_STEPS = 10_000                # sampler steps (the schedule's sigmas are allocated up front)
MAX_FRAMES = 100_000              # frames per clip; one clip's noise is also bounded by eval/limits.py's sample_mib
MAX_FPS = 1000.0                  # frame rate of a written MP4


@dataclasses.dataclass
class VideoOutput:
    """What a pipeline call returns. videos: (b 3 t h w) float32 in [-1, 1] on the CPU ((b 3 h w) for a T2I);
    base: the clips before the SSR stage, when there was one; fps: the frame rate the model was trained at."""
    videos: Tensor
    prompts: List[str]
    seeds: List[int]
    fps: float
    base: Optional[Tensor] = None

    def __len__(self) -> int:
        return len(self.videos)

    def frames(self, i: int = 0, stage: str = "videos") -> np.ndarray:
        """Clip i as (t h w 3) uint8 (stage "base": before the SSR)."""
        return to_uint8(getattr(self, stage)[i])

    def save(self, path: str | Path, i: int = 0, stage: str = "videos", fps: Optional[float] = None,
             lossless: bool = False) -> Path:
        """Clip i as an H.264 MP4 (lossless: RGB qp 0, bit-exact), written atomically."""
        return write_mp4(path, self.frames(i, stage), fps=fps or self.fps, lossless=lossless)


class LumierePipeline:
    def __init__(self, parts: ModelParts, keyframes: Optional["LumierePipeline"] = None,
                 ssr: Optional["LumierePipeline"] = None):
        self.parts, self.keyframes, self.ssr = parts, keyframes, ssr
        self.dtype = torch.float32
        self._fits: Optional[int] = None                # batch_size="auto": the largest batch that fitted so far
        if keyframes is not None:
            try:
                check_pair(keyframes.config, parts.cfg)
            except ValueError as err:
                raise InputError(f"cascade: {err}") from None
        if ssr is not None and not ssr.parts.is_ssr:
            raise InputError(f"ssr=: a model.name={ssr.config.model.name} model; expected an SSR model")
        if parts.is_ssr and (keyframes is not None or ssr is not None):
            raise InputError("an SSR pipeline upscales clips it is given: it takes no keyframes= or ssr= stage")

    # --- loading and saving -------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, *, ssr: str | Path | None = None,
                        keyframes: str | Path | None = None, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, ema: bool = True) -> "LumierePipeline":
        """A pipeline from a lumiere-train checkpoint (.ckpt), a lumiere-export folder (ours or a diffusers STUNet)
        or an exported .safetensors; ssr / keyframes: the same for the optional stages. ema: the EMA weights
        (default) or the live ones of a training checkpoint."""
        from lumiere_pl.checkpoint import load_parts

        def stage(p, expect):
            return cls(load_parts(p, ema=ema, expect=expect)) if p is not None else None

        pipe = cls(load_parts(path, ema=ema, expect=["stunet"] if keyframes is not None else None),
                   keyframes=stage(keyframes, ["stunet"]), ssr=stage(ssr, ["ssr"]))
        return pipe.to(device, dtype)

    def save_pretrained(self, out: str | Path, overwrite: bool = False) -> Path:
        """This model as a folder that from_pretrained reads (lumiere_pl.checkpoint.save_parts): the stages
        (keyframes, ssr) are saved on their own."""
        from lumiere_pl.checkpoint import save_parts

        return save_parts(self.parts, out, overwrite=overwrite)

    def to(self, device: str | torch.device | None = None, dtype: Optional[torch.dtype] = None) -> "LumierePipeline":
        """Move every part (and the stages) to device; dtype: the precision the networks compute in (float32, or
        bfloat16 / float16 under autocast; the weights keep theirs)."""
        for pipe in self._stages():
            if device is not None:
                for m in pipe.parts.modules():
                    m.to(device)
            if dtype is not None:
                if dtype not in (torch.float32, torch.bfloat16, torch.float16):
                    raise InputError(f"dtype={dtype}: expected torch.float32, torch.bfloat16 or torch.float16")
                pipe.dtype = dtype
        return self

    def _stages(self) -> List["LumierePipeline"]:
        return [self] + [p for p in (self.keyframes, self.ssr) if p is not None]

    # --- what it is ---------------------------------------------------------------------------------------------
    @property
    def config(self) -> ExperimentConfig:
        return self.parts.cfg

    @property
    def net(self):
        return self.parts.net

    @property
    def device(self) -> torch.device:
        return self.parts.device

    @property
    def fps(self) -> float:
        return float(self.config.data.fps)

    @property
    def frames(self) -> int:
        """Frames per clip by default (the cascade: the TSR's)."""
        return int(self.config.data.frames)

    def check_frames(self, frames: int) -> None:
        """ValueError when the network cannot take `frames` frames in one pass (a STUNet halves T; MultiDiffusion
        windows take any length)."""
        if frames < 1:
            raise ValueError(f"{frames} frames: expected at least 1")
        if self.keyframes is not None and frames != self.frames:
            raise ValueError(f"the cascade makes the TSR's {self.frames} frames")
        if self.parts.is_video and not self.config.sampler.window and hasattr(self.net, "check_frames"):
            self.net.check_frames(frames)

    # --- sampling -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, prompts: str | Sequence[str], *,
                 frames: Optional[int] = None,          # frames per clip (default data.frames)
                 steps: Optional[int] = None,           # sampler steps (default sampler.steps)
                 guidance: Optional[float] = None,      # classifier-free guidance scale; 1 = conditional only
                 sampler: Optional[str] = None,         # a SAMPLERS key (default sampler.name)
                 eta: Optional[float] = None,           # ddim / ddpm stochasticity (default sampler.eta)
                 window: Optional[int] = None,          # MultiDiffusion window in frames (0: the whole clip)
                 stride: Optional[int] = None,          # MultiDiffusion stride (0: window - 2)
                 seed: int = 0,                         # clip i's seed is seed + i ...
                 seeds: Optional[Sequence[int]] = None, # ... unless given per clip
                 batch_size: int | str | None = None,   # clips per network batch; "auto"; None: all at once
                 video: Optional[Tensor] = None,        # (b 3 t h w) in [-1, 1]: known pixels (conditional model)
                 mask: Optional[Tensor] = None,         # (b 1 t h w), 1 = known
                 lowres: Optional[Tensor] = None,       # SSR: (b 3 t h w) in [-1, 1], any size, to upscale
                 aug: float = 0.0,                      # SSR: noise-augmentation time of lowres, in [0, 1]
                 ssr: Optional[dict] = None,            # options of the SSR stage's call (steps, window, aug, ...)
                 progress: bool = False) -> VideoOutput:   # a bar over the videos, and one over each batch's steps
        """One clip per prompt (see the module docstring)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise InputError(f"prompts: expected a string or a non-empty list of strings, got {prompts!r:.80}")
        seeds = [seed + i for i in range(len(prompts))] if seeds is None else [int(s) for s in seeds]
        asked = {k: v for k, v in dict(steps=steps, guidance=guidance, name=sampler, eta=eta, window=window,
                                       stride=stride).items() if v is not None}
        for pipe in (self, self.keyframes):
            if pipe is not None:
                pipe.options(**asked)                   # every stage's settings checked before any work
        check_seeds(seeds, len(prompts))
        frames = self._frames(frames, video, lowres)
        given = {"video": video, "mask": mask, "lowres": lowres}
        self._check_inputs(len(prompts), given, aug)
        if batch_size is None:
            size = len(prompts)
        elif batch_size == "auto":                      # the largest that fits: halved on out-of-memory, remembered
            size = min(auto_batch_size(len(prompts), self.device), self._fits or len(prompts))
        elif isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1:
            size = batch_size
        else:
            raise InputError(f"batch_size={batch_size!r}: expected an integer >= 1, 'auto' or None")

        def run(idx: List[int]) -> tuple:
            take = {k: v[idx] for k, v in given.items() if v is not None}
            base = self._sample(prompts_of(prompts, idx), [seeds[i] for i in idx], frames, asked, take, aug, progress)
            if self.ssr is None:
                return base, None
            up = self.ssr(prompts_of(prompts, idx), seeds=[seeds[i] for i in idx], lowres=base,
                          progress=progress, **(ssr or {}))
            return up.videos, base

        out, base, sizes = [], [], []
        with tqdm(total=len(prompts), desc="sampling", unit="video", disable=not progress or size >= len(prompts),
                  leave=False) as bar:
            for batch, (videos, before) in fitting_batches(list(range(len(prompts))), size, run):
                out.append(videos.float().cpu())
                sizes.append(len(batch))
                if before is not None:
                    base.append(before.float().cpu())
                bar.update(len(batch))
        if batch_size == "auto":
            self._fits = max(sizes)                     # the size that fitted: where the next "auto" call starts
        return VideoOutput(torch.cat(out), prompts, seeds, self.fps, torch.cat(base) if base else None)

    def options(self, **asked) -> SamplerConfig:
        """The config's sampler settings (SamplerConfig's names) with the asked ones replacing them, checked."""
        opts = dataclasses.replace(self.config.sampler, **asked)
        check_options(opts)
        return opts

    def _frames(self, frames: Optional[int], video: Optional[Tensor], lowres: Optional[Tensor]) -> int:
        given = video if video is not None else lowres
        if frames is None:
            frames = int(given.shape[2]) if given is not None else self.frames
        elif given is not None and frames != given.shape[2]:
            raise InputError(f"frames={frames}, but the given clip has {given.shape[2]}")
        if isinstance(frames, bool) or not isinstance(frames, int):
            raise InputError(f"frames={frames!r}: expected an integer >= 1")
        try:
            self.check_frames(frames)
        except ValueError as err:
            raise InputError(f"frames={frames}: {err}") from None
        self.check_size(frames)
        return frames

    def check_size(self, frames: int) -> None:
        """InputError when one clip of `frames` frames (its noise, float32) is over the sample limit
        (eval/limits.py): asked for before anything is allocated."""
        from eval.limits import MIB, limits

        lim = limits()
        nbytes = math.prod(self.parts.sample_shape(frames)) * 4
        if frames > MAX_FRAMES or nbytes > lim.sample_mib * MIB:
            raise InputError(f"frames={frames}: one clip of {self.parts.sample_shape(frames)} is {nbytes / MIB:,.0f} "
                             f"MiB, over {lim.describe('sample_mib')}")

    def _check_inputs(self, n: int, given: dict, aug: float) -> None:
        p = self.parts
        if p.is_ssr and given["lowres"] is None:
            raise InputError("an SSR pipeline upscales clips: give lowres=(b 3 t h w) in [-1, 1]")
        if not p.is_ssr and given["lowres"] is not None:
            raise InputError(f"lowres= is the input of an SSR model; this is a model.name={self.config.model.name}")
        if (given["video"] is None) != (given["mask"] is None):
            raise InputError("video= and mask= go together: the known pixels and where they are (1 = known)")
        if given["video"] is not None and not p.conditional:
            raise InputError("video= / mask= need a STUNet trained with model.temporal.conditional=true")
        for name, v in given.items():
            if v is None:
                continue
            if not isinstance(v, Tensor) or v.ndim != 5 or v.shape[0] != n:
                raise InputError(f"{name}=: expected a (b c t h w) tensor with b = {n} prompts, got "
                                 f"{tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__}")
            if not bool(torch.isfinite(v).all()):
                raise InputError(f"{name}=: holds NaN or infinite values")
        video, mask = given["video"], given["mask"]
        if video is not None:
            side = self.config.data.size
            if tuple(video.shape[-2:]) != (side, side) or mask.shape[-3:] != video.shape[-3:]:
                raise InputError(f"video= / mask=: expected {side}x{side} frames (the model's data.size) and a mask "
                                 f"of the same frames, got {tuple(video.shape)} / {tuple(mask.shape)}")
        if not (isinstance(aug, (int, float)) and 0.0 <= aug <= 1.0):
            raise InputError(f"aug={aug!r}: expected a noise-augmentation time in [0, 1]")

    def _autocast(self):
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _sample(self, prompts: List[str], seeds: List[int], frames: int, asked: dict, given: dict, aug: float,
                progress: bool) -> Tensor:
        """One batch: (b 3 t h w) in [-1, 1] on the pipeline's device. asked: the call's sampler settings (the
        config's for the rest: a cascade's two models each keep their own defaults)."""
        opts = self.options(**asked)
        if self.keyframes is not None:                  # the cascade: keyframes, then this TSR fills in between
            k = self.config.model.temporal.keyframe_stride
            kf = self.keyframes._sample(prompts, seeds, frames // k, asked, {}, 0.0, progress)   # (b 3 T/k h w)
            video, mask = keyframe_condition(kf.to(self.device), k, frames)                      # (b 3 T h w)
            given = {"video": video, "mask": mask}
            seeds = [s + TSR_SEED_OFFSET for s in seeds]
        p, dev = self.parts, self.device
        cond = p.text_condition(prompts)
        if given.get("video") is not None:
            cond.update(p.video_condition(given["video"].to(dev, torch.float32), given["mask"].to(dev, torch.float32)))
        if given.get("lowres") is not None:
            low = fit_lowres(given["lowres"].to(dev, torch.float32), p.low_size)
            g = [torch.Generator(device=dev).manual_seed(s + SSR_SEED_OFFSET) for s in seeds]
            cond.update(p.lowres_condition(low, torch.full((len(seeds),), float(aug), device=dev), generator=g))
        sigmas = p.process.sigmas(opts.steps, dev)
        shape = p.sample_shape(frames)
        x = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
        x = x.to(dev) * sigmas[0]
        if p.conditional and "cond_video" not in cond:
            cond.update(p.empty_video_condition(x))     # the task none: C = 0, M = 0
        denoise = guided(p.process.denoiser(p.net), opts.guidance)
        denoise = dynamic_threshold(denoise, opts.threshold, opts.threshold_max)
        if p.is_video:
            denoise = multidiffusion(denoise, opts.window, opts.stride, opts.window_batch)
        g = [torch.Generator(device=dev).manual_seed(s + NOISE_SEED_OFFSET) for s in seeds]
        was_training = p.net.training
        p.net.eval()
        try:
            with self._autocast():
                x = SAMPLERS[opts.name](denoise, x, sigmas, cond, eta=opts.eta, generator=g, progress=progress)
                return p.decode(x.float()).float()
        finally:
            p.net.train(was_training)


def prompts_of(prompts: List[str], idx: List[int]) -> List[str]:
    return [prompts[i] for i in idx]


def fit_lowres(video: Tensor, size: int) -> Tensor:
    """(b c t h w) in [-1, 1] -> (b c t size size): the SSR's expected low-res input (area down, bilinear up)."""
    import torch.nn.functional as F

    from lumiere_pl.utils.tensors import fold_time, unfold_time

    if video.shape[-2:] == (size, size):
        return video
    t, h, w = video.shape[2:]
    mode = "area" if h >= size and w >= size else "bilinear"
    frames = F.interpolate(fold_time(video), size=(size, size), mode=mode,
                           **({} if mode == "area" else {"align_corners": False}))
    return unfold_time(frames, t).clamp(-1.0, 1.0)


def check_seeds(seeds: Sequence[int], n: int) -> None:
    if len(seeds) != n:
        raise InputError(f"{len(seeds)} seeds for {n} prompts; expected one per prompt")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise InputError(f"seed {bad[0]}: expected an integer in [0, {MAX_SEED}]")


def check_options(opts: SamplerConfig) -> None:
    """Sampler settings that cannot work, refused before any network call (NaN guidance would make black videos)."""
    if opts.name not in SAMPLERS:
        raise InputError(f"sampler={opts.name!r}: expected one of {sorted(SAMPLERS)}")
    for name, value, low, high in (("steps", opts.steps, 1, MAX_STEPS), ("window", opts.window, 0, MAX_FRAMES),
                                   ("stride", opts.stride, 0, MAX_FRAMES), ("window_batch", opts.window_batch, 1,
                                                                            MAX_FRAMES)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InputError(f"{name}={value!r}: expected an integer in [{low}, {high}]")
    for name, value in (("guidance", opts.guidance), ("eta", opts.eta), ("threshold", opts.threshold),
                        ("threshold_max", opts.threshold_max)):
        if not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise InputError(f"{name}={value!r}: expected a finite number")
    if opts.eta < 0:
        raise InputError(f"eta={opts.eta}: expected a value >= 0")
    if opts.eta != 0 and opts.name not in ("ddim", "ddpm"):
        raise InputError(f"sampler {opts.name} is deterministic: eta must be 0 (got {opts.eta}); use ddim or ddpm "
                         f"for stochastic sampling")
    if opts.name == "ddpm" and opts.eta not in (0.0, 1.0):
        raise InputError(f"sampler ddpm is DDIM with eta 1 (got eta {opts.eta}); for eta in (0, 1) use sampler ddim")
    if not 0 <= opts.threshold < 1:
        raise InputError(f"threshold={opts.threshold}: expected a quantile in [0, 1)")
    if opts.window and opts.stride > opts.window:
        raise InputError(f"stride={opts.stride} with window={opts.window}: expected stride <= window")


__all__ = ["LumierePipeline", "VideoOutput", "fit_lowres"]
