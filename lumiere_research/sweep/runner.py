"""Running a sweep: train each run (resumable), sample the same prompts from the same noise, score, one JSON per
(run, steps). Everything a run writes lives under {root}; a finished piece is never redone.

  {root}/pretrain/                      the T2I every run inflates (spec.pretrain), trained once
  {root}/train/{variant}/seed{S}/{stage}/   lumiere-train run folders; checkpoints/sweep_step{N}.ckpt per scored N
  {root}/real/NNNNNN.mp4                real test clips for FVD (lossless MP4)
  {root}/samples/{label}/seed{S}/step{N}/NNNNNN.mp4   generated clips (lossless MP4: the scores read them exactly)
  {root}/scores/{label}/seed{S}/step{N}.json          every metric of that run at N steps
"""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from lumiere_pl.utils.atomic import atomic_path, write_text
from lumiere_research.sweep.spec import Run, SpecError, StageSpec, SweepSpec, expand

CKPT = "sweep_step{:07d}.ckpt"


@dataclass
class Plan:
    """A run with everything resolved: per stage its config, overrides and the steps it trains to."""
    run: Run
    stages: Dict[str, tuple]         # stage -> (config path, overrides without init_from / max_steps, [steps])
    points: List[int]                # the sweep's step counts (the table's rows)


class TrainingFailed(RuntimeError):
    """A run's lumiere-train exited non-zero; the message is its command line."""


def _overrides(spec: SweepSpec, run: Run, stage_name: str, stage: StageSpec) -> List[str]:
    train_dir = spec.root / "train" / run.train_name
    return [*spec.overrides, *stage.overrides, *run.train_extra, f"train.seed={run.seed}", f"data.seed={run.seed}",
            f"out_dir={train_dir}", f"name={stage_name}"]


def plan(spec: SweepSpec) -> List[Plan]:
    """Resolve and check every run's configs before anything trains (a bad override fails here, naming it)."""
    from lumiere_pl.config import ConfigError
    from lumiere_pl.config_checks import check_init, load_config

    plans, shape = [], None
    for run in expand(spec):
        stages, points = {}, list(spec.steps)
        for name, stage in run.stages.items():
            overrides = _overrides(spec, run, name, stage)
            try:
                cfg = load_config(stage.config, overrides)
                if not (spec.pretrain or spec.init_from):      # else every run inflates the sweep's T2I
                    check_init(cfg)
            except ConfigError as err:
                raise SpecError(f"run {run.name}, stage {name} ({stage.config}): {err}") from None
            if name != "keyframes":
                here = (cfg.data.frames, cfg.data.size, cfg.data.fps)
                if shape is not None and here != shape:
                    raise SpecError(f"run {run.name}: makes (frames, size, fps) {here}, another run {shape}: the runs "
                                    f"of one sweep must be scored on the same clips")
                shape = here
            base = points or [cfg.train.max_steps]
            stages[name] = (stage.config, overrides, [max(1, round(s * stage.steps_scale)) for s in base])
            points = base
        plans.append(Plan(run, stages, points))
    return plans


def _train(spec: SweepSpec, config: str, overrides: List[str], steps: int, init_from: Optional[str],
           launcher: List[str]) -> Path:
    """Train (or resume) to `steps` and keep that checkpoint as sweep_step{steps}.ckpt; returns its path."""
    from lumiere_pl.config_checks import load_config

    cfg = load_config(config, overrides)
    _same_config(cfg, init_from)
    ckpt_dir = cfg.run_dir / "checkpoints"
    keep = ckpt_dir / CKPT.format(steps)
    if keep.is_file():
        return keep
    cmd = [*launcher, "lumiere_pl.cli.train", "--resume", "auto", "--config", config, *overrides,
           f"train.max_steps={steps}", *([f"model.init_from={init_from}"] if init_from else [])]
    print(f"[sweep] train {cfg.run_dir} to {steps} steps", flush=True)
    t0 = time.perf_counter()
    if run_child(cmd) != 0:
        raise TrainingFailed(f"training failed (its output is above): {shlex.join(cmd)}")
    _record_seconds(cfg.run_dir / "sweep_train_seconds.json", steps, time.perf_counter() - t0)
    with atomic_path(keep) as tmp:                    # a kill mid-copy leaves no half checkpoint under its name
        shutil.copyfile(ckpt_dir / "last.ckpt", tmp)
    return keep


