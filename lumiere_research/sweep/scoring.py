"""Sampling and scoring one run of a sweep at one step count (lumiere_research.sweep.runner calls score_run)."""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from lumiere_research import probes
from lumiere_research.sweep.spec import SampleSpec, ScoreSpec, SweepSpec


def load_pipeline(ckpts: Dict[str, Path]):
    """What a run generates with (its EMA weights): one model, or the cascade (keyframes, then temporal
    super-resolution)."""
    from lumiere_pl.pipeline import LumierePipeline

    if "keyframes" in ckpts:
        return LumierePipeline.from_pretrained(ckpts["tsr"], keyframes=ckpts["keyframes"])
    return LumierePipeline.from_pretrained(ckpts["model"])


def block(pipe) -> int:
    """2^k: the frames one coarsest-level frame stands for (k temporal halvings of the full-rate model)."""
    return 2 ** getattr(pipe.net, "temporal_halvings", 0)


def generate(pipe, prompts: List[str], seeds: List[int], settings: SampleSpec) -> List[np.ndarray]:
    """One (t h w 3) uint8 clip per prompt; clip i from noise seeded seeds[i], whatever the batch."""
    out = pipe(prompts, seeds=seeds, steps=settings.steps or None, guidance=settings.guidance,
               batch_size=settings.batch_size, progress=True)
    return [out.frames(i) for i in range(len(out))]


def stage_parts(pipe) -> Dict[str, object]:
    """The ModelParts of each stage, keyed as the run's checkpoints."""
    if pipe.keyframes is not None:
        return {"keyframes": pipe.keyframes.parts, "tsr": pipe.parts}
    return {"model": pipe.parts}


def train_step_flops(parts) -> int:
    """FLOPs of one training step (forward and backward of the loss) at the config's batch shape, in pixel space
    (the models a sweep trains; a conditional model on its task none)."""
    from lumiere_pl.utils.flops import count_flops

    d = parts.cfg.data
    shape = (d.batch_size, 3, d.frames, d.size, d.size) if parts.is_video else (d.batch_size, 3, d.size, d.size)
    x0 = torch.zeros(shape)
    cond = parts.text_condition(["a red circle moving left"] * d.batch_size)
    if parts.conditional:
        cond.update(parts.empty_video_condition(x0))
    parts.net.train()
    try:
        with torch.enable_grad():
            flops = count_flops(lambda: parts.process.loss(parts.net, x0, cond).backward())
    finally:
        parts.net.zero_grad(set_to_none=True)
        parts.net.eval()
    return flops


def asked(spec: SweepSpec, run) -> dict:
    """The sampling and scoring settings a score answers: when the spec asks for others, the score is redone."""
    import dataclasses
    return {"sample": dataclasses.asdict(run.sample_settings(spec.sample)), "score": dataclasses.asdict(spec.score)}


def answers(stored: Optional[dict], now: dict) -> bool:
    """Whether a score that recorded `stored` (its "asked") answers the settings `now`. A setting the score does not
    record was added to the spec schema after it was written: it held its default then, so it compares as that."""
    import dataclasses
    if not stored:
        return False
    defaults = {"sample": dataclasses.asdict(SampleSpec()), "score": dataclasses.asdict(ScoreSpec())}
    return all({**defaults[k], **stored.get(k, {})} == v for k, v in now.items())


def _train_seconds(ckpt: Path, steps: int) -> float:
    record = ckpt.parent.parent / "sweep_train_seconds.json"
    return float(json.loads(record.read_text()).get(str(steps), math.nan)) if record.is_file() else math.nan