CHILD_GRACE = 60.0           # seconds a training run gets to end on its own after a signal (on_exception.ckpt)


def run_child(cmd: List[str]) -> int:
    """Run a training command and return its exit code. Interrupted (Ctrl-C, SIGTERM: eval/signals.py), the child
    gets the same signal (Ctrl-C reaches it from the terminal already; a second one is ignored by it) and
    CHILD_GRACE seconds to save its state and end; only then is it killed. The interrupt is then raised again."""
    from eval.signals import interrupted

    proc = subprocess.Popen(cmd)
    try:
        return proc.wait()
    except KeyboardInterrupt as err:
        stop = interrupted(err)
        if proc.poll() is None:
            proc.send_signal(stop.signum)
            try:
                proc.wait(timeout=CHILD_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise


def _same_config(cfg, init_from: Optional[str]) -> None:
    """A run folder serves only the config it was first trained with (train.max_steps aside): a spec edited since
    would otherwise score old checkpoints under new names. The config is recorded at the first training."""
    from omegaconf.errors import OmegaConfBaseException

    from lumiere_pl.config import from_dict, to_dict

    record = cfg.run_dir / "sweep_config.json"
    now = to_dict(cfg)
    now["train"].pop("max_steps")
    now["model"]["init_from"] = init_from
    if not record.is_file():
        _write_json(record, now)
        return
    before = json.loads(record.read_text())
    try:                          # keys the record lacks (added to the schema after it) read as their defaults
        filled = to_dict(from_dict({**before, "train": {**before["train"], "max_steps": 1}}))
        filled["train"].pop("max_steps")
        filled["model"]["init_from"] = before["model"]["init_from"]
        before = filled
    except (OmegaConfBaseException, KeyError, TypeError) as err:   # a key removed from the schema, say
        raise SpecError(f"{cfg.run_dir} was trained with a config this version cannot read ({err}); delete that "
                        f"folder to retrain it, or give the sweep another name") from None
    if before != now:
        changed = sorted(_diff(before, now))
        raise SpecError(f"{cfg.run_dir} was trained with another config ({', '.join(changed[:4])} differ); "
                        f"delete that folder to retrain it, or give the sweep another name")


def _diff(a, b, prefix: str = "") -> List[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for key in sorted(set(a) | set(b)) for k in _diff(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]


def _record_seconds(path: Path, steps: int, seconds: float) -> None:
    record = json.loads(path.read_text()) if path.is_file() else {}
    record[str(steps)] = seconds + max([v for k, v in record.items() if int(k) < steps] or [0.0])
    _write_json(path, record)


def _write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2))


def pretrain_checkpoint(spec: SweepSpec, launcher: List[str]) -> Optional[str]:
    """The T2I every run inflates: spec.init_from, or spec.pretrain trained once under {root}/pretrain."""
    if spec.init_from:
        if not Path(spec.init_from).is_file():
            raise SpecError(f"init_from={spec.init_from!r}: no such checkpoint")
        return spec.init_from
    if spec.pretrain is None:
        return None
    overrides = [*spec.overrides, *spec.pretrain.overrides, f"out_dir={spec.root}", "name=pretrain"]
    from lumiere_pl.config_checks import load_config
    steps = load_config(spec.pretrain.config, overrides).train.max_steps
    return str(_train(spec, spec.pretrain.config, overrides, steps, None, launcher))


def write_test_clips(d, count: int, folder: Path) -> list:
    """The first `count` clips of the test split of data config `d`, as {folder}/NNNNNN.mp4 (lossless; existing files
    are kept); returns the clips (captions and motion)."""
    from lumiere_pl.data.synthetic import clip_of, render_clip
    from lumiere_pl.utils.video import write_mp4

    s = d.synthetic
    clips = [clip_of(d, i, "test") for i in range(count)]
    for i, clip in enumerate(clips):
        path = folder / f"{i:06d}.mp4"
        if not path.exists():
            write_mp4(path, render_clip(clip, d.frames, d.size, s.shape_scale, s.background), fps=d.fps,
                      lossless=True)
    return clips


def write_held_out_clips(d, count: int, folder: Path) -> List[str]:
    """The first `count` clips of data config d's validation shards in the validation view (centred crop, first
    frames, at data.size and data.fps), as {folder}/NNNNNN.mp4 (lossless; existing files are kept); their captions."""
    from lumiere_pl.data.health import SkipCounter
    from lumiere_pl.data.sample_decode import decode_sample
    from lumiere_pl.data.tar_reader import expand, iter_shard
    from lumiere_pl.utils.video import to_uint8, write_mp4

    if not d.val_shards:
        raise SpecError("a sweep on data.name=webdataset needs data.val_shards: its held-out clips are the prompts' "
                        "captions and the real set of FVD and the flow metrics")
    captions, skips = [], SkipCounter()
    for url in expand(d.val_shards):
        for raw in iter_shard(url, skips):
            ex = decode_sample(raw, d, None, skips)
            if ex is None:
                continue
            path = folder / f"{len(captions):06d}.mp4"
            if not path.exists():
                write_mp4(path, to_uint8(ex["pixels"]), fps=d.fps, lossless=True)
            captions.append(ex["caption"])
            if len(captions) == count:
                return captions
    return captions


def real_clips(spec: SweepSpec, plans: List[Plan], count: int) -> Path:
    """The first `count` held-out clips as the runs see them (lossless MP4): the moving-shapes test split, or the
    validation shards of a webdataset run; FVD's real set, the motion metrics' reference and the prompts' captions."""
    from lumiere_pl.config_checks import load_config

    config, overrides, _ = list(plans[0].stages.values())[-1]      # the last stage makes the clips (a cascade's TSR)
    folder = spec.root / "real"
    d = load_config(config, overrides).data
    captions = ([c.caption for c in write_test_clips(d, count, folder)] if d.name == "synthetic"
                else write_held_out_clips(d, count, folder))
    record = spec.root / "real_captions.json"                               # beside the videos
    if not record.is_file() or json.loads(record.read_text()) != captions:
        _write_json(record, captions)
    return folder


def run_all(spec: SweepSpec, only: Optional[List[int]] = None, launcher: Optional[List[str]] = None) -> List[Path]:
    """Train, sample and score every run (or the runs at indices `only`), sequentially; returns the score files."""
    launcher = launcher or [sys.executable, "-m"]
    plans = plan(spec)
    todo = [p for i, p in enumerate(plans) if only is None or i in only]
    init_from = pretrain_checkpoint(spec, launcher)
    count = max(spec.score.n_real if spec.score.fvd else 0,
                spec.sample.n if (spec.score.motion or spec.score.flow) else 0, spec.sample.n)
    real = real_clips(spec, plans, count) if count else None
    written = []
    for i, p in enumerate(todo):
        print(f"[sweep] run {i + 1}/{len(todo)}: {p.run.name}", flush=True)
        for j, point in enumerate(p.points):
            out = spec.root / "scores" / p.run.name / f"step{point:07d}.json"
            from lumiere_research.sweep.scoring import answers, asked, score_run
            if not out.is_file() or not answers(json.loads(out.read_text()).get("asked"), asked(spec, p.run)):
                ckpts = {name: _train(spec, cfg, ov, steps[j], init_from, launcher)
                         for name, (cfg, ov, steps) in p.stages.items()}
                _write_json(out, score_run(spec, p, point, ckpts, real, init_from))
            written.append(out)
    return written