def score_run(spec: SweepSpec, plan, point: int, ckpts: Dict[str, Path], real: Optional[Path],
              init_from: Optional[str]) -> dict:
    from lumiere_pl.checkpoint import load_checkpoint
    from lumiere_pl.utils.video import write_mp4

    run, settings = plan.run, plan.run.sample_settings(spec.sample)
    pipe = load_pipeline(ckpts)
    cfg = pipe.config
    shapes = cfg.data.name == "synthetic"               # the tracker and the probes read the moving-shapes set only
    prompts = held_out_captions(spec, cfg, settings.n)
    seeds = [settings.seed + i for i in range(len(prompts))]
    t0 = time.perf_counter()
    videos = generate(pipe, prompts, seeds, settings)
    sample_s = (time.perf_counter() - t0) / len(videos)
    folder = spec.root / "samples" / run.name / f"step{point:07d}"
    if folder.exists():                                   # a score being redone: no clip of the old set stays
        shutil.rmtree(folder)
    fps = cfg.data.fps
    for i, v in enumerate(videos):
        write_mp4(folder / f"{i:06d}.mp4", v, fps=fps, lossless=True)

    stage_steps = {name: int(load_checkpoint(c)["global_step"]) for name, c in ckpts.items()}
    result = {"label": run.label, "variant": run.variant, "seed": run.seed, "steps": point,
              "asked": asked(spec, run),
              "stage_steps": stage_steps, "n": len(videos), "samples": str(folder), "fps": fps,
              "sample": {"steps": settings.steps or cfg.sampler.steps,
                         "guidance": settings.guidance if settings.guidance is not None
                         else cfg.sampler.guidance, "seed": settings.seed},
              "sample_seconds_per_video": sample_s,
              "train_seconds": sum(_train_seconds(c, stage_steps[n]) for n, c in ckpts.items()),
              "train_tflops": sum(train_step_flops(p) * stage_steps[n] for n, p in stage_parts(pipe).items()) / 1e12}
    bg = cfg.data.synthetic.background
    if spec.score.appearance and shapes:           # every frame of every clip (one frame for a T2I)
        frames = [f for v in videos for f in v]
        result["appearance"] = probes.appearance(frames, [p for p, v in zip(prompts, videos) for _ in v], bg)
    if spec.score.motion and shapes:
        result["motion"] = probes.motion(videos, prompts, block(pipe), bg)
    if spec.score.flow and real is not None and pipe.parts.is_video:
        result["flow"] = flow_score(videos, real, fps)
    if spec.score.fvd and real is not None:
        result["fvd"] = fvd_score(real, folder, spec.root / "cache", cfg.data.frames, fps)
    if spec.score.text_swap and shapes:
        swap_clips = probes.test_clips(cfg, spec.score.text_swap)
        result["text_swap"] = probes.text_swap(lambda p, s: generate(pipe, p, s, settings), swap_clips,
                                               settings.seed, bg)
    if spec.score.x0_motion and pipe.keyframes is None and shapes:
        result["x0_motion"] = probes.x0_motion(pipe.parts, pipe.net, spec.score.x0_motion, block=block(pipe))
    if spec.score.loss_by_noise and pipe.keyframes is None and init_from and shapes:
        result["loss_by_noise"] = _loss_by_noise(pipe.parts, init_from, spec.score.loss_by_noise)
    return result


def fvd_clip(frames: int, fps: float):
    """The clips FVD reads: the first 16 frames; clips shorter than 16 frames (the I3D needs at least 9) are
    resampled to twice their frame rate, every frame shown twice (2T - 1 frames), real and generated alike."""
    from eval.video_io import ClipSpec

    return ClipSpec(frames=16) if frames >= 16 else ClipSpec(frames=2 * frames - 1, fps=2 * fps)


def fvd_score(real: Path, fake: Path, cache: Path, frames: int, fps: float) -> dict:
    """FVD (I3D, tf-fvd preset) between two folders of clips, read as fvd_clip says, with its bootstrap interval."""
    from eval.detectors import I3DDetector
    from eval.scoring import fvd

    clip = fvd_clip(frames, fps)
    out = fvd(real, fake, I3DDetector(), clip, cache_dir=cache)
    return {"value": out["value"], "low": out.get("low"), "high": out.get("high"), "n_real": out["n_real"],
            "n_fake": out["n_fake"], "frames": clip.frames, "fps": clip.fps}


def held_out_captions(spec: SweepSpec, cfg, n: int) -> List[str]:
    """The captions of the first n held-out clips (real_captions.json, written with the real clips by the runner;
    fewer when the validation shards hold fewer); without it, those of the moving-shapes test split."""
    record = spec.root / "real_captions.json"
    if record.is_file():
        return json.loads(record.read_text())[:n]          # the validation shards may hold fewer than n
    return [c.caption for c in probes.test_clips(cfg, n)]


def flow_score(videos: List[np.ndarray], real: Path, fps: float) -> dict:
    """The weight-free motion figures (eval/motion.py, DIS flow) of the samples, and the flow Frechet distance to the
    held-out clips of `real` (as many as there are samples, when the folder holds them)."""
    import warnings

    from eval.motion import flow_frechet, motion_stats, summarise
    from lumiere_pl.data.video_io import decode

    stats = [motion_stats(v, fps) for v in videos]
    files = sorted(real.glob("*.mp4"))[:max(len(videos), 2)]
    real_stats = [motion_stats(decode(f.read_bytes()), fps) for f in files]
    out = {k: v["value"] for k, v in summarise(stats, b=0).items()}
    usable = [s for s in real_stats if s.get("features") is not None]
    fd = {"value": None}
    if len(usable) >= 2 and len(stats) >= 2:
        with warnings.catch_warnings():                    # few clips: biased upward; compared at equal N only
            warnings.simplefilter("ignore", UserWarning)
            fd = flow_frechet(usable, stats, b=0)
    out.update(frechet=fd["value"], n=len(stats), n_real=len(real_stats),
               real={k: v["value"] for k, v in summarise(real_stats, b=0).items()})
    return out


TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)


def _loss_by_noise(parts, init_from: str, n: int) -> dict:
    """The trained STUNet (EMA) against the T2I it was inflated from (EMA), run per frame."""
    from lumiere_pl.checkpoint import load_parts

    t2i = load_parts(init_from, expect=["t2i"])
    losses = probes.loss_by_noise(parts, {"stunet": parts.net, "t2i_per_frame": probes.PerFrame(t2i.net)},
                                  n=n, times=TIMES)
    swapped = probes.loss_by_noise(parts, {"stunet_swapped_direction": parts.net}, n=n, times=TIMES, swapped=True)
    return {"times": list(TIMES), **losses, **swapped}
